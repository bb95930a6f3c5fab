"""The outbox of the mail stage: :mod:`digest.store.outbox` with the edition policy bound.

Editions carry what :func:`digest.mail.edition.select_articles` chooses; the
bookkeeping (claims, leases, compare-and-set updates) is the store's.
"""

from __future__ import annotations

from datetime import timedelta

from digest.mail.edition import select_articles
from digest.model import Edition
from digest.store import outbox as stored
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
                 lease: timedelta = timedelta(minutes=5)) -> None:
        super().__init__(store, select_articles, owner, lease)
