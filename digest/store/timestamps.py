"""The one timestamp codec of the state store: aware datetimes as ISO 8601 text.

Two spellings are written, both read by :func:`from_iso`:

* :func:`iso`: the moment with its own offset (articles, subscribers, job runs,
  schema migrations), as written since the first version;
* :func:`stamp`: UTC with microseconds (editions and deliveries), so text order
  is time order and lease comparisons can run in SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """ISO 8601 text with the moment's own offset."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return moment.isoformat()


def stamp(moment: datetime) -> str:
    """UTC ISO text with microseconds: sorts as text in time order."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to the outbox")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    """The datetime that :func:`iso` or :func:`stamp` wrote."""
    return datetime.fromisoformat(text)


def optional(text: str | None) -> datetime | None:
    return from_iso(text) if text else None


def utcnow() -> datetime:
    return datetime.now(UTC)
