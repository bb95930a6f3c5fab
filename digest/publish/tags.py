"""Tag pages and tag feeds: ``tags/<slug>.html`` lists a tag's articles, ``tags/<slug>.atom``
and ``tags/<slug>.json`` are its feeds, ``tags/index.html`` lists the tags.

Spellings of one tag that differ only in case, accents or punctuation share one
slug (:func:`digest.model.tag_slug`) and so one page; the page shows the
spelling most articles use. Each tag feed has its own permanent id, made from
the site's feed id and the slug, so it never changes with the site's URL.

Templates: ``tag.html`` gets ``site``, ``tag`` (name, slug, url, atom_url,
json_url, count) and ``entries`` (newest first); ``tags.html`` gets ``site``
and ``tags`` (by name).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import jinja2

from digest.model import ID_NAMESPACE, Entry, site_info, tag_path, tag_slug
from digest.publish import feeds
from digest.publish.output import Generation, place
from digest.publish.signatures import Signatures
from digest.publish.workers import Reader, Workers
from digest.templates import render

INDEX = "tags/index.html"
PARALLEL_TAGS_FROM = 40  # tags to render before it pays to start reader processes


@dataclass(frozen=True)
class Tag:
    name: str  # the spelling most of its articles use
    slug: str
    url: str
    atom_url: str
    json_url: str
    count: int


def collect(entries: list[Entry], url: Callable[[str], str]) -> dict[Tag, list[Entry]]:
    """Each tag with its entries (newest first), ordered by name."""
    spellings: dict[str, Counter[str]] = {}
    tagged: dict[str, list[Entry]] = {}
    for entry in reversed(entries):  # entries come oldest first
        for name in dict.fromkeys(entry.tags):
            slug = tag_slug(name)
            spellings.setdefault(slug, Counter())[name] += 1
            listed = tagged.setdefault(slug, [])
            if not listed or listed[-1] is not entry:  # two spellings on one article
                listed.append(entry)
    result = {}
    for slug, counts in spellings.items():
        name = min(counts, key=lambda n: (-counts[n], n))
        result[Tag(name, slug, url(tag_path(name)), url(tag_path(name, "atom")),
                   url(tag_path(name, "json")), len(tagged[slug]))] = tagged[slug]
    return dict(sorted(result.items(), key=lambda item: (item[0].name.casefold(), item[0].slug)))


@dataclass(frozen=True)
class _TagJob:
    """One tag's page and feeds to render (picklable: a reader process may do it)."""

    tag: Tag
    entries: tuple[Entry, ...]  # newest first
    contents: tuple[str | None, ...]  # feed contents of the first max_items entries
    meta: feeds.FeedMeta  # the tag feed's


def write(env: jinja2.Environment, gen: Generation, workers: Workers, entries: list[Entry],
          contents: Callable[[Entry], str | None], versions: Callable[[Entry], str],
          signatures: Signatures) -> dict[Tag, list[Entry]]:
    """Every tag's page and feeds, and the tags index (only when some article has a tag).

    A tag whose page and feeds would come out as last time (same signature: the
    settings, its entries, their contents) keeps its files. Returns each tag with its
    entries, newest first."""
    settings, site_meta = workers.job.settings, workers.job.meta
    tagged = collect(entries, settings.url)
    if not tagged:
        return tagged
    size = settings.feed_max_items
    jobs = []
    for tag, listed in tagged.items():
        path = f"tags/{tag.slug}"
        newest = listed[:size]
        versions_now = "\x1c".join(versions(e) for e in newest)
        if signatures.same(f"{path}.html", listed, f"{tag.name}\x1c{versions_now}") \
                and all(gen.keep(f"{path}.{ext}") for ext in ("html", "atom", "json")):
            continue
        tag_meta = replace(
            site_meta, feed_id=tag_feed_id(site_meta.feed_id, tag.slug),
            title=f"{site_meta.title}: {tag.name}", subtitle=f"Articles tagged {tag.name}",
            home_url=tag.url, atom_url=tag.atom_url, rss_url=tag.atom_url, json_url=tag.json_url)
        jobs.append(_TagJob(tag, tuple(listed), tuple(contents(e) for e in newest), tag_meta))
    for placed in workers.map(_render, jobs, PARALLEL_TAGS_FROM):
        for changed, nbytes in placed:
            gen.count(changed, nbytes)
    gen.write(INDEX, render(env, "tags.html",
                            {"site": site_info(settings), "tags": list(tagged)}).encode("utf-8"))
    return tagged


def _render(reader: Reader, job: _TagJob) -> list[tuple[bool, int]]:
    """One tag's page, Atom feed and JSON feed, placed in the new generation."""
    path = f"tags/{job.tag.slug}"
    page = render(reader.env, "tag.html", {"site": reader.site, "tag": job.tag,
                                           "entries": job.entries}).encode("utf-8")
    items = [feeds.FeedItem(e, c) for e, c in zip(job.entries, job.contents, strict=False)]
    made = [(f"{path}.html", page), (f"{path}.atom", feeds.atom(job.meta, items, job.tag.atom_url)),
            (f"{path}.json", feeds.json_feed(job.meta, items))]
    root, previous = reader.job.new_root, reader.job.previous_root
    return [(place(root, previous, name, data, reader.made), len(data)) for name, data in made]


def tag_feed_id(site_feed_id: str, slug: str) -> str:
    return "urn:uuid:" + str(uuid.uuid5(ID_NAMESPACE, f"tag:{site_feed_id}:{slug}"))
