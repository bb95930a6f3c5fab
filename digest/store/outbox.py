"""The outbox: editions and their deliveries in the state store.

Which articles an edition carries is the mail stage's choice
(:func:`digest.mail.edition.select_articles`), given to :class:`Outbox` as
`select`; :class:`digest.mail.outbox.Outbox` binds it.

An edition, its articles and one delivery row per recipient are written in
one transaction before any message leaves. Then senders *claim* deliveries
and mark each one sent only after the server accepted it.

Concurrency (several ``digest send`` at once, or several nodes on one
PostgreSQL database) is settled by compare-and-set UPDATEs, each the first
write of its transaction, so the database serialises them:

* creating an edition: ``UPDATE edition_counter SET last_edition = n + 1
  WHERE last_edition = n``; whoever loses sees the winner's open edition;
* claiming deliveries: ``UPDATE deliveries SET status = 'sending',
  claimed_by = me, claimed_until = lease WHERE status = 'pending' ...``; rows
  whose claim expired, or whose claimer was a process on this host that is no
  longer running, can be claimed again;
* finishing: every write on a claimed row checks ``claimed_by = me``.

On PostgreSQL a claim is one statement, ``UPDATE ... WHERE recipient IN
(SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``: nodes claiming at once take
disjoint batches without waiting for one another. ``claimed_by`` names the
holder (host, PID namespace, PID, a random suffix) for `digest status`.

Delivery statuses (:class:`digest.model.DeliveryStatus`): ``pending``
(``claimed_until`` then means "not before"), ``sending``, ``sent``, ``failed``,
``skipped`` (unsubscribed meanwhile),
``unknown`` (the reply to the end of data was lost: the server may have the
message; tried once more from ``claimed_until``, never by ``claimed_by``, the
run that lost it) and ``unconfirmed`` (lost again: never sent again).
Times are stored as UTC ISO text with microseconds, so text order is time order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from digest.model import (
    DeliveryStatus,
    DigestItem,
    Edition,
    EditionStatus,
    StoredArticle,
    SubscriberStatus,
)
from digest.store import audience
from digest.store import subscribers as subscriber_rows
from digest.store.database import Store, store_error
from digest.store.schema import (
    deliveries,
    edition_articles,
    edition_counter,
    editions,
    subscribers,
)
from digest.store.timestamps import from_iso as unstamp
from digest.store.timestamps import optional, stamp

log = logging.getLogger("digest.mail")

OPEN = EditionStatus.SENDING
DONE = EditionStatus.DONE
PENDING, SENDING, SENT = DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SENT
FAILED, SKIPPED = DeliveryStatus.FAILED, DeliveryStatus.SKIPPED
UNKNOWN, UNCONFIRMED = DeliveryStatus.UNKNOWN, DeliveryStatus.UNCONFIRMED
STATUSES = tuple(status.value for status in DeliveryStatus)
TO_DO = (PENDING, SENDING, UNKNOWN)  # an edition with such deliveries is not finished
_SUBSCRIBED = SubscriberStatus.SUBSCRIBED.value
_CREATE_TRIES = 20

# Which of the given articles the next edition carries, given the keys earlier
# editions carried and the time (digest.mail.edition.select_articles).
Select = Callable[[Iterable[StoredArticle], Collection[str], datetime], list[StoredArticle]]


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
class Failure:
    recipient: str
    reply: str


@dataclass(frozen=True)
class Problem:
    """A delivery of an edition that the server refused or deferred, with its reply."""

    recipient: str
    status: DeliveryStatus  # failed; pending (deferred); unknown or unconfirmed
    attempts: int
    updated_at: datetime
    reply: str


def new_owner() -> str:
    """An id for one sender: host, PID namespace and PID (to spot dead local claimers)."""
    return f"{socket.gethostname()}|{_pid_namespace()}|{os.getpid()}|{uuid.uuid4().hex[:8]}"


class Outbox:
    """Edition and delivery bookkeeping for one sender (identified by `owner`)."""

    def __init__(self, store: Store, select: Select, owner: str | None = None,
                 lease: timedelta = timedelta(minutes=5),
                 schedule: audience.Schedule | None = None) -> None:
        self.store = store
        self.select = select
        self.schedule = schedule or audience.Schedule()
        self.owner = owner or new_owner()
        self.lease = lease
        self._claimed_up_to: dict[int, str] = {}  # edition -> last recipient looked at

    # -- editions -------------------------------------------------------------------

    def open_edition(self) -> Edition | None:
        """The oldest edition still being delivered."""
        with self.store.reading() as conn:
            return _open_edition(conn)

    def last_edition(self) -> int:
        """The number of the last edition made (0 before the first)."""
        with self.store.reading() as conn:
            last = conn.execute(edition_counter.select()).first()
        return last.last_edition if last else 0

    def open_or_create(self, articles: Iterable[StoredArticle], now: datetime,
                       message_id: Callable[[str, str], str], force: bool = False
                       ) -> tuple[Edition | None, bool]:
        """Resume the open edition, or create the next one; (edition, created).

        None when there is nothing to send (no due article and not `force`).
        `message_id(edition_uid, address)` gives each delivery its Message-ID.
        """
        articles = list(articles)
        for _ in range(_CREATE_TRIES):
            with self.store.reading() as conn:
                current = _open_edition(conn)
                if current is not None:
                    return current, False
                seen = conn.execute(sa.select(edition_counter.c.last_edition)
                                    .where(edition_counter.c.id == 1)).scalar_one()
                if not force and not self.select(articles, _carried(conn), now) and \
                        not audience.plan(conn, int(seen) + 1, (), now, self.schedule).deliveries:
                    # These reads are not one snapshot: an edition committed since the
                    # first look may be what carries the articles now. Resume it.
                    current = _open_edition(conn)
                    return current, False
            created = self._create(int(seen), articles, now, message_id, force)
            if created is not None:
                return created, True
        raise RuntimeError("could not create an edition: too much contention")

    def _create(self, seen: int, articles: list[StoredArticle], now: datetime,
                message_id: Callable[[str, str], str], force: bool) -> Edition | None:
        number = seen + 1
        uid = uuid.uuid4().hex[:16]
        with self.store.transaction() as conn:
            won = conn.execute(
                edition_counter.update()
                .where(edition_counter.c.id == 1, edition_counter.c.last_edition == seen)
                .values(last_edition=number)).rowcount
            if not won:
                return None  # another sender made an edition; look again
            chosen = self.select(articles, _carried(conn), now)
            plan = audience.plan(conn, number, chosen, now, self.schedule, force)
            if not chosen and not plan.deliveries and not force:
                # Someone else took the articles between our look and our claim:
                # undo the counter so the numbers stay without gaps.
                conn.execute(edition_counter.update().where(edition_counter.c.id == 1)
                             .values(last_edition=seen))
                return None
            recipients = [p.recipient for p in plan.deliveries]
            created = stamp(now)
            conn.execute(editions.insert().values(
                id=number, uid=uid, status=OPEN, created_at=created, finished_at=None,
                article_count=len(chosen), recipient_count=len(recipients)))
            if chosen:
                conn.execute(edition_articles.insert(), [
                    {"article_key": a.key, "edition_id": number, "position": i, "slug": a.slug,
                     "title": a.title, "summary": a.summary, "author": a.author,
                     "published": stamp(a.published), "image": a.image,
                     "tags": json.dumps(audience.article_tags(a))}
                    for i, a in enumerate(chosen)])
            if recipients:
                conn.execute(deliveries.insert(), [
                    {"edition_id": number, "recipient": p.recipient,
                     "message_id": message_id(uid, p.recipient), "status": PENDING,
                     "attempts": 0, "claimed_by": None, "claimed_until": None,
                     "updated_at": created, "reply": None,
                     "articles": audience.articles_value(p)}
                    for p in plan.deliveries])
            audience.apply(conn, number, plan)
        log.info("created edition %d: %d articles, %d recipients", number, len(chosen),
                 len(recipients))
        return Edition(number, uid, OPEN, unstamp(created),
                       tuple(DigestItem.of(a) for a in chosen), len(recipients))

    def next_items(self, articles: Iterable[StoredArticle], now: datetime) -> list[DigestItem]:
        """What the next new edition would carry (for previews and test sends)."""
        with self.store.reading() as conn:
            carried = _carried(conn)
        return [DigestItem.of(a) for a in self.select(articles, carried, now)]

    def finish(self, edition_id: int, now: datetime) -> bool:
        """Close the edition if no delivery is left to try; True if closed now."""
        open_rows = sa.select(deliveries.c.recipient).where(
            deliveries.c.edition_id == edition_id,
            deliveries.c.status.in_(TO_DO))
        with self.store.transaction() as conn:
            return bool(conn.execute(
                editions.update()
                .where(editions.c.id == edition_id, editions.c.status == OPEN,
                       ~sa.exists(open_rows))
                .values(status=DONE, finished_at=stamp(now))).rowcount)

    # -- deliveries -----------------------------------------------------------------

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
                dead = _dead_owners(conn, edition_id)
                candidates = [row[0] for row in conn.execute(
                    query.where(deliveries.c.edition_id == edition_id,
                                _claimable(now, dead, self.owner)))]
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
                dead = _dead_owners(conn, edition_id)
            picked = (sa.select(deliveries.c.recipient)
                      .where(deliveries.c.edition_id == edition_id,
                             _claimable(now, dead, self.owner))
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
                       deliveries.c.recipient.in_(candidates), _claimable(now, dead, self.owner))
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

    def recorder(self, senders: int = 1) -> Recorder:
        """A cheaper way to mark many deliveries sent, one after the other (see Recorder)."""
        return Recorder(self, senders)

    def mark_sent(self, delivery: Delivery, now: datetime, attempts: int) -> bool:
        """Record that the server accepted the message; False if the claim was lost."""
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
            conn.execute(deliveries.update()
                         .where(deliveries.c.edition_id == delivery.edition_id,
                                deliveries.c.recipient == delivery.recipient)
                         .values(status=FAILED, claimed_until=None,
                                 reply=f"deferred for {days:g} days or more: {reply}"))
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
        done = conn.execute(_SETTLE, {
            "p_edition": delivery.edition_id, "p_recipient": delivery.recipient,
            "p_owner": self.owner, "p_status": status, "p_until": until,
            "p_attempts": attempts, "p_now": stamp(now), "p_reply": reply}).rowcount
        if not done:
            log.warning("delivery of edition %d to %s was taken over by another sender",
                        delivery.edition_id, delivery.recipient)
        return bool(done)

    # -- reports --------------------------------------------------------------------

    def counts(self, edition_id: int) -> dict[str, int]:
        query = (sa.select(deliveries.c.status, sa.func.count())
                 .where(deliveries.c.edition_id == edition_id).group_by(deliveries.c.status))
        with self.store.reading() as conn:
            found = {status: int(n) for status, n in conn.execute(query)}
        return {s: found.get(s, 0) for s in STATUSES}

    def failures(self, edition_id: int) -> list[Failure]:
        query = (sa.select(deliveries.c.recipient, deliveries.c.reply)
                 .where(deliveries.c.edition_id == edition_id, deliveries.c.status == FAILED)
                 .order_by(deliveries.c.recipient))
        with self.store.reading() as conn:
            return [Failure(r, reply or "") for r, reply in conn.execute(query)]


# Built once, so the statement that runs after every message is compiled once and cached.
_SETTLE = (
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

# PostgreSQL: _SETTLE (status sent) for a group of deliveries given as arrays, in one
# statement; RETURNING names the rows marked (the others' claims were lost). Its text
# never changes, so the driver prepares it once.
_SENT_MANY_PG = """
UPDATE deliveries AS d
SET status = %s, claimed_by = NULL, claimed_until = NULL,
    attempts = d.attempts + v.attempts, updated_at = v.updated_at, reply = NULL
