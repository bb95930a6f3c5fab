"""Site pages as bytes: the index, archive pages and one page per article.

Templates (TEMPLATES_DIR, falling back to the built-in ones):

* ``index.html``   gets ``site``, ``entries`` (newest first) and ``page``
  (``number``: 0 for the front page; ``older_url`` / ``newer_url``); the front
  page shows a subscribe form when ``site.subscribe_url`` is set (SUBSCRIBE_FORM);
* ``article.html`` gets ``site``, ``entry``, ``body`` (sanitized HTML) and ``tags``
  (``name`` and ``url`` of each tag's page);
* ``tag.html`` and ``tags.html``: see :mod:`digest.publish.tags`;
* ``feed.html`` gets ``site`` and ``entries`` (newest first): the feed as a page, with
  the subscribe instructions and the feed's address to copy;
* ``style.css`` and ``feed.xsl`` are copied as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jinja2
from markupsafe import Markup

from digest.errors import TemplateError
from digest.model import Entry, tag_path
from digest.model import SiteInfo as SiteInfo  # moved: the web layer shows it too
from digest.templates import render

STATIC_FILES = ("style.css", "feed.xsl")


@dataclass(frozen=True)
class PageInfo:
    number: int  # 0: the front page; n: archive page n (oldest is 1)
    older_url: str | None
    newer_url: str | None


def index_page(env: jinja2.Environment, site: SiteInfo, entries: Sequence[Entry],
               page: PageInfo) -> bytes:
    return render(env, "index.html", {"site": site, "entries": entries, "page": page}) \
        .encode("utf-8")


def feed_page(env: jinja2.Environment, site: SiteInfo, entries: Sequence[Entry]) -> bytes:
    """The main feed as a page, for browsers (`digest serve` answers it for feed.atom)."""
    return render(env, "feed.html", {"site": site, "entries": entries}).encode("utf-8")


def article_page(env: jinja2.Environment, site: SiteInfo, entry: Entry, body_html: str) -> bytes:
    # body_html was sanitized by the reader; Markup tells Jinja not to escape it again.
    tags = [{"name": tag, "url": site.url + tag_path(tag)} for tag in entry.tags]
    context = {"site": site, "entry": entry, "body": Markup(body_html),  # noqa: S704
               "tags": tags}
    return render(env, "article.html", context).encode("utf-8")


def static_file(env: jinja2.Environment, name: str) -> bytes:
    loader = env.loader
    assert loader is not None
    try:
        source, _, _ = loader.get_source(env, name)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {name} not found",
                            "restore it in TEMPLATES_DIR or use the built-in templates") from exc
    return source.encode("utf-8")
