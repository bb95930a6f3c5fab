"""The subscriber list in the state store.

Statuses:

* ``subscribed``: gets the digest;
* ``pending``: asked to subscribe on the web, awaiting the double opt-in
  confirmation (gets no digest);
* ``unsubscribed``: left; the row is kept so neither an import nor
  DIGEST_RECIPIENTS subscribes the address again (only an explicit
  ``resubscribe=True`` or a confirmed opt-in does).

Every function takes the normalised or raw address (it is normalised here)
and the current time; each call is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.addresses import clean_name, normalize_address
from digest.store.database import Store, from_iso, iso
from digest.store.schema import subscribers

SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
PENDING = "pending"
STATUSES = (SUBSCRIBED, PENDING, UNSUBSCRIBED)

Outcome = Literal["added", "subscribed", "unchanged", "kept-unsubscribed"]
_CHUNK = 500


@dataclass(frozen=True)
class Subscriber:
    address: str
    name: str | None
    status: str
    source: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SubscribeReport:
    """What a bulk subscribe did, address by address."""

    added: tuple[str, ...] = ()
    subscribed: tuple[str, ...] = ()  # were pending (or unsubscribed, with resubscribe)
    unchanged: tuple[str, ...] = ()  # already subscribed, or duplicates in the input
    kept_unsubscribed: tuple[str, ...] = ()


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
                   source: str, resubscribe: bool = False) -> SubscribeReport:
    """Subscribe (address, name) pairs in one transaction; duplicates are ignored."""
    wanted: dict[str, str | None] = {}
    duplicates: list[str] = []
    for raw, name in entries:
        address = normalize_address(raw)
        if address in wanted:
            duplicates.append(address)
            continue
        wanted[address] = clean_name(name)
    stamp = iso(now)
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = list(duplicates)
    kept: list[str] = []
    with store.transaction() as conn:
        existing = _statuses(conn, list(wanted))
        rows = []
        for address, name in wanted.items():
            status = existing.get(address)
            if status is None:
                added.append(address)
                rows.append({"address": address, "name": name, "status": SUBSCRIBED,
                             "source": source, "created_at": stamp, "updated_at": stamp})
            elif status == SUBSCRIBED:
                unchanged.append(address)
            elif status == UNSUBSCRIBED and not resubscribe:
                kept.append(address)
            else:
                changed.append(address)
        if rows:
            conn.execute(subscribers.insert(), rows)
        for start in range(0, len(changed), _CHUNK):
            conn.execute(subscribers.update()
                         .where(subscribers.c.address.in_(changed[start:start + _CHUNK]))
                         .values(status=SUBSCRIBED, updated_at=stamp))
    return SubscribeReport(tuple(added), tuple(changed), tuple(unchanged), tuple(kept))


def unsubscribe(store: Store, address: str, now: datetime) -> bool:
    """Unsubscribe an address; True if it was subscribed or pending.

    An unknown address is recorded as unsubscribed, so a later import or
    DIGEST_RECIPIENTS does not subscribe it.
    """
    address = normalize_address(address)
    stamp = iso(now)
    with store.transaction() as conn:
        changed = conn.execute(
            subscribers.update()
            .where(subscribers.c.address == address, subscribers.c.status != UNSUBSCRIBED)
            .values(status=UNSUBSCRIBED, updated_at=stamp)).rowcount
        if changed:
            return True
        if not _statuses(conn, [address]):
            conn.execute(subscribers.insert().values(
                address=address, name=None, status=UNSUBSCRIBED, source="unsubscribe",
                created_at=stamp, updated_at=stamp))
    return False


def add_pending(store: Store, address: str, now: datetime, *, name: str | None = None,
                source: str = "web") -> bool:
    """Record a web sign-up awaiting confirmation.

    True if a confirmation mail should be sent (the address is new, pending, or
    had unsubscribed); False if it is already subscribed.
    """
    address = normalize_address(address)
    stamp = iso(now)
    with store.transaction() as conn:
        status = _statuses(conn, [address]).get(address)
        if status == SUBSCRIBED:
            return False
        if status is None:
            conn.execute(subscribers.insert().values(
                address=address, name=clean_name(name), status=PENDING, source=source,
                created_at=stamp, updated_at=stamp))
        else:
            conn.execute(subscribers.update().where(subscribers.c.address == address)
                         .values(status=PENDING, updated_at=stamp))
    return True


def confirm(store: Store, address: str, now: datetime) -> bool:
    """Confirm a pending sign-up; True if the address is subscribed afterwards.

    An address that unsubscribed after asking, or was never recorded, is not
    subscribed by an old confirmation link.
    """
    address = normalize_address(address)
    with store.transaction() as conn:
        conn.execute(subscribers.update()
                     .where(subscribers.c.address == address, subscribers.c.status == PENDING)
                     .values(status=SUBSCRIBED, updated_at=iso(now)))
        return _statuses(conn, [address]).get(address) == SUBSCRIBED


def forget(store: Store, address: str) -> bool:
    """Delete an address from the list entirely (e.g. a typo); True if it was there."""
    address = normalize_address(address)
    with store.transaction() as conn:
        return bool(conn.execute(
            subscribers.delete().where(subscribers.c.address == address)).rowcount)


def get_subscriber(store: Store, address: str) -> Subscriber | None:
    address = normalize_address(address)
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.address == address)).first()
    return _from_row(row._mapping) if row else None


def list_subscribers(store: Store, status: str | None = None) -> list[Subscriber]:
    """Subscribers in address order, optionally only those with one status."""
    query = sa.select(subscribers).order_by(subscribers.c.address)
    if status is not None:
        query = query.where(subscribers.c.status == status)
    with store.engine.connect() as conn:
        return [_from_row(row._mapping) for row in conn.execute(query)]


def count_by_status(store: Store) -> dict[str, int]:
    query = sa.select(subscribers.c.status, sa.func.count()).group_by(subscribers.c.status)
    with store.engine.connect() as conn:
        counts = {status: int(n) for status, n in conn.execute(query)}
    return {status: counts.get(status, 0) for status in STATUSES}


def subscribed_addresses(conn: Connection) -> list[str]:
    """Addresses that get the digest, in a stable order (inside a caller's transaction)."""
    query = (sa.select(subscribers.c.address).where(subscribers.c.status == SUBSCRIBED)
             .order_by(subscribers.c.address))
    return [row[0] for row in conn.execute(query)]


def _statuses(conn: Connection, addresses: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(addresses), _CHUNK):
        chunk = addresses[start:start + _CHUNK]
        query = sa.select(subscribers.c.address, subscribers.c.status).where(
            subscribers.c.address.in_(chunk))
        found.update({address: status for address, status in conn.execute(query)})
    return found


def _from_row(row: sa.RowMapping) -> Subscriber:
    return Subscriber(address=row["address"], name=row["name"], status=row["status"],
                      source=row["source"], created_at=from_iso(row["created_at"]),
                      updated_at=from_iso(row["updated_at"]))
