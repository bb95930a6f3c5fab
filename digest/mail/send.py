"""Send the digest: build or resume an edition and deliver it, exactly once per recipient.

This is the orchestration module of the mail stages: it combines the
subscriber list, the outbox, rendering, message building and a
:class:`~digest.mailer.Mailer`. The scheduler calls :func:`send_digest`; the
CLI also uses :func:`dry_run`, :func:`test_message` and :func:`preview_html`;
the web sign-up uses :func:`send_confirmation`.

Recording: a delivery is marked sent only after the server accepted it. To
keep the state store's write off the critical path, the write for message i
starts on a worker thread as soon as the server accepts i, and runs while
message i+1 goes out; i+1's end of data is sent only once that write is
committed (the mailer's ``meanwhile``). Before anything else (a stop, a
backoff, a new claim, the end of the run) the loop waits for the write in
flight. So at any moment at most one message is accepted and not yet
recorded: a crash re-sends at most that one, with the same Message-ID.

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
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
from digest.mail.outbox import PENDING, SENDING, TO_DO, Delivery, Edition, Failure, Outbox
from digest.mail.render import (
    RECIPIENT_SLOT,
    UNSUBSCRIBE_SLOT,
    DigestContent,
    RenderedDigest,
    confirmation_subject,
    render_confirmation,
    render_digest,
)
from digest.mail.smtp import (
    END_OF_DATA_TIMEOUT,
    Mailer,
    OutcomeUnknown,
    PermanentFailure,
    TemporaryFailure,
)
from digest.mail.subscribers import SUBSCRIBED, list_subscribers, subscribe_many
from digest.mail.tokens import PURPOSE_UNSUBSCRIBE, make_token
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
                batch: int = 100, lease: timedelta | None = None) -> SendReport:
    """Build (or resume) the current edition and deliver it to every recipient not served.

    `now` is the wall time at the start; later times are `now` plus the
    `monotonic` clock's progress. `mailer_factory` is called once, when the
    first message is ready. `should_stop` is checked between messages (and
    during backoff): the run then returns with ``stopped`` set, the outbox
    consistent. `lease` (default: :func:`claim_lease`) is how long a claim
    holds without renewal.
    """
    check_send_settings(settings)
    started = monotonic()

    def clock() -> datetime:
        return now + timedelta(seconds=monotonic() - started)

    seed_recipients(settings, store, now)
    outbox = Outbox(store, lease=lease or claim_lease(settings))
    domain = sender_domain(settings)
    edition, created = outbox.open_or_create(
        store.load_articles().values(), now,
        message_id=lambda uid, address: message_id(uid, address, domain), force=force)
    if edition is None:
        log.info("no new articles: no digest to send")
        return SendReport(None, False, 0, 0, 0, 0, 0, 0, 0, False, False)
    factory = MessageFactory(settings, render_edition(settings, edition), edition.uid,
                             edition.id)
    run = _Run(settings, outbox, edition, factory, mailer_factory, clock,
               retry or RetryPolicy(), sleep, monotonic, should_stop or (lambda: False),
               progress, batch)
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
    return render_digest(settings, DigestContent(edition.id, edition.created_at, edition.items))


def unsubscribe_url(settings: Settings, address: str, issued_at: datetime) -> str:
    secret = settings.secret_key or ""
    return settings.url("unsubscribe?token=" +
                        make_token(secret, PURPOSE_UNSUBSCRIBE, address, issued_at))


def personal(settings: Settings, edition: Edition, address: str, name: str | None,
             msg_id: str, date: datetime) -> Personal:
    return Personal(address=address, name=name, message_id=msg_id,
                    unsubscribe_url=unsubscribe_url(settings, address, edition.created_at),
                    date=date)


def next_edition(settings: Settings, store: Store, now: datetime) -> Edition:
    """The open edition, or what the next one would be; writes nothing."""
    outbox = Outbox(store)
    current = outbox.open_edition()
    if current is not None:
        return current
    items = outbox.next_items(store.load_articles().values(), now)
    number = outbox.last_edition() + 1
    return Edition(number, uuid.uuid4().hex[:16], EditionStatus.PREVIEW, now, tuple(items), 0)


def dry_run(settings: Settings, store: Store, now: datetime) -> list[OutgoingMessage]:
    """The messages `digest send` would send now, built but not sent or recorded."""
    check_send_settings(settings)
    edition = next_edition(settings, store, now)
    factory = MessageFactory(settings, render_edition(settings, edition), edition.uid,
                             edition.id)
    names = {s.address: s.name for s in list_subscribers(store, SUBSCRIBED)}
    known = {s.address for s in list_subscribers(store)}
    recipients = sorted(set(names) | {a for a in settings.digest_recipients if a not in known})
    domain = sender_domain(settings)
    return [factory.build(personal(settings, edition, address, names.get(address),
                                   message_id(edition.uid, address, domain), now))
            for address in recipients]


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
    rendered = render_edition(settings, edition)
    return (rendered.html.replace(RECIPIENT_SLOT, PREVIEW_ADDRESS)
            .replace(UNSUBSCRIBE_SLOT, settings.url("unsubscribe?token=preview")))


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
    """The delivery loop of one send_digest call."""

    def __init__(self, settings: Settings, outbox: Outbox, edition: Edition,
                 factory: MessageFactory, mailer_factory: Callable[[], Mailer],
                 clock: Callable[[], datetime], retry: RetryPolicy,
                 sleep: Callable[[float], None], monotonic: Callable[[], float],
                 should_stop: Callable[[], bool], progress: Progress | None, batch: int) -> None:
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
        self.interval = 1.0 / settings.smtp_rate_limit if settings.smtp_rate_limit else 0.0
        self.sent = self.skipped = self.deferred = self.unknown = self.bounced = 0
        self.soft_limit = timedelta(days=settings.bounce_soft_days)
        self.failures: list[Failure] = []
        self.stopped = False
        self._mailer: Mailer | None = None
        self._next_slot = 0.0
        self._renewed = monotonic()
        self._unreachable = 0  # deliveries in a row deferred because the server was unreachable
        self._lost_in_row = 0  # deliveries in a row whose end-of-data reply was lost
        # The write marking the last accepted message sent, running on the worker.
        # The recorder's connection is opened, used and closed on that thread only.
        self._recorder = outbox.recorder()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-record")
        self._recording: Future[bool] | None = None

    def deliver(self) -> None:
        counts = self.outbox.counts(self.edition.id)
        total = counts[PENDING] + counts[SENDING]
        done = 0
        claimed: deque[Delivery] = deque()
        try:
            while True:
                if self.should_stop():
                    self.stopped = True
                    break
                if not claimed:
                    self._record()
                    batch, skipped = self.outbox.claim_batch(self.edition.id, self.clock(),
                                                             self.batch)
                    claimed.extend(batch)
                    self.skipped += skipped
                    done += skipped
                    if not claimed:
                        if skipped:
                            continue
                        break
                self._deliver_one(claimed[0])
                claimed.popleft()
                done += 1
                if self.progress is not None:
                    self.progress(done, total)
        finally:
            try:
                self._record()
            finally:
                try:
                    self._worker.submit(self._recorder.close).result()
                    self._worker.shutdown()
                    self.outbox.release(claimed, self.clock())
                finally:
                    if self._mailer is not None:
                        self._mailer.close()

    def _accepted(self, delivery: Delivery, attempts: int) -> None:
        """The server accepted `delivery`: start marking it sent (waits for any earlier write)."""
        self._record()
        self._recording = self._worker.submit(self._mark_sent, delivery, self.clock(), attempts)

    def _mark_sent(self, delivery: Delivery, now: datetime, attempts: int) -> bool:
        """On the worker: mark the delivery sent; a recipient deferred until now no longer is."""
        done = self._recorder.mark_sent(delivery, now, attempts)
        if done and delivery.soft_bounce_since is not None:
            self.outbox.clear_soft_bounce(delivery.recipient)
        return done

    def _record(self) -> None:
        """Wait until the message the server last accepted is marked sent (if not done yet)."""
        recording = self._recording
        if recording is None:
            return
        try:
            done = recording.result()
        except Exception:
            self._recording = None  # the write failed: nothing left to wait for
            raise
        # (Interrupted while waiting, e.g. KeyboardInterrupt: still in flight, and the
        # loop's `finally` waits for it again.)
        self._recording = None
        if done:
            self.sent += 1

    def _deliver_one(self, delivery: Delivery) -> None:
        message = self.factory.build(personal(
            self.settings, self.edition, delivery.recipient, delivery.name,
            delivery.message_id, self.clock()))
        attempt = 0
        while True:
            attempt += 1
            self._pace()
            self._keep_lease()
            try:
                self._mailer_now().send(message, self._record)
            except OutcomeUnknown as exc:
                self._record()
                self._lost_reply(delivery, attempt, exc)
                return
            except PermanentFailure as exc:
                self._record()
                self._unreachable = self._lost_in_row = 0
                log.warning("delivery to %s failed: %s", delivery.recipient, exc.reply)
                if not exc.about_recipient:
                    if self.outbox.mark_failed(delivery, self.clock(), attempt, exc.reply):
                        self.failures.append(Failure(delivery.recipient, exc.reply))
                elif self.outbox.mark_bounced(delivery, self.clock(), attempt, exc.reply):
                    self.failures.append(Failure(delivery.recipient, exc.reply))
                    self.bounced += 1
                return
            except TemporaryFailure as exc:
                self._record()
                log.info("delivery to %s deferred (attempt %d): %s", delivery.recipient,
                         attempt, exc.reply)
                if attempt < self.retry.attempts and self._pause(self.retry.delay(attempt)):
                    continue
                self._give_back(delivery, attempt, exc)
                return
            self._unreachable = self._lost_in_row = 0
            self._accepted(delivery, attempt)
            return

    def _lost_reply(self, delivery: Delivery, attempts: int, exc: OutcomeUnknown) -> None:
        """No reply after the data: never retried now; once more, later, if not lost before."""
        now = self.clock()
        again = delivery.lost_replies == 0
        log.warning("delivery to %s: %s; %s", delivery.recipient, exc.message,
                    f"one more try after {self.retry.unknown_retry_after}" if again
                    else "lost twice: not sent again")
        if self.outbox.mark_unknown(delivery, now, attempts, exc.reply,
                                    now + self.retry.unknown_retry_after if again else None):
            self.unknown += 1
        self._lost_in_row += 1
        if self._lost_in_row >= self.retry.max_lost_in_row and not self.stopped:
            raise MailError(f"giving up for now: {self._lost_in_row} messages in a row got no "
                            f"reply after their data ({exc.reply})",
                            "the SMTP server seems to take messages without answering: check "
                            "it, then run `digest send` again (`digest history` counts the "
                            "unknown deliveries)")

    def _give_back(self, delivery: Delivery, attempts: int, exc: TemporaryFailure) -> None:
        now = self.clock()
        total = delivery.attempts + attempts
        give_up = total >= self.retry.max_total_attempts
        if exc.about_recipient:
            # A deferral of this recipient: BOUNCE_SOFT_DAYS of them without a success
            # in between make it bounced.
            reply = f"gave up after {total} attempts: {exc.reply}"
            bounced = self.outbox.defer_soft(delivery, now, attempts, exc.reply,
                                             now + self.retry.defer_for, self.soft_limit,
                                             reply if give_up else None)
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
            reply = f"gave up after {total} attempts: {exc.reply}"
            if self.outbox.mark_failed(delivery, now, attempts, reply):
                self.failures.append(Failure(delivery.recipient, reply))
            return
        if self.outbox.defer(delivery, now, attempts, exc.reply, now + self.retry.defer_for):
            self.deferred += 1
        if exc.connection_lost and not self.stopped:
            self._unreachable += 1
            if self._unreachable >= 2:
                raise MailError(f"giving up for now: {exc.message}",
                                "check SMTP_HOST and SMTP_PORT and that the server is up; "
                                "run `digest send` again to resume this edition")

    def _mailer_now(self) -> Mailer:
        if self._mailer is None:
            self._mailer = self.mailer_factory()
        return self._mailer

    def _pace(self) -> None:
        if not self.interval:
            return
        wait = self._next_slot - self.monotonic()
        if wait > 0:
            self._record()
            self.sleep(wait)
        self._next_slot = max(self._next_slot, self.monotonic()) + self.interval

    def _pause(self, seconds: float) -> bool:
        """Sleep `seconds` in steps of at most 1 s; False if asked to stop meanwhile."""
        self._record()
        left = seconds
        while left > 0:
            if self.should_stop():
                self.stopped = True
                return False
            step = min(left, 1.0)
            self.sleep(step)
            left -= step
            self._keep_lease()
        return True

    def _keep_lease(self) -> None:
        if self.monotonic() - self._renewed > self.outbox.lease.total_seconds() / 3:
            self._record()  # one writer at a time (SQLite)
            self.outbox.renew(self.edition.id, self.clock())
            self._renewed = self.monotonic()
