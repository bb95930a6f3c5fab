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

from digest.model import ID_NAMESPACE, Entry, SiteInfo, tag_path, tag_slug
from digest.publish import feeds
from digest.publish.output import Generation
from digest.templates import render

INDEX = "tags/index.html"


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


def write(env: jinja2.Environment, gen: Generation, site: SiteInfo, meta: feeds.FeedMeta,
          entries: list[Entry], content_of: Callable[[Entry], str | None], max_items: int,
          url: Callable[[str], str]) -> dict[Tag, list[Entry]]:
    """Every tag's page and feeds, and the tags index (only when some article has a tag).

    Returns each tag with its entries, newest first."""
    tagged = collect(entries, url)
    if not tagged:
        return tagged
    for tag, listed in tagged.items():
        path = f"tags/{tag.slug}"
        gen.write(f"{path}.html", render(env, "tag.html", {
            "site": site, "tag": tag, "entries": listed}).encode("utf-8"))
        tag_meta = replace(
            meta, feed_id=tag_feed_id(meta.feed_id, tag.slug), title=f"{meta.title}: {tag.name}",
            subtitle=f"Articles tagged {tag.name}", home_url=tag.url, atom_url=tag.atom_url,
            rss_url=tag.atom_url, json_url=tag.json_url)
        items = [feeds.FeedItem(e, content_of(e)) for e in listed[:max_items]]
        gen.write(f"{path}.atom", feeds.atom(tag_meta, items, tag.atom_url))
        gen.write(f"{path}.json", feeds.json_feed(tag_meta, items))
    gen.write(INDEX, render(env, "tags.html", {"site": site, "tags": list(tagged)})
              .encode("utf-8"))
    return tagged


def tag_feed_id(site_feed_id: str, slug: str) -> str:
    return "urn:uuid:" + str(uuid.uuid5(ID_NAMESPACE, f"tag:{site_feed_id}:{slug}"))
