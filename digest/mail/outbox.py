"""The outbox of the mail stage: :mod:`digest.store.outbox` with the edition policy bound.

Editions carry what :func:`digest.mail.edition.select_articles` chooses; who
gets which of them is :mod:`digest.store.audience` (topics, cadence); the
bookkeeping (claims, leases, compare-and-set updates) is the store's
(:mod:`digest.store.claims`), and so are the reports on how editions went
(:mod:`digest.store.edition_reports`).
"""

from __future__ import annotations

from datetime import timedelta

from digest.mail.edition import select_articles
from digest.settings import Settings
from digest.store import outbox as stored
from digest.store.audience import Schedule
from digest.store.database import Store


class Outbox(stored.Outbox):
    """Edition and delivery bookkeeping for one sender (identified by `owner`)."""

    def __init__(self, store: Store, owner: str | None = None,
                 lease: timedelta = timedelta(minutes=5),
                 schedule: Schedule | None = None) -> None:
        super().__init__(store, select_articles, owner, lease, schedule)


def schedule_of(settings: Settings) -> Schedule:
    """When weekly subscribers are due: WEEKLY_DAY in DIGEST_TIMEZONE."""
    return Schedule(settings.weekly_day, settings.digest_timezone)
