"""Site pages as bytes: the index, archive pages and one page per article.

Templates (TEMPLATES_DIR, falling back to the built-in ones):

* ``index.html``   gets ``site``, ``entries`` (newest first) and ``page``
  (``number``: 0 for the front page; ``older_url`` / ``newer_url``); the front
  page shows a subscribe form when ``site.subscribe_url`` is set (SUBSCRIBE_FORM);
* ``article.html`` gets ``site``, ``entry`` and ``body`` (sanitized HTML);
* ``style.css`` and ``feed.xsl`` are copied as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jinja2
from markupsafe import Markup

from digest.errors import TemplateError
from digest.model import Entry
from digest.settings import Settings
from digest.templates import render

STATIC_FILES = ("style.css", "feed.xsl")


@dataclass(frozen=True)
class SiteInfo:
    title: str
    subtitle: str
    language: str
    url: str  # absolute URL of the front page, with a trailing slash
    atom_url: str
    rss_url: str
    json_url: str
    subscribe_url: str | None = None  # the sign-up form's target; None: no form


def site_info(settings: Settings) -> SiteInfo:
    return SiteInfo(
        title=settings.site_title, subtitle=settings.site_subtitle,
        language=settings.site_language, url=settings.site_url,
        atom_url=settings.url("feed.atom"), rss_url=settings.url("feed.rss"),
        json_url=settings.url("feed.json"),
        subscribe_url=settings.url("subscribe") if settings.subscribe_form else None,
    )


@dataclass(frozen=True)
class PageInfo:
    number: int  # 0: the front page; n: archive page n (oldest is 1)
    older_url: str | None
    newer_url: str | None


def index_page(env: jinja2.Environment, site: SiteInfo, entries: Sequence[Entry],
               page: PageInfo) -> bytes:
    return render(env, "index.html", {"site": site, "entries": entries, "page": page}) \
        .encode("utf-8")


def article_page(env: jinja2.Environment, site: SiteInfo, entry: Entry, body_html: str) -> bytes:
    # body_html was sanitized by the reader; Markup tells Jinja not to escape it again.
    context = {"site": site, "entry": entry, "body": Markup(body_html)}  # noqa: S704
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
