"""Web sign-up and unsubscribe: signed links, the subscriber list and the confirmation mail.

This is the orchestration module behind the web routes (no HTTP here):

* :meth:`Signup.request` takes an address from the subscribe form. It checks
  the rate limits and queues the work; a background thread then records the
  address as pending and mails it a confirmation link
  (``confirm?token=...``, signed for PURPOSE_CONFIRM, valid
  :data:`CONFIRM_MAX_AGE`). The caller learns nothing about the address's
  status, not even from the time the answer takes: the same work is queued
  whether or not it was subscribed.
* :meth:`Signup.confirm` subscribes a pending address whose link is valid;
  confirming twice is harmless. An address that unsubscribed stays
  unsubscribed when the form is posted for it (so neither an import nor
  DIGEST_RECIPIENTS can subscribe it meanwhile); it comes back only with a
  confirmation link issued after it unsubscribed.
* :meth:`Signup.unsubscribe` unsubscribes the address of an unsubscribe link
  (``unsubscribe?token=...``, PURPOSE_UNSUBSCRIBE, no age limit, as in the
  digest's List-Unsubscribe header); doing it again changes nothing.

Times are passed in by the caller (`now`); the rate limits use the
`monotonic` clock given at construction.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from digest.addresses import normalize_address
from digest.errors import ConfigError, DigestError
from digest.mail.confirmation import send_confirmation
from digest.mail.message import sender_address
from digest.mail.smtp import Mailer
from digest.mail.subscribers import (
    SUBSCRIBED,
    UNSUBSCRIBED,
    Choices,
    Subscriber,
    add_pending,
    confirm_once,
    get_subscriber,
    resubscribe_unchanged,
    set_choices,
    unsubscribe,
)
from digest.mail.tokens import (
    PURPOSE_CONFIRM,
    PURPOSE_MANAGE,
    PURPOSE_UNSUBSCRIBE,
    issued_at,
    make_token,
    verify_token,
)
from digest.mail.welcome import send_welcome
from digest.settings import Settings
from digest.store.audience import published_topics
from digest.store.database import Store
from digest.web.rate_limit import RateLimiter, Window

log = logging.getLogger("digest.signup")

CONFIRM_MAX_AGE = timedelta(days=3)  # how long a confirmation link works

Verdict = Literal["queued", "client-limited", "busy"]
_KEY_HINT = ("add SECRET_KEY=<a long random string> to .env, e.g. from "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'")


@dataclass(frozen=True)
class SignupLimits:
    """How much the subscribe form may be used (in memory, per `digest serve` process).

    per_client counts form posts from one client address; per_address counts
    sign-ups of one email address (beyond it, the form answers as usual but
    mails nothing); overall counts all sign-ups, so many clients together
    cannot make the server a mail cannon.
    """

    per_client: tuple[Window, ...] = (Window(5, 600.0), Window(20, 86400.0))
    per_address: tuple[Window, ...] = (Window(1, 600.0), Window(3, 86400.0))
    overall: tuple[Window, ...] = (Window(100, 3600.0),)
    queue_size: int = 100


@dataclass(frozen=True)
class _Job:
    address: str
    now: datetime
    welcome: bool = False  # the welcome mail of a confirmed address (else: the confirmation)
    choices: Choices | None = None  # topics and cadence asked for on the form


def _kind(job: _Job | None) -> str:
    return "welcome" if job is not None and job.welcome else "confirmation"


def check_signup_settings(settings: Settings) -> None:
    """Raise ConfigError (at start) when a setting the web routes need is missing."""
    if not settings.secret_key:
        raise ConfigError("SECRET_KEY is not set; it is needed to serve, to check "
                          "unsubscribe and confirmation links", _KEY_HINT)
    if settings.subscribe_form:
        try:
            sender_address(settings)
        except ConfigError as exc:
            raise ConfigError("DIGEST_FROM is not set; SUBSCRIBE_FORM=on needs it to mail "
                              "confirmation links",
                              "set DIGEST_FROM (and the SMTP settings), or SUBSCRIBE_FORM=off"
                              ) from exc


def confirm_url(settings: Settings, address: str, issued_at: datetime) -> str:
    secret = settings.secret_key or ""
    return settings.url("confirm?token=" + make_token(secret, PURPOSE_CONFIRM, address, issued_at))


TOPICS_FOR = 60.0  # seconds the offered topics are kept before the store is read again


class Signup:
    """The sign-up service of one `digest serve` process; start() before use, stop() after."""

    def __init__(self, settings: Settings, store: Store, mailer_factory: Callable[[], Mailer],
                 limits: SignupLimits | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        check_signup_settings(settings)
        self.settings = settings
        self.store = store
        self.mailer_factory = mailer_factory
        self.limits = limits or SignupLimits()
        self.monotonic = monotonic
        self._secret = settings.secret_key or ""
        self._clients = RateLimiter(self.limits.per_client)
        self._addresses = RateLimiter(self.limits.per_address)
        self._overall = RateLimiter(self.limits.overall)
        self._jobs: queue.Queue[_Job | None] = queue.Queue(self.limits.queue_size)
        self._topics: tuple[float, list[str]] | None = None  # (read at, topics)
        self._worker: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="digest-signup-mail",
                                            daemon=True)
            self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued mails (up to `timeout` seconds), then end the worker."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            self._jobs.put(None, timeout=timeout)
        except queue.Full:
            log.warning("sign-up mail queue still full at shutdown; some mails are not sent")
            return
        worker.join(timeout)
        if worker.is_alive():
            log.warning("sign-up mails still being sent at shutdown")

    # -- the three actions -----------------------------------------------------------------

    def request(self, raw_address: str, client: str, now: datetime,
                choices: Choices | None = None) -> Verdict:
        """A form post asking to subscribe `raw_address`; SubscriberError if malformed.

        "queued" is answered whether or not a mail will go out (already
        subscribed, or the address's own limit reached): the answer must not
        tell whether an address is on the list.
        """
        address = normalize_address(raw_address, "email address")
        moment = self.monotonic()
        if not self._clients.allow(client, moment):
            log.info("sign-up refused: client %s over its limit", client)
            return "client-limited"
        if not self._addresses.allow(address, moment):
            log.info("sign-up for %s not mailed: address over its limit", address)
            return "queued"
        if not self._overall.allow("", moment):
            log.warning("sign-up refused: over the overall limit of confirmation mails")
            return "busy"
        try:
            self._jobs.put_nowait(_Job(address, now, choices=choices))
        except queue.Full:
            log.warning("sign-up refused: confirmation mail queue full")
            return "busy"
        return "queued"

    def check(self, purpose: str, token: str, now: datetime) -> str:
        """The address of a valid link for `purpose`, or TokenError; changes nothing."""
        max_age = CONFIRM_MAX_AGE if purpose == PURPOSE_CONFIRM else None
        return verify_token(self._secret, purpose, token, now, max_age)

    def confirm(self, token: str, now: datetime) -> tuple[str, bool]:
        """(address, subscribed now?) for a confirmation link; TokenError if invalid."""
        address = self.check(PURPOSE_CONFIRM, token, now)
        found = get_subscriber(self.store, address)
        # Compare-and-set: of two confirmations at once, one subscribes and welcomes.
        if (found is not None and found.status == UNSUBSCRIBED
                and issued_at(token).timestamp() > found.updated_at.timestamp()
                and resubscribe_unchanged(self.store, address, found.updated_at, now)):
            log.info("confirmation of %s: subscribed again", address)
            self._welcome(address, now)
            return address, True
        changed, subscribed = confirm_once(self.store, address, now)
        log.info("confirmation of %s: %s", address, "subscribed" if changed
                 else "already subscribed" if subscribed else "not pending")
        if changed:
            self._welcome(address, now)
        return address, subscribed

    def _welcome(self, address: str, now: datetime) -> None:
        """Queue the welcome mail (not sent when the queue is full: the address is subscribed)."""
        try:
            self._jobs.put_nowait(_Job(address, now, welcome=True))
        except queue.Full:
            log.warning("welcome mail to %s not sent: mail queue full", address)

    def topics(self) -> list[str]:
        """The topics offered: tag slugs of the published articles.

        Read from the store at most every TOPICS_FOR seconds: every GET of the
        sign-up and manage pages asks, and reading the tags of every article
        each time would let a stream of requests keep the store busy. A new
        tag is offered within that time of its publish.
        """
        moment = self.monotonic()
        cached = self._topics
        if cached is not None and moment - cached[0] < TOPICS_FOR:
            return cached[1]
        found = published_topics(self.store)
        self._topics = (moment, found)
        return found

    def subscriber(self, token: str, now: datetime) -> tuple[str, Subscriber | None]:
        """The address of a manage link and its subscriber row; TokenError if invalid."""
        address = self.check(PURPOSE_MANAGE, token, now)
        return address, get_subscriber(self.store, address)

    def save_choices(self, token: str, choices: Choices, now: datetime
                     ) -> tuple[str, Choices | None]:
        """Save topics and cadence for the address of a manage link; (address, the choices
        it has now, None when it is not on the list)."""
        address = self.check(PURPOSE_MANAGE, token, now)
        saved = set_choices(self.store, address, choices)
        log.info("choices of %s: %s", address, "saved" if saved else "not on the list")
        found = get_subscriber(self.store, address) if saved else None
        return address, Choices(found.topics, found.cadence) if found else None

    def unsubscribe(self, token: str, now: datetime) -> str:
        """Unsubscribe the address of an unsubscribe link; TokenError if invalid."""
        address = self.check(PURPOSE_UNSUBSCRIBE, token, now)
        if unsubscribe(self.store, address, now):
            log.info("unsubscribed %s", address)
        return address

    # -- the mail worker ---------------------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued job is done (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                self._mail(job)
            except DigestError as exc:
                log.warning("%s mail to %s not sent: %s", _kind(job), job.address if job else "-",
                            exc.message)
            except Exception:
                log.exception("%s mail to %s failed", _kind(job), job.address if job else "-")
            finally:
                self._jobs.task_done()

    def _mail(self, job: _Job) -> None:
        if job.welcome:
            mailer = self.mailer_factory()
            try:
                send_welcome(self.settings, self.store, mailer, job.address, job.now)
            finally:
                mailer.close()
            log.info("welcome mail sent to %s", job.address)
            return
        found = get_subscriber(self.store, job.address)
        if found is not None and found.status == SUBSCRIBED:
            log.info("sign-up for %s: already subscribed, no mail", job.address)
            return
        # An unsubscribed address keeps its status until it confirms (see confirm()).
        if (found is None or found.status != UNSUBSCRIBED) and \
                not add_pending(self.store, job.address, job.now, choices=job.choices):
            log.info("sign-up for %s: already subscribed, no mail", job.address)
            return
        mailer = self.mailer_factory()
        try:
            send_confirmation(self.settings, mailer, job.address,
                              confirm_url(self.settings, job.address, job.now), job.now)
        finally:
            mailer.close()
        log.info("confirmation mail sent to %s", job.address)


def limits_of(windows: Sequence[Window]) -> str:
    """'5 per 10 min, 20 per day': for log lines and docs."""
    def span(seconds: float) -> str:
        if seconds % 86400 == 0:
            days = int(seconds // 86400)
            return "day" if days == 1 else f"{days} days"
        if seconds % 3600 == 0:
            return f"{int(seconds // 3600)} h"
        return f"{int(seconds // 60)} min" if seconds >= 60 else f"{seconds:g} s"
    return ", ".join(f"{w.events} per {span(w.seconds)}" for w in windows)

