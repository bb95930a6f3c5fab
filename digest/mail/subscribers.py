"""The subscriber list: addresses are normalised here, stored by :mod:`digest.store.subscribers`.

Statuses (:class:`digest.model.SubscriberStatus`):

* ``subscribed``: gets the digest;
* ``pending``: asked to subscribe on the web, awaiting the double opt-in
  confirmation (gets no digest);
* ``unsubscribed``: left; the row is kept so neither an import nor
  DIGEST_RECIPIENTS subscribes the address again (only an explicit
  ``resubscribe=True`` or a confirmed opt-in does);
* ``bounced``: the server refused the address for good (a 5xx to RCPT, or a
  bounce message), or deferred it for BOUNCE_SOFT_DAYS: skipped like
  unsubscribed; :func:`reactivate` (or ``resubscribe=True``, or a confirmed
  opt-in) subscribes it again.

Every function takes the normalised or raw address (it is normalised here)
and the current time; each call is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Literal

from digest.addresses import clean_name, normalize_address
from digest.model import SubscriberStatus
from digest.store import subscribers as stored
from digest.store.database import Store
from digest.store.subscribers import Choices, Subscriber, SubscribeReport

SUBSCRIBED = SubscriberStatus.SUBSCRIBED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
PENDING = SubscriberStatus.PENDING
BOUNCED = SubscriberStatus.BOUNCED
STATUSES = tuple(status.value for status in SubscriberStatus)  # plain text, for click.Choice

Outcome = Literal["added", "subscribed", "unchanged", "kept-unsubscribed"]

__all__ = [
    "BOUNCED",
    "PENDING",
    "STATUSES",
    "SUBSCRIBED",
    "UNSUBSCRIBED",
    "Choices",
    "Outcome",
    "SubscribeReport",
    "Subscriber",
    "add_pending",
    "confirm",
    "confirm_once",
    "count_by_status",
    "forget",
    "get_subscriber",
    "list_subscribers",
    "reactivate",
    "resubscribe_unchanged",
    "set_choices",
    "subscribe",
    "subscribe_many",
    "unsubscribe",
]


def subscribe(store: Store, address: str, now: datetime, *, name: str | None = None,
              source: str = "cli", resubscribe: bool = False) -> Outcome:
    """Subscribe one address; an unsubscribed one stays so unless `resubscribe`."""
    report = subscribe_many(store, [(address, name)], now, source=source,
                            resubscribe=resubscribe)
    if report.added:
        return "added"
    if report.subscribed:
        return "subscribed"
    if report.kept_unsubscribed:
        return "kept-unsubscribed"
    return "unchanged"


def subscribe_many(store: Store, entries: Iterable[tuple[str, str | None]], now: datetime, *,
                   source: str, resubscribe: bool = False,
                   choices: Choices | Mapping[str, Choices] | None = None) -> SubscribeReport:
    """Subscribe (address, name) pairs in one transaction; duplicates are ignored.

    `choices`: topics and cadence for every address (Choices), or per
    normalised address (a mapping); None leaves existing subscribers' as they are.
    """
    wanted: dict[str, str | None] = {}
    duplicates: list[str] = []
    for raw, name in entries:
        address = normalize_address(raw)
        if address in wanted:
            duplicates.append(address)
            continue
        wanted[address] = clean_name(name)
    per_address = (dict.fromkeys(wanted, choices) if isinstance(choices, Choices)
                   else dict(choices or {}))
    return stored.subscribe_many(store, wanted, duplicates, now, source=source,
                                 resubscribe=resubscribe, choices=per_address)


def set_choices(store: Store, address: str, choices: Choices) -> bool:
    """Save an address's topics and cadence; False if it is not on the list."""
    return stored.set_choices(store, normalize_address(address), choices)


def unsubscribe(store: Store, address: str, now: datetime) -> bool:
    """Unsubscribe an address; True if it was subscribed or pending.

    An unknown address is recorded as unsubscribed, so a later import or
    DIGEST_RECIPIENTS does not subscribe it.
    """
    return stored.unsubscribe(store, normalize_address(address), now)


def add_pending(store: Store, address: str, now: datetime, *, name: str | None = None,
                source: str = "web", choices: Choices | None = None) -> bool:
    """Record a web sign-up awaiting confirmation.

    True if a confirmation mail should be sent (the address is new, pending, or
    had unsubscribed); False if it is already subscribed.
    """
    return stored.add_pending(store, normalize_address(address), clean_name(name), now, source,
                              choices)


def confirm(store: Store, address: str, now: datetime) -> bool:
    """Confirm a pending sign-up; True if the address is subscribed afterwards.

    An address that unsubscribed after asking, or was never recorded, is not
    subscribed by an old confirmation link.
    """
    return stored.confirm(store, normalize_address(address), now)


def confirm_once(store: Store, address: str, now: datetime) -> tuple[bool, bool]:
    """Confirm a pending sign-up: (this call subscribed it, subscribed afterwards).

    Of two confirmations at once, exactly one gets True first (compare-and-set).
    """
    return stored.confirm_once(store, normalize_address(address), now)


def resubscribe_unchanged(store: Store, address: str, seen: datetime, now: datetime) -> bool:
    """Subscribe again an unsubscribed address unchanged since `seen` (its updated_at as
    read); True if this call did (of two at once, one)."""
    return stored.resubscribe_unchanged(store, normalize_address(address), seen, now)


def forget(store: Store, address: str) -> bool:
    """Delete an address from the list entirely (e.g. a typo); True if it was there."""
    return stored.forget(store, normalize_address(address))


def get_subscriber(store: Store, address: str) -> Subscriber | None:
    return stored.get_subscriber(store, normalize_address(address))


def list_subscribers(store: Store, status: str | None = None) -> list[Subscriber]:
    """Subscribers in address order, optionally only those with one status."""
    return stored.list_subscribers(store, status)


def reactivate(store: Store, address: str, now: datetime) -> bool:
    """Subscribe a bounced address again; True if it was bounced."""
    return stored.reactivate(store, normalize_address(address), now)


def count_by_status(store: Store) -> dict[str, int]:
    counts = stored.count_by_status(store)
    return {status: counts.get(status, 0) for status in STATUSES}
