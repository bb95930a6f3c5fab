"""What search engines and link previews read: ``sitemap.xml`` and ``robots.txt``.

The sitemap lists the front page, every article page (``lastmod`` is the
article's ``updated``, which follows content, never the clock), when there
are tags, the tags index and each tag page (``lastmod``: its newest article)
and, when digest editions were made, the digests index and each edition's web
copy (``lastmod``: when the edition, or for the index the newest one, was made).
Over 50,000 addresses, the limit of one sitemap, ``sitemap.xml`` becomes a
sitemap index of ``sitemap-<n>.xml`` files. ``robots.txt`` allows everything and
names the sitemap; crawlers read it only at the root of a host, so a site under
a path (``https://example.org/news/``) must link it from the root's own robots.txt.

Pages carry the rest (templates): a canonical link, Open Graph and Twitter card
tags (title, the summary as description, the first image) and ``<time datetime>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from digest.model import DIGESTS_INDEX, Edition, Entry, digest_path
from digest.publish.output import Generation
from digest.publish.tags import INDEX as TAGS_INDEX
from digest.publish.tags import Tag

SITEMAP = "sitemap.xml"
ROBOTS = "robots.txt"
PER_FILE = 50_000  # the sitemap protocol's limit of addresses in one file
_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def write(gen: Generation, entries: list[Entry], tagged: dict[Tag, list[Entry]],
          url: Callable[[str], str], editions: Sequence[Edition] = ()) -> None:
    """sitemap.xml (or a sitemap index and its parts) and robots.txt.

    `editions`: the digest editions whose web copies are published (oldest first)."""
    urls = list(_addresses(entries, tagged, url, editions))
    if len(urls) <= PER_FILE:
        gen.write(SITEMAP, _urlset(urls))
    else:
        parts = []
        for number, start in enumerate(range(0, len(urls), PER_FILE), 1):
            chunk = urls[start:start + PER_FILE]
            name = f"sitemap-{number}.xml"
            gen.write(name, _urlset(chunk))
            parts.append((url(name), max(lastmod for _, lastmod in chunk)))
        gen.write(SITEMAP, _document("sitemapindex", "sitemap", parts))
    gen.write(ROBOTS, f"User-agent: *\nAllow: /\n\nSitemap: {url(SITEMAP)}\n".encode())


def _addresses(entries: list[Entry], tagged: dict[Tag, list[Entry]],
               url: Callable[[str], str], editions: Sequence[Edition]
               ) -> Iterable[tuple[str, str]]:
    newest = max((e.updated for e in entries), default=None)
    yield url(""), _w3c(newest)
    for entry in reversed(entries):  # newest first
        yield entry.url, _w3c(entry.updated)
    if tagged:
        yield url(TAGS_INDEX), _w3c(newest)
        for tag, listed in tagged.items():
            yield tag.url, _w3c(max(e.updated for e in listed))
    if editions:  # an edition's page shows what its mail did: its content is as old as it
        yield url(DIGESTS_INDEX), _w3c(max(e.created_at for e in editions))
        for edition in reversed(editions):  # newest first
            yield url(digest_path(edition.id)), _w3c(edition.created_at)


def _w3c(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _urlset(urls: list[tuple[str, str]]) -> bytes:
    return _document("urlset", "url", urls)


def _document(root: str, item: str, urls: list[tuple[str, str]]) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<{root} xmlns="{_NS}">']
    for loc, lastmod in urls:
        modified = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
        lines.append(f"  <{item}><loc>{escape(loc)}</loc>{modified}</{item}>")
    lines.append(f"</{root}>\n")
    return "\n".join(lines).encode("utf-8")
