"""Command: run (the scheduler service; `digest status` is in digest.cli.status)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

import click

from digest import exit_codes
from digest.cli.support import (
    Context,
    Reload,
    log_format_option,
    now,
    pass_ctx,
    stop_on_signals,
)
from digest.errors import DigestError
from digest.mail.reach import base_url_warnings
from digest.mail.smtp import SMTPMailer
from digest.service import lock as service_lock
from digest.service.jobs import DEFAULT_JOBS, SEND
from digest.service.leader import Node, shared
from digest.service.resume import Resumer
from digest.service.scheduler import Service, run_once
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
@log_format_option
@click.option("--serve", "with_server", is_flag=True,
              help="Also serve the site as `digest serve` does (SERVE_HOST:SERVE_PORT), in "
                   "the same process.")
@pass_ctx
def run(ctx: Context, once: bool, log_format: str, with_server: bool) -> None:
    """Publish every PUBLISH_INTERVAL and send the digest on DIGEST_SCHEDULE, until stopped.

    Runs in the foreground (use systemd or similar to keep it running; see
    docs/digest.service). SIGTERM or Ctrl-C stops it gracefully: a publish in
    progress finishes, a send stops between messages and the next run resumes
    it; exit code 0. SIGHUP reloads: it checks .env, then stops the same way
    and starts again in the same process (a .env with an error is logged and
    the service keeps running as it was). On SQLite only one `digest run` may use a state store at
    a time; on PostgreSQL several run as nodes: one leads (runs the schedule),
    all send. With --serve the web server (files, unsubscribe, sign-up) runs beside
    the scheduler and stops with it.
    """
    if once and with_server:
        raise click.UsageError("use either --once or --serve")
    level = ctx.setup_logging(log_format)
    settings = ctx.settings
    if settings.digest_from:  # it will mail readers: say now if their links cannot work
        for warning in base_url_warnings(settings.base_url):
            log.warning("%s", warning)
    if with_server:
        check_signup_settings(settings)  # before the lock: a missing SECRET_KEY stops at once
        logging.getLogger("uvicorn.error").setLevel(max(level, logging.WARNING))
    stop = threading.Event()
    reload = Reload(ctx, stop, log, "a job in progress finishes, a send stops between "
                                          "messages")

    def stopping(signum: int, again: bool) -> None:
        reload.asked = False  # SIGTERM or Ctrl-C after SIGHUP: stop, do not start again
        _stopping(signum, again)

    if not once and shared(settings):
        with reload.on_hangup():
            _run_node(ctx, settings, stop, with_server, stopping)
        reload.restart_if_asked()
        return
    with service_lock.acquire(settings.database_url, settings.base_dir, now()) as lock, \
            ctx.store() as store, stop_on_signals(stop, stopping), reload.on_hangup():
        if once:
            outcomes = run_once(settings, store, now, stop=stop, lock=lock)
            values = set(outcomes.values())
            sys.exit(exit_codes.FAILED if job_runs.FAILED in values
                     else exit_codes.PROBLEMS if job_runs.PROBLEMS in values else exit_codes.OK)
        resumer = Resumer(settings, store, now, stop, lambda: SMTPMailer(settings))
        jobs = dict(DEFAULT_JOBS, **{SEND: resumer.one_at_a_time(DEFAULT_JOBS[SEND])})
        service = Service(settings, store, now, jobs=jobs, stop=stop, lock=lock)
        web = _WebThread(settings, store, stop) if with_server else None
        service.start()
        resumer.start()
        log.info("digest run started (pid %d); stop it with SIGTERM or Ctrl-C", os.getpid())
        try:
            service.wait()
            log.info("stopping: waiting for a job in progress to finish")
        finally:
            stop.set()
            service.shutdown()
            resumer.join()
            if web is not None:
                web.join()
        log.info("digest run stopped")
    if web is not None and web.error is not None:
        raise web.error
    reload.restart_if_asked()
    if service.failed:
        sys.exit(exit_codes.FAILED)


def _run_node(ctx: Context, settings: Settings, stop: threading.Event,
              with_server: bool, stopping: Callable[[int, bool], None]) -> None:
    """`digest run` on PostgreSQL: one of several nodes (digest.service.leader)."""
    with ctx.store() as store, stop_on_signals(stop, stopping):
        node = Node(settings, store, now, stop)
        web = _WebThread(settings, store, stop) if with_server else None
        log.info("digest run started (pid %d); stop it with SIGTERM or Ctrl-C", os.getpid())
        try:
            node.run()
        finally:
            stop.set()
            if web is not None:
                web.join()
        log.info("digest run stopped")
    if web is not None and web.error is not None:
        raise web.error


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


def _stopping(signum: int, again: bool) -> None:
    """SIGTERM and SIGINT stop the service; a second one only says what it waits for."""
    if again:
        log.warning("already stopping; waiting for the job in progress (SIGKILL is safe: "
                    "publish keeps the previous output, the next send resumes)")
