"""The outbox of the mail stage: :mod:`digest.store.outbox` with the edition policy bound.

Editions carry what :func:`digest.mail.edition.select_articles` chooses; who
gets which of them is :mod:`digest.store.audience` (topics, cadence); the
bookkeeping (claims, leases, compare-and-set updates) is the store's.
"""

from __future__ import annotations

from datetime import timedelta

from digest.mail.edition import select_articles
from digest.model import Edition
from digest.settings import Settings
from digest.store import outbox as stored
from digest.store.audience import Schedule
from digest.store.database import Store
from digest.store.outbox import (
    DONE,
    FAILED,
    OPEN,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    STATUSES,
    TO_DO,
    UNCONFIRMED,
    UNKNOWN,
    Delivery,
    EditionProgress,
    EditionSummary,
    Failure,
    Problem,
    Recorder,
    edition_exists,
    edition_recipients,
    history,
    new_owner,
    owner_name,
    problems,
    progress,
)

__all__ = ["DONE", "FAILED", "OPEN", "PENDING", "SENDING", "SENT", "SKIPPED", "STATUSES", "TO_DO",
           "UNCONFIRMED", "UNKNOWN", "Delivery", "Edition", "EditionProgress", "EditionSummary",
           "Failure", "Outbox", "Problem", "Recorder", "edition_exists", "edition_recipients",
           "history", "new_owner", "owner_name", "problems", "progress"]


class Outbox(stored.Outbox):
    """Edition and delivery bookkeeping for one sender (identified by `owner`)."""

    def __init__(self, store: Store, owner: str | None = None,
                 lease: timedelta = timedelta(minutes=5),
                 schedule: Schedule | None = None) -> None:
        super().__init__(store, select_articles, owner, lease, schedule)


def schedule_of(settings: Settings) -> Schedule:
    """When weekly subscribers are due: WEEKLY_DAY in DIGEST_TIMEZONE."""
    return Schedule(settings.weekly_day, settings.digest_timezone)
