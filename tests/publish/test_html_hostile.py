"""Hostile article HTML and fields: one bad article never stops the others.

Control characters that arrive escaped, markup-looking text in code, links that
are no URLs, and pathological nesting, through the CLI and the publish pipeline,
with the feeds read back by feedparser.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.errors import ArticleError
from digest.model import Entry
from digest.publish import feeds
from digest.publish.build import publish
from digest.publish.sanitize import (
    MAX_NESTING,
    absolutize,
    bound_nesting,
    clean_with_filter,
    sanitize,
)
from digest.store.database import Store
from tests.conftest import digest_cli, make_settings, write

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ENV = {"BASE_URL": "https://example.org/news/", "SITE_TITLE": "Example News",
       "DATABASE_URL": "sqlite:///state.sqlite3"}


def md(path: Path, front: str, body: str) -> Path:
    return write(path, f"---\n{front}date: 2024-01-01\n---\n{body}\n")


def feed_entries(output: Path) -> dict[str, feedparser.FeedParserDict]:
    """The Atom feed's entries by title; Atom, RSS and JSON must all parse, with as many items."""
    counts = []
    for name in ("feed.atom", "feed.rss"):
        parsed = feedparser.parse((output / name).read_bytes())
        assert parsed.bozo == 0, (name, parsed.get("bozo_exception"))
        counts.append(len(parsed.entries))
        if name == "feed.atom":
            entries = parsed.entries
    counts.append(len(json.loads((output / "feed.json").read_bytes())["items"]))
    assert counts == [len(entries)] * 3, counts
    return {e.title: e for e in entries}


def test_escaped_control_characters_are_removed_and_check_agrees_with_publish(site: Path) -> None:
    md(site / "articles" / "ctrl.md", 'title: "Ctrl \\x01 title \\uFFFE"\n'
       'summary: "Sum\\x02mary"\nauthor: "Ann\\x1f"\ntags: ["a\\x03", "\\x04"]\n',
       'Body &#x1; text &#xFFFE; and &#1; <a href="a&#x1;b.html" title="&#x2;&#xffff;">l</a>\n\n'
       '<span title="&#x1;">x&#x0B;y</span>')
    write(site / "articles" / "good.txt", "date 2024-01-02 A good article. More.\n")
    check = digest_cli("check", cwd=site, env=ENV)
    publish_run = digest_cli("publish", cwd=site, env=ENV)
    for result in (check, publish_run):
        assert "Traceback" not in result.stderr
        assert result.returncode == 3, result.stderr  # the cleaning is reported, not hidden
        assert "problem: ctrl.md: removed escaped characters XML forbids" in result.stderr
        assert "U+0001" in result.stderr
    assert "published 2 articles" in publish_run.stdout
    entries = feed_entries(site / "public")
    assert set(entries) == {"Ctrl title", "A good article"}
    ctrl = entries["Ctrl title"]
    assert ctrl.summary == "Summary"
    assert [t.term for t in ctrl.tags] == ["a"]
    content = ctrl.content[0].value
    assert "Body" in content and 'href="https://example.org/news/articles/ab.html"' in content
    page = (site / "public" / "articles" / "ctrl.html").read_text(encoding="utf-8")
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", page)


def test_a_title_of_only_control_characters_is_refused_alone(site: Path) -> None:
    md(site / "articles" / "ctrl.md", 'title: "\\x01\\x02"\n', "Text.")
    write(site / "articles" / "good.txt", "date 2024-01-02 A good article. More.\n")
    result = digest_cli("publish", cwd=site, env=ENV)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "problem: ctrl.md: the title has only control characters" in result.stderr
    assert set(feed_entries(site / "public")) == {"A good article"}


def test_an_item_no_feed_can_hold_is_refused_naming_its_file() -> None:
    """The safety net behind the cleaning: a real feedgen/lxml build of the one item."""
    meta = feeds.FeedMeta("urn:x", "T", "", "A", "en", "https://e.org/", "https://e.org/f.atom",
                          "https://e.org/f.rss", "https://e.org/f.json")
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    entry = Entry("dir/bad.md", "urn:uuid:1", "bad", "https://e.org/bad.html", "Bad \x01",
                  moment, moment, "A", (), "")
    with pytest.raises(ArticleError) as caught:
        feeds.check_item(meta, feeds.FeedItem(entry, "<p>x</p>"))
    assert caught.value.path == "dir/bad.md"
    assert "cannot be put in a feed" in caught.value.message
    feeds.check_item(meta, feeds.FeedItem(Entry(*(
        getattr(entry, f) if f != "title" else "Good" for f in Entry.__slots__)), "<p>x</p>"))


def test_links_become_absolute_but_code_is_left_alone(site: Path) -> None:
    md(site / "articles" / "code.md", "title: Code\n",
       'See [rel](page.html), ![img](../i.png) and [frag](#x).\n\n'
       '```html\n<a href="page.html">x</a> <img src="pic.png">\n```\n\n'
       'Inline `<a href="inline.html">` and src="text.png" in plain text.')
    result = digest_cli("publish", cwd=site, env=ENV)
    assert result.returncode == 0, result.stderr
    content = feed_entries(site / "public")["Code"].content[0].value
    assert 'href="https://example.org/news/articles/page.html"' in content
    assert 'src="https://example.org/news/i.png"' in content
    assert 'href="https://example.org/news/articles/code.html#x"' in content
    assert '&lt;a href="page.html"&gt;x&lt;/a&gt; &lt;img src="pic.png"&gt;' in content
    assert '&lt;a href="inline.html"&gt;' in content
    assert 'src="text.png" in plain text' in content


