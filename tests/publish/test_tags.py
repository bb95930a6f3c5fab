"""Tag pages and tag feeds: one page and two feeds per tag, stable slugs, a tags index."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import feedparser
from hypothesis import given
from hypothesis import strategies as st

from digest.model import tag_slug
from digest.publish.reading import slug_problem
from tests.publish.test_assets import SITE_URL, md, run


def tagged_site(site: Path) -> None:
    md(site, "a.md", "title: Alpha\ntags: [Plain Text, News]\n", "First.")
    md(site, "b.md", "title: Beta\ntags: [plain text]\n", "Second.")
    md(site, "c.md", "title: Gamma\ntags: [plain text, C++]\n", "Third.")


def test_every_tag_has_a_page_and_valid_feeds(site: Path) -> None:
    tagged_site(site)
    report, settings = run(site)
    assert not report.problems
    tags = settings.output_dir / "tags"
    assert sorted(p.name for p in tags.iterdir()) == [
        "c-plus-plus.atom", "c-plus-plus.html", "c-plus-plus.json", "index.html",
        "news.atom", "news.html", "news.json", "plain-text.atom", "plain-text.html",
        "plain-text.json"]
    ids = set()
    for slug, titles in (("plain-text", ["Gamma", "Beta", "Alpha"]), ("news", ["Alpha"]),
                         ("c-plus-plus", ["Gamma"])):
        parsed = feedparser.parse((tags / f"{slug}.atom").read_bytes())
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        assert parsed.version == "atom10"
        assert [e.title for e in parsed.entries] == titles
        assert parsed.feed.links[0].href == f"{SITE_URL}tags/{slug}.atom"
        ids.add(parsed.feed.id)
        document = json.loads((tags / f"{slug}.json").read_text())
        assert document["feed_url"] == f"{SITE_URL}tags/{slug}.json"
        assert [i["title"] for i in document["items"]] == titles
    assert len(ids) == 3 and feedparser.parse(
        (settings.output_dir / "feed.atom").read_bytes()).feed.id not in ids


def test_two_spellings_are_one_tag_shown_as_most_articles_write_it(site: Path) -> None:
    tagged_site(site)
    _, settings = run(site)
    page = (settings.output_dir / "tags/plain-text.html").read_text()
    assert "Tagged “plain text”" in page and "3 articles" in page
    index = (settings.output_dir / "tags/index.html").read_text()
    assert re.findall(r'rel="tag" href="([^"]+)">([^<]+)<', index) == [
        (f"{SITE_URL}tags/c-plus-plus.html", "C++"), (f"{SITE_URL}tags/news.html", "News"),
        (f"{SITE_URL}tags/plain-text.html", "plain text")]


def test_tag_page_autodiscovers_its_feed_and_articles_link_to_it(site: Path) -> None:
    tagged_site(site)
    _, settings = run(site)
    page = (settings.output_dir / "tags/news.html").read_text()
    first = re.search(r'<link rel="alternate" type="application/atom\+xml"[^>]*href="([^"]+)"',
                      page)
    assert first and first.group(1) == f"{SITE_URL}tags/news.atom"
    article = (settings.output_dir / "articles/a.html").read_text()
    for url in re.findall(r'rel="tag" href="([^"]+)"', article):
        assert (settings.output_dir / url.removeprefix(SITE_URL)).is_file()


def test_a_tag_no_article_uses_any_more_is_gone(site: Path) -> None:
    tagged_site(site)
    run(site)
    md(site, "a.md", "title: Alpha\ntags: [plain text]\n", "First, edited.")
    _, settings = run(site)
    assert not (settings.output_dir / "tags/news.html").exists()
    assert (settings.output_dir / "tags/plain-text.atom").is_file()


def test_no_tags_no_tag_pages(site: Path) -> None:
    md(site, "a.md", "title: Alpha\n", "First.")
    _, settings = run(site)
    assert not (settings.output_dir / "tags").exists()


@given(st.text(max_size=200))
def test_every_tag_gets_a_url_safe_slug(tag: str) -> None:
    slug = tag_slug(tag)
    assert slug_problem(slug) is None and "/" not in slug and len(slug) <= 80


@given(st.text(alphabet=string.printable, max_size=60))
def test_case_and_spacing_never_split_a_tag(tag: str) -> None:
    assert tag_slug(tag) == tag_slug(tag.swapcase())
    assert tag_slug(tag) == tag_slug(" ".join(tag.split()))


def test_an_edit_that_changes_only_the_text_reaches_the_tag_feeds(site: Path) -> None:
    """A tag whose listing did not change keeps its files; one whose article's text changed
    (same title, summary and explicit `updated`) gets the new text in its feeds."""
    tagged_site(site)
    md(site, "d.md", "title: Delta\nupdated: 2024-02-01\ntags: [News]\n", "Lead.\n\nOld words.")
    run(site)
    md(site, "d.md", "title: Delta\nupdated: 2024-02-01\ntags: [News]\n", "Lead.\n\nNew words!")
    report, settings = run(site)
    assert report.updated == 1
    tags = settings.output_dir / "tags"
    for feed in ("news.atom", "news.json"):
        text = (tags / feed).read_text()
        assert "New words!" in text and "Old words." not in text
    assert "Old words." not in (settings.output_dir / "feed.atom").read_text()
    assert "Gamma" in (tags / "plain-text.atom").read_text()
