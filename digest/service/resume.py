"""Between scheduled sends, `digest run` sends what an open edition still owes.

A scheduled send that could not finish (the SMTP relay down, a 4xx reply,
SIGTERM) leaves its edition open, its deliveries pending or deferred until
a time (RetryPolicy.defer_for). :class:`Resumer` looks every few seconds
for deliveries it could claim now and, if there are, runs a send that only
resumes (it never creates an edition), so the rest goes out when the relay
is back, not at the next DIGEST_SCHEDULE time (for a daily digest, a day
late). The edition logic claims each delivery once, so nobody gets it twice.

One send at a time per process (one SMTP_RATE_LIMIT): the scheduled send is
wrapped by :meth:`Resumer.one_at_a_time`. A resume that fails (the relay
still down) is tried again after a pause that doubles up to
:data:`MAX_PAUSE`, so an outage is not hammered every few seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from digest.errors import DigestError
from digest.mail.run import RetryPolicy
from digest.mail.send import send_digest
from digest.mail.smtp import Mailer
from digest.service.jobs import Job, JobContext, JobResult, send_result
from digest.settings import Settings
from digest.store.database import Store
from digest.store.edition_reports import claimable
from digest.store.runs import STOPPED

log = logging.getLogger("digest.schedule")

RESUME_EVERY = 3.0  # seconds between looks for deliveries this process could send
FIRST_PAUSE = 60.0  # after a failed resume; doubles up to MAX_PAUSE
MAX_PAUSE = 600.0
RESUME = "resume-send"


class Resumer:
    """A thread that resumes open editions until `stop` is set; see the module doc."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], datetime],
                 stop: threading.Event, mailer_factory: Callable[[], Mailer],
                 every: float = RESUME_EVERY, first_pause: float = FIRST_PAUSE,
                 retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.stop = stop
        self.mailer_factory = mailer_factory
        self.every = every
        self.first_pause = first_pause
        self.retry = retry
        self._sending = threading.Lock()  # one send at a time in this process
        self._thread: threading.Thread | None = None

    def one_at_a_time(self, job: Job) -> Job:
        """`job` (the scheduled send) waiting for a resume in progress, never beside it."""
        def send(ctx: JobContext) -> JobResult:
            while not self._sending.acquire(timeout=0.5):
                if ctx.should_stop():
                    return JobResult("not started: stopping", STOPPED)
            try:
                return job(ctx)
            finally:
                self._sending.release()

        return send

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="digest-resume", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        pause = self.every
        while not self.stop.wait(pause):
            try:
                self.resume_once()
            except DigestError as exc:
                pause = self._failed_pause(pause)
                hint = f" (hint: {exc.hint})" if exc.hint else ""
                log.error("%s failed: %s%s; trying again in %g s", RESUME, exc.message, hint,
                          pause, extra={"job": RESUME})
            except Exception as exc:
                pause = self._failed_pause(pause)
                log.exception("%s failed: %s: %s; trying again in %g s", RESUME,
                              type(exc).__name__, exc, pause, extra={"job": RESUME})
            else:
                pause = self.every

    def _failed_pause(self, pause: float) -> float:
        return self.first_pause if pause < self.first_pause else min(MAX_PAUSE, pause * 2)

    def resume_once(self) -> None:
        """Send what an open edition owes now, unless nothing is due or a send runs."""
        if not claimable(self.store, self.clock()):
            return
        if not self._sending.acquire(blocking=False):
            return  # the scheduled send is at it
        try:
            report = send_digest(self.settings, self.store, self.mailer_factory, self.clock(),
                                 should_stop=self.stop.is_set, resume_only=True,
                                 retry=self.retry)
        finally:
            self._sending.release()
        if report.edition is not None and (report.sent or report.failed or report.deferred):
            result = send_result(report)
            log.info("%s: %s", RESUME, result.summary, extra={"job": RESUME})
