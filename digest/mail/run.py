"""One send of an edition: what its SMTP workers share, and what each server reply does.

:class:`Run` holds the queue of claimed deliveries, the rate limit, the lease
and the counts; :mod:`digest.mail.workers` sends over its connections.

Delivery rules: a 5xx reply fails that delivery for good (the reply is
stored); a 4xx reply or a network error is retried with exponential backoff
(:class:`RetryPolicy`), then the delivery is *deferred* to a later run. Two
deliveries in a row that cannot even reach the server stop the run with a
MailError; an SMTPConfigError (login, TLS) stops it at once. Whatever stops
a run, the deliveries not yet sent go back to the outbox untouched.

A lost reply to the end of data (:class:`~digest.mail.smtp.OutcomeUnknown`: no
reply within the mailer's 10-minute wait, or the connection dropped after the
final ".") is not a refusal: the server may have the message. The delivery is
marked *unknown* and not retried by this run; a later run sends it once more
(same Message-ID, so receivers can drop a duplicate) after
``RetryPolicy.unknown_retry_after``; lost again, it is *unconfirmed* and never
sent again. ``RetryPolicy.max_lost_in_row`` lost replies in a row stop the run
with a MailError (the server is likely broken).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.errors import MailError
from digest.mail.outbox import Outbox
from digest.mail.smtp import Mailer, OutcomeUnknown, PermanentFailure, TemporaryFailure
from digest.mail.tailored import Tailor
from digest.model import Edition
from digest.settings import Settings
from digest.store.claims import PENDING, SENDING, Delivery
from digest.store.outbox import Failure
from digest.store.recorder import Recorder
from digest.words import plural

log = logging.getLogger("digest.mail")

Progress = Callable[[int, int], None]  # (deliveries done in this run, total to do)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one delivery. Delays in seconds: first * factor**n, capped."""

    attempts: int = 5  # tries per delivery and run
    first_delay: float = 2.0
    factor: float = 2.0
    max_delay: float = 60.0
    # A deferred delivery is tried again once this has passed (by this run, if it
    # is still going, or by a later one).
    defer_for: timedelta = timedelta(minutes=10)
    max_total_attempts: int = 15  # over all runs; then the delivery fails for good
    # A delivery whose end-of-data reply was lost is sent once more, by a later
    # run, once this has passed; lost again, it is never sent again.
    unknown_retry_after: timedelta = timedelta(minutes=30)
    max_lost_in_row: int = 3  # lost replies in a row that stop the run

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.first_delay * self.factor ** (attempt - 1)))


