"""A sender's claims on deliveries: take a batch, keep the lease, settle each one, give back the rest.

Senders *claim* an edition's deliveries and mark each one sent only after
the server accepted it. Concurrency (several ``digest send`` at once, or
several nodes on one PostgreSQL database) is settled by compare-and-set
UPDATEs, each the first write of its transaction:

* claiming: ``UPDATE deliveries SET status = 'sending', claimed_by = me,
  claimed_until = lease WHERE status = 'pending' ...``; rows whose claim
  expired, or whose claimer was a process on this host that is no longer
  running (:func:`digest.store.owners.dead_owners`), can be claimed again;
* settling: every write on a claimed row checks ``claimed_by = me``.

On PostgreSQL a claim is one statement, ``UPDATE ... WHERE recipient IN
(SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``: nodes claiming at once take
disjoint batches without waiting for one another. ``claimed_by`` names the
holder (:func:`digest.store.owners.new_owner`) for `digest status`.

Delivery statuses (:class:`digest.model.DeliveryStatus`): ``pending``
(``claimed_until`` then means "not before"), ``sending``, ``sent``, ``failed``,
``skipped`` (unsubscribed meanwhile),
``unknown`` (the reply to the end of data was lost: the server may have the
message; tried once more from ``claimed_until``, never by ``claimed_by``, the
run that lost it) and ``unconfirmed`` (lost again: never sent again).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.model import DeliveryStatus, SubscriberStatus
from digest.store import audience
from digest.store import subscribers as subscriber_rows
from digest.store.database import Store
from digest.store.owners import dead_owners, new_owner
from digest.store.schema import deliveries, subscribers
from digest.store.timestamps import optional, stamp

log = logging.getLogger("digest.mail")

PENDING, SENDING, SENT = DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SENT
FAILED, SKIPPED = DeliveryStatus.FAILED, DeliveryStatus.SKIPPED
UNKNOWN, UNCONFIRMED = DeliveryStatus.UNKNOWN, DeliveryStatus.UNCONFIRMED
_SUBSCRIBED = SubscriberStatus.SUBSCRIBED.value


@dataclass(frozen=True)
class Delivery:
    """A claimed delivery: who gets which edition, with which Message-ID."""

    edition_id: int
    recipient: str
    name: str | None
    message_id: str
    attempts: int
    lost_replies: int = 0  # earlier attempts whose end-of-data reply was lost
    soft_bounce_since: datetime | None = None  # the recipient is being deferred since then
    articles: tuple[str, ...] | None = None  # the article keys it carries; None: the edition's


class Claims:
    """The deliveries one sender (identified by `owner`) claims, sends and settles."""

    def __init__(self, store: Store, owner: str | None = None,
                 lease: timedelta = timedelta(minutes=5)) -> None:
        self.store = store
        self.owner = owner or new_owner()
        self.lease = lease
        self._claimed_up_to: dict[int, str] = {}  # edition -> last recipient looked at

    # -- claiming -------------------------------------------------------------------

    def claim(self, edition_id: int, now: datetime, limit: int) -> list[Delivery]:
        """Claim up to `limit` deliveries for this sender (none: nothing left to claim).

        Recipients who unsubscribed since the edition was made are marked
        skipped here and not returned.
        """
        return self.claim_batch(edition_id, now, limit)[0]

    def claim_batch(self, edition_id: int, now: datetime, limit: int
                    ) -> tuple[list[Delivery], int]:
        """Like claim(), also saying how many claimed rows were skipped (unsubscribed).

        Deliveries are claimed in recipient order. The search goes on after the
        last recipient this sender claimed (an index range, not a scan over
        every row already sent) and starts again from the first when nothing
        is left after it: deferred rows come due, rows others gave back.
        """
        if self.store.dialect == "postgresql":
            return self._claim_skip_locked(edition_id, now, limit)
        after = self._claimed_up_to.get(edition_id)
        while True:
            query = (sa.select(deliveries.c.recipient)
                     .order_by(deliveries.c.recipient).limit(limit))
            if after is not None:
                query = query.where(deliveries.c.recipient > after)
            with self.store.reading() as conn:
                dead = dead_owners(conn, edition_id)
                candidates = [row[0] for row in conn.execute(
                    query.where(deliveries.c.edition_id == edition_id,
                                may_claim(now, dead, self.owner)))]
            if not candidates:
                if after is None:
                    return [], 0
                after = None  # from the start once more
                continue
            after = self._claimed_up_to[edition_id] = candidates[-1]
            claimed, skipped = self._claim(edition_id, now, candidates, dead)
            if claimed or skipped:
                return claimed, skipped
            # Another sender claimed these between our look and our update: look again.

    def _claim_skip_locked(self, edition_id: int, now: datetime, limit: int
                           ) -> tuple[list[Delivery], int]:
        """PostgreSQL: pick and claim a batch in one statement, ``FOR UPDATE SKIP LOCKED``.

        Rows another node is claiming at this moment are passed over rather
        than waited for, so nodes claiming at once take disjoint batches
        without retries. Same order and resume point as the SQLite path.
        """
        after = self._claimed_up_to.get(edition_id)
        while True:
            with self.store.reading() as conn:
                dead = dead_owners(conn, edition_id)
            picked = (sa.select(deliveries.c.recipient)
                      .where(deliveries.c.edition_id == edition_id,
                             may_claim(now, dead, self.owner))
                      .order_by(deliveries.c.recipient).limit(limit)
                      .with_for_update(skip_locked=True))
            if after is not None:
                picked = picked.where(deliveries.c.recipient > after)
            # A materialized CTE runs once: as an IN (subquery) the planner may rescan it
            # after rows were updated, and the rescan (they no longer match) picks more.
            batch = picked.cte("picked").prefix_with("MATERIALIZED")
            with self.store.transaction() as conn:
                taken = [row[0] for row in conn.execute(
                    deliveries.update()
                    .where(deliveries.c.edition_id == edition_id,
                           deliveries.c.recipient.in_(sa.select(batch.c.recipient)))
                    .values(status=SENDING, claimed_by=self.owner,
                            claimed_until=stamp(now + self.lease))
                    .returning(deliveries.c.recipient))]
                if taken:
                    self._claimed_up_to[edition_id] = max(taken)
                    return self._claimed_rows(conn, edition_id, now, taken)
            if after is None:
                return [], 0
            after = None  # from the start once more

    def _claim(self, edition_id: int, now: datetime, candidates: list[str],
               dead: list[str]) -> tuple[list[Delivery], int]:
        until = stamp(now + self.lease)
        with self.store.transaction() as conn:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.edition_id == edition_id,
                       deliveries.c.recipient.in_(candidates), may_claim(now, dead, self.owner))
                .values(status=SENDING, claimed_by=self.owner, claimed_until=until))
            return self._claimed_rows(conn, edition_id, now, candidates)

    def _claimed_rows(self, conn: Connection, edition_id: int, now: datetime,
                      candidates: list[str]) -> tuple[list[Delivery], int]:
        """The deliveries of `candidates` this sender now holds; unsubscribed ones skipped."""
        rows = conn.execute(
            sa.select(deliveries.c.recipient, deliveries.c.message_id,
                      deliveries.c.attempts, deliveries.c.lost_replies,
                      subscribers.c.status, subscribers.c.name,
                      subscribers.c.soft_bounce_since, deliveries.c.articles)
            .select_from(deliveries.outerjoin(
                subscribers, subscribers.c.address == deliveries.c.recipient))
            .where(deliveries.c.edition_id == edition_id,
                   deliveries.c.recipient.in_(candidates),
                   deliveries.c.claimed_by == self.owner,
                   deliveries.c.status == SENDING)
            .order_by(deliveries.c.recipient)).all()
        gone = [r.recipient for r in rows if r.status != _SUBSCRIBED]
        if gone:
            conn.execute(deliveries.update()
                         .where(deliveries.c.edition_id == edition_id,
                                deliveries.c.recipient.in_(gone))
                         .values(status=SKIPPED, claimed_by=None, claimed_until=None,
                                 updated_at=stamp(now),
                                 reply=sa.func.coalesce(
                                     sa.select(subscribers.c.status)
                                     .where(subscribers.c.address == deliveries.c.recipient)
                                     .scalar_subquery(), "unsubscribed")))
        claimed = [Delivery(edition_id, r.recipient, r.name, r.message_id, r.attempts,
                            r.lost_replies, optional(r.soft_bounce_since),
                            audience.keys_of(r.articles))
                   for r in rows if r.status == _SUBSCRIBED]
        return claimed, len(gone)

    def renew(self, edition_id: int, now: datetime) -> int:
        """Extend the lease on this sender's claimed rows; how many are still ours."""
        with self.store.transaction() as conn:
            return int(conn.execute(
                deliveries.update()
                .where(deliveries.c.edition_id == edition_id,
                       deliveries.c.claimed_by == self.owner, deliveries.c.status == SENDING)
                .values(claimed_until=stamp(now + self.lease))).rowcount)

    # -- settling -------------------------------------------------------------------

    def mark_sent(self, delivery: Delivery, now: datetime, attempts: int) -> bool:
        """Record that the server accepted the message; False if the claim was lost.

        :class:`digest.store.recorder.Recorder` is a cheaper way to mark many.
        """
        return self._settle(delivery, now, attempts, status=SENT, reply=None)

    def mark_failed(self, delivery: Delivery, now: datetime, attempts: int, reply: str) -> bool:
        return self._settle(delivery, now, attempts, status=FAILED, reply=reply)

    def mark_bounced(self, delivery: Delivery, now: datetime, attempts: int, reply: str) -> bool:
        """A hard bounce: the delivery failed and its recipient becomes bounced, together."""
        with self.store.transaction() as conn:
            done = self._settle_in(conn, delivery, now, attempts, status=FAILED, reply=reply)
            if done:
                subscriber_rows.hard_bounce(conn, delivery.recipient, now, reply)
        return done

    def defer_soft(self, delivery: Delivery, now: datetime, attempts: int, reply: str,
                   not_before: datetime, limit: timedelta, give_up: str | None = None
                   ) -> bool | None:
        """The server deferred the recipient (a 4xx reply): count it on the subscriber.

        Deferred for `limit` without a success in between, the delivery fails
        and the subscriber becomes bounced: True. Else deferred as by defer()
        (or failed with the reply `give_up`, when given): False. None if the
        claim was lost.
        """
        with self.store.transaction() as conn:
            if give_up is not None:
                settled = self._settle_in(conn, delivery, now, attempts, status=FAILED,
                                          reply=give_up)
            else:
                settled = self._settle_in(conn, delivery, now, attempts, status=PENDING,
                                          reply=reply, until=stamp(not_before))
            if not settled:
                return None
            if not subscriber_rows.soft_bounce(conn, delivery.recipient, now, reply, limit):
                return False
            days = limit.total_seconds() / 86400
            spell = f"{days:g} day" + ("" if days == 1 else "s")
            conn.execute(deliveries.update()
                         .where(deliveries.c.edition_id == delivery.edition_id,
                                deliveries.c.recipient == delivery.recipient)
                         .values(status=FAILED, claimed_until=None,
                                 reply=f"deferred for {spell} or more: {reply}"))
        return True

    def clear_soft_bounce(self, address: str) -> None:
        subscriber_rows.clear_soft_bounce(self.store, address)

    def defer(self, delivery: Delivery, now: datetime, attempts: int, reply: str,
              not_before: datetime) -> bool:
        """Give the delivery back, to be tried again from `not_before` (by anyone)."""
        return self._settle(delivery, now, attempts, status=PENDING, reply=reply,
                            until=stamp(not_before))

    def mark_unknown(self, delivery: Delivery, now: datetime, attempts: int, reply: str,
                     not_before: datetime | None) -> bool:
        """The reply to the end of data was lost: the server may have the message.

        With `not_before`, status unknown: tried once more from then, by another
        run (this sender keeps its name on the row and never claims it again).
        Without, status unconfirmed: never sent again. False if the claim was lost.
        """
        final = not_before is None
        with self.store.transaction() as conn:
            done = conn.execute(
                deliveries.update()
                .where(deliveries.c.edition_id == delivery.edition_id,
                       deliveries.c.recipient == delivery.recipient,
                       deliveries.c.claimed_by == self.owner, deliveries.c.status == SENDING)
                .values(status=UNCONFIRMED if final else UNKNOWN,
                        claimed_by=None if final else self.owner,
                        claimed_until=None if not_before is None else stamp(not_before),
                        attempts=deliveries.c.attempts + attempts,
                        lost_replies=deliveries.c.lost_replies + 1,
                        updated_at=stamp(now), reply=reply)).rowcount
        if not done:
            log.warning("delivery of edition %d to %s was taken over by another sender",
                        delivery.edition_id, delivery.recipient)
        return bool(done)

    def release(self, deliveries_: Collection[Delivery], now: datetime) -> int:
        """Give unsent claimed deliveries back untouched (on stop or error)."""
        if not deliveries_:
            return 0
        by_edition: dict[int, list[str]] = {}
        for d in deliveries_:
            by_edition.setdefault(d.edition_id, []).append(d.recipient)
        released = 0
        with self.store.transaction() as conn:
            for edition_id, recipients in by_edition.items():
                for start in range(0, len(recipients), 500):
                    released += int(conn.execute(
                        deliveries.update()
                        .where(deliveries.c.edition_id == edition_id,
                               deliveries.c.recipient.in_(recipients[start:start + 500]),
                               deliveries.c.claimed_by == self.owner,
                               deliveries.c.status == SENDING)
                        .values(status=PENDING, claimed_by=None, claimed_until=None,
                                updated_at=stamp(now))).rowcount)
        return released

    def _settle(self, delivery: Delivery, now: datetime, attempts: int, *, status: str,
                reply: str | None, until: str | None = None) -> bool:
        with self.store.transaction() as conn:
            return self._settle_in(conn, delivery, now, attempts, status=status, reply=reply,
                                   until=until)

    def _settle_in(self, conn: Connection, delivery: Delivery, now: datetime, attempts: int,
                   *, status: str, reply: str | None, until: str | None = None) -> bool:
        done = conn.execute(SETTLE, {
            "p_edition": delivery.edition_id, "p_recipient": delivery.recipient,
            "p_owner": self.owner, "p_status": status, "p_until": until,
            "p_attempts": attempts, "p_now": stamp(now), "p_reply": reply}).rowcount
        if not done:
            log.warning("delivery of edition %d to %s was taken over by another sender",
                        delivery.edition_id, delivery.recipient)
        return bool(done)