FROM unnest(%s::integer[], %s::text[], %s::integer[], %s::text[])
     AS v(edition_id, recipient, attempts, updated_at)
WHERE d.edition_id = v.edition_id AND d.recipient = v.recipient
  AND d.claimed_by = %s AND d.status = %s
RETURNING d.edition_id, d.recipient
"""


class Recorder:
    """Marks deliveries sent for every sender thread of a process: one writer, group commit.

    ``submit()`` queues "this delivery was accepted" and returns a future that
    resolves (True: recorded; False: the claim was lost) once the record is
    committed. One writer thread takes every request queued meanwhile and
    commits them together, in one transaction of the same compare-and-set
    UPDATEs as :meth:`Outbox.mark_sent` (compiled once, run through the
    driver's cursor). So SMTP workers waiting at the same moment share one
    commit (group commit), each record is as durable as its own commit would
    be, and SQLite sees one writer. The connection is opened by the writer at
    its first batch and kept until close().

    On PostgreSQL the group is one statement (:data:`_SENT_MANY_PG`: the same
    compare-and-set over the group's rows as arrays, ``RETURNING`` the rows it
    marked) on a connection in autocommit: one round trip per group, the
    statement's own transaction committed (with the server's
    ``synchronous_commit``) before its reply comes back.

    `senders` is how many threads submit records, each with at most one
    record not yet written (an SMTP worker waits for its record before its
    next message is accepted). With several, the writer holds a group until
    every sender has a record in it, or one of them needs its record now
    (:meth:`hurry`), or `max_wait` has passed since the group's first record:
    records come due well after they are queued (the next message's
    envelope and data go out first), so waiting for the others makes groups
    larger (fewer statements, less work for both sides) without making a
    sender wait longer than one commit. With one sender each record is
    written at once.
    """

    def __init__(self, outbox: Outbox, senders: int = 1, max_wait: float = 0.05) -> None:
        self.outbox = outbox
        self.senders = senders  # may change while running (workers that end)
        self.max_wait = max_wait
        self._engine = outbox.store.engine
        compiled = _SETTLE.compile(dialect=self._engine.dialect)
        self._sql = compiled.string
        self._order = compiled.positiontup  # None: the driver takes named parameters
        # The values fixed in the statement (status, claimed_by), besides ours.
        self._base: dict[str, Any] = dict(compiled.construct_params(dict.fromkeys((
            "p_edition", "p_recipient", "p_owner", "p_status", "p_until", "p_attempts",
            "p_now", "p_reply"))))
        self._pg = self._engine.dialect.name == "postgresql"
        self._conn: Any = None  # the driver's connection, used by the writer thread only
        self._queue: queue.SimpleQueue[_Request | _Hurry | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start = threading.Lock()
        self._closed = False
        self.commits = 0  # transactions committed (fewer than records: group commit)

    def submit(self, delivery: Delivery, now: datetime, attempts: int) -> Future[bool]:
        """Queue the record; the future holds True (recorded), False (claim lost) or the
        StoreError."""
        request = _Request((delivery, now, attempts), Future())
        with self._start:
            if self._closed:
                raise RuntimeError("the recorder is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._serve, name="digest-record",
                                                daemon=True)
                self._writer.start()
            self._queue.put(request)
        return request.future

    def hurry(self, future: Future[bool]) -> None:
        """The sender of `future`'s record needs it now: write its group without waiting."""
        if not future.done():
            self._queue.put(_Hurry(future))

    def mark_sent(self, delivery: Delivery, now: datetime, attempts: int) -> bool:
        """Like Outbox.mark_sent: True if recorded, False if the claim was lost."""
        future = self.submit(delivery, now, attempts)
        self.hurry(future)
        return future.result()

    def mark_sent_many(self, items: Sequence[tuple[Delivery, datetime, int]]) -> list[bool]:
        """Record `items` in one transaction (called by the writer thread)."""
        results: list[bool] = []
        with self.outbox.store.writing():
            try:
                conn = self._open()
                cursor = conn.cursor()
                try:
                    results = (self._sent_many_pg(cursor, items) if self._pg
                               else self._sent_each(cursor, items))
                finally:
                    cursor.close()
                conn.commit()
                self.commits += 1
            except (SQLAlchemyError, self._engine.dialect.loaded_dbapi.Error) as exc:
                self._close_connection()
                raise store_error(exc) from exc
        for (delivery, _now, _attempts), done in zip(items, results, strict=True):
            if not done:
                log.warning("delivery of edition %d to %s was taken over by another sender",
                            delivery.edition_id, delivery.recipient)
        return results

    def close(self) -> None:
        """Finish the queued records, then stop the writer and close its connection."""
        with self._start:
            self._closed = True
            writer = self._writer
            if writer is not None:
                self._queue.put(None)
        if writer is not None:
            writer.join()

    def _serve(self) -> None:
        try:
            stop = False
            while not stop:
                batch, stop = self._collect()
                if not batch:
                    continue
                try:
                    results = self.mark_sent_many([r.item for r in batch])
                except BaseException as exc:  # handed to every waiting sender
                    for request in batch:
                        request.future.set_exception(exc)
                else:
                    for request, done in zip(batch, results, strict=True):
                        request.future.set_result(done)
        finally:
            self._close_connection()

    def _collect(self) -> tuple[list[_Request], bool]:
        """The next group to write (see the class notes), and whether close() was called."""
        batch: list[_Request] = []
        hurried = False
        deadline = 0.0
        while True:
            if not batch:
                item = self._queue.get()
            else:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if hurried or len(batch) >= self.senders or left <= 0:
                        return batch, False
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        return batch, False
            if item is None:
                return batch, True
            if isinstance(item, _Hurry):
                # A hurry for a record written already (in an earlier group) is stale.
                hurried = hurried or any(r.future is item.future for r in batch)
                continue
            if not batch:
                deadline = time.monotonic() + self.max_wait
            batch.append(item)

    def _sent_each(self, cursor: Any, items: Sequence[tuple[Delivery, datetime, int]]
                   ) -> list[bool]:
        """One compare-and-set UPDATE per record (committed together by the caller)."""
        results = []
        for delivery, now, attempts in items:
            values = dict(self._base)
            values.update(p_edition=delivery.edition_id, p_recipient=delivery.recipient,
                          p_owner=self.outbox.owner, p_status=SENT, p_until=None,
                          p_attempts=attempts, p_now=stamp(now), p_reply=None)
            cursor.execute(self._sql, values if self._order is None
                           else [values[name] for name in self._order])
            results.append(bool(cursor.rowcount))
        return results

    def _sent_many_pg(self, cursor: Any, items: Sequence[tuple[Delivery, datetime, int]]
                      ) -> list[bool]:
        """PostgreSQL: the group in one autocommitted statement; which rows it marked."""
        cursor.execute(_SENT_MANY_PG, (
            SENT.value,
            [d.edition_id for d, _now, _attempts in items],
            [d.recipient for d, _now, _attempts in items],
            [attempts for _d, _now, attempts in items],
            [stamp(now) for _d, now, _attempts in items],
            self.outbox.owner, SENDING.value))
        marked = {(int(edition_id), recipient) for edition_id, recipient in cursor.fetchall()}
        return [(d.edition_id, d.recipient) in marked for d, _now, _attempts in items]

    def _open(self) -> Any:
        if self._conn is None:
            conn: Any = self._engine.raw_connection()
            if self._pg:
                # Each group is one statement, committed on its own: no BEGIN, no COMMIT.
                conn.rollback()
                conn.driver_connection.autocommit = True
            self._conn = conn
        return self._conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.rollback()
            if self._pg:
                try:
                    conn.driver_connection.autocommit = False  # back to the pool as it came
                except Exception:  # a broken connection: not reused
                    with contextlib.suppress(Exception):
                        conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()


