"""Web copies of the digest editions: ``digests/<n>.html`` for each edition made, and
``digests/index.html`` listing them, newest first.

Each digest mail links to its edition's page ("view in browser"), so the page
must be online before the first message of the edition goes out:
:func:`digest.publish.web_copy.publish_digest_pages` writes it right after the
edition is made (``digest send`` and the scheduled send call it), and every
publish renders the pages of all past editions again from the store, so none
is lost.

Templates: ``edition.html`` gets ``site``, ``edition`` (number, date, created,
url, count, older_url, newer_url) and ``articles`` (newest first; each has title,
url, summary, author, published, date and image, all URLs absolute);
``editions.html`` gets ``site`` and ``editions`` (newest first; number, date,
created, url, count and titles, the first three headlines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2

from digest.model import DIGESTS_INDEX, DigestItem, Edition, article_path, digest_path, site_info
from digest.publish.output import Generation
from digest.settings import Settings
from digest.templates import render

TEMPLATES = ("edition.html", "editions.html")


@dataclass(frozen=True)
class EditionInfo:
    number: int
    date: str  # YYYY-MM-DD in DIGEST_TIMEZONE, as the mail's subject shows it
    created: datetime
    url: str
    count: int
    titles: tuple[str, ...]  # its first three headlines, newest first
    older_url: str | None
    newer_url: str | None


def render_pages(env: jinja2.Environment, settings: Settings,
                 editions: Sequence[Edition]) -> dict[str, bytes]:
    """Each edition's page and the index of editions (the index only when there is an
    edition or the site links it: DIGEST_FROM is set)."""
    site = site_info(settings)
    if not editions and site.digests_url is None:
        return {}
    zone = settings.digest_timezone
    numbers = [e.id for e in editions]
    infos: list[EditionInfo] = []
    made: dict[str, bytes] = {}
    for position, edition in enumerate(editions):
        items = sorted(edition.items, key=lambda item: item.published, reverse=True)
        info = EditionInfo(
            number=edition.id, date=edition.created_at.astimezone(zone).date().isoformat(),
            created=edition.created_at, url=settings.url(digest_path(edition.id)),
            count=len(items), titles=tuple(i.title for i in items[:3]),
            older_url=(settings.url(digest_path(numbers[position - 1]))
                       if position > 0 else None),
            newer_url=(settings.url(digest_path(numbers[position + 1]))
                       if position + 1 < len(numbers) else None))
        infos.append(info)
        articles = [_article(settings, item) for item in items]
        made[digest_path(edition.id)] = render(env, "edition.html", {
            "site": site, "edition": info, "articles": articles}).encode("utf-8")
    made[DIGESTS_INDEX] = render(env, "editions.html", {
        "site": site, "editions": infos[::-1]}).encode("utf-8")
    return made


def write(env: jinja2.Environment, gen: Generation, settings: Settings,
          editions: Sequence[Edition]) -> None:
    """Place the digests' pages in a generation being built."""
    for path, data in render_pages(env, settings, editions).items():
        gen.write(path, data)


def _article(settings: Settings, item: DigestItem) -> dict[str, Any]:
    zone = settings.digest_timezone
    image = item.image if not item.image or "://" in item.image else settings.url(item.image)
    return {"title": item.title, "url": settings.url(article_path(item.slug)),
            "summary": item.summary, "author": item.author, "published": item.published,
            "date": item.published.astimezone(zone).date().isoformat(), "image": image or None}
