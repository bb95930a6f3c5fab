"""The scheduler service in-process, with injected jobs, on SQLite and PostgreSQL.

APScheduler runs on the real clock, so the schedules here are built relative
to the current time.
"""

from __future__ import annotations

import logging
import pickle
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.errors import ConfigError, ScheduleError
from digest.service import lock as service_lock
from digest.service.jobs import PUBLISH, SEND, JobContext, JobResult
from digest.service.scheduler import Service, run_once
from digest.service.status import scheduled_times, service_status
from digest.settings import Settings
from digest.store import runs as job_runs
from digest.store.database import Store
from digest.store.schema import JOB_TABLE
from tests.conftest import make_settings, wait_for

NEVER = "0 0 1 1 *"  # once a year: does not fire during a test


def clock() -> datetime:
    return datetime.now(UTC)


class FakeJobs:
    """Jobs that record their calls; behaviour per job is a list of callables, last one repeats."""

    def __init__(self) -> None:
        self.calls: dict[str, list[datetime]] = {PUBLISH: [], SEND: []}
        self.behaviour: dict[str, list[Callable[[JobContext], JobResult]]] = {
            PUBLISH: [lambda ctx: JobResult("published")],
            SEND: [lambda ctx: JobResult("sent")],
        }
        self._lock = threading.Lock()

    def job(self, name: str) -> Callable[[JobContext], JobResult]:
        def run(ctx: JobContext) -> JobResult:
            with self._lock:
                self.calls[name].append(ctx.now)
                script = self.behaviour[name]
                step = script.pop(0) if len(script) > 1 else script[0]
            return step(ctx)

        return run

    def mapping(self) -> dict[str, Callable[[JobContext], JobResult]]:
        return {PUBLISH: self.job(PUBLISH), SEND: self.job(SEND)}


@pytest.fixture
def jobs() -> FakeJobs:
    return FakeJobs()


@pytest.fixture
def start(store: Store, jobs: FakeJobs, tmp_path: Path, database_url: str
          ) -> Iterator[Callable[..., Service]]:
    """start(**settings) -> a started Service; every service is shut down at the end."""
    services: list[Service] = []

    def starter(**values: str) -> Service:
        values.setdefault("DIGEST_SCHEDULE", NEVER)
        values.setdefault("PUBLISH_INTERVAL", "200ms")
        settings = make_settings(tmp_path, DATABASE_URL=database_url, **values)
        service = Service(settings, store, clock, jobs=jobs.mapping())
        services.append(service)
        service.start()
        return service

    yield starter
    for service in services:
        service.shutdown()


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="digest")


def daily_at(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.minute} {moment.hour} * * *"


def test_publishes_on_the_interval_and_records_each_run(
        start: Callable[..., Service], jobs: FakeJobs, store: Store,
        caplog: pytest.LogCaptureFixture) -> None:
    service = start()
    wait_for(lambda: len(jobs.calls[PUBLISH]) >= 3, "3 publish runs")
    assert jobs.calls[SEND] == []
    last = job_runs.last_run(store, PUBLISH)
    assert last is not None and last.outcome in ("ok", "running")
    status = service_status(service.settings, store, clock(), holder="test")
    send = next(j for j in status.jobs if j.job == SEND)
    assert send.next_from_service and send.next_run is not None
    assert (send.next_run.month, send.next_run.day, send.next_run.hour) == (1, 1, 0)
    service.shutdown()
    assert job_runs.last_run(store, PUBLISH).outcome == "ok"  # type: ignore[union-attr]
    lines = [r for r in caplog.records if getattr(r, "job", None) == PUBLISH
             and r.getMessage().startswith("publish: published (")]
    assert lines and all(isinstance(r.duration, float) for r in lines)  # type: ignore[attr-defined]


def test_jobs_are_stored_by_reference_and_replaced_at_each_start(
        start: Callable[..., Service], store: Store) -> None:
    first = start(DIGEST_SCHEDULE="0 7 * * *")
    first.shutdown()
    table = sa.Table(JOB_TABLE, sa.MetaData(), autoload_with=store.engine)
    with store.engine.connect() as conn:
        states = {row.id: pickle.loads(row.job_state)  # noqa: S301  (our own job store)
                  for row in conn.execute(sa.select(table))}
    assert set(states) == {PUBLISH, SEND}
    assert states[SEND]["func"] == "digest.service.scheduler:run_scheduled"
    assert states[SEND]["args"] == (SEND,)
    assert states[SEND]["coalesce"] is True and states[SEND]["max_instances"] == 1
    second = start(DIGEST_SCHEDULE="30 18 * * 5", DIGEST_TIMEZONE="Europe/Berlin")
    second.shutdown()
    following = scheduled_times(store)[SEND]
    assert following is not None
    local = following.astimezone(second.settings.digest_timezone)
    assert local.strftime("%A %H:%M") == "Friday 18:30"


