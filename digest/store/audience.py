"""Who gets which articles in a new edition: topics, cadence and each subscriber's watermark.

The invariant: each article reaches each subscriber at most once. An edition
still carries "the articles new since the last edition" (each article in one
edition); what one *delivery* carries is fixed when its row is made, in the
transaction that creates the edition (:meth:`digest.store.outbox.Outbox._create`):

* every subscriber has a watermark, ``subscribers.served_edition``: the last
  edition whose articles were given to them (or passed over: not their
  topics). A delivery made in edition N carries the articles of editions
  after the watermark, up to N, that match the subscriber's topics (none:
  everything); the watermark becomes N in the same transaction. So no
  article can be planned twice for one address, and a resumed edition sends
  the same articles with the same Message-ID (the list is in the row).
* cadence ``every``: due in every edition. ``weekly``: due in the first
  edition made on or after the start of WEEKLY_DAY (in DIGEST_TIMEZONE), once
  a week (the next edition, if none is made that day); until then their
  watermark stays, so that message gathers the week.
* a due subscriber whose topics match nothing new gets no delivery row (and
  their watermark still moves on).
* addresses that are not subscribed move on with every edition: someone
  subscribing again gets what is new from then on, not the archive.
* a subscriber whose watermark is NULL (subscribed since the last edition,
  or never served) starts after the last edition made before they were
  added.

The list of a delivery is stored as JSON in ``deliveries.articles``; NULL
when it is exactly its edition's articles (the common case, and the rows
made before topics existed).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.model import Cadence, DigestItem, StoredArticle, SubscriberStatus, tag_slug
from digest.store.database import Store
from digest.store.schema import articles, deliveries, edition_articles, editions, subscribers
from digest.store.timestamps import from_iso

_SUBSCRIBED = SubscriberStatus.SUBSCRIBED.value
_WEEKLY = Cadence.WEEKLY.value
_CHUNK = 500


@dataclass(frozen=True)
class Schedule:
    """When weekly subscribers are due: in the first edition made on or after the start of
    `weekly_day` (0 = Monday, in `zone`) each week; normally on that day, else (no edition
    that day) in the next one."""

    weekly_day: int = 0
    zone: tzinfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def week_start(self, moment: datetime) -> datetime:
        """The start (midnight, local) of the last `weekly_day` at or before `moment`."""
        local = moment.astimezone(self.zone)
        day = local.date() - timedelta(days=(local.weekday() - self.weekly_day) % 7)
        return datetime.combine(day, time(), tzinfo=self.zone)


@dataclass(frozen=True)
class Planned:
    """A delivery to make: the recipient and its articles (None: the edition's own)."""

    recipient: str
    articles: tuple[str, ...] | None


@dataclass(frozen=True)
class Plan:
    deliveries: tuple[Planned, ...]
    due: tuple[str, ...]  # subscribed addresses whose watermark moves to this edition


@dataclass(frozen=True)
class _Candidate:
    key: str
    edition: int
    published: datetime
    tags: frozenset[str]


def article_tags(article: StoredArticle) -> list[str]:
    """The tag slugs of an article, as stored with its edition."""
    return sorted({tag_slug(tag) for tag in article.tags})


def topics_text(topics: Sequence[str]) -> str:
    """Topics as stored: sorted, unique, comma separated ('' for everything)."""
    return ",".join(sorted(set(topics)))


def topics_of(text: str | None) -> tuple[str, ...]:
    return tuple(t for t in (text or "").split(",") if t)


def plan(conn: Connection, number: int, chosen: Sequence[StoredArticle], now: datetime,
         schedule: Schedule, force: bool = False) -> Plan:
    """Who gets what in edition `number` (not yet written), carrying `chosen`; reads only.

    With `force`, every due subscriber gets a delivery, even one with no article.
    """
    made = [(from_iso(created), int(ident)) for ident, created in conn.execute(
        sa.select(editions.c.id, editions.c.created_at).where(editions.c.id < number))]
    made.sort()
    made_at = {ident: created for created, ident in made}
    rows = [_reader(r.address, r.topics or "", r.cadence, r.served_edition,
                    from_iso(r.created_at), made, made_at)
            for r in conn.execute(
                sa.select(subscribers.c.address, subscribers.c.topics, subscribers.c.cadence,
                          subscribers.c.served_edition, subscribers.c.created_at)
                .where(subscribers.c.status == _SUBSCRIBED)
                .order_by(subscribers.c.address))]
    week_start = schedule.week_start(now)
    own = tuple(a.key for a in chosen)
    candidates = [_Candidate(a.key, number, a.published, frozenset(article_tags(a)))
                  for a in chosen]
    lowest = min((r.served for r in rows), default=number)
    if lowest < number - 1:
        candidates += _earlier(conn, lowest, number)
    cache: dict[tuple[str, int], tuple[str, ...]] = {}
    planned: list[Planned] = []
    due: list[str] = []
    for row in rows:
        served = row.served
        # Weekly: due unless served (or, never served, added) since this week's start.
        if row.cadence == _WEEKLY and row.since >= week_start:
            continue
        due.append(row.address)
        group = (row.topics, served)
        keys = cache.get(group)
        if keys is None:
            keys = cache[group] = _pick(candidates, served, frozenset(topics_of(row.topics)))
        if keys or force:
            planned.append(Planned(row.address, None if keys == own else keys))
    return Plan(tuple(planned), tuple(due))


def preview(store: Store, select: Callable[[Iterable[StoredArticle], Collection[str], datetime],
                                           list[StoredArticle]],
            articles: Iterable[StoredArticle], number: int, now: datetime, schedule: Schedule,
            force: bool = False) -> tuple[list[StoredArticle], Plan]:
    """What edition `number` would carry and who would get what, if made now; reads only."""
    with store.reading() as conn:
        carried = {row[0] for row in conn.execute(sa.select(edition_articles.c.article_key))}
        chosen = select(articles, carried, now)
        return chosen, plan(conn, number, chosen, now, schedule, force)


def open_plan(store: Store, edition_id: int) -> Plan:
    """The deliveries of an open edition still to do, with their article lists."""
    to_do = ("pending", "sending", "unknown")
    with store.reading() as conn:
        rows = conn.execute(sa.select(deliveries.c.recipient, deliveries.c.articles)
                            .where(deliveries.c.edition_id == edition_id,
                                   deliveries.c.status.in_(to_do))
                            .order_by(deliveries.c.recipient)).all()
    return Plan(tuple(Planned(r.recipient, keys_of(r.articles)) for r in rows), ())


def apply(conn: Connection, number: int, chosen_plan: Plan) -> None:
    """Move the watermarks: the due subscribers' and every address not subscribed."""
    conn.execute(subscribers.update().where(subscribers.c.status != _SUBSCRIBED)
                 .values(served_edition=number))
    due = list(chosen_plan.due)
    for start in range(0, len(due), _CHUNK):
        conn.execute(subscribers.update()
                     .where(subscribers.c.address.in_(due[start:start + _CHUNK]))
                     .values(served_edition=number))


def articles_value(planned: Planned) -> str | None:
    return None if planned.articles is None else json.dumps(list(planned.articles))


def keys_of(value: str | None) -> tuple[str, ...] | None:
    """deliveries.articles read back."""
    return None if value is None else tuple(json.loads(value))


def items_by_key(store: Store, keys: Sequence[str]) -> dict[str, DigestItem]:
    """The snapshots of articles taken when their editions were made."""
    found: dict[str, DigestItem] = {}
    wanted = sorted(set(keys))
    with store.reading() as conn:
        for start in range(0, len(wanted), _CHUNK):
            for a in conn.execute(sa.select(edition_articles).where(
                    edition_articles.c.article_key.in_(wanted[start:start + _CHUNK]))):
                found[a.article_key] = DigestItem(
                    slug=a.slug, title=a.title, summary=a.summary, author=a.author,
                    published=from_iso(a.published), image=a.image)
    return found


def published_topics(store: Store) -> list[str]:
    """The tag slugs of published articles, sorted (the choices of the manage page)."""
    found: set[str] = set()
    with store.reading() as conn:
        for (text,) in conn.execute(sa.select(articles.c.tags)
                                    .where(articles.c.status == "published")):
            found.update(tag_slug(tag) for tag in json.loads(text))
    return sorted(found)


@dataclass(frozen=True)
class _Reader:
    address: str
    topics: str
    cadence: str
    served: int  # the watermark
    since: datetime  # when that edition was made; never served: when the address was added


def _reader(address: str, topics: str, cadence: str, watermark: int | None, added: datetime,
            made: Sequence[tuple[datetime, int]], made_at: dict[int, datetime]) -> _Reader:
    """A subscriber as planning sees it. A NULL watermark: the last edition made before the
    address was added (or 0). `made`: (created_at, number) of the editions, in time order."""
    if watermark is None:
        before = bisect.bisect_left(made, (added, -1))
        return _Reader(address, topics, cadence, made[before - 1][1] if before else 0, added)
    return _Reader(address, topics, cadence, int(watermark),
                   made_at.get(int(watermark), added))


def _earlier(conn: Connection, lowest: int, number: int) -> list[_Candidate]:
    query = (sa.select(edition_articles.c.article_key, edition_articles.c.edition_id,
                       edition_articles.c.published, edition_articles.c.tags)
             .where(edition_articles.c.edition_id > lowest,
                    edition_articles.c.edition_id < number))
    return [_Candidate(r.article_key, int(r.edition_id), from_iso(r.published),
                       frozenset(json.loads(r.tags))) for r in conn.execute(query)]


def _pick(candidates: Sequence[_Candidate], served: int, topics: frozenset[str]
          ) -> tuple[str, ...]:
    """Keys after edition `served` matching `topics`, newest first (ties by key: the order
    of digest.mail.edition.select_articles)."""
    picked = [c for c in candidates if c.edition > served and (not topics or c.tags & topics)]
    picked.sort(key=lambda c: c.key)
    picked.sort(key=lambda c: c.published, reverse=True)
    return tuple(c.key for c in picked)
