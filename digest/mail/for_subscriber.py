"""The next digest as one subscriber would get it (`digest send --to`, `digest preview --for`).

What their message carries is what the real send would put in it: the plan
of :mod:`digest.mail.upcoming` (their topics, cadence and place in the
editions), never a selection of its own. When the send would give them no
message, :attr:`SubscriberView.why_not` says so, and what the send does
instead, in a sentence for the operator. Nothing here writes to the store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.errors import SubscriberError
from digest.mail.message import OutgoingMessage, message_id, sender_domain
from digest.mail.outbox import schedule_of
from digest.mail.personal import personal
from digest.mail.previews import next_edition
from digest.mail.render import DigestContent, render_digest, sample_html
from digest.mail.send import check_send_settings
from digest.mail.subscribers import Subscriber, get_subscriber
from digest.mail.tailored import Tailor
from digest.mail.upcoming import Upcoming, upcoming
from digest.model import Cadence, Edition, SubscriberStatus
from digest.settings import Settings
from digest.store.database import Store
from digest.words import plural

NOTHING_NEW = "no new articles since the last digest"


@dataclass(frozen=True)
class TheirMessage:
    """The message one subscriber gets: its edition, its articles, its rendering."""

    edition: Edition
    articles: tuple[str, ...] | None  # None: the edition's own
    content: DigestContent
    tailor: Tailor


@dataclass(frozen=True)
class SubscriberView:
    """The next send for one address: their message, or why they get none."""

    address: str
    name: str | None
    message: TheirMessage | None
    why_not: str = ""  # without a message: why, and what `digest send` does for them instead
    nothing_new: bool = False  # no message for anyone: no open edition and no new article

    @property
    def count(self) -> int:
        """How many articles their message carries."""
        return len(self.message.content.items) if self.message else 0


def is_subscribed(store: Store, address: str) -> bool:
    found = get_subscriber(store, address)
    return found is not None and found.status is SubscriberStatus.SUBSCRIBED


def subscriber_view(settings: Settings, store: Store, address: str, now: datetime,
                    force: bool = False) -> SubscriberView:
    """What `digest send` (with --force when `force`) would give `address` if it ran now;
    writes nothing.

    Raises SubscriberError when the address is neither on the list nor in
    DIGEST_RECIPIENTS (which the send adds first).
    """
    found = get_subscriber(store, address)
    if found is None and address not in settings.digest_recipients:
        raise SubscriberError(f"{address} is not on the subscriber list",
                              "`digest subscribers list` shows the addresses; "
                              f"`digest subscribers add {address}` subscribes it")
    name = found.name if found else None
    if found is not None and found.status is not SubscriberStatus.SUBSCRIBED:
        return SubscriberView(address, name, None, _not_subscribed(found))
    coming = upcoming(settings, store, next_edition(settings, store, now), now, force)
    if coming is None:
        return SubscriberView(address, name, None,
                              f"{NOTHING_NEW}: `digest send` would send nothing now, to "
                              f"{address} or anyone", nothing_new=True)
    if address not in coming.carries:
        return SubscriberView(address, name, None,
                              _skipped(settings, coming, address, found, now))
    articles = coming.carries[address]
    content = coming.tailor.content(coming.tailor.items(articles))
    return SubscriberView(address, name, TheirMessage(coming.edition, articles, content,
                                                      coming.tailor))


def view_message(settings: Settings, view: SubscriberView, to: str, now: datetime
                 ) -> OutgoingMessage:
    """The subscriber's message addressed to `to`, with a fresh Message-ID and `to`'s own
    unsubscribe and manage links (the links of the subscriber never go to another address)."""
    check_send_settings(settings)
    message = view.message
    if message is None:
        raise ValueError(f"no message for {view.address}: {view.why_not}")
    msg_id = message_id(uuid.uuid4().hex[:16], to, sender_domain(settings))
    name = view.name if to == view.address else None
    return message.tailor.factory(message.articles).build(
        personal(settings, message.edition, to, name, msg_id, now))


def view_html(settings: Settings, view: SubscriberView) -> str:
    """The HTML body of the subscriber's message, as `digest preview` shows it."""
    if view.message is None:
        raise ValueError(f"no message for {view.address}: {view.why_not}")
    return sample_html(settings, render_digest(settings, view.message.content), view.address)


def describe(view: SubscriberView) -> str:
    """'edition 3, 2 articles; the whole edition has 5' (their message), for a confirmation
    line; without a message, why."""
    message = view.message
    if message is None:
        return view.why_not
    own = len(message.edition.items)
    if message.articles is None:
        return f"edition {message.edition.id}, the whole edition: {plural(own, 'article')}"
    return (f"edition {message.edition.id}, {plural(view.count, 'article')}; the whole "
            f"edition has {own}")


def _not_subscribed(found: Subscriber) -> str:
    address = found.address
    if found.status is SubscriberStatus.PENDING:
        return (f"{address} has not confirmed their sign-up yet (pending): `digest send` "
                "sends them nothing")
    if found.status is SubscriberStatus.BOUNCED:
        return (f"{address} bounced: `digest send` sends them nothing (`digest subscribers "
                f"reactivate {address}` takes the address back)")
    return f"{address} unsubscribed: `digest send` sends them nothing"


def _skipped(settings: Settings, coming: Upcoming, address: str, found: Subscriber | None,
             now: datetime) -> str:
    """Why a subscribed address has no message in the next send."""
    number = coming.edition.id
    if not coming.is_new:
        return (f"edition {number} is being sent and has no message left for {address} "
                "(sent to them already, failed, or they are not among its recipients; "
                f"`digest history {number}` lists its failed ones): `digest send` finishes "
                "it first; what is new for them comes in a later edition")
    if found is not None and found.cadence is Cadence.WEEKLY and address not in coming.due:
        schedule = schedule_of(settings)
        next_day = schedule.week_start(now) + timedelta(days=7)
        return (f"{address} reads weekly and edition {number} is not their weekly message: "
                "`digest send` skips them now; their articles wait for the first edition "
                f"made on or after {next_day:%A %Y-%m-%d} (WEEKLY_DAY, "
                f"{settings.digest_timezone})")
    topics = found.topics if found is not None else ()
    if topics:
        return (f"{address} gets no message in edition {number}: nothing new for them is on "
                f"their topics ({', '.join(topics)}); `digest send` skips them this time, and "
                "later articles on those topics come in later editions")
    return (f"{address} gets no message in edition {number}: nothing is new for them since "
            "their last message; `digest send` skips them this time")
