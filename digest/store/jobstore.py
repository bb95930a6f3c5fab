"""APScheduler's job store on the state store's engine (its table: ``apscheduler_jobs``).

APScheduler creates and writes that table itself; :mod:`digest.store.schema`
declares it (``scheduler_jobs``) so `digest status` can read it.
"""

from __future__ import annotations

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

from digest.store.database import Store
from digest.store.schema import JOB_TABLE


class _StoreJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """Leaves the engine to the store: a leader that steps down stops its scheduler while
    other threads of the process still use the store's connections."""

    def shutdown(self) -> None:
        pass


def job_store(store: Store) -> SQLAlchemyJobStore:
    return _StoreJobStore(engine=store.engine, tablename=JOB_TABLE)
