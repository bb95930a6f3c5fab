"""The subscriber list in the state store (table ``subscribers``): the SQL behind
:mod:`digest.mail.subscribers`, which normalises addresses and names first.

Each function is one transaction (or one read) and takes addresses already
normalised. Statuses are :class:`digest.model.SubscriberStatus`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.model import Cadence, SubscriberStatus
from digest.store.database import Store
from digest.store.schema import subscribers
from digest.store.timestamps import from_iso, iso, optional, stamp

SUBSCRIBED = SubscriberStatus.SUBSCRIBED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
PENDING = SubscriberStatus.PENDING
BOUNCED = SubscriberStatus.BOUNCED
_CHUNK = 500


@dataclass(frozen=True)
class Subscriber:
    address: str
    name: str | None
    status: SubscriberStatus
    source: str
    created_at: datetime
    updated_at: datetime
    bounces: int = 0  # bounces recorded: refusals, deferrals, bounce messages
    last_bounce: str | None = None  # the last one's reply or report
    soft_bounce_since: datetime | None = None  # deferred since then, no success in between
    topics: tuple[str, ...] = ()  # tag slugs; none: everything
    cadence: Cadence = Cadence.EVERY


@dataclass(frozen=True)
class Choices:
    """What a subscriber reads: topics (sorted tag slugs; none: everything) and cadence."""

    topics: tuple[str, ...] = ()
    cadence: Cadence = Cadence.EVERY
    # The ones given: an address already on the list keeps the other (a new one gets its
    # default). `subscribers add --cadence weekly` must not reset anyone's topics.
    given: frozenset[str] = frozenset(("topics", "cadence"))

    def values(self) -> dict[str, str]:
        """Both columns, for a new row."""
        return {"topics": ",".join(self.topics), "cadence": self.cadence.value}

    def changes(self) -> dict[str, str]:
        """The columns to set on a row already there: the given ones."""
        return {column: value for column, value in self.values().items()
                if column in self.given}


@dataclass(frozen=True)
class SubscribeReport:
    """What a bulk subscribe did, address by address."""

    added: tuple[str, ...] = ()
    subscribed: tuple[str, ...] = ()  # were pending (or unsubscribed, with resubscribe)
    unchanged: tuple[str, ...] = ()  # already subscribed, or duplicates in the input
    kept_unsubscribed: tuple[str, ...] = ()
    kept_bounced: tuple[str, ...] = ()  # bounced: only `reactivate` or resubscribe


def subscribe_many(store: Store, wanted: dict[str, str | None], duplicates: Sequence[str],
                   now: datetime, *, source: str, resubscribe: bool,
                   choices: dict[str, Choices] | None = None) -> SubscribeReport:
    """Subscribe address -> name (normalised, unique) in one transaction.

    `choices` (address -> Choices) are set on the addresses subscribed or
    already subscribed; the others keep theirs.
    """
    stamp = iso(now)
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = list(duplicates)
    kept: list[str] = []
    bounced: list[str] = []
    with store.transaction() as conn:
        existing = _statuses(conn, list(wanted))
        rows = []
        for address, name in wanted.items():
            status = existing.get(address)
            if status is None:
                added.append(address)
                rows.append({"address": address, "name": name, "status": SUBSCRIBED.value,
                             "source": source, "created_at": stamp, "updated_at": stamp,
                             **(choices or {}).get(address, Choices()).values()})
            elif status == SUBSCRIBED:
                unchanged.append(address)
            elif status == UNSUBSCRIBED and not resubscribe:
                kept.append(address)
            elif status == BOUNCED and not resubscribe:
                bounced.append(address)
            else:
                changed.append(address)
        if rows:
            conn.execute(subscribers.insert(), rows)
        for start in range(0, len(changed), _CHUNK):
            conn.execute(subscribers.update()
                         .where(subscribers.c.address.in_(changed[start:start + _CHUNK]))
                         .values(status=SUBSCRIBED.value, updated_at=stamp,
                                 soft_bounce_since=None))
        for address in [*changed, *unchanged]:
            update = choices[address].changes() if choices and address in choices else {}
            if update:
                conn.execute(subscribers.update().where(subscribers.c.address == address)
                             .values(**update))
    return SubscribeReport(tuple(added), tuple(changed), tuple(unchanged), tuple(kept),
                           tuple(bounced))


def record_new(store: Store, rows: dict[str, tuple[str | None, SubscriberStatus]],
               now: datetime, *, source: str, choices: dict[str, Choices] | None = None
               ) -> tuple[str, ...]:
    """Record address -> (name, status) for addresses not yet known; the ones recorded."""
    stamp = iso(now)
    with store.transaction() as conn:
        known = _statuses(conn, list(rows))
        new = [a for a in rows if a not in known]
        if new:
            conn.execute(subscribers.insert(), [
                {"address": a, "name": rows[a][0], "status": rows[a][1].value,
                 "source": source, "created_at": stamp, "updated_at": stamp,
                 **(choices or {}).get(a, Choices()).values()} for a in new])
    return tuple(new)


def unsubscribe(store: Store, address: str, now: datetime) -> bool:
    """Unsubscribe; True if it was subscribed or pending (an unknown one is recorded)."""
    stamp = iso(now)
    with store.transaction() as conn:
        changed = conn.execute(
            subscribers.update()
            .where(subscribers.c.address == address,
                   subscribers.c.status != UNSUBSCRIBED.value)
            .values(status=UNSUBSCRIBED.value, updated_at=stamp)).rowcount
        if changed:
            return True
        if not _statuses(conn, [address]):
            conn.execute(subscribers.insert().values(
                address=address, name=None, status=UNSUBSCRIBED.value, source="unsubscribe",
                created_at=stamp, updated_at=stamp))
    return False


def add_pending(store: Store, address: str, name: str | None, now: datetime,
                source: str, choices: Choices | None = None) -> bool:
    """Record a sign-up awaiting confirmation; False if the address is already subscribed."""
    stamp = iso(now)
    chosen = (choices or Choices()).values()
    with store.transaction() as conn:
        status = _statuses(conn, [address]).get(address)
        if status == SUBSCRIBED:
            return False
        if status is None:
            conn.execute(subscribers.insert().values(
                address=address, name=name, status=PENDING.value, source=source,
                created_at=stamp, updated_at=stamp, **chosen))
        else:
            conn.execute(subscribers.update().where(subscribers.c.address == address)
                         .values(status=PENDING.value, updated_at=stamp,
                                 **(choices or Choices()).changes()))
    return True


def confirm(store: Store, address: str, now: datetime) -> bool:
    """Subscribe a pending address; True if it is subscribed afterwards."""
    return confirm_once(store, address, now)[1]


def confirm_once(store: Store, address: str, now: datetime) -> tuple[bool, bool]:
    """Subscribe a pending address: (this call subscribed it, it is subscribed afterwards).

    The change is a compare-and-set (``WHERE status = 'pending'``), the first
    write of its transaction: of two confirmations at the same moment exactly
    one sees it happen, so exactly one welcome mail is queued.
    """
    with store.transaction() as conn:
        changed = bool(conn.execute(subscribers.update()
                                    .where(subscribers.c.address == address,
                                           subscribers.c.status == PENDING.value)
                                    .values(status=SUBSCRIBED.value,
                                            updated_at=iso(now))).rowcount)
        return changed, _statuses(conn, [address]).get(address) == SUBSCRIBED


def resubscribe_unchanged(store: Store, address: str, seen: datetime, now: datetime) -> bool:
    """Subscribe an unsubscribed address whose row was last changed at `seen` (as read
    before); True if this call did (compare-and-set on status and updated_at)."""
    with store.transaction() as conn:
        return bool(conn.execute(
            subscribers.update()
            .where(subscribers.c.address == address,
                   subscribers.c.status == UNSUBSCRIBED.value,
                   subscribers.c.updated_at == iso(seen))
            .values(status=SUBSCRIBED.value, updated_at=iso(now),
                    soft_bounce_since=None)).rowcount)


def set_choices(store: Store, address: str, choices: Choices) -> bool:
    """Save what a known address reads; False if the address is not on the list."""
    with store.transaction() as conn:
        return bool(conn.execute(subscribers.update().where(subscribers.c.address == address)
                                 .values(**choices.changes())).rowcount)


def forget(store: Store, address: str) -> bool:
    with store.transaction() as conn:
        return bool(conn.execute(
            subscribers.delete().where(subscribers.c.address == address)).rowcount)


def get_subscriber(store: Store, address: str) -> Subscriber | None:
    with store.reading() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.address == address)).first()
    return _from_row(row._mapping) if row else None


def list_subscribers(store: Store, status: str | None = None) -> list[Subscriber]:
    """Subscribers in address order, optionally only those with one status."""
    query = sa.select(subscribers).order_by(subscribers.c.address)
    if status is not None:
        query = query.where(subscribers.c.status == str(status))
    with store.reading() as conn:
        return [_from_row(row._mapping) for row in conn.execute(query)]


def count_by_status(store: Store) -> dict[str, int]:
    query = sa.select(subscribers.c.status, sa.func.count()).group_by(subscribers.c.status)
    with store.reading() as conn:
        return {status: int(n) for status, n in conn.execute(query)}


def subscribed_addresses(conn: Connection) -> list[str]:
    """Addresses that get the digest, in a stable order (inside a store transaction)."""
    query = (sa.select(subscribers.c.address).where(subscribers.c.status == SUBSCRIBED.value)
             .order_by(subscribers.c.address))
    return [row[0] for row in conn.execute(query)]


def reactivate(store: Store, address: str, now: datetime) -> bool:
    """A bounced address subscribed again (its bounce count kept); False if not bounced."""
    with store.transaction() as conn:
        return bool(conn.execute(
            subscribers.update()
            .where(subscribers.c.address == address, subscribers.c.status == BOUNCED.value)
            .values(status=SUBSCRIBED.value, soft_bounce_since=None,
                    updated_at=iso(now))).rowcount)


def hard_bounce(conn: Connection, address: str, now: datetime, reply: str) -> bool:
    """Inside a transaction: count a bounce; a subscribed (or pending) address becomes
    bounced. True if its status changed."""
    _count(conn, address, reply)
    return _mark_bounced(conn, address, now)


def soft_bounce(conn: Connection, address: str, now: datetime, reply: str,
                limit: timedelta | None) -> bool:
    """Inside a transaction: count a deferral and note since when the address is
    deferred; after `limit` of that (None: never) it becomes bounced, True returned."""
    _count(conn, address, reply)
    conn.execute(subscribers.update()
                 .where(subscribers.c.address == address,
                        subscribers.c.soft_bounce_since.is_(None))
                 .values(soft_bounce_since=stamp(now)))
    since = optional(conn.execute(sa.select(subscribers.c.soft_bounce_since)
                                  .where(subscribers.c.address == address)).scalar())
    if limit is None or since is None or now - since < limit:
        return False
    return _mark_bounced(conn, address, now)


def _mark_bounced(conn: Connection, address: str, now: datetime) -> bool:
    return bool(conn.execute(
        subscribers.update()
        .where(subscribers.c.address == address,
               subscribers.c.status.in_((SUBSCRIBED.value, PENDING.value)))
        .values(status=BOUNCED.value, soft_bounce_since=None, updated_at=iso(now))).rowcount)


def record_report(store: Store, address: str, now: datetime, kind: str, note: str) -> str | None:
    """A returned message about `address` (a known subscriber), in one transaction.

    kind "permanent": counted, bounced; "temporary": counted; "complaint":
    counted, unsubscribed. The status afterwards, or None for an unknown address.
    """
    with store.transaction() as conn:
        return record_report_in(conn, address, now, kind, note)


def record_report_in(conn: Connection, address: str, now: datetime, kind: str,
                     note: str) -> str | None:
    """record_report() inside the caller's transaction."""
    if address not in _statuses(conn, [address]):
        return None
    _count(conn, address, note)
    if kind == "permanent":
        _mark_bounced(conn, address, now)
    elif kind == "complaint":
        conn.execute(subscribers.update()
                     .where(subscribers.c.address == address,
                            subscribers.c.status != UNSUBSCRIBED.value)
                     .values(status=UNSUBSCRIBED.value, soft_bounce_since=None,
                             updated_at=iso(now)))
    return _statuses(conn, [address])[address]


