"""What `digest send` would send, built but neither sent nor recorded.

The dry run (every message of the open or next edition), a test message to
one address, and the HTML part as a sample recipient would see it. The next
edition is what the open one is, or what a new one would carry now
(:func:`next_edition`); nothing is written to the state store.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from digest.mail.message import MessageFactory, OutgoingMessage, message_id, sender_domain
from digest.mail.outbox import Outbox
from digest.mail.personal import personal
from digest.mail.render import sample_html
from digest.mail.send import check_send_settings
from digest.mail.tailored import render_edition
from digest.mail.upcoming import upcoming
from digest.model import Edition, EditionStatus
from digest.settings import Settings
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
    coming = upcoming(settings, store, next_edition(settings, store, now), now, force)
    if coming is None:
        return None
    edition = coming.edition
    domain = sender_domain(settings)
    return [coming.tailor.factory(coming.carries[address]).build(personal(
                settings, edition, address, coming.names.get(address),
                message_id(edition.uid, address, domain), now))
            for address in sorted(coming.carries)]


def test_message(settings: Settings, store: Store, address: str, now: datetime,
                 force: bool = False) -> OutgoingMessage | None:
    """The next edition (the whole of it) for one address, with a fresh Message-ID; None
    when `digest send` (with --force when `force`) would send nothing now. Nothing
    recorded."""
    check_send_settings(settings)
    coming = upcoming(settings, store, next_edition(settings, store, now), now, force)
    if coming is None:
        return None
    edition = coming.edition
    factory = MessageFactory(settings, render_edition(settings, edition), edition.uid,
                             edition.id)
    msg_id = message_id(uuid.uuid4().hex[:16], address, sender_domain(settings))
    return factory.build(personal(settings, edition, address, None, msg_id, now))


def preview_html(settings: Settings, store: Store, now: datetime) -> str:
    """The HTML part of the next edition as a sample recipient would see it."""
    edition = next_edition(settings, store, now)
    return sample_html(settings, render_edition(settings, edition), PREVIEW_ADDRESS)