def test_absolutize_handles_srcset_and_links_that_are_no_urls() -> None:
    html = ('<img srcset="a.png 1x, /b.png 2x" src="c.png"><a href="http://[broken">t</a>'
            '<code>href="x.html"</code>')
    result = absolutize(html, "https://e.org/a/p.html")
    assert 'src="https://e.org/a/c.png"' in result
    assert "http://[broken" not in result and ">t</a>" in result
    assert '<code>href="x.html"</code>' in result


def test_deep_nesting_is_bounded_and_sanitized_once(site: Path) -> None:
    """960 KB of nested <blockquote> took 23 s on the first publish and 12 s on each later one."""
    deep = "<blockquote>" * (960_000 // len("<blockquote>"))
    md(site / "articles" / "deep.md", "title: Deep\n", f"Lead.\n\n{deep}deepest text")
    write(site / "articles" / "other.txt", "date 2024-01-02 Other article. More.\n")
    settings_ = make_settings(site, **ENV)
    timings = []
    for _ in range(2):
        store = Store.open(settings_.database_url, site)
        start = time.perf_counter()
        report = publish(settings_, store, NOW)
        timings.append(time.perf_counter() - start)
        store.close()
        assert report.problems == ()
        write(site / "articles" / "other.txt", "date 2024-01-02 Other article, edited. More.\n")
    assert timings[0] < 10, timings
    assert timings[1] < 2, timings  # the kept body is used: nothing is sanitized again
    content = feed_entries(settings_.output_dir)["Deep"].content[0].value
    assert "deepest text" in content
    assert content.count("&lt;blockquote&gt;") <= MAX_NESTING
    page = (settings_.output_dir / "articles" / "deep.html").read_text(encoding="utf-8")
    assert "deepest text" in page and page.count("<blockquote>") == MAX_NESTING


def test_nesting_within_the_bound_is_untouched() -> None:
    html = "<ul><li>a<li>b</ul>" + "<div>" * MAX_NESTING + "x" + "</div>" * MAX_NESTING
    assert bound_nesting(html) == html
    bounded = bound_nesting("<b title='>'>" * 150 + "t" + "</b>" * 150)
    assert bounded.count("<b ") == MAX_NESTING and bounded.count("</b>") == MAX_NESTING
    assert "t" in bounded


_FRAGMENTS = st.sampled_from([
    "&#x1;", "&#xFFFE;", "&#xFFFF;", "&#xD800;", "&#0;", "&#x1F600;", "&", "<", ">", '"', "'",
    "]]>", "<![CDATA[", "<!--", "-->", "<a href=\"", "<img src=", "\">", "</a>", "<blockquote>",
    "<script>", "<pre>", "```\n", "`", "\n\n", "\x01", "\x0b", "\ufffe", "\\x01", "\\ud800",
    "<svg><style>", "javascript:", "&amp;", "<b>", "</p>", "# ", "[l](", ")", "http://[",
])
_TEXT = st.lists(st.one_of(_FRAGMENTS, st.text(st.characters(exclude_categories=("Cs",)),
                                                max_size=8)), max_size=12).map("".join)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=_TEXT, summary=_TEXT, body=_TEXT, plain=_TEXT)
def test_any_title_summary_and_body_publish_valid_feeds(title: str, summary: str, body: str,
                                                        plain: str) -> None:
    """Whatever the fields hold, the feeds parse; a bad article is refused alone."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        # JSON strings are YAML double-quoted strings: escapes reach the reader decoded.
        md(site / "articles" / "a.md", f"title: {json.dumps(title)}\n"
           f"summary: {json.dumps(summary)}\n", body)
        write(site / "articles" / "b.txt", f"title {' '.join(plain.split()) or 'x'}\n"
              f"date 2024-01-02 {body}\n")
        write(site / "articles" / "good.txt", "date 2024-01-03 The good one. More.\n")
        settings_ = make_settings(site, **ENV)
        store = Store.open(settings_.database_url, site)
        try:
            report = publish(settings_, store, NOW)
        finally:
            store.close()
        atom = feedparser.parse((settings_.output_dir / "feed.atom").read_bytes())
        assert "The good one" in feed_entries(settings_.output_dir)
        # Warnings (characters removed, a link to a missing file) do not refuse the article.
        refused = {p.path for p in report.problems
                   if "removed" not in p.reason and "names a missing file" not in p.reason}
        assert len(atom.entries) + len(refused) == 3, report.problems


_HTML_BITS = st.sampled_from([
    "<p>", "</p>", "<b>", "</b>", "<pre><code>", "</code></pre>", "<table><tr><td>", "</td>",
    "&amp;", "&lt;", "&#x1;", "&nbsp;", "<br>", "<img alt='x'>", "<a title=\"t\">", "</a>",
    "<script>", "<!-- c -->", "<q>", "src=", "href=", " ", "\n", "é", "<", ">", "'", '"',
])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.one_of(_HTML_BITS, st.text(max_size=8)), max_size=30))
def test_absolutize_returns_linkless_sanitized_html_unchanged(parts: list[str]) -> None:
    """absolutize skips sanitized HTML without a link attribute: sanitizing it again must
    give the same text (so skipping changes nothing)."""
    html = sanitize("".join(parts))
    assert clean_with_filter(html, lambda tag, attribute, value: value) == html
    if " href=" not in html and " src=" not in html:
        assert absolutize(html, "https://e.org/a/p.html") == html
