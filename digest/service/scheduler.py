"""The `digest run` service: one APScheduler 3 scheduler with two jobs, or three.

* ``publish`` on an interval (PUBLISH_INTERVAL), first at start;
* ``send-digest`` on DIGEST_SCHEDULE in DIGEST_TIMEZONE (see :mod:`digest.cron`);
* ``fetch-bounces`` on BOUNCE_FETCH_INTERVAL, first at start, when
  BOUNCE_IMAP_URL is set (else a stored one is removed).

The jobs live in APScheduler's SQLAlchemyJobStore, in the state store, with
fixed ids and ``replace_existing=True``: the schedule of `.env` takes effect
at each start. Stored jobs are pickled by reference, so they name the
module-level :func:`run_scheduled` with the job name as the only argument;
it finds the running :class:`Service` in a module-level registry.

Re-adding a job computes its next run from now, which would forget a digest
missed while the service was down. So at start the service compares the
schedule with ``covered_until`` of the job's last run (:mod:`digest.job_runs`)
and, if the latest missed fire time is at most MISFIRE_GRACE_TIME ago, adds
the job with that time as its next run: APScheduler runs it once at once
(``coalesce=True``). Older misses are logged and skipped. Whatever starts a
send, the edition logic of :mod:`digest.send` is what prevents double mail.

On a PostgreSQL store several nodes run (:mod:`digest.service.leader`); the
leader's service gets a *fire guard*: before a job runs, the time it was due
(handed to it by :class:`_FireTimeExecutor`) is recorded as taken by this node,
and a fire another node took is skipped.

Every run logs one line (job, what it did, how long it took) and records its
result in the state store; an error is logged with its cause and the job
runs again at its next time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from digest.cron import Schedule, missed_run, next_fire, parse_schedule
from digest.errors import DigestError, ScheduleError
from digest.service.jobs import (
    DEFAULT_JOBS,
    FETCH,
    PUBLISH,
    SEND,
    Job,
    JobContext,
    JobResult,
    job_names,
)
from digest.service.lock import ServiceLock
from digest.settings import Settings
from digest.store import runs as job_runs
from digest.store.database import DriverError, Store
from digest.store.jobstore import job_store
from digest.store.nodes import LeaderLock

log = logging.getLogger("digest.schedule")

Clock = Callable[[], datetime]

_registry: dict[str, Service] = {}
_registry_lock = threading.Lock()


def run_scheduled(job: str, fire_time: datetime | None = None) -> None:
    """What the stored jobs call: run `job` in the service of this process.

    `fire_time` (the time the job was due) is added by :class:`_FireTimeExecutor`.
    """
    service = _registry.get("current")
    if service is None:
        log.error("%s: fired, but no service runs in this process; skipped", job,
                  extra={"job": job})
        return
    service.runner.run(job, fire_time)


# Takes the fire of a job due at a time for this process: None if it did, else who did.
FireGuard = Callable[[str, datetime], str | None]


class _FireTimed:
    """A job as APScheduler's run_job sees it, with the time it was due as one more argument."""

    def __init__(self, job: Any, fire_time: datetime) -> None:
        self._job = job
        self.args = (*job.args, fire_time)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


class _FireTimeExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """Hands each job the time it was due (coalesced: the latest), for the fire guard."""

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        super()._do_submit_job(_FireTimed(job, run_times[-1]), run_times)


def schedule_of(settings: Settings) -> Schedule:
    return parse_schedule(settings.digest_schedule, settings.digest_timezone)


def grace_of(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.misfire_grace_time)