def test_a_failing_job_is_logged_with_its_cause_and_runs_again(
        start: Callable[..., Service], jobs: FakeJobs, store: Store,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(ctx: JobContext) -> JobResult:
        raise ConfigError("TEMPLATES_DIR/digest.html: unexpected '}'", "fix the template")

    def crashing(ctx: JobContext) -> JobResult:
        raise RuntimeError("disk on fire")

    jobs.behaviour[PUBLISH] = [broken, crashing, lambda ctx: JobResult("fine again")]
    service = start()
    wait_for(lambda: len(jobs.calls[PUBLISH]) >= 3, "3 publish runs")
    service.shutdown()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "publish failed after" in errors[0].getMessage()
    assert "unexpected '}' (hint: fix the template)" in errors[0].getMessage()
    assert "RuntimeError: disk on fire" in errors[1].getMessage() and errors[1].exc_info
    assert job_runs.last_run(store, PUBLISH).outcome == "ok"  # type: ignore[union-attr]


def test_back_within_the_grace_time_the_missed_digest_runs_once(
        start: Callable[..., Service], jobs: FakeJobs, store: Store,
        caplog: pytest.LogCaptureFixture) -> None:
    due = clock().replace(second=0, microsecond=0) - timedelta(minutes=5)
    job_runs.cover(store, SEND, due - timedelta(minutes=1))  # the service stopped before `due`
    service = start(DIGEST_SCHEDULE=daily_at(due), MISFIRE_GRACE_TIME="1h")
    wait_for(lambda: len(jobs.calls[SEND]) == 1, "the send")
    wait_for(lambda: len(jobs.calls[PUBLISH]) >= 3, "3 publish runs")  # time passes; no second send
    assert len(jobs.calls[SEND]) == 1
    assert any(re.search(r"was missed by 0:0[56]:\d\d .*; sending it now", r.getMessage())
               for r in caplog.records)
    service.shutdown()
    # A restart now has nothing to catch up.
    start(DIGEST_SCHEDULE=daily_at(due), MISFIRE_GRACE_TIME="1h")
    wait_for(lambda: len(jobs.calls[PUBLISH]) >= 5, "5 publish runs")
    assert len(jobs.calls[SEND]) == 1


def test_back_after_the_grace_time_the_missed_digest_is_skipped_and_logged(
        start: Callable[..., Service], jobs: FakeJobs, store: Store,
        caplog: pytest.LogCaptureFixture) -> None:
    due = clock().replace(second=0, microsecond=0) - timedelta(hours=2)
    job_runs.cover(store, SEND, due - timedelta(minutes=1))
    service = start(DIGEST_SCHEDULE=daily_at(due), MISFIRE_GRACE_TIME="1h")
    wait_for(lambda: len(jobs.calls[PUBLISH]) >= 3, "3 publish runs")
    assert jobs.calls[SEND] == []
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(re.search(r"was missed by 2:0[01]:\d\d, more than MISFIRE_GRACE_TIME 1h: skipped", m)
               for m in skipped)
    last = job_runs.last_run(store, SEND)
    assert last is not None and last.outcome == "skipped"
    service.shutdown()
    caplog.clear()
    start(DIGEST_SCHEDULE=daily_at(due), MISFIRE_GRACE_TIME="1h")
    wait_for(lambda: len(jobs.calls[PUBLISH]) >= 5, "5 publish runs")
    assert jobs.calls[SEND] == []
    assert not any("missed" in r.getMessage() for r in caplog.records)  # logged once


def test_an_interrupted_send_is_resumed_at_the_next_start(
        start: Callable[..., Service], jobs: FakeJobs, store: Store) -> None:
    started = threading.Event()

    def long_send(ctx: JobContext) -> JobResult:
        started.set()
        while not ctx.should_stop():
            time.sleep(0.02)
        return JobResult("3 sent, 7 remaining", job_runs.STOPPED)

    jobs.behaviour[SEND] = [long_send, lambda ctx: JobResult("7 sent")]
    due = clock().replace(second=0, microsecond=0) - timedelta(minutes=3)
    job_runs.cover(store, SEND, due - timedelta(minutes=1))
    service = start(DIGEST_SCHEDULE=daily_at(due))
    assert started.wait(10)
    service.shutdown()  # returns once the send has stopped between messages
    last = job_runs.last_run(store, SEND)
    assert last is not None and last.outcome == "stopped"
    start(DIGEST_SCHEDULE=daily_at(due))
    wait_for(lambda: len(jobs.calls[SEND]) == 2, "the second send")
    wait_for(lambda: job_runs.last_run(store, SEND).outcome == "ok",  # type: ignore[union-attr]
             "the send recorded as ok")


def test_shutdown_waits_for_a_publish_in_progress(
        start: Callable[..., Service], jobs: FakeJobs) -> None:
    running = threading.Event()
    finished = threading.Event()

    def slow(ctx: JobContext) -> JobResult:
        running.set()
        time.sleep(0.5)
        finished.set()
        return JobResult("published")

    jobs.behaviour[PUBLISH] = [slow]
    service = start(PUBLISH_INTERVAL="1h")
    assert running.wait(10)
    service.shutdown()
    assert finished.is_set()


def test_run_once_runs_publish_then_send(store: Store, jobs: FakeJobs, tmp_path: Path,
                                         database_url: str) -> None:
    settings = make_settings(tmp_path, DATABASE_URL=database_url)
    jobs.behaviour[SEND] = [lambda ctx: JobResult("2 failed", job_runs.PROBLEMS)]
    outcomes = run_once(settings, store, clock, jobs=jobs.mapping())
    assert outcomes == {PUBLISH: "ok", SEND: "problems"}
    assert jobs.calls[PUBLISH][0] <= jobs.calls[SEND][0]
    runs = job_runs.last_runs(store)
    assert runs[SEND].summary == "2 failed" and runs[SEND].duration is not None


def test_one_service_per_process(start: Callable[..., Service], store: Store,
                                 jobs: FakeJobs, tmp_path: Path) -> None:
    first = start()
    second = Service(first.settings, store, clock, jobs=jobs.mapping())
    with pytest.raises(ScheduleError, match="already runs in this process"):
        second.start()


def test_the_lock_admits_one_holder(database_url: str, tmp_path: Path) -> None:
    now = clock()
    assert service_lock.holder(database_url, tmp_path, now) is None
    lock = service_lock.acquire(database_url, tmp_path, now)
    try:
        assert lock.alive()
        with pytest.raises(ScheduleError, match="already running") as caught:
            service_lock.acquire(database_url, tmp_path, now)
        assert f"pid {__import__('os').getpid()}" in caught.value.message
        assert "pid" in (service_lock.holder(database_url, tmp_path, now) or "")
    finally:
        lock.release()
    again = service_lock.acquire(database_url, tmp_path, now)
    again.release()


def test_settings_used_by_the_service(tmp_path: Path) -> None:
    settings: Settings = make_settings(tmp_path)
    assert settings.misfire_grace_time == 3600.0
    assert settings.publish_interval == 300.0
    assert settings.digest_schedule == "0 7 * * *"


def test_a_lost_lock_stops_the_service_before_the_next_job(
        database_url: str, tmp_path: Path, store: Store, jobs: FakeJobs) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("only a PostgreSQL lock can be lost (its session ends with the server)")
    lock = service_lock.acquire(database_url, tmp_path, clock())
    try:
        with store.engine.begin() as conn:  # as a server restart would
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = "
                "'advisory' AND l.classid = 7351010 AND l.objid = "
                "CAST(hashtext(current_schema()) AS oid)")
        wait_for(lambda: not lock.alive(), "the lock to be lost")
        settings = make_settings(tmp_path, DATABASE_URL=database_url)
        stop = threading.Event()
        outcomes = run_once(settings, store, clock, jobs=jobs.mapping(), stop=stop, lock=lock)
        assert outcomes[PUBLISH] == "failed" and stop.is_set()
        assert jobs.calls[PUBLISH] == []
        # The lock is free again: a restarted service takes it.
        service_lock.acquire(database_url, tmp_path, clock()).release()
    finally:
        lock.release()
