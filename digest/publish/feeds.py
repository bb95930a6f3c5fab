"""Feeds as bytes: Atom 1.0 (feedgen), RSS 2.0 (feedgen) and JSON Feed 1.1.

Nothing here touches the clock or the disk: the same entries give the same
bytes, so an unchanged site re-publishes byte-identical feeds.

Archives follow RFC 5005 (archived feeds): older entries live in fixed pages
of FEED_MAX_ITEMS entries counted from the oldest, so a new article never
shifts them; each page links to its neighbours with ``prev-archive`` /
``next-archive`` and to the subscription document with ``current``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from digest import __version__
from digest.errors import ArticleError
from digest.model import ID_NAMESPACE, Enclosure, Entry
from digest.publish.sanitize import has_xml_illegal
from digest.settings import Settings

HISTORY_NS = "http://purl.org/syndication/history/1.0"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FeedMeta:
    """What every feed document says about the site."""

    feed_id: str
    title: str
    subtitle: str
    author: str
    language: str
    home_url: str
    atom_url: str
    rss_url: str
    json_url: str


@dataclass(frozen=True)
class FeedItem:
    entry: Entry
    content_html: str | None  # absolute-URL, sanitized HTML; None in archive pages


@dataclass(frozen=True)
class ArchiveLinks:
    """RFC 5005 links of one Atom document (absolute URLs, or None)."""

    prev_archive: str | None
    next_archive: str | None = None
    current: str | None = None  # set only on archive documents


def feed_id(settings: Settings, remembered: str | None = None) -> str:
    """FEED_ID, else the id remembered from the first publish, else one made from BASE_URL."""
    if settings.feed_id:
        return settings.feed_id
    return remembered or "urn:uuid:" + str(uuid.uuid5(ID_NAMESPACE, "feed:" + settings.site_url))


def feed_meta(settings: Settings, fid: str) -> FeedMeta:
    return FeedMeta(
        feed_id=fid, title=settings.site_title, subtitle=settings.site_subtitle,
        author=settings.site_author, language=settings.site_language, home_url=settings.site_url,
        atom_url=settings.url("feed.atom"), rss_url=settings.url("feed.rss"),
        json_url=settings.url("feed.json"),
    )


class _ArchiveMarker(BaseExtension):  # type: ignore[misc]
    """Adds <fh:archive/> to an Atom archive document."""

    def extend_ns(self) -> dict[str, str]:
        return {"fh": HISTORY_NS}

    def extend_atom(self, feed: Any) -> Any:
        etree.SubElement(feed, f"{{{HISTORY_NS}}}archive")
        return feed


def newest_update(items: Sequence[FeedItem]) -> datetime:
    return max((item.entry.updated for item in items), default=EPOCH)


def atom(meta: FeedMeta, items: Sequence[FeedItem], self_url: str,
         links: ArchiveLinks | None = None, stylesheet: str | None = None) -> bytes:
    """An Atom 1.0 document; `stylesheet` is the (relative) URL of an XSLT for browsers."""
    fg = _generator(meta, items)
    fg.link(href=self_url, rel="self", type="application/atom+xml")
    fg.link(href=meta.home_url, rel="alternate", type="text/html")
    if links is not None:
        if links.current:
            fg.link(href=links.current, rel="current", type="application/atom+xml")
        if links.prev_archive:
            fg.link(href=links.prev_archive, rel="prev-archive", type="application/atom+xml")
        if links.next_archive:
            fg.link(href=links.next_archive, rel="next-archive", type="application/atom+xml")
        if links.current:
            fg.register_extension("fh", _ArchiveMarker, None, atom=True, rss=False)
    for item in items:
        fe = fg.add_entry(order="append")
        _fill_entry(fe, item, meta)
    data: bytes = fg.atom_str(pretty=True, encoding="UTF-8")
    if stylesheet:
        declaration, _, rest = data.partition(b"\n")
        pi = f'<?xml-stylesheet type="text/xsl" href="{stylesheet}"?>'.encode()
        data = declaration + b"\n" + pi + b"\n" + rest
    return data


def rss(meta: FeedMeta, items: Sequence[FeedItem]) -> bytes:
    """An RSS 2.0 document of the same entries."""
    fg = _generator(meta, items)
    fg.link(href=meta.rss_url, rel="self", type="application/rss+xml")
    fg.link(href=meta.home_url, rel="alternate")  # feedgen uses the last link as <link>
    fg.description(meta.subtitle or meta.title)
    fg.lastBuildDate(newest_update(items))
    for item in items:
        fe = fg.add_entry(order="append")
        _fill_entry(fe, item, meta)
        fe.guid(item.entry.id, permalink=False)
    result: bytes = fg.rss_str(pretty=True, encoding="UTF-8")
    return result


def json_feed(meta: FeedMeta, items: Sequence[FeedItem]) -> bytes:
    """A JSON Feed 1.1 document of the same entries."""
    document: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": meta.title,
        "home_page_url": meta.home_url,
        "feed_url": meta.json_url,
        "description": meta.subtitle,
        "language": meta.language,
        "authors": [{"name": meta.author}],
    }
    document["items"] = [_json_record(item) for item in items]
    # Compact: indenting makes json use its pure-Python encoder, several times slower, for
    # documents feed readers parse and people rarely read (the feed page is for them).
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def check_item(meta: FeedMeta, item: FeedItem) -> None:
    """Build this one item as the Atom feed would, or raise ArticleError.

    The fields were cleaned when read; this is the safety net for whatever still
    breaks the XML library, run on each article as it is read (and by `digest
    check`), so one such article is refused alone instead of failing the publish.
    The Atom entry alone is built: it hands lxml every string the RSS item and the
    JSON Feed record carry (title, link, id, summary, content, tags, enclosure, and
    the author), and encoding JSON to UTF-8 fails only on lone surrogates, which
    lxml refuses too; so it refuses what any of the three would, at a third of the
    cost (tests/publish/test_feed_check.py holds it to building all three).

    Most items are plainly fine: no XML-illegal character in any string the entry
    hands lxml, an id and a title, dates with a time zone. Those skip the build
    (a tenth of the cost); any other is built (tests/publish/test_fast_paths.py
    holds the shortcut to the build).
    """
    if not _plainly_fits(item):
        _build_entry(meta, item)


def _plainly_fits(item: FeedItem) -> bool:
    """Whether building the item's Atom entry surely succeeds; False means "build it to see"."""
    entry = item.entry
    try:
        if not (entry.id and entry.title and entry.published.tzinfo is not None
                and entry.updated.tzinfo is not None):
            return False
        enclosure = entry.enclosure
        strings = "\n".join((entry.id, entry.title, entry.url, entry.author, entry.summary,
                             item.content_html or "", *entry.tags,
                             *((enclosure.url, enclosure.type, str(enclosure.length)) if enclosure else ())))
    except (TypeError, AttributeError):  # not the types an Entry holds: let the build say
        return False
    return not has_xml_illegal(strings)


