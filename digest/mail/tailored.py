"""One message factory per article list: deliveries of one edition may carry different articles.

A subscriber with topics, or a weekly one, gets a delivery whose article list
(:attr:`digest.store.claims.Delivery.articles`) differs from the edition's own
(see :mod:`digest.store.audience`). Each distinct list is rendered once (subject,
bodies) and kept, so a run renders as many times as there are distinct lists,
not as many as recipients. The items come from the snapshots stored with
their editions: a resumed edition renders exactly as before.
:func:`render_edition` renders an edition's own list once, outside a send.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from digest.mail.message import MessageFactory
from digest.mail.render import DigestContent, RenderedDigest, render_digest
from digest.model import DigestItem, Edition, EditionStatus
from digest.settings import Settings
from digest.store.audience import items_by_key
from digest.store.database import Store

_KEEP = 256  # factories kept at once (each holds its rendered bodies)


def has_web_copy(edition: Edition) -> bool:
    """Whether the edition's web copy (digests/<n>.html) exists: it is made before its first
    message goes out; the preview of the next edition (dry run, test send) has none."""
    return edition.status is not EditionStatus.PREVIEW


def render_edition(settings: Settings, edition: Edition) -> RenderedDigest:
    """The edition's own article list rendered (previews, test sends)."""
    return render_digest(settings, DigestContent(edition.id, edition.created_at, edition.items,
                                                 web_copy=has_web_copy(edition)))


class Tailor:
    """Message factories of one edition, by article list (thread-safe)."""

    def __init__(self, settings: Settings, store: Store, edition: Edition,
                 unsaved: Mapping[str, DigestItem] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.edition = edition
        self.unsaved = dict(unsaved or {})  # items of an edition not stored (a preview)
        self._lock = threading.Lock()
        self._own: MessageFactory | None = None
        self._by_list: dict[tuple[str, ...], MessageFactory] = {}

    def factory(self, articles: tuple[str, ...] | None) -> MessageFactory:
        """The factory of messages carrying `articles` (None: the edition's own)."""
        with self._lock:
            if articles is None:
                if self._own is None:
                    self._own = self._make(self.edition.items)
                return self._own
            found = self._by_list.get(articles)
            if found is None:
                found = self._make(self.items(articles))
                if len(self._by_list) >= _KEEP:
                    self._by_list.pop(next(iter(self._by_list)))
                self._by_list[articles] = found
            return found

    def items(self, articles: tuple[str, ...] | None) -> tuple[DigestItem, ...]:
        """The items of a message carrying `articles` (None: the edition's own), in order."""
        if articles is None:
            return self.edition.items
        found = {**items_by_key(self.store, [k for k in articles if k not in self.unsaved]),
                 **self.unsaved}
        return tuple(found[key] for key in articles if key in found)

    def content(self, items: tuple[DigestItem, ...]) -> DigestContent:
        """What the templates render for a message of this edition carrying `items`."""
        return DigestContent(self.edition.id, self.edition.created_at, items,
                             web_copy=has_web_copy(self.edition))

    def _make(self, items: tuple[DigestItem, ...]) -> MessageFactory:
        return MessageFactory(self.settings, render_digest(self.settings, self.content(items)),
                              self.edition.uid, self.edition.id)
