"""Send the digest: build or resume an edition and deliver it, exactly once per recipient.

This is the orchestration module of the mail stages: it combines the
subscriber list, the outbox, rendering, message building and a
:class:`~digest.mailer.Mailer`. The scheduler calls :func:`send_digest`; the
CLI also uses :func:`dry_run`, :func:`test_message` and :func:`preview_html`;
the web sign-up uses :func:`send_confirmation`.

Connections: ``SMTP_CONNECTIONS`` workers (threads), each with its own
mailer (one SMTP session), take deliveries from one queue of claimed rows
(claimed from the outbox a batch at a time, under the process's one owner
name and lease). ``SMTP_RATE_LIMIT`` is one limit for the process: the
workers reserve send slots from one pacer. A refused or dropped connection
is that worker's trouble (it reconnects, with backoff); a reply saying the
server has too many connections from us (421/452 "too many connections")
ends that worker, its delivery going to another, so the run goes on over
fewer connections (never fewer than one).

Recording: a delivery is marked sent only after the server accepted it. To
keep the state store's write off the critical path, the record of a
worker's message i is queued as soon as the server accepts i and is written
while that worker's message i+1 goes out; i+1's end of data is sent only
once that record is committed (the mailer's ``meanwhile``). One writer
thread commits the records queued by all workers together (group commit;
on SQLite it is also the one writer). Before anything else (a stop, a
backoff, the end of the run) a worker waits for its record in flight. So at
any moment at most one message per connection is accepted and not yet
recorded: a kill re-sends at most one message per open connection, each
with the same Message-ID.

Delivery rules: a 5xx reply fails that delivery for good (the reply is
stored); a 4xx reply or a network error is retried with exponential backoff
(:class:`RetryPolicy`), then the delivery is *deferred* to a later run. Two
deliveries in a row that cannot even reach the server stop the run with a
MailError; an SMTPConfigError (login, TLS) stops it at once. Whatever stops
a run, the deliveries not yet sent go back to the outbox untouched.

A lost reply to the end of data (:class:`~digest.mailer.OutcomeUnknown`: no
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
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.addresses import normalize_address
from digest.errors import ConfigError, MailError
from digest.mail.message import (
    MessageFactory,
    OutgoingMessage,
    Personal,
    message_id,
    plain_message,
    sender_domain,
)
from digest.mail.outbox import (
    PENDING,
    SENDING,
    TO_DO,
    Delivery,
    Edition,
    Failure,
    Outbox,
    schedule_of,
)
from digest.mail.render import (
    DigestContent,
    RenderedDigest,
    confirmation_subject,
    render_confirmation,
    render_digest,
    sample_html,
)
from digest.mail.smtp import (
    END_OF_DATA_TIMEOUT,
    Mailer,
    OutcomeUnknown,
    PermanentFailure,
    TemporaryFailure,
)
from digest.mail.subscribers import subscribe_many
from digest.mail.tailored import Tailor, has_web_copy
from digest.mail.tokens import PURPOSE_MANAGE, PURPOSE_UNSUBSCRIBE, make_token
from digest.mail.upcoming import upcoming
from digest.model import EditionStatus
from digest.settings import Settings
from digest.store.database import Store

log = logging.getLogger("digest.mail")

Progress = Callable[[int, int], None]  # (deliveries done in this run, total to do)
PREVIEW_ADDRESS = "you@example.org"


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


@dataclass(frozen=True)
class SendReport:
    edition: int | None  # None: nothing to send
    created: bool  # this run created the edition (else resumed it)
    articles: int
    recipients: int
    sent: int  # by this run
    failed: int  # by this run, for good
    skipped: int  # by this run: unsubscribed since the edition was made
    deferred: int  # by this run: to be retried by a later run
    remaining: int  # deliveries of the edition not done after this run
    stopped: bool  # should_stop asked to stop
    finished: bool  # the edition is complete
    failures: tuple[Failure, ...] = ()
    unknown: int = 0  # by this run: sent, but the reply was lost (may have been accepted)
    bounced: int = 0  # by this run: recipients that became bounced (among the failed)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.deferred == 0 and self.unknown == 0


def send_digest(settings: Settings, store: Store, mailer_factory: Callable[[], Mailer],
                now: datetime, *, force: bool = False,
                should_stop: Callable[[], bool] | None = None,
                progress: Progress | None = None, retry: RetryPolicy | None = None,
                sleep: Callable[[float], None] = time.sleep,
                monotonic: Callable[[], float] = time.monotonic,
                batch: int = 100, lease: timedelta | None = None,
                connections: int | None = None,
                before_delivery: Callable[[Edition], object] | None = None,
                resume_only: bool = False) -> SendReport:
    """Build (or resume) the current edition and deliver it to every recipient not served.

    `now` is the wall time at the start; later times are `now` plus the
    `monotonic` clock's progress. `mailer_factory` is called once, when the
    first message is ready. `should_stop` is checked between messages (and
    during backoff): the run then returns with ``stopped`` set, the outbox
    consistent. `lease` (default: :func:`claim_lease`) is how long a claim
    holds without renewal. `connections` (default SMTP_CONNECTIONS) workers
    send at once, each over its own mailer from `mailer_factory`.
    `before_delivery` is called with the edition (made or resumed) before any
    message of it goes out, e.g. to put its web copy online; what it raises
    stops the run, the edition left to resume. `resume_only` (the followers of
    `digest run` on PostgreSQL) only helps with an open edition, never creating one.
    """
    check_send_settings(settings)
    started = monotonic()

    def clock() -> datetime:
        return now + timedelta(seconds=monotonic() - started)

    outbox = Outbox(store, lease=lease or claim_lease(settings), schedule=schedule_of(settings))
    domain = sender_domain(settings)
    if resume_only:
        edition, created = outbox.open_edition(), False
    else:
        seed_recipients(settings, store, now)
        edition, created = outbox.open_or_create(
            store.load_articles().values(), now,
            message_id=lambda uid, address: message_id(uid, address, domain), force=force)
    if edition is None:
        log.info("no new articles: no digest to send")
        return SendReport(None, False, 0, 0, 0, 0, 0, 0, 0, False, False)
    if before_delivery is not None:
        before_delivery(edition)
    factory = Tailor(settings, store, edition)
    run = _Run(settings, outbox, edition, factory, mailer_factory, clock,
               retry or RetryPolicy(), sleep, monotonic, should_stop or (lambda: False),
               progress, batch, connections or settings.smtp_connections)
    run.deliver()
    finished = outbox.finish(edition.id, clock())
    counts = outbox.counts(edition.id)
    report = SendReport(
        edition=edition.id, created=created, articles=len(edition.items),
        recipients=edition.recipient_count, sent=run.sent, failed=len(run.failures),
        skipped=run.skipped, deferred=run.deferred,
        remaining=sum(counts[s] for s in TO_DO), stopped=run.stopped,
        finished=finished or sum(counts[s] for s in TO_DO) == 0,
        failures=tuple(run.failures), unknown=run.unknown, bounced=run.bounced)
    log.info("edition %d: %d sent, %d failed, %d skipped, %d deferred, %d unknown, "
             "%d remaining", edition.id, report.sent, report.failed, report.skipped,
             report.deferred, report.unknown, report.remaining)
    return report


def claim_lease(settings: Settings) -> timedelta:
    """How long a claim on deliveries holds: longer than one message can take.

    The lease is renewed between messages, once a third of it has passed; one
    message may take the 10-minute wait for the end-of-data reply plus
    SMTP_TIMEOUT for each other step (connect, EHLO, STARTTLS, AUTH, RSET,
    MAIL, RCPT, DATA, the data). Were the lease shorter, another sender could
    claim the message while its reply is awaited, and send it again.
    """
    longest = END_OF_DATA_TIMEOUT + 10 * settings.smtp_timeout
    return timedelta(seconds=max(300.0, 2 * longest))


def check_send_settings(settings: Settings) -> None:
    if not settings.secret_key:
        raise ConfigError("SECRET_KEY is not set; it is needed to sign the unsubscribe links",
                          "add SECRET_KEY=<a long random string> to .env, e.g. from "
                          "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    sender_domain(settings)  # raises ConfigError without DIGEST_FROM


def seed_recipients(settings: Settings, store: Store, now: datetime) -> None:
    """Add DIGEST_RECIPIENTS as subscribers (never resubscribing one who left)."""
    if settings.digest_recipients:
        subscribe_many(store, [(a, None) for a in settings.digest_recipients], now,
                       source="settings")


def render_edition(settings: Settings, edition: Edition) -> RenderedDigest:
    return render_digest(settings, DigestContent(edition.id, edition.created_at, edition.items,
                                                 web_copy=has_web_copy(edition)))


def unsubscribe_url(settings: Settings, address: str, issued_at: datetime) -> str:
    secret = settings.secret_key or ""
    return settings.url("unsubscribe?token=" +
                        make_token(secret, PURPOSE_UNSUBSCRIBE, address, issued_at))


def manage_url(settings: Settings, address: str, issued_at: datetime) -> str:
    """The signed "manage your subscription" link (topics, cadence); no age limit."""
    secret = settings.secret_key or ""
    return settings.url("manage?token=" + make_token(secret, PURPOSE_MANAGE, address, issued_at))


def personal(settings: Settings, edition: Edition, address: str, name: str | None,
             msg_id: str, date: datetime) -> Personal:
    return Personal(address=address, name=name, message_id=msg_id,
                    unsubscribe_url=unsubscribe_url(settings, address, edition.created_at),
                    date=date, manage_url=manage_url(settings, address, edition.created_at))


def next_edition(settings: Settings, store: Store, now: datetime) -> Edition:
    """The open edition, or what the next one would be; writes nothing."""
    outbox = Outbox(store)
    current = outbox.open_edition()
    if current is not None:
        return current
    items = outbox.next_items(store.load_articles().values(), now)
    number = outbox.last_edition() + 1
    return Edition(number, uuid.uuid4().hex[:16], EditionStatus.PREVIEW, now, tuple(items), 0)


def dry_run(settings: Settings, store: Store, now: datetime, force: bool = False
            ) -> list[OutgoingMessage] | None:
    """The messages `digest send` would send now, built but not sent or recorded; None when
    it would send nothing (no open edition and no new article, unless `force`)."""
    check_send_settings(settings)
    coming = upcoming(settings, store, next_edition(settings, store, now), now, force)
    if coming is None:
        return None
    edition = coming.edition
    domain = sender_domain(settings)
    return [coming.tailor.factory(coming.carries[address]).build(personal(
                settings, edition, address, coming.names.get(address),
                message_id(edition.uid, address, domain), now))
            for address in sorted(coming.carries)]


def test_message(settings: Settings, store: Store, address: str, now: datetime
                 ) -> OutgoingMessage:
    """The next edition for one address, with a fresh Message-ID; nothing recorded."""
    check_send_settings(settings)
    edition = next_edition(settings, store, now)
    factory = MessageFactory(settings, render_edition(settings, edition), edition.uid,
                             edition.id)
    msg_id = message_id(uuid.uuid4().hex[:16], address, sender_domain(settings))
    return factory.build(personal(settings, edition, address, None, msg_id, now))


def preview_html(settings: Settings, store: Store, now: datetime) -> str:
    """The HTML part of the next edition as a sample recipient would see it."""
    edition = next_edition(settings, store, now)
    return sample_html(settings, render_edition(settings, edition), PREVIEW_ADDRESS)


def send_confirmation(settings: Settings, mailer: Mailer, address: str, confirm_url: str,
                      now: datetime) -> None:
    """Mail `address` the double opt-in message asking it to open `confirm_url`.

    The text comes from confirm.txt (TEMPLATES_DIR first, then the built-in
    one). The caller owns `mailer` and closes it. Raises SubscriberError for
    an address that is not one, MailError for a link that is not an absolute
    http(s) URL, ConfigError without DIGEST_FROM, and what the mailer raises
    (TemporaryFailure, PermanentFailure, SMTPConfigError).
    """
    recipient = normalize_address(address, "confirmation address")
    if not confirm_url.startswith(("https://", "http://")) or any(
            c.isspace() or not c.isprintable() for c in confirm_url):
        raise MailError(f"the confirmation link {confirm_url!r} is not an absolute http(s) URL",
                        "build it with Settings.url(), e.g. settings.url('confirm?token=...')")
    text = render_confirmation(settings, recipient, confirm_url)
    mailer.send(plain_message(settings, recipient, confirmation_subject(settings), text, now))


class _Run:
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
        self.recorder = outbox.recorder(connections)  # one writer, group commit
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

    def deliver(self) -> None:
        counts = self.outbox.counts(self.edition.id)
        self._total = counts[PENDING] + counts[SENDING]
        workers = max(1, min(self.connections, self._total))
        self._active = self.recorder.senders = workers
        threads = [threading.Thread(target=_Worker(self, n).work, name=f"digest-smtp-{n}",
                                    daemon=True) for n in range(workers)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)  # in steps: the main thread still takes signals
        except BaseException:
            # Interrupted (a second Ctrl-C): the workers end after their current message.
            self.halt.set()
            raise
        finally:
            try:
                self.recorder.close()  # waits for the records in flight
            finally:
                self.outbox.release(self._claimed, self.clock())
        if self.errors:
            raise self.errors[0]

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
            raise MailError(f"giving up for now: {lost} messages in a row got no "
                            f"reply after their data ({exc.reply})",
                            "the SMTP server seems to take messages without answering: check "
                            "it, then run `digest send` again (`digest history` counts the "
                            "unknown deliveries)")

    def deferred_now(self, delivery: Delivery, attempts: int, exc: TemporaryFailure) -> None:
        now = self.clock()
        total = delivery.attempts + attempts
        give_up = total >= self.retry.max_total_attempts
        reply = f"gave up after {total} attempts: {exc.reply}"
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


class _Worker:
    """One SMTP connection: takes deliveries and sends them, one at a time.

    Its own message i is recorded (by the run's recorder) while its message
    i+1 goes out, and i+1's end of data waits for that record: per connection,
    at most one message is accepted and not yet recorded.
    """

    def __init__(self, run: _Run, number: int) -> None:
        self.run = run
        self.number = number
        self._mailer: Mailer | None = None
        self._recording: Future[bool] | None = None
        self._recorded: Delivery | None = None  # the delivery _recording marks sent
        self._current: Delivery | None = None  # taken, and surely not accepted yet
        self._left = False

    def work(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.run.fail(exc)
        finally:
            try:
                self._record()
            except BaseException as exc:
                self.run.fail(exc)
            finally:
                if self._current is not None:
                    self.run.give_back(self._current)
                if not self._left:
                    self.run.leave()
                if self._mailer is not None:
                    self._mailer.close()

    def _loop(self) -> None:
        run = self.run
        while not run.check_stop():
            delivery = run.take()
            if delivery is None:
                return
            self._current = delivery
            if not self._deliver_one(delivery):
                self._left = True  # retired: fewer connections
                return
            self._current = None
            run.progressed(1)

    def _deliver_one(self, delivery: Delivery) -> bool:
        """Send one delivery and settle it; False if this worker retires instead."""
        run = self.run
        message = run.factory.factory(delivery.articles).build(personal(
            run.settings, run.edition, delivery.recipient, delivery.name,
            delivery.message_id, run.clock()))
        attempt = 0
        while True:
            attempt += 1
            self._pace()
            run.keep_lease()
            try:
                self._mailer_now().send(message, self._record)
            except OutcomeUnknown as exc:
                self._current = None  # the server may have it: never given back untouched
                self._record()
                run.lost_reply(delivery, attempt, exc)
                return True
            except PermanentFailure as exc:
                self._record()
                run.reached()
                log.warning("delivery to %s failed: %s", delivery.recipient, exc.reply)
                run.refused(delivery, attempt, exc)
                return True
            except TemporaryFailure as exc:
                self._record()
                if exc.too_many_connections and run.retire(delivery):
                    self._current = None  # handed to another worker
                    return False
                log.info("delivery to %s deferred (attempt %d): %s", delivery.recipient,
                         attempt, exc.reply)
                if attempt < run.retry.attempts and self._pause(run.retry.delay(attempt)):
                    continue
                run.deferred_now(delivery, attempt, exc)
                return True
            self._current = None
            run.reached()
            self._accepted(delivery, attempt)
            return True

    def _accepted(self, delivery: Delivery, attempts: int) -> None:
        """The server accepted `delivery`: start marking it sent (waits for any earlier write)."""
        self._record()
        self._recording = self.run.recorder.submit(delivery, self.run.clock(), attempts)
        self._recorded = delivery

    def _record(self) -> None:
        """Wait until this connection's last accepted message is marked sent (if not yet)."""
        recording = self._recording
        if recording is None:
            return
        self._recording = None  # failed or not, nothing left to wait for
        delivery, self._recorded = self._recorded, None
        self.run.recorder.hurry(recording)
        if recording.result():
            self.run.counted_sent()
            if delivery is not None and delivery.soft_bounce_since is not None:
                # Accepted: a recipient deferred until now no longer is.
                self.run.outbox.clear_soft_bounce(delivery.recipient)

    def _mailer_now(self) -> Mailer:
        if self._mailer is None:
            self._mailer = self.run.mailer_factory()
        return self._mailer

    def _pace(self) -> None:
        wait = self.run.slot()
        if wait > 0:
            self._record()
            self.run.sleep(wait)

    def _pause(self, seconds: float) -> bool:
        """Sleep `seconds` in steps of at most 1 s; False if the run ends meanwhile."""
        self._record()
        left = seconds
        while left > 0:
            if self.run.check_stop():
                return False
            step = min(left, 1.0)
            self.run.sleep(step)
            left -= step
            self.run.keep_lease()
        return True
