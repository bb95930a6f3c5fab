"""The outbox: editions and their deliveries in the state store.

Which articles an edition carries is the mail stage's choice
(:func:`digest.mail.edition.select_articles`), given to :class:`Outbox` as
`select`; :class:`digest.mail.outbox.Outbox` binds it.

An edition, its articles and one delivery row per recipient are written in
one transaction before any message leaves. Then senders claim deliveries and
settle each one (:class:`digest.store.claims.Claims`, which :class:`Outbox`
extends); :mod:`digest.store.recorder` marks many sent at once, and
:mod:`digest.store.edition_reports` reads how editions went.

Concurrency (several ``digest send`` at once, or several nodes on one
PostgreSQL database) is settled by compare-and-set UPDATEs, each the first
write of its transaction, so the database serialises them:

* creating an edition: ``UPDATE edition_counter SET last_edition = n + 1
  WHERE last_edition = n``; whoever loses sees the winner's open edition;
* claiming and settling deliveries: see :mod:`digest.store.claims`;
* finishing: ``UPDATE editions SET status = 'done' WHERE ...`` no delivery is
  left to try.

Times are stored as UTC ISO text with microseconds, so text order is time order.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.model import (
    DeliveryStatus,
    DigestItem,
    Edition,
    EditionStatus,
    StoredArticle,
)
from digest.store import audience
from digest.store.claims import FAILED, PENDING, SENDING, UNKNOWN, Claims
from digest.store.database import Store
from digest.store.schema import (
    deliveries,
    edition_articles,
    edition_counter,
    editions,
)
from digest.store.timestamps import from_iso as unstamp
from digest.store.timestamps import stamp

log = logging.getLogger("digest.mail")

OPEN = EditionStatus.SENDING
DONE = EditionStatus.DONE
STATUSES = tuple(status.value for status in DeliveryStatus)
TO_DO = (PENDING, SENDING, UNKNOWN)  # an edition with such deliveries is not finished
_CREATE_TRIES = 20

# Which of the given articles the next edition carries, given the keys earlier
# editions carried and the time (digest.mail.edition.select_articles).
Select = Callable[[Iterable[StoredArticle], Collection[str], datetime], list[StoredArticle]]


@dataclass(frozen=True)
class Failure:
    recipient: str
    reply: str


class Outbox(Claims):
    """Edition and delivery bookkeeping for one sender (identified by `owner`).

    It makes, resumes and finishes editions; claiming and settling their
    deliveries is :class:`~digest.store.claims.Claims`.
    """

    def __init__(self, store: Store, select: Select, owner: str | None = None,
                 lease: timedelta = timedelta(minutes=5),
                 schedule: audience.Schedule | None = None) -> None:
        super().__init__(store, owner, lease)
        self.select = select
        self.schedule = schedule or audience.Schedule()

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

