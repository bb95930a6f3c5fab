"""The last run of each scheduled job, kept in the state store (table ``job_runs``).

`digest status` shows it; the scheduler reads ``covered_until`` at start to
find a digest run missed while it was down (see :mod:`digest.cron`).

Outcomes (:class:`digest.model.RunOutcome`): ``running`` (started, not finished: still going, or the process
died), ``ok``, ``problems`` (finished, but some articles or deliveries did
not go through), ``failed`` (an error stopped the job), ``stopped`` (the
service was asked to stop mid-run) and ``skipped`` (missed by more than
MISFIRE_GRACE_TIME); ``never`` when the service started but the job has
not run yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.model import RunOutcome
from digest.store.database import Store
from digest.store.schema import JOB_TABLE, job_runs, scheduler_jobs
from digest.store.timestamps import from_iso, iso, optional

RUNNING = RunOutcome.RUNNING
OK = RunOutcome.OK
PROBLEMS = RunOutcome.PROBLEMS
FAILED = RunOutcome.FAILED
STOPPED = RunOutcome.STOPPED
SKIPPED = RunOutcome.SKIPPED
NEVER = RunOutcome.NEVER  # no run yet; the row only holds covered_until
OUTCOMES = tuple(RunOutcome)
COMPLETED = (OK, PROBLEMS, FAILED)  # runs that cover their fire time


@dataclass(frozen=True)
class JobRun:
    """The last recorded run of one job."""

    job: str
    started_at: datetime
    finished_at: datetime | None
    duration: float | None  # seconds
    outcome: RunOutcome
    summary: str
    covered_until: datetime | None


def last_runs(store: Store) -> dict[str, JobRun]:
    with store.reading() as conn:
        rows = conn.execute(sa.select(job_runs)).all()
    return {row.job: _from_row(row._mapping) for row in rows}


def last_run(store: Store, job: str) -> JobRun | None:
    return last_runs(store).get(job)


def record_start(store: Store, job: str, started_at: datetime) -> None:
    """A run began: outcome ``running``; covered_until stays where it was."""
    with store.transaction() as conn:
        previous = _covered(conn, job)
        _replace(conn, job, started_at=iso(started_at), finished_at=None, duration=None,
                 outcome=RUNNING, summary="", covered_until=previous)


def record_end(store: Store, job: str, started_at: datetime, finished_at: datetime,
               duration: float, outcome: str, summary: str) -> None:
    """A run ended; a completed one (ok, problems, failed) covers fire times up to its start."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    with store.transaction() as conn:
        covered = _covered(conn, job)
        if outcome in COMPLETED:
            covered = _later(covered, iso(started_at))
        _replace(conn, job, started_at=iso(started_at), finished_at=iso(finished_at),
                 duration=duration, outcome=outcome, summary=summary, covered_until=covered)


def record_skip(store: Store, job: str, at: datetime, summary: str) -> None:
    """A missed run was skipped at `at`: record it and cover everything up to then."""
    with store.transaction() as conn:
        _replace(conn, job, started_at=iso(at), finished_at=iso(at), duration=0.0,
                 outcome=SKIPPED, summary=summary, covered_until=iso(at))


def cover(store: Store, job: str, until: datetime) -> None:
    """Mark the fire times of `job` up to `until` as dealt with (keeps the last result)."""
    with store.transaction() as conn:
        found = conn.execute(sa.select(job_runs.c.covered_until)
                             .where(job_runs.c.job == job)).first()
        if found is None:
            _replace(conn, job, started_at=iso(until), finished_at=None, duration=None,
                     outcome=NEVER, summary="", covered_until=iso(until))
            return
        conn.execute(job_runs.update().where(job_runs.c.job == job)
                     .values(covered_until=_later(found[0], iso(until))))


def _covered(conn: Connection, job: str) -> str | None:
    found: str | None = conn.execute(sa.select(job_runs.c.covered_until)
                                     .where(job_runs.c.job == job)).scalar()
    return found


def _later(a: str | None, b: str) -> str:
    if a is None:
        return b
    return a if from_iso(a) >= from_iso(b) else b


def _replace(conn: Connection, job: str, **values: object) -> None:
    conn.execute(job_runs.delete().where(job_runs.c.job == job))
    conn.execute(job_runs.insert().values(job=job, **values))


def _from_row(row: sa.RowMapping) -> JobRun:
    return JobRun(
        job=row["job"], started_at=from_iso(row["started_at"]),
        finished_at=optional(row["finished_at"]),
        duration=row["duration"], outcome=RunOutcome(row["outcome"]), summary=row["summary"],
        covered_until=optional(row["covered_until"]),
    )


def scheduled_times(store: Store) -> dict[str, datetime | None]:
    """Next run times in APScheduler's job store (empty before the first `digest run`)."""
    with store.reading() as conn:
        if not sa.inspect(conn).has_table(JOB_TABLE):
            return {}
        rows = conn.execute(sa.select(scheduler_jobs.c.id, scheduler_jobs.c.next_run_time)).all()
    return {row.id: None if row.next_run_time is None
            else datetime.fromtimestamp(row.next_run_time, UTC) for row in rows}