@dataclass(frozen=True)
class _Request:
    item: tuple[Delivery, datetime, int]
    future: Future[bool]


@dataclass(frozen=True)
class _Hurry:
    future: Future[bool]  # of the record needed now


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
                   _claimable(now, _dead_owners(conn, edition_id), ""))).scalar_one())
            for edition_id in ids)


def owner_name(owner: str | None) -> str:
    """A claimer as people say it: 'pid 4242 on mail-2' (from its new_owner() id)."""
    if not owner:
        return "nobody"
    parts = owner.split("|")
    if len(parts) == 4 and parts[2].isdigit():
        return f"pid {parts[2]} on {parts[0]}"
    return owner


def _open_edition(conn: Connection) -> Edition | None:
    row = conn.execute(sa.select(editions).where(editions.c.status == OPEN)
                       .order_by(editions.c.id).limit(1)).first()
    if row is None:
        return None
    items = tuple(
        DigestItem(slug=a.slug, title=a.title, summary=a.summary, author=a.author,
                   published=unstamp(a.published), image=a.image)
        for a in conn.execute(sa.select(edition_articles)
                              .where(edition_articles.c.edition_id == row.id)
                              .order_by(edition_articles.c.position)))
    return Edition(row.id, row.uid, EditionStatus(row.status), unstamp(row.created_at), items,
                   row.recipient_count)


def _carried(conn: Connection) -> set[str]:
    return {row[0] for row in conn.execute(sa.select(edition_articles.c.article_key))}


def _claimable(now: datetime, dead: Collection[str], owner: str) -> sa.ColumnElement[bool]:
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


def _dead_owners(conn: Connection, edition_id: int) -> list[str]:
    """Claimers on this host (same PID namespace) whose process is gone."""
    owners = [row[0] for row in conn.execute(
        sa.select(deliveries.c.claimed_by).distinct()
        .where(deliveries.c.edition_id == edition_id, deliveries.c.status == SENDING))]
    here = f"{socket.gethostname()}|{_pid_namespace()}|"
    dead = []
    for owner in owners:
        if not owner or not owner.startswith(here) or _pid_namespace() == "?":
            continue
        pid_text = owner[len(here):].split("|", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _alive(int(pid_text)):
            dead.append(owner)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").replace("|", "")
    except OSError:
        return "?"
