"""Send the digest: build or resume an edition and deliver it, exactly once per recipient.

This is the orchestration module of the mail stages: it combines the
subscriber list, the outbox, rendering, message building and a
:class:`~digest.mail.smtp.Mailer`. The scheduler and `digest send` call
:func:`send_digest`. How a send goes: :mod:`digest.mail.workers` (SMTP
connections, recording each delivery) and :mod:`digest.mail.run` (what each
server reply does, retries, lost replies). What it would send, without
sending: :mod:`digest.mail.previews`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.errors import ConfigError
from digest.mail.message import message_id, sender_domain
from digest.mail.outbox import Outbox, schedule_of
from digest.mail.run import Progress, RetryPolicy, Run
from digest.mail.smtp import END_OF_DATA_TIMEOUT, Mailer
from digest.mail.subscribers import subscribe_many
from digest.mail.tailored import Tailor
from digest.mail.workers import deliver
from digest.model import Edition
from digest.settings import Settings
from digest.store.database import Store
from digest.store.outbox import TO_DO, Failure

log = logging.getLogger("digest.mail")


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
    run = Run(settings, outbox, edition, factory, mailer_factory, clock,
              retry or RetryPolicy(), sleep, monotonic, should_stop or (lambda: False),
              progress, batch, connections or settings.smtp_connections)
    deliver(run)
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
