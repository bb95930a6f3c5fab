"""What `digest send` would send, built but neither sent nor recorded.

The dry run (every message of the open or next edition), a test message to
one address, and the HTML part as a sample recipient would see it. The next
edition is what the open one is, or what a new one would carry now
(:func:`next_edition`); nothing is written to the state store.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from digest.mail.edition import select_articles
from digest.mail.message import MessageFactory, OutgoingMessage, message_id, sender_domain
from digest.mail.outbox import Outbox, schedule_of
from digest.mail.personal import personal
from digest.mail.render import MANAGE_SLOT, RECIPIENT_SLOT, UNSUBSCRIBE_SLOT
from digest.mail.send import check_send_settings
from digest.mail.subscribers import SUBSCRIBED, list_subscribers
from digest.mail.tailored import Tailor, render_edition
from digest.model import DigestItem, Edition, EditionStatus
from digest.settings import Settings
from digest.store.audience import open_plan, preview
from digest.store.database import Store

PREVIEW_ADDRESS = "you@example.org"


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
    edition = next_edition(settings, store, now)
    unsaved: dict[str, DigestItem] = {}
    if edition.status is EditionStatus.PREVIEW:
        chosen, plan = preview(store, select_articles, store.load_articles().values(),
                               edition.id, now, schedule_of(settings), force)
        unsaved = {a.key: DigestItem.of(a) for a in chosen}
        if not edition.items and not plan.deliveries and not force:
            return None
    else:
        plan = open_plan(store, edition.id)
    tailor = Tailor(settings, store, edition, unsaved)
    names = {s.address: s.name for s in list_subscribers(store, SUBSCRIBED)}
    known = {s.address for s in list_subscribers(store)}
    carries = {p.recipient: p.articles for p in plan.deliveries}
    carries.update({a: None for a in settings.digest_recipients if a not in known})
    domain = sender_domain(settings)
    return [tailor.factory(carries[address]).build(personal(
                settings, edition, address, names.get(address),
                message_id(edition.uid, address, domain), now))
            for address in sorted(carries)]


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
            .replace(UNSUBSCRIBE_SLOT, settings.url("unsubscribe?token=preview"))
            .replace(MANAGE_SLOT, settings.url("manage?token=preview")))