def clear_soft_bounce(store: Store, address: str) -> None:
    """The server accepted a message for `address`: it is no longer being deferred."""
    with store.transaction() as conn:
        conn.execute(subscribers.update().where(subscribers.c.address == address)
                     .values(soft_bounce_since=None))


def _count(conn: Connection, address: str, reply: str) -> None:
    conn.execute(subscribers.update().where(subscribers.c.address == address)
                 .values(bounces=subscribers.c.bounces + 1, last_bounce=reply[:1000]))


def _statuses(conn: Connection, addresses: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(addresses), _CHUNK):
        chunk = addresses[start:start + _CHUNK]
        query = sa.select(subscribers.c.address, subscribers.c.status).where(
            subscribers.c.address.in_(chunk))
        found.update({address: status for address, status in conn.execute(query)})
    return found


def _from_row(row: sa.RowMapping) -> Subscriber:
    return Subscriber(address=row["address"], name=row["name"],
                      status=SubscriberStatus(row["status"]), source=row["source"],
                      created_at=from_iso(row["created_at"]),
                      updated_at=from_iso(row["updated_at"]),
                      bounces=int(row["bounces"] or 0), last_bounce=row["last_bounce"],
                      soft_bounce_since=optional(row["soft_bounce_since"]),
                      topics=tuple(t for t in (row["topics"] or "").split(",") if t),
                      cadence=Cadence(row["cadence"] or Cadence.EVERY.value))
