"""The listing pages: the front page and its feeds, the fixed archive pages, the tag pages,
and the sitemap.

Archive pages (HTML, and Atom archive documents after RFC 5005) hold only full
chunks of FEED_MAX_ITEMS entries, counted from the oldest; one whose entries
did not change keeps its bytes, known by a signature remembered in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jinja2

from digest.model import Edition, Entry, site_info
from digest.publish import feeds, pages, sharing, tags
from digest.publish.contents import Contents
from digest.publish.output import Generation, place
from digest.publish.sanitize import absolutize
from digest.publish.signatures import Signatures
from digest.publish.workers import Reader, Workers
from digest.settings import Settings

PARALLEL_PAGES_FROM = 40  # archive pages to render before it pays to start reader processes


@dataclass(frozen=True)
class ArchivePage:
    number: int  # 1 is the oldest
    entries: tuple[Entry, ...]  # oldest first
    has_newer: bool

    @property
    def html_path(self) -> str:
        return f"archive/{self.number}.html"

    @property
    def atom_path(self) -> str:
        return f"archive/{self.number}.atom"


def write(env: jinja2.Environment, gen: Generation, workers: Workers, entries: list[Entry],
          contents: Contents, signatures: Signatures, editions: Sequence[Edition]) -> None:
    """Front page, feeds, the fixed archive pages (HTML and Atom) of older entries, and
    the sitemap (which also lists the web copies of the digest `editions`).

    Each listing's signature is recorded in `signatures`, to remember for the next publish.
    """
    settings, meta = workers.job.settings, workers.job.meta
    size = settings.feed_max_items
    complete = len(entries) // size  # archive pages hold only full chunks, oldest first
    changed: list[ArchivePage] = []
    for number in range(1, complete + 1):
        chunk = entries[(number - 1) * size: number * size]
        page = ArchivePage(number, tuple(chunk), has_newer=number < complete)
        if signatures.same(page.html_path, chunk, str(page.has_newer)) \
                and gen.keep(page.html_path) and gen.keep(page.atom_path):
            continue
        changed.append(page)
    for placed in workers.map(_render_archive, changed, PARALLEL_PAGES_FROM):
        for was_changed, nbytes in placed:
            gen.count(was_changed, nbytes)

    newest = entries[::-1][:size]
    front = pages.PageInfo(number=0, newer_url=None,
                           older_url=_archive_url(settings, complete, "html") if complete else None)
    gen.write("index.html", pages.index_page(env, site_info(settings), newest, front))
    gen.write("feed.html", pages.feed_page(env, site_info(settings), newest))

    def content(entry: Entry) -> str | None:
        return contents(entry, absolutize)

    items = [feeds.FeedItem(e, content(e)) for e in newest]
    links = feeds.ArchiveLinks(
        prev_archive=_archive_url(settings, complete, "atom") if complete else None)
    gen.write("feed.atom", feeds.atom(meta, items, meta.atom_url, links, stylesheet="feed.xsl"))
    gen.write("feed.rss", feeds.rss(meta, items))
    gen.write("feed.json", feeds.json_feed(meta, items))
    tagged = tags.write(env, gen, workers, entries, content, contents.version, signatures)
    sharing.write(gen, entries, tagged, settings.url, editions)


def _archive_url(settings: Settings, number: int, ext: str) -> str:
    return settings.url(f"archive/{number}.{ext}")


def _render_archive(reader: Reader, page: ArchivePage) -> list[tuple[bool, int]]:
    """Write one archive page as HTML and as an RFC 5005 Atom archive document."""
    job, env, info = reader.job, reader.env, reader.site
    settings, n = job.settings, page.number
    newest_first = page.entries[::-1]
    html = pages.index_page(env, info, newest_first, pages.PageInfo(
        number=n,
        older_url=_archive_url(settings, n - 1, "html") if n > 1 else None,
        newer_url=_archive_url(settings, n + 1, "html") if page.has_newer else info.url,
    ))
    links = feeds.ArchiveLinks(
        prev_archive=_archive_url(settings, n - 1, "atom") if n > 1 else None,
        next_archive=_archive_url(settings, n + 1, "atom") if page.has_newer else None,
        current=job.meta.atom_url,
    )
    atom = feeds.atom(job.meta, [feeds.FeedItem(e, None) for e in newest_first],
                      _archive_url(settings, n, "atom"), links, stylesheet="../feed.xsl")
    return [(place(job.new_root, job.previous_root, path, data, reader.made), len(data))
            for path, data in ((page.html_path, html), (page.atom_path, atom))]