# Built once, so the statement that runs after every message is compiled once and cached.
SETTLE = (
    deliveries.update()
    .where(deliveries.c.edition_id == sa.bindparam("p_edition"),
           deliveries.c.recipient == sa.bindparam("p_recipient"),
           deliveries.c.claimed_by == sa.bindparam("p_owner"),
           deliveries.c.status == SENDING)
    .values(status=sa.bindparam("p_status"), claimed_by=None,
            claimed_until=sa.bindparam("p_until", type_=sa.Text),
            attempts=deliveries.c.attempts + sa.bindparam("p_attempts", type_=sa.Integer),
            updated_at=sa.bindparam("p_now"), reply=sa.bindparam("p_reply", type_=sa.Text))
)


def may_claim(now: datetime, dead: Collection[str], owner: str) -> sa.ColumnElement[bool]:
    """The deliveries `owner` may claim at `now`, `dead` being claimers known to be gone."""
    d = deliveries.c
    due = stamp(now)
    pending = sa.and_(d.status == PENDING, sa.or_(d.claimed_until.is_(None),
                                                  d.claimed_until <= due))
    # A lost reply is tried once more, later, and never by the run that lost it.
    unknown = sa.and_(d.status == UNKNOWN, d.claimed_until <= due,
                      sa.or_(d.claimed_by.is_(None), d.claimed_by != owner))
    stale = [d.claimed_until < due]
    if dead:
        stale.append(d.claimed_by.in_(list(dead)))
    return sa.or_(pending, unknown, sa.and_(d.status == SENDING, sa.or_(*stale)))