class JobRunner:
    """Runs one job by name: logs one line, records the result, never raises."""

    def __init__(self, settings: Settings, store: Store, jobs: Mapping[str, Job],
                 clock: Clock, stop: threading.Event, lock: ServiceLock | LeaderLock | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 guard: FireGuard | None = None) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self.stop = stop
        self.lock = lock
        self.monotonic = monotonic
        self.guard = guard
        self.lost_lock = False

    def run(self, name: str, fire_time: datetime | None = None) -> str:
        """Run the job; return its outcome (ok, problems, stopped, failed, skipped).

        With a `guard` and the `fire_time`, the job runs only if the guard gives
        this process that fire (skipped otherwise: another node ran it).
        """
        if self.stop.is_set():
            log.info("%s: not started, the service is stopping", name, extra={"job": name})
            return job_runs.STOPPED
        if self.lock is not None and not self.lock.alive():
            self.lost_lock = True
            why = getattr(self.lock, "why_lost", None)
            if why:
                log.error("%s: not started: %s; stopping the service", name, why,
                          extra={"job": name})
            else:
                log.error("%s: not started: lost the lock of the state store (%s); stopping the "
                          "service so a restart takes it again", name, self.lock.description,
                          extra={"job": name})
            self.stop.set()
            return job_runs.FAILED
        if self.guard is not None and fire_time is not None:
            holder = self._guarded(name, fire_time)
            if holder is not None:
                log.warning("%s: the run due at %s was already taken by %s; skipped", name,
                            local_time(fire_time, self.settings), holder, extra={"job": name})
                return job_runs.SKIPPED
        started = self.clock()
        began = self.monotonic()
        self._record(job_runs.record_start, self.store, name, started)
        try:
            result = self.jobs[name](JobContext(self.settings, self.store, started,
                                                self.stop.is_set))
        except DigestError as exc:
            duration = self.monotonic() - began
            hint = f" (hint: {exc.hint})" if exc.hint else ""
            log.error("%s failed after %.2f s: %s%s; it runs again at its next time", name,
                      duration, exc.message, hint,
                      exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
                      extra=_fields(name, duration, job_runs.FAILED))
            result = JobResult(exc.message + hint, job_runs.FAILED)
        except Exception as exc:
            duration = self.monotonic() - began
            log.exception("%s failed after %.2f s: %s: %s; it runs again at its next time",
                          name, duration, type(exc).__name__, exc,
                          extra=_fields(name, duration, job_runs.FAILED))
            result = JobResult(f"{type(exc).__name__}: {exc}", job_runs.FAILED)
        else:
            duration = self.monotonic() - began
            level = logging.INFO if result.outcome == job_runs.OK else logging.WARNING
            log.log(level, "%s: %s (%.2f s)", name, result.summary, duration,
                    extra=_fields(name, duration, result.outcome))
        self._record(job_runs.record_end, self.store, name, started,
                     started + timedelta(seconds=duration), duration, result.outcome,
                     result.summary)
        return result.outcome

    def _guarded(self, name: str, fire_time: datetime) -> str | None:
        assert self.guard is not None
        try:
            return self.guard(name, fire_time)
        except DigestError as exc:
            return f"nobody (cannot record the fire: {exc.message})"

    def _record(self, action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except (DigestError, DriverError) as exc:
            log.error("cannot record the job run in the state store: %s", exc)


def _fields(job: str, duration: float, outcome: str) -> dict[str, Any]:
    return {"job": job, "duration": round(duration, 3), "outcome": outcome}


class Service:
    """The scheduler of `digest run`. start(), then wait() until stopped, then shutdown()."""

    def __init__(self, settings: Settings, store: Store, clock: Clock,
                 jobs: Mapping[str, Job] = DEFAULT_JOBS, stop: threading.Event | None = None,
                 lock: ServiceLock | LeaderLock | None = None,
                 guard: FireGuard | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.schedule = schedule_of(settings)
        self.stop = stop or threading.Event()
        self.runner = JobRunner(settings, store, jobs, clock, self.stop, lock, guard=guard)
        self._scheduler: BackgroundScheduler | None = None

    @property
    def failed(self) -> bool:
        """The service stopped on its own because it lost its lock."""
        return self.runner.lost_lock

    def start(self) -> None:
        with _registry_lock:
            if "current" in _registry:
                raise ScheduleError("a scheduler already runs in this process")
            _registry["current"] = self
        # A few seconds more than the setting: the catch-up decided in _first_send must
        # not be skipped by APScheduler for being milliseconds later than that.
        grace = math.ceil(self.settings.misfire_grace_time) + 5
        scheduler = BackgroundScheduler(
            jobstores={"default": job_store(self.store)},
            executors={"default": _FireTimeExecutor(2)},  # a long send does not hold up publishing
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
            timezone=self.settings.digest_timezone,
        )
        try:
            scheduler.start(paused=True)
            self._add_jobs(scheduler, self.clock())
            scheduler.resume()
        except BaseException as exc:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            _registry.pop("current", None)
            if isinstance(exc, DriverError):
                raise ScheduleError(f"cannot start the scheduler: {exc}",
                                    "check that the state store is reachable") from exc
            raise
        self._scheduler = scheduler
        for job in scheduler.get_jobs():
            log.info("scheduled %s: %s, next at %s", job.id, describe_job(self.settings, job.id),
                     local_time(job.next_run_time, self.settings), extra={"job": job.id})

    def _add_jobs(self, scheduler: BackgroundScheduler, now: datetime) -> None:
        scheduler.add_job(
            run_scheduled, IntervalTrigger(seconds=self.settings.publish_interval,
                                           timezone=self.settings.digest_timezone),
            args=[PUBLISH], id=PUBLISH, name=PUBLISH, replace_existing=True,
            next_run_time=self._zoned(now))
        scheduler.add_job(
            run_scheduled, self.schedule.trigger, args=[SEND], id=SEND, name=SEND,
            replace_existing=True, next_run_time=self._zoned(self._first_send(now)))
        if FETCH in job_names(self.settings):
            scheduler.add_job(
                run_scheduled, IntervalTrigger(seconds=self.settings.bounce_fetch_interval,
                                               timezone=self.settings.digest_timezone),
                args=[FETCH], id=FETCH, name=FETCH, replace_existing=True,
                next_run_time=self._zoned(now))
        elif scheduler.get_job(FETCH) is not None:
            scheduler.remove_job(FETCH)  # BOUNCE_IMAP_URL was unset since the last start

    def _zoned(self, moment: datetime | None) -> datetime | None:
        """In DIGEST_TIMEZONE: CronTrigger misbehaves when handed fire times in another zone."""
        return None if moment is None else moment.astimezone(self.settings.digest_timezone)

    def _first_send(self, now: datetime) -> datetime | None:
        """The next run of the digest: a missed one within the grace time, else the schedule's."""
        last = job_runs.last_run(self.store, SEND)
        grace = grace_of(self.settings)
        missed = missed_run(last.covered_until if last else None, self.schedule.trigger, now,
                            grace)
        upcoming = next_fire(self.schedule.trigger, now)
        if missed is not None and missed.within_grace:
            log.warning("%s: the digest due at %s was missed by %s while the service was not "
                        "running; sending it now (within MISFIRE_GRACE_TIME %s)", SEND,
                        local_time(missed.due, self.settings), _span(missed.late_by), _span(grace),
                        extra={"job": SEND, "due": missed.due.isoformat()})
            return missed.due
        if missed is not None:
            note = (f"the digest due at {local_time(missed.due, self.settings)} was missed by "
                    f"{_span(missed.late_by)}, more than MISFIRE_GRACE_TIME {_span(grace)}: "
                    "skipped")
            log.warning("%s: %s; next at %s", SEND, note, local_time(upcoming, self.settings),
                        extra={"job": SEND, "due": missed.due.isoformat()})
            job_runs.record_skip(self.store, SEND, now, note)
        else:
            job_runs.cover(self.store, SEND, now)
        return upcoming

    def next_run_times(self) -> dict[str, datetime | None]:
        if self._scheduler is None:
            return {}
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def wait(self) -> None:
        """Block until stop is set (by a signal handler, or a lost lock)."""
        while not self.stop.wait(0.5):
            pass

    def shutdown(self) -> None:
        """Stop: wait for a running job (a send stops between messages), close the job store."""
        self.stop.set()
        scheduler, self._scheduler = self._scheduler, None
        try:
            if scheduler is not None and scheduler.running:
                scheduler.shutdown(wait=True)
        finally:
            with _registry_lock:
                if _registry.get("current") is self:
                    del _registry["current"]


def describe_job(settings: Settings, job: str) -> str:
    """When a job runs, in words: 'every 5m', "'0 7 * * *' in Europe/Berlin"."""
    if job == PUBLISH:
        return f"every {_span(timedelta(seconds=settings.publish_interval))}"
    if job == FETCH:
        return f"every {_span(timedelta(seconds=settings.bounce_fetch_interval))}"
    return f"'{settings.digest_schedule}' in {settings.digest_timezone}"


def run_once(settings: Settings, store: Store, clock: Clock,
             jobs: Mapping[str, Job] = DEFAULT_JOBS, stop: threading.Event | None = None,
             lock: ServiceLock | None = None) -> dict[str, str]:
    """Run publish, then send-digest (then fetch-bounces), once each; each job's outcome."""
    runner = JobRunner(settings, store, jobs, clock, stop or threading.Event(), lock)
    return {name: runner.run(name) for name in job_names(settings) if name in jobs}


def local_time(moment: datetime | None, settings: Settings) -> str:
    """A time as shown in logs and `digest status`: in DIGEST_TIMEZONE, with its zone."""
    if moment is None:
        return "never"
    return moment.astimezone(settings.digest_timezone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _span(delta: timedelta) -> str:
    """5m, 1h, 30s, or 2:10:00."""
    seconds = delta.total_seconds()
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds < 60:
        return f"{seconds:g}s"
    return str(timedelta(seconds=round(seconds)))
