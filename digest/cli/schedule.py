"""Commands: run (the scheduler service), status."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType

import click

from digest.cli.support import EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, Context, now, pass_ctx
from digest.errors import DigestError
from digest.logs import FORMATS, setup_logging
from digest.mail.smtp import SMTPMailer
from digest.service import lock as service_lock
from digest.service.scheduler import Service, local_time, run_once
from digest.service.status import JobStatus, service_status
from digest.settings import Settings
from digest.store import runs as job_runs
from digest.store.database import Store
from digest.web.app import serve_site
from digest.web.signup import check_signup_settings

log = logging.getLogger("digest.schedule")


@click.command()
@click.option("--once", is_flag=True,
              help="Publish, then send the digest, once each, and exit (for cron or systemd "
                   "timers). Exits 1 if a job failed, 3 if one finished with problems.")
@click.option("--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Log lines on stderr: text, or one JSON object per line for log collectors.")
@click.option("--serve", "with_server", is_flag=True,
              help="Also serve the site as `digest serve` does (SERVE_HOST:SERVE_PORT), in "
                   "the same process.")
@pass_ctx
def run(ctx: Context, once: bool, log_format: str, with_server: bool) -> None:
    """Publish every PUBLISH_INTERVAL and send the digest on DIGEST_SCHEDULE, until stopped.

    Runs in the foreground (use systemd or similar to keep it running; see
    docs/digest.service). SIGTERM or Ctrl-C stops it gracefully: a publish in
    progress finishes, a send stops between messages and the next run resumes
    it; exit code 0. Only one `digest run` may use a state store at a time.
    With --serve the web server (files, unsubscribe, sign-up) runs beside
    the scheduler and stops with it.
    """
    if once and with_server:
        raise click.UsageError("use either --once or --serve")
    level = logging.DEBUG if ctx.debug else logging.WARNING if ctx.quiet else logging.INFO
    setup_logging(log_format, level)
    settings = ctx.settings
    if with_server:
        check_signup_settings(settings)  # before the lock: a missing SECRET_KEY stops at once
        logging.getLogger("uvicorn.error").setLevel(max(level, logging.WARNING))
    stop = threading.Event()
    with service_lock.acquire(settings.database_url, settings.base_dir, now()) as lock, \
            ctx.store() as store, _stop_on_signals(stop):
        if once:
            outcomes = run_once(settings, store, now, stop=stop, lock=lock)
            values = set(outcomes.values())
            sys.exit(EXIT_ERROR if job_runs.FAILED in values
                     else EXIT_PROBLEMS if job_runs.PROBLEMS in values else EXIT_OK)
        service = Service(settings, store, now, stop=stop, lock=lock)
        web = _WebThread(settings, store, stop) if with_server else None
        service.start()
        log.info("digest run started (pid %d); stop it with SIGTERM or Ctrl-C", os.getpid())
        try:
            service.wait()
            log.info("stopping: waiting for a job in progress to finish")
        finally:
            stop.set()
            service.shutdown()
            if web is not None:
                web.join()
        log.info("digest run stopped")
    if web is not None and web.error is not None:
        raise web.error
    if service.failed:
        sys.exit(EXIT_ERROR)


class _WebThread:
    """`digest serve` in a thread of `digest run --serve`; a failure stops the service too."""

    def __init__(self, settings: Settings, store: Store, stop: threading.Event) -> None:
        self.stop = stop
        self.error: DigestError | None = None
        self._thread = threading.Thread(target=self._run, args=(settings, store),
                                        name="digest-serve")
        self._thread.start()

    def _run(self, settings: Settings, store: Store) -> None:
        try:
            serve_site(settings, store, lambda: SMTPMailer(settings), now, stop=self.stop)
        except DigestError as exc:
            self.error = exc
            log.error("the web server stopped: %s", exc.message)
        finally:
            self.stop.set()  # no server, no service: systemd restarts the whole

    def join(self) -> None:
        self._thread.join()


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop`; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("already stopping; waiting for the job in progress (SIGKILL is safe: "
                        "publish keeps the previous output, the next send resumes)")
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@click.command()
@pass_ctx
def status(ctx: Context) -> None:
    """Show whether `digest run` runs, and each job's next run time and last result."""
    settings = ctx.settings
    moment = now()
    holder = service_lock.holder(settings.database_url, settings.base_dir, moment)
    with ctx.store() as store:
        report = service_status(settings, store, moment, holder)
    if report.holder is not None:
        click.echo(f"service: running ({report.holder})")
    else:
        click.echo("service: not running (start it with `digest run`)")
    width = max(len(job.job) for job in report.jobs)
    for job in report.jobs:
        click.echo(f"{job.job:<{width}}  {job.schedule}")
        click.echo(f"{'':<{width}}  next: {_next(job, settings, moment, report.running)}")
        click.echo(f"{'':<{width}}  last: {_last(job, settings)}")


def _next(job: JobStatus, settings: Settings, moment: datetime, running: bool) -> str:
    if job.next_run is None:
        return "at the start of `digest run`" if not running else "not scheduled"
    shown = local_time(job.next_run, settings)
    if not running:
        return f"{shown} (when `digest run` runs)"
    if job.next_run < moment:
        return f"{shown} (due now)"
    return shown


def _last(job: JobStatus, settings: Settings) -> str:
    last = job.last
    if last is None or last.outcome == job_runs.NEVER:
        return "never run"
    when = local_time(last.started_at, settings)
    if last.outcome == job_runs.RUNNING:
        return f"running since {when} (or the process died)"
    took = f" in {last.duration:.2f} s" if last.duration is not None else ""
    return f"{last.outcome} at {when}{took}: {last.summary}"


COMMANDS: list[click.Command] = [run, status]
