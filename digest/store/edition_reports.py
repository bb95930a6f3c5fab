"""How editions went, read-only: history, one edition's problems and recipients, progress.

For `digest history`, `digest status`, bounce handling and the leader of
`digest run` (how many deliveries a new sender could claim now). Editions and
deliveries are written by :mod:`digest.store.outbox` and :mod:`digest.store.claims`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from digest.model import DeliveryStatus, EditionStatus
from digest.store.claims import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    UNCONFIRMED,
    UNKNOWN,
    may_claim,
)
from digest.store.database import Store
from digest.store.outbox import OPEN
from digest.store.owners import dead_owners, owner_name
from digest.store.schema import deliveries, editions
from digest.store.timestamps import from_iso as unstamp
from digest.store.timestamps import optional


@dataclass(frozen=True)
class EditionSummary:
    id: int
    status: EditionStatus
    created_at: datetime
    finished_at: datetime | None
    article_count: int
    recipient_count: int
    sent: int
    failed: int
    skipped: int
    pending: int  # pending or being sent
    unknown: int = 0  # reply lost: unknown (one more try to come) or unconfirmed


@dataclass(frozen=True)
class Problem:
    """A delivery of an edition that the server refused or deferred, with its reply."""

    recipient: str
    status: DeliveryStatus  # failed; pending (deferred); unknown or unconfirmed
    attempts: int
    updated_at: datetime
    reply: str


def history(store: Store, limit: int = 20) -> list[EditionSummary]:
    """The last `limit` editions, newest first, with their delivery counts."""
    d = deliveries.c
    counted = (sa.select(
        d.edition_id,
        sa.func.sum(sa.case((d.status == SENT, 1), else_=0)).label("sent"),
        sa.func.sum(sa.case((d.status == FAILED, 1), else_=0)).label("failed"),
        sa.func.sum(sa.case((d.status == SKIPPED, 1), else_=0)).label("skipped"),
        sa.func.sum(sa.case((d.status.in_((PENDING, SENDING)), 1), else_=0)).label("pending"),
        sa.func.sum(sa.case((d.status.in_((UNKNOWN, UNCONFIRMED)), 1), else_=0)).label("unknown"),
    ).group_by(d.edition_id).subquery())
    query = (sa.select(editions, counted.c.sent, counted.c.failed, counted.c.skipped,
                       counted.c.pending, counted.c.unknown)
             .select_from(editions.outerjoin(counted, counted.c.edition_id == editions.c.id))
             .order_by(editions.c.id.desc()).limit(limit))
    with store.reading() as conn:
        rows = conn.execute(query).all()
    return [EditionSummary(
        id=r.id, status=EditionStatus(r.status), created_at=unstamp(r.created_at),
        finished_at=optional(r.finished_at),
        article_count=r.article_count, recipient_count=r.recipient_count,
        sent=int(r.sent or 0), failed=int(r.failed or 0), skipped=int(r.skipped or 0),
        pending=int(r.pending or 0), unknown=int(r.unknown or 0)) for r in rows]


def problems(store: Store, edition_id: int) -> list[Problem]:
    """The edition's deliveries that failed (at send time or bounced later), are deferred,
    got no reply, or were reported later, with the reply."""
    d = deliveries.c
    query = (sa.select(d.recipient, d.status, d.attempts, d.updated_at, d.reply)
             .where(d.edition_id == edition_id,
                    sa.or_(d.status.in_((FAILED, UNKNOWN, UNCONFIRMED)),
                           # deferred; or sent, then reported delayed or a complaint
                           sa.and_(d.status.in_((PENDING, SENT)), d.reply.is_not(None))))
             .order_by(d.status, d.recipient))
    with store.reading() as conn:
        return [Problem(r.recipient, DeliveryStatus(r.status), r.attempts,
                        unstamp(r.updated_at), r.reply or "") for r in conn.execute(query)]


def edition_recipients(store: Store, edition_id: int) -> tuple[str, list[str]] | None:
    """The uid of an edition and its recipients; None if there is no such edition."""
    with store.reading() as conn:
        uid = conn.execute(sa.select(editions.c.uid).where(editions.c.id == edition_id)).scalar()
        if uid is None:
            return None
        return str(uid), [row[0] for row in conn.execute(
            sa.select(deliveries.c.recipient).where(deliveries.c.edition_id == edition_id))]


def edition_exists(store: Store, edition_id: int) -> bool:
    with store.reading() as conn:
        return conn.execute(sa.select(editions.c.id).where(editions.c.id == edition_id)
                            ).first() is not None


@dataclass(frozen=True)
class EditionProgress:
    """Where an edition's delivery stands, and which senders hold claims on it."""

    id: int
    status: EditionStatus
    recipient_count: int
    sent: int
    pending: int  # waiting to be claimed (deferred ones included)
    claimed: tuple[tuple[str, int], ...]  # (holder, as owner_name() says it; rows held)
    unknown: int  # reply lost: unknown (one more try to come) or unconfirmed
    failed: int
    skipped: int

    @property
    def sending(self) -> int:
        return sum(count for _holder, count in self.claimed)


def progress(store: Store) -> list[EditionProgress]:
    """The editions still being delivered, oldest first, else the last one made (if any)."""
    d = deliveries.c
    with store.reading() as conn:
        ids = [row[0] for row in conn.execute(
            sa.select(editions.c.id).where(editions.c.status == OPEN).order_by(editions.c.id))]
        if not ids:
            last = conn.execute(sa.select(sa.func.max(editions.c.id))).scalar()
            ids = [] if last is None else [int(last)]
        found = []
        for edition_id in ids:
            row = conn.execute(sa.select(editions).where(editions.c.id == edition_id)).one()
            counts: dict[str, int] = {}
            claimed: list[tuple[str, int]] = []
            for status, owner, n in conn.execute(
                    sa.select(d.status, d.claimed_by, sa.func.count())
                    .where(d.edition_id == edition_id)
                    .group_by(d.status, d.claimed_by)):
                counts[status] = counts.get(status, 0) + int(n)
                if status == SENDING:
                    claimed.append((owner_name(owner), int(n)))
            found.append(EditionProgress(
                id=row.id, status=EditionStatus(row.status), recipient_count=row.recipient_count,
                sent=counts.get(SENT, 0), pending=counts.get(PENDING, 0),
                claimed=tuple(sorted(claimed)),
                unknown=counts.get(UNKNOWN, 0) + counts.get(UNCONFIRMED, 0),
                failed=counts.get(FAILED, 0), skipped=counts.get(SKIPPED, 0)))
    return found


def claimable(store: Store, now: datetime) -> int:
    """Deliveries of the open editions that a new sender could claim now."""
    with store.reading() as conn:
        ids = [row[0] for row in conn.execute(
            sa.select(editions.c.id).where(editions.c.status == OPEN))]
        return sum(int(conn.execute(
            sa.select(sa.func.count()).select_from(deliveries)
            .where(deliveries.c.edition_id == edition_id,
                   may_claim(now, dead_owners(conn, edition_id), ""))).scalar_one())
            for edition_id in ids)
