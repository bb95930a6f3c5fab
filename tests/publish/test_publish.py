"""Publishing: feeds a real feed parser accepts, permanent ids, stable output, bad input."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import feedparser
import pytest

from digest.publish.build import publish
from digest.settings import Settings
from digest.store.database import Store
from tests.conftest import copy_sample, make_settings, write

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"
SITE_URL = "https://example.org/news/"


def run(site: Path, now: datetime = NOW, **values: str):
    settings = make_settings(site, **{"BASE_URL": SITE_URL, **values})
    store = Store.open(settings.database_url, site)
    try:
        return publish(settings, store, now), settings
    finally:
        store.close()


def article(site: Path, name: str, day: str, text: str, **headers: str) -> Path:
    head = "".join(f"{k} {v}\n" for k, v in headers.items())
    return write(site / "articles" / name, f"{head}date {day} {text}\n")


def parse(path: Path) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(path.read_bytes())
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def test_sample_publishes_valid_atom_rss_and_json(site: Path) -> None:
    copy_sample(site)
    report, settings = run(site)
    assert report.published == 1 and report.new == 1 and not report.problems
    out = settings.output_dir
    atom = parse(out / "feed.atom")
    assert atom.version == "atom10"
    assert atom.feed.title == "Example News"
    entry = atom.entries[0]
    assert entry.title.startswith("In Los Angeles")
    assert entry.id.startswith("urn:uuid:")
    assert entry.link == "https://example.org/news/articles/000_b4d3f6eb2287ccfb.html"
    assert entry.published_parsed[:3] == (2024, 3, 20)
    assert "Challenges Amid Sanctuary Policies" in entry.content[0].value
    rss = parse(out / "feed.rss")
    assert rss.version == "rss20"
    assert rss.entries[0].id == entry.id
    assert rss.feed.link == "https://example.org/news/"
    document = json.loads((out / "feed.json").read_text())
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["feed_url"] == "https://example.org/news/feed.json"
    assert document["items"][0]["id"] == entry.id
    assert document["items"][0]["url"] == entry.link
    assert "<h2>" in document["items"][0]["content_html"]
    page = (out / "articles" / "000_b4d3f6eb2287ccfb.html").read_text()
    assert "<h2>Broader Implications</h2>" in page
    index = (out / "index.html").read_text()
    assert 'type="application/atom+xml"' in index and "feed.atom" in index


def test_atom_meets_rfc_4287(site: Path) -> None:
    copy_sample(site)
    article(site, "b.txt", "2024-04-01", "Second article. Text.")
    _, settings = run(site)
    root = ElementTree.parse(settings.output_dir / "feed.atom").getroot()
    assert root.find(f"{ATOM}id") is not None
    assert root.find(f"{ATOM}author/{ATOM}name") is not None
    links = root.findall(f"{ATOM}link")
    self_links = [link for link in links if link.get("rel") == "self"]
    assert [link.get("href") for link in self_links] == ["https://example.org/news/feed.atom"]
    entries = root.findall(f"{ATOM}entry")
    updated = [e.find(f"{ATOM}updated").text for e in entries]  # type: ignore[union-attr]
    assert root.find(f"{ATOM}updated").text == max(updated)  # type: ignore[union-attr]
    for entry in entries:
        for tag in ("id", "title", "updated", "published"):
            assert entry.find(f"{ATOM}{tag}") is not None, tag
        alternates = [(link.get("type"), link.get("hreflang")) for link in
                      entry.findall(f"{ATOM}link") if link.get("rel", "alternate") == "alternate"]
        assert len(alternates) == len(set(alternates)) == 1
    # Newest first.
    assert next(e.find(f"{ATOM}title").text for e in entries) == "Second article"  # type: ignore[union-attr]
    assert (settings.output_dir / "feed.atom").read_bytes().splitlines()[1].startswith(
        b'<?xml-stylesheet type="text/xsl" href="feed.xsl"?>')


def test_ids_survive_url_title_date_and_text_changes(site: Path) -> None:
    path = article(site, "story.txt", "2024-01-01", "Original text. More.")
    _, settings = run(site)
    before = parse(settings.output_dir / "feed.atom").entries[0].id
    article(site, "story.txt", "2024-02-02", "Rewritten text. Other.", title="A new title")
    _, settings = run(site, BASE_URL="https://other.example.net/")
    after = parse(settings.output_dir / "feed.atom").entries[0]
    assert after.id == before
    assert after.link.startswith("https://other.example.net/")
    # A fresh clone: no state store, no output; the id is still the same.
    (site / "state.sqlite3").unlink()
    assert path.exists()
    fresh = site / "fresh"
    fresh.mkdir()
    (fresh / "articles").mkdir()
    path.rename(fresh / "articles" / "story.txt")
    _, settings = run(fresh)
    assert parse(settings.output_dir / "feed.atom").entries[0].id == before


def test_unchanged_republish_is_byte_identical_and_untouched(site: Path) -> None:
    copy_sample(site)
    article(site, "b.md", "x", "x")  # replaced just below by a Markdown article
    write(site / "articles" / "b.md", "---\ntitle: B\ndate: 2024-05-01\n---\nBody\n")
    _, settings = run(site)
    out = settings.output_dir
    files = sorted(p.relative_to(out.resolve()) for p in out.resolve().rglob("*") if p.is_file())
    before = {p: ((out / p).read_bytes(), (out / p).stat().st_mtime_ns) for p in files}
    report, _ = run(site, now=NOW + timedelta(hours=3))
    assert report.nothing_changed
    after = {p: ((out / p).read_bytes(), (out / p).stat().st_mtime_ns) for p in files}
    assert after == before
    # Touching a file without changing it re-reads it, and still changes nothing.
    os.utime(site / "articles" / "b.md", ns=(1, 1))
    report, _ = run(site, now=NOW + timedelta(hours=4))
    assert not report.nothing_changed and report.updated == 0
    after = {p: ((out / p).read_bytes(), (out / p).stat().st_mtime_ns) for p in files}
    assert after == before


def test_editing_text_bumps_updated_from_content_not_clock(site: Path) -> None:
    article(site, "a.txt", "2024-01-01", "First version. Text.")
    article(site, "b.txt", "2024-01-02", "Other article. Text.")
    _, settings = run(site)
    first = {e.id: e for e in parse(settings.output_dir / "feed.atom").entries}
    later = NOW + timedelta(days=2)
    article(site, "a.txt", "2024-01-01", "Second version. Text.")
    report, _ = run(site, now=later)
    assert report.updated == 1 and report.new == 0
    second = {e.id: e for e in parse(settings.output_dir / "feed.atom").entries}
    changed = [i for i in first if first[i].updated != second[i].updated]
    assert len(changed) == 1
    assert second[changed[0]].title == "Second version"
    assert datetime.fromisoformat(second[changed[0]].updated) == later
    page_b = settings.output_dir / "articles" / "b.html"
    mtime_b = page_b.stat().st_mtime_ns
    run(site, now=later + timedelta(days=1))
    assert page_b.stat().st_mtime_ns == mtime_b


def test_feed_keeps_newest_items_and_links_archives(site: Path) -> None:
    for day in range(1, 8):
        article(site, f"a{day}.txt", f"2024-01-0{day}", f"Article {day}. Text.")
    _, settings = run(site, FEED_MAX_ITEMS="3")
    out = settings.output_dir
    feed = parse(out / "feed.atom")
    assert [e.title for e in feed.entries] == ["Article 7", "Article 6", "Article 5"]
    prev = [link.href for link in feed.feed.links if link.rel == "prev-archive"]
    assert prev == ["https://example.org/news/archive/2.atom"]
    two = parse(out / "archive" / "2.atom")
    assert [e.title for e in two.entries] == ["Article 6", "Article 5", "Article 4"]
    rels = {link.rel: link.href for link in two.feed.links}
    assert rels["prev-archive"].endswith("archive/1.atom")
    assert rels["current"] == "https://example.org/news/feed.atom"
    assert b"<fh:archive/>" in (out / "archive" / "2.atom").read_bytes()
    one = parse(out / "archive" / "1.atom")
    assert [e.title for e in one.entries] == ["Article 3", "Article 2", "Article 1"]
    assert "archive/1.html" in (out / "archive" / "2.html").read_text()
    # A new article leaves the complete archive pages untouched.
    mtime = (out / "archive" / "1.atom").stat().st_mtime_ns
    article(site, "a8.txt", "2024-01-08", "Article 8. Text.")
    run(site, FEED_MAX_ITEMS="3")
    assert (out / "archive" / "1.atom").stat().st_mtime_ns == mtime
    assert parse(out / "feed.atom").entries[0].title == "Article 8"


def test_drafts_and_future_articles_wait(site: Path) -> None:
    write(site / "articles" / "d.md", "---\ntitle: Draft\ndate: 2024-01-01\ndraft: true\n---\nX\n")
    article(site, "soon.txt", "2026-01-20", "Future article. Text.")
    article(site, "now.txt", "2026-01-01", "Present article. Text.")
    report, settings = run(site)
    assert (report.published, report.drafts, report.scheduled) == (1, 1, 1)
    titles = [e.title for e in parse(settings.output_dir / "feed.atom").entries]
    assert titles == ["Present article"]
    assert not (settings.output_dir / "articles" / "soon.html").exists()
    report, _ = run(site, now=datetime(2026, 1, 21, tzinfo=UTC))
    assert not report.nothing_changed and report.new == 1
    titles = [e.title for e in parse(settings.output_dir / "feed.atom").entries]
    assert titles == ["Future article", "Present article"]


def test_one_broken_article_never_blocks_the_others(site: Path) -> None:
    copy_sample(site)
    write(site / "articles" / "binary.txt", b"\x00\x01\x02")
    write(site / "articles" / "latin1.txt", b"date 2024-01-01 caf\xe9")
    write(site / "articles" / "empty.md", b"")
    write(site / "articles" / "nodate.txt", "No date here.\n")
    write(site / "articles" / "baddate.txt", "date 2024-02-31 Nope.\n")
    outside = write(site / "secret.txt", "date 2024-01-01 Secret outside the folder.\n")
    (site / "articles" / "link.txt").symlink_to(outside)
    article(site, "dup1.txt", "2024-01-01", "Dup one.", id="same")
    article(site, "dup2.txt", "2024-01-01", "Dup two.", id="same")
    write(site / "articles" / "big.txt", "date 2024-01-01 " + "word " * 1000)
    report, settings = run(site, MAX_ARTICLE_BYTES="4000")
    messages = sorted(p.message for p in report.problems)
    assert len(messages) == 8, messages
    for name in ("binary.txt", "latin1.txt", "empty.md", "nodate.txt", "baddate.txt",
                 "link.txt", "dup2.txt", "big.txt"):
        assert any(m.startswith(name + ":") for m in messages), name
    titles = {e.title for e in parse(settings.output_dir / "feed.atom").entries}
    assert "Dup one" in titles and len(titles) == 2
    assert "Secret" not in (settings.output_dir / "feed.atom").read_text()


def test_a_later_broken_edit_keeps_the_last_good_version(site: Path) -> None:
    article(site, "a.txt", "2024-01-01", "Good text. More.")
    _, settings = run(site)
    write(site / "articles" / "a.txt", b"\xff\xfe broken")
    report, _ = run(site)
    assert len(report.problems) == 1
    assert parse(settings.output_dir / "feed.atom").entries[0].title == "Good text"


def test_removed_article_disappears(site: Path) -> None:
    article(site, "a.txt", "2024-01-01", "Keep me. X.")
    gone = article(site, "b.txt", "2024-01-02", "Remove me. X.")
    _, settings = run(site)
    gone.unlink()
    report, _ = run(site)
    assert report.removed == 1
    assert not (settings.output_dir / "articles" / "b.html").exists()
    assert [e.title for e in parse(settings.output_dir / "feed.atom").entries] == ["Keep me"]


def test_content_is_escaped_sanitized_and_absolute(site: Path) -> None:
    write(site / "articles" / "x.md", "---\ntitle: 'Tom & <b>Jerry</b>'\ndate: 2024-01-01\n---\n"
          "See [other](other.html) and ![pic](../img/p.png) <script>bad()</script>\n")
    _, settings = run(site)
    feed = parse(settings.output_dir / "feed.atom")
    content = feed.entries[0].content[0].value
    assert 'href="https://example.org/news/articles/other.html"' in content
    assert 'src="https://example.org/news/img/p.png"' in content
    assert "<script" not in content
    page = (settings.output_dir / "articles" / "x.html").read_text()
    assert "Tom &amp; &lt;b&gt;Jerry&lt;/b&gt;" in page
    assert "<b>Jerry</b>" not in page
    assert feed.entries[0].title == "Tom & <b>Jerry</b>"


def test_failed_publish_leaves_previous_output_unchanged(site: Path) -> None:
    copy_sample(site)
    templates = site / "templates"
    write(templates / "placeholder.txt", "")
    _, settings = run(site, TEMPLATES_DIR="templates")
    out = settings.output_dir
    before = {p: p.read_bytes() for p in out.resolve().rglob("*") if p.is_file()}
    article(site, "new.txt", "2024-05-01", "A new article. Text.")
    write(templates / "article.html", "{{ entry.no_such_field.boom }}")
    with pytest.raises(Exception, match="template"):
        run(site, TEMPLATES_DIR="templates")
    after = {p: p.read_bytes() for p in out.resolve().rglob("*") if p.is_file()}
    assert after == before
    assert not any(p.name.endswith(".partial") for p in (site / ".public.generations").iterdir())


def test_settings_change_rebuilds_everything(site: Path) -> None:
    copy_sample(site)
    _, settings = run(site)
    run(site, SITE_TITLE="Renamed")
    assert "Renamed" in (settings.output_dir / "articles" / "000_b4d3f6eb2287ccfb.html").read_text()
    assert parse(settings.output_dir / "feed.atom").feed.title == "Renamed"


def _settings(site: Path) -> Settings:
    return make_settings(site, BASE_URL=SITE_URL)


def test_parallel_readers_give_the_same_output_as_one(site: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from digest.publish import intake, listings, tags

    for n in range(40):
        article(site, f"a{n:02d}.txt", f"2024-01-{1 + n % 28:02d}", f"Article {n}. Text.",
                tags=f"t{n % 7}, all")
    article(site, "dup.txt", "2024-01-01", "Same slug as a00.", slug="a00")
    serial, settings = run(site)
    serial_files = {p.relative_to(settings.output_dir.resolve()): p.read_bytes()
                    for p in settings.output_dir.resolve().rglob("*") if p.is_file()}
    other = site / "again"
    (other / "articles").mkdir(parents=True)
    for path in (site / "articles").iterdir():
        (other / "articles" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(intake, "PARALLEL_FROM", 5)  # reading, tags and archives in readers
    monkeypatch.setattr(tags, "PARALLEL_TAGS_FROM", 2)
    monkeypatch.setattr(listings, "PARALLEL_PAGES_FROM", 1)
    parallel, settings2 = run(other)
    assert parallel.published == serial.published == 40
    assert [p.message for p in parallel.problems] == [p.message for p in serial.problems]
    parallel_files = {p.relative_to(settings2.output_dir.resolve()): p.read_bytes()
                      for p in settings2.output_dir.resolve().rglob("*") if p.is_file()}
    assert parallel_files == serial_files
    assert b"Article 0" in parallel_files[Path("articles/a00.html")]
    assert len([p for p in parallel_files if p.parent == Path("tags")]) == 8 * 3 + 1


def test_rewriting_a_page_never_writes_into_the_published_generation(site: Path) -> None:
    from digest.publish.output import Generation

    _, settings = run(site)
    out = settings.output_dir
    published = (out / "index.html").read_bytes()
    with Generation(out) as gen:
        assert gen.keep("index.html")  # a hard link to the published file
        gen.write("index.html", b"new bytes")
        assert (out / "index.html").read_bytes() == published
        gen.commit()
    assert (out / "index.html").read_bytes() == b"new bytes"