def _build_entry(meta: FeedMeta, item: FeedItem) -> None:
    """Build the item's Atom entry, or raise ArticleError saying why it cannot be."""
    try:
        fe = FeedEntry()
        _fill_entry(fe, item, meta)
        fe.atom_entry()
    except (ValueError, TypeError, etree.LxmlError) as exc:
        raise ArticleError(item.entry.key, f"cannot be put in a feed ({exc})",
                           "remove unusual characters or markup from its title, summary "
                           "and text") from exc


def _json_record(item: FeedItem) -> dict[str, Any]:
    entry = item.entry
    record: dict[str, Any] = {
        "id": entry.id,
        "url": entry.url,
        "title": entry.title,
        "summary": entry.summary,
        "date_published": entry.published.isoformat(),
        "date_modified": entry.updated.isoformat(),
        "authors": [{"name": entry.author}],
    }
    if item.content_html is not None:
        record["content_html"] = item.content_html
    else:
        record["content_text"] = entry.summary
    if entry.tags:
        record["tags"] = list(entry.tags)
    if entry.image:
        record["image"] = entry.image
    if entry.enclosure is not None:
        record["attachments"] = [{"url": entry.enclosure.url, "mime_type": entry.enclosure.type,
                                  "size_in_bytes": entry.enclosure.length}]
    return record


def _generator(meta: FeedMeta, items: Sequence[FeedItem]) -> FeedGenerator:
    fg = FeedGenerator()
    fg.id(meta.feed_id)
    fg.title(meta.title)
    if meta.subtitle:
        fg.subtitle(meta.subtitle)
    fg.author({"name": meta.author})
    fg.language(meta.language)
    fg.generator("digest", version=__version__)
    fg.updated(newest_update(items))
    return fg


def _fill_entry(fe: Any, item: FeedItem, meta: FeedMeta) -> None:
    entry = item.entry
    fe.id(entry.id)
    fe.title(entry.title)
    fe.link(href=entry.url, rel="alternate", type="text/html")
    fe.published(entry.published)
    fe.updated(entry.updated)
    fe.author({"name": entry.author})
    for tag in entry.tags:
        fe.category(term=tag, label=tag)
    if entry.summary:
        fe.summary(entry.summary)
    if item.content_html is not None:
        fe.content(item.content_html, type="html")
    elif not entry.summary:
        fe.summary(entry.title)
    if entry.enclosure is not None:
        _enclose(fe, entry.enclosure)


class _AtomEnclosure(BaseEntryExtension):  # type: ignore[misc]
    """Writes <link rel="enclosure" ...>: feedgen 1.0 drops the rel of entry links in Atom."""

    enclosure: Enclosure

    def extend_atom(self, entry: Any) -> Any:
        etree.SubElement(entry, "link", href=self.enclosure.url, rel="enclosure",
                         type=self.enclosure.type, length=str(self.enclosure.length))
        return entry


def _enclose(fe: Any, enclosure: Enclosure) -> None:
    """RSS <enclosure> (feedgen's own), and Atom's link rel="enclosure" (the extension)."""
    alternate = fe.link()[0]
    fe.enclosure(enclosure.url, str(enclosure.length), enclosure.type)  # sets RSS's
    fe.link(alternate, replace=True)  # keeps RSS's; Atom gets the link from the extension
    fe.register_extension("digest_enclosure", _AtomEnclosure, atom=True, rss=False)
    fe.digest_enclosure.enclosure = enclosure
