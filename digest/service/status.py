"""What `digest status` shows: whether the service runs, each job's next run and last result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.cron import next_fire
from digest.service.jobs import SEND, job_names
from digest.service.scheduler import describe_job, schedule_of
from digest.settings import Settings
from digest.store import runs as job_runs
from digest.store.database import Store
from digest.store.edition_reports import EditionProgress, progress
from digest.store.nodes import Node, list_nodes
from digest.store.runs import scheduled_times


@dataclass(frozen=True)
class JobStatus:
    job: str
    schedule: str  # in words
    next_run: datetime | None  # UTC; None: at the start of the service (publish) or never
    next_from_service: bool  # True: what the running service has scheduled; False: computed
    last: job_runs.JobRun | None


@dataclass(frozen=True)
class NodeStatus:
    """A registered `digest run` node: alive, or stale (no heartbeat for LEADER_LEASE)."""

    node: Node
    stale: bool


@dataclass(frozen=True)
class ServiceStatus:
    holder: str | None  # who runs `digest run` on this store, None when nobody does
    jobs: tuple[JobStatus, ...]
    editions: tuple[EditionProgress, ...] = ()  # open ones, else the last one
    nodes: tuple[NodeStatus, ...] = ()  # `digest run` nodes of a PostgreSQL store

    @property
    def running(self) -> bool:
        return self.holder is not None


def service_status(settings: Settings, store: Store, now: datetime,
                   holder: str | None) -> ServiceStatus:
    """The status of each job; `holder` is the lock holder (see digest.service_lock.holder)."""
    stored = scheduled_times(store) if holder is not None else {}
    last = job_runs.last_runs(store)
    computed = {SEND: next_fire(schedule_of(settings).trigger, now)}
    jobs = tuple(
        JobStatus(job=job, schedule=describe_job(settings, job),
                  next_run=stored[job] if job in stored else computed.get(job),
                  next_from_service=job in stored, last=last.get(job))
        for job in job_names(settings))
    lease = timedelta(seconds=settings.leader_lease)
    registered = tuple(NodeStatus(node, node.stale(now, lease)) for node in list_nodes(store))
    return ServiceStatus(holder, jobs, tuple(progress(store)), registered)


__all__ = ["EditionProgress", "JobStatus", "NodeStatus", "ServiceStatus", "scheduled_times",
           "service_status"]
