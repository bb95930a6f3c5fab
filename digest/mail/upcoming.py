"""What the next `digest send` would send, worked out without writing anything.

The dry run (`digest send --dry-run`), the test send for one subscriber
(`digest send --to`) and the preview for one subscriber (`digest preview
--for`) all ask this module, and it asks the planning of the real send:
:func:`digest.store.audience.preview` for an edition not yet made (topics,
cadence, each subscriber's place), :func:`digest.store.audience.open_plan`
for the edition being sent (the deliveries still to do, with the article
lists stored in their rows). So what they show is what the send would do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from digest.mail.edition import select_articles
from digest.mail.outbox import schedule_of
from digest.mail.subscribers import SUBSCRIBED, list_subscribers
from digest.mail.tailored import Tailor
from digest.model import DigestItem, Edition, EditionStatus
from digest.settings import Settings
from digest.store.audience import open_plan, preview
from digest.store.database import Store


@dataclass(frozen=True)
class Upcoming:
    """The next send: its edition and, per recipient, the articles their message carries."""

    edition: Edition  # the open edition, or the next one (status PREVIEW: not made yet)
    carries: Mapping[str, tuple[str, ...] | None]  # address -> article keys (None: the edition's)
    due: frozenset[str]  # subscribers whose place moves on with a new edition (topics or not)
    names: Mapping[str, str | None]  # subscribed address -> name
    tailor: Tailor  # the message factories, by article list

    @property
    def is_new(self) -> bool:
        """The send would make this edition (else it resumes it)."""
        return self.edition.status is EditionStatus.PREVIEW


def upcoming(settings: Settings, store: Store, edition: Edition, now: datetime,
             force: bool = False) -> Upcoming | None:
    """Who gets what if `digest send` ran now, `edition` being what it would send (see
    :func:`digest.mail.send.next_edition`); None when it would send nothing (no open edition
    and nothing new, unless `force`). Reads only.

    Addresses of DIGEST_RECIPIENTS not on the list yet (the send adds them first) get
    the articles of a new edition; an edition being sent has its deliveries fixed since
    it was made, so it has no message for them.
    """
    unsaved: dict[str, DigestItem] = {}
    if edition.status is EditionStatus.PREVIEW:
        chosen, plan = preview(store, select_articles, store.load_articles().values(),
                               edition.id, now, schedule_of(settings), force)
        unsaved = {a.key: DigestItem.of(a) for a in chosen}
        if not edition.items and not plan.deliveries and not force:
            return None
    else:
        plan = open_plan(store, edition.id)
    everyone = list_subscribers(store)
    names = {s.address: s.name for s in everyone if s.status == SUBSCRIBED}
    known = {s.address for s in everyone}
    carries = {p.recipient: p.articles for p in plan.deliveries}
    if edition.status is EditionStatus.PREVIEW:
        carries.update({a: None for a in settings.digest_recipients if a not in known})
    return Upcoming(edition, carries, frozenset(plan.due), names,
                    Tailor(settings, store, edition, unsaved))
