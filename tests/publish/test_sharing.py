"""What shared links and search engines see: sitemap, robots.txt, canonical, Open Graph."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import pytest

from digest.publish import sharing
from digest.publish.build import publish
from digest.publish.web_copy import publish_digest_pages
from digest.store.database import Store
from tests.conftest import make_settings, write
from tests.publish.test_assets import NOW, SITE_URL, md, png, run
from tests.publish.test_digest_pages import make_edition

SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


def sitemap(out: Path, name: str = "sitemap.xml") -> dict[str, str]:
    root = ElementTree.parse(out / name).getroot()
    return {u.findtext(f"{SM}loc"): u.findtext(f"{SM}lastmod") for u in root}


def test_sitemap_has_every_page_with_lastmod_from_updated(site: Path) -> None:
    md(site, "a.md", "title: A\nupdated: 2024-02-03T04:05:06+01:00\ntags: [News]\n", "A.")
    md(site, "b.md", "title: B\n", "B.")
    _, settings = run(site)
    urls = sitemap(settings.output_dir)
    assert urls == {
        SITE_URL: "2024-02-03T03:05:06Z",
        f"{SITE_URL}articles/a.html": "2024-02-03T03:05:06Z",
        f"{SITE_URL}articles/b.html": "2024-01-01T00:00:00Z",
        f"{SITE_URL}tags/index.html": "2024-02-03T03:05:06Z",
        f"{SITE_URL}tags/news.html": "2024-02-03T03:05:06Z",
    }
    robots = (settings.output_dir / "robots.txt").read_text()
    assert f"Sitemap: {SITE_URL}sitemap.xml" in robots.splitlines()


def test_a_large_site_gets_a_sitemap_index(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sharing, "PER_FILE", 2)
    for name in "abcd":
        md(site, f"{name}.md", f"title: {name}\n", "Text.")
    _, settings = run(site)
    root = ElementTree.parse(settings.output_dir / "sitemap.xml").getroot()
    assert root.tag == f"{SM}sitemapindex"
    parts = [s.findtext(f"{SM}loc") for s in root]
    assert parts == [f"{SITE_URL}sitemap-{n}.xml" for n in (1, 2, 3)]
    listed: dict[str, str] = {}
    for n in (1, 2, 3):
        listed |= sitemap(settings.output_dir, f"sitemap-{n}.xml")
    assert len(listed) == 5


def test_sitemap_lists_the_web_copies_of_past_digests(site: Path) -> None:
    md(site, "a.md", "title: A\nupdated: 2024-02-03T04:05:06+01:00\n", "A.")
    settings = make_settings(site, BASE_URL=SITE_URL)  # DIGEST_FROM set: digests/index.html
    out = settings.output_dir
    store = Store.open(settings.database_url, site)
    try:
        publish(settings, store, NOW)
        assert (out / "digests/index.html").is_file()  # "no digest sent yet": not listed
        articles = sitemap(out)
        assert not any("digests/" in loc for loc in articles)
        # Two editions, each put online as `digest send` does before its first message.
        first = make_edition(store, datetime.fromisoformat("2026-01-16T07:30:00+01:00"))
        publish_digest_pages(settings, store)
        second = make_edition(store, datetime.fromisoformat("2026-01-23T08:00:00+01:00"),
                              force=True)
        publish_digest_pages(settings, store)
        # The next publish, no article changed, weeks later: lastmod follows the editions.
        report = publish(settings, store, NOW + timedelta(days=30))
    finally:
        store.close()
    assert not report.nothing_changed
    urls = sitemap(out)
    assert urls == articles | {
        f"{SITE_URL}digests/index.html": "2026-01-23T07:00:00Z",
        f"{SITE_URL}digests/{second.id}.html": "2026-01-23T07:00:00Z",
        f"{SITE_URL}digests/{first.id}.html": "2026-01-16T06:30:00Z",
    }
    listed = [loc for loc in urls if "digests/" in loc]
    assert listed == [f"{SITE_URL}digests/{n}.html" for n in ("index", 2, 1)]  # newest first
    for loc in urls:  # every address is a published page
        path = loc.removeprefix(SITE_URL) or "index.html"
        assert (out / path).is_file(), loc


def test_article_page_has_canonical_open_graph_twitter_and_time(site: Path) -> None:
    write(site / "articles/pics/sky.png", png())
    md(site, "sky.md", "title: Sky & Sea\nsummary: Blue \"things\".\n", "![sky](pics/sky.png)")
    _, settings = run(site)
    page = (settings.output_dir / "articles/sky.html").read_text()
    meta = dict(re.findall(r'<meta (?:property|name)="([^"]+)" content="([^"]*)"', page))
    image = f"{SITE_URL}articles/pics/sky.png"
    assert meta["og:title"] == "Sky &amp; Sea"
    assert meta["og:description"] == "Blue &#34;things&#34;."
    assert meta["og:image"] == image  # Twitter cards fall back to the og: tags
    assert meta["twitter:card"] == "summary_large_image"
    assert meta["og:url"] == f"{SITE_URL}articles/sky.html"
    assert f'<link rel="canonical" href="{SITE_URL}articles/sky.html">' in page
    stamp = re.search(r'<time datetime="([^"]+)">', page)
    assert stamp and datetime.fromisoformat(stamp.group(1)).tzinfo is not None