class Run:
    """One send_digest call: SMTP workers sharing the claims, the rate limit and the counts."""

    def __init__(self, settings: Settings, outbox: Outbox, edition: Edition,
                 factory: Tailor, mailer_factory: Callable[[], Mailer],
                 clock: Callable[[], datetime], retry: RetryPolicy,
                 sleep: Callable[[float], None], monotonic: Callable[[], float],
                 should_stop: Callable[[], bool], progress: Progress | None, batch: int,
                 connections: int) -> None:
        self.settings = settings
        self.outbox = outbox
        self.edition = edition
        self.factory = factory
        self.mailer_factory = mailer_factory
        self.clock = clock
        self.retry = retry
        self.sleep = sleep
        self.monotonic = monotonic
        self.should_stop = should_stop
        self.progress = progress
        self.batch = batch
        self.connections = connections
        self.interval = 1.0 / settings.smtp_rate_limit if settings.smtp_rate_limit else 0.0
        self.sent = self.skipped = self.deferred = self.unknown = self.bounced = 0
        self.soft_limit = timedelta(days=settings.bounce_soft_days)
        self.failures: list[Failure] = []
        self.stopped = False
        self.halt = threading.Event()  # a stop, or an error in one worker: all end
        self.errors: list[BaseException] = []
        self.recorder = Recorder(outbox, connections)  # one writer, group commit
        self._lock = threading.Lock()  # counts, pacing, lease, progress
        # The claimed queue, the active workers and the claim in progress.
        self._claims = threading.Condition()
        self._claimed: deque[Delivery] = deque()
        self._claiming = False  # a worker is claiming a batch (outside the lock)
        self._dry = False  # the last claim found nothing: no claiming ahead
        self._active = 0
        self._done = 0
        self._total = 0
        self._next_slot = 0.0
        self._renewed = monotonic()
        self._unreachable = 0  # deliveries in a row deferred because the server was unreachable
        self._lost_in_row = 0  # deliveries in a row whose end-of-data reply was lost

    def start(self) -> int:
        """Count the deliveries to do; how many workers to start (at least one)."""
        counts = self.outbox.counts(self.edition.id)
        self._total = counts[PENDING] + counts[SENDING]
        workers = max(1, min(self.connections, self._total))
        self._active = self.recorder.senders = workers
        return workers

    def end(self) -> None:
        """After the workers: wait for the records in flight, give back unsent claims."""
        try:
            self.recorder.close()  # waits for the records in flight
        finally:
            self.outbox.release(self._claimed, self.clock())

    # -- shared by the workers ---------------------------------------------------------

    def take(self) -> Delivery | None:
        """The next delivery to send, claiming a batch when none is left; None: all done.

        Claims run outside the queue's lock, one at a time. Once the queue is
        down to half a batch, the worker that takes a delivery claims the next
        batch before sending it, while the others go on from the queue: no
        worker waits for a claim unless the queue ran dry.
        """
        while True:
            with self._claims:
                while not self._claimed and self._claiming:
                    self._claims.wait()
                delivery = self._claimed.popleft() if self._claimed else None
                if delivery is not None and (self._claiming or self._dry or
                                             len(self._claimed) >= self.batch // 2):
                    return delivery
                self._claiming = True
            try:
                found = self._claim_more()
            except BaseException:
                if delivery is not None:
                    self.give_back(delivery)  # not started: released with the others
                raise
            if delivery is not None:
                return delivery
            if not found:
                return None

    def _claim_more(self) -> bool:
        """Claim a batch into the queue (this worker holds `_claiming`); False: none left."""
        batch: list[Delivery] = []
        skipped = 0
        try:
            batch, skipped = self.outbox.claim_batch(self.edition.id, self.clock(), self.batch)
        finally:
            with self._claims:
                self._claimed.extend(batch)
                self._dry = not batch and not skipped
                self._claiming = False
                self._claims.notify_all()
        if skipped:
            with self._lock:
                self.skipped += skipped
            self.progressed(skipped)
        return bool(batch or skipped)

    def give_back(self, delivery: Delivery) -> None:
        """A delivery a worker took and did not start: the next worker takes it."""
        with self._claims:
            self._claimed.appendleft(delivery)
            self._claims.notify_all()

    def retire(self, delivery: Delivery) -> bool:
        """The server refused one more connection: this worker ends, if it is not the last."""
        with self._claims:
            if self._active <= 1:
                return False
            self._active -= 1
            self.recorder.senders = self._active
            self._claimed.appendleft(delivery)
            self._claims.notify_all()
            log.warning("the SMTP server refused a connection (too many): going on with %d",
                        self._active)
            return True

    def leave(self) -> None:
        with self._claims:
            self._active -= 1
            self.recorder.senders = max(1, self._active)

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)
        self.halt.set()

    def check_stop(self) -> bool:
        """True if the run must end now (asked to stop, or another worker failed)."""
        if self.halt.is_set():
            return True
        if self.should_stop():
            self.stopped = True
            self.halt.set()
            return True
        return False

    def progressed(self, count: int) -> None:
        with self._lock:
            self._done += count
            if self.progress is not None:
                self.progress(self._done, self._total)

    def counted_sent(self) -> None:
        with self._lock:
            self.sent += 1

    def reached(self) -> None:
        """The server answered a message: reset the counts of trouble in a row."""
        with self._lock:
            self._unreachable = self._lost_in_row = 0

    def slot(self) -> float:
        """Reserve the next send slot under SMTP_RATE_LIMIT; seconds to wait for it."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self.monotonic()
            start = max(self._next_slot, now)
            self._next_slot = start + self.interval
        return start - now

    def keep_lease(self) -> None:
        with self._lock:
            if self.monotonic() - self._renewed <= self.outbox.lease.total_seconds() / 3:
                return
            self._renewed = self.monotonic()
        self.outbox.renew(self.edition.id, self.clock())

    def refused(self, delivery: Delivery, attempts: int, exc: PermanentFailure) -> None:
        """A permanent failure: a refusal of the recipient's address makes it bounced."""
        if not exc.about_recipient:
            self.failed(delivery, attempts, exc.reply)
        elif self.outbox.mark_bounced(delivery, self.clock(), attempts, exc.reply):
            with self._lock:
                self.failures.append(Failure(delivery.recipient, exc.reply))
                self.bounced += 1

    def failed(self, delivery: Delivery, attempts: int, reply: str) -> None:
        if self.outbox.mark_failed(delivery, self.clock(), attempts, reply):
            with self._lock:
                self.failures.append(Failure(delivery.recipient, reply))

    def lost_reply(self, delivery: Delivery, attempts: int, exc: OutcomeUnknown) -> None:
        """No reply after the data: never retried now; once more, later, if not lost before."""
        now = self.clock()
        again = delivery.lost_replies == 0
        log.warning("delivery to %s: %s; %s", delivery.recipient, exc.message,
                    f"one more try after {self.retry.unknown_retry_after}" if again
                    else "lost twice: not sent again")
        marked = self.outbox.mark_unknown(delivery, now, attempts, exc.reply,
                                          now + self.retry.unknown_retry_after if again
                                          else None)
        with self._lock:
            self.unknown += marked
            self._lost_in_row += 1
            lost = self._lost_in_row
        if lost >= self.retry.max_lost_in_row and not self.halt.is_set():
            raise MailError(f"giving up for now: {plural(lost, 'message')} in a row got no "
                            f"reply after their data ({exc.reply})",
                            "the SMTP server seems to take messages without answering: check "
                            "it, then run `digest send` again (`digest history` counts the "
                            "unknown deliveries)")

    def deferred_now(self, delivery: Delivery, attempts: int, exc: TemporaryFailure) -> None:
        now = self.clock()
        # Tries that never reached the server are not counted: a relay down for an hour
        # must not fail the deliveries tried first for good (only their next try waits).
        attempts = 0 if exc.unreached else attempts
        total = delivery.attempts + attempts
        give_up = total >= self.retry.max_total_attempts
        reply = f"gave up after {plural(total, 'attempt')}: {exc.reply}"
        if exc.about_recipient:
            # A deferral of this recipient: BOUNCE_SOFT_DAYS of them without a success
            # in between make it bounced.
            bounced = self.outbox.defer_soft(delivery, now, attempts, exc.reply,
                                             now + self.retry.defer_for, self.soft_limit,
                                             reply if give_up else None)
            with self._lock:
                if bounced:
                    log.warning("%s deferred for %s without a success: bounced",
                                delivery.recipient, self.soft_limit)
                    self.bounced += 1
                    self.failures.append(Failure(delivery.recipient, exc.reply))
                elif bounced is not None and give_up:
                    self.failures.append(Failure(delivery.recipient, reply))
                elif bounced is not None:
                    self.deferred += 1
            return
        if give_up:
            self.failed(delivery, attempts, reply)
            return
        if self.outbox.defer(delivery, now, attempts, exc.reply, now + self.retry.defer_for):
            with self._lock:
                self.deferred += 1
        if exc.connection_lost and not self.halt.is_set():
            with self._lock:
                self._unreachable += 1
                unreachable = self._unreachable
            if unreachable >= 2:
                raise MailError(f"giving up for now: {exc.message}",
                                "check SMTP_HOST and SMTP_PORT and that the server is up; "
                                "run `digest send` again to resume this edition")
