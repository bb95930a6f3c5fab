"""Files beside the articles: published at their path, linked between generations, checked.

Real publishes into real folders; feeds read back with feedparser; `digest check`
through the CLI.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import feedparser

from digest.publish.build import check, publish
from digest.store.database import Store
from tests.conftest import digest_cli, make_settings, write

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SITE_URL = "https://example.org/news/"
ENV = {"BASE_URL": SITE_URL, "SITE_TITLE": "Example News",
       "DATABASE_URL": "sqlite:///state.sqlite3"}
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(4000)


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG image (gray pixels), small enough to write inline."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                               0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def md(site: Path, name: str, front: str, body: str) -> Path:
    return write(site / "articles" / name, f"---\n{front}date: 2024-01-01\n---\n{body}\n")


def illustrated(site: Path) -> None:
    write(site / "articles" / "posts" / "img" / "dark.png", png())
    write(site / "articles" / "posts" / "files" / "report.pdf", PDF)
    md(site, "posts/hello.md", "title: Hello\n",
       "![A dark sky](img/dark.png)\n\nRead [the report](files/report.pdf).")


def run(site: Path, **values: str):
    settings = make_settings(site, **{"BASE_URL": SITE_URL, **values})
    store = Store.open(settings.database_url, site)
    try:
        return publish(settings, store, NOW), settings
    finally:
        store.close()


def parse(path: Path) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(path.read_bytes())
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def test_image_and_pdf_are_published_beside_the_page_and_absolute_in_feeds(site: Path) -> None:
    illustrated(site)
    report, settings = run(site)
    assert not report.problems, report.problems
    out = settings.output_dir
    assert (out / "articles/posts/img/dark.png").read_bytes() == png()
    assert (out / "articles/posts/files/report.pdf").read_bytes() == PDF
    page = (out / "articles/posts/hello.html").read_text()
    assert 'src="img/dark.png"' in page and 'href="files/report.pdf"' in page
    image = SITE_URL + "articles/posts/img/dark.png"
    pdf = SITE_URL + "articles/posts/files/report.pdf"
    for name in ("feed.atom", "feed.rss"):
        content = parse(out / name).entries[0].content[0].value
        assert f'src="{image}"' in content and f'href="{pdf}"' in content
    item = json.loads((out / "feed.json").read_text())["items"][0]
    assert f'src="{image}"' in item["content_html"] and item["image"] == image


def test_unchanged_assets_are_hard_links_between_generations(site: Path) -> None:
    illustrated(site)
    _, settings = run(site)
    image = settings.output_dir / "articles/posts/img/dark.png"
    first = os.stat(image)
    md(site, "other.md", "title: Other\n", "A second article makes a new generation.")
    report, _ = run(site)
    assert not report.nothing_changed
    second = os.stat(image)
    assert (second.st_ino, second.st_dev) == (first.st_ino, first.st_dev)
    assert second.st_nlink >= 2  # shared with the previous generation, not copied again

    write(site / "articles/posts/img/dark.png", png(5, 5))  # changed: copied anew
    os.utime(site / "articles/posts/img/dark.png", ns=(first.st_mtime_ns + 10**9,) * 2)
    run(site)
    assert os.stat(image).st_ino != first.st_ino
    assert image.read_bytes() == png(5, 5)


def test_a_missing_reference_is_a_check_warning_naming_article_and_path(site: Path) -> None:
    md(site, "gone.md", "title: Gone\n", "![x](pics/nothing.png) and [doc](missing.pdf).")
    result = digest_cli("check", cwd=site, env=ENV)
    assert result.returncode == 3, result.stderr
    assert "gone.md" in result.stderr and "pics/nothing.png" in result.stderr
    assert "missing.pdf" in result.stderr
    published = digest_cli("publish", cwd=site, env=ENV)  # still published, with the warning
    assert "pics/nothing.png" in published.stderr
    assert (site / "public/articles/gone.html").is_file()


def test_links_to_pages_fragments_and_other_sites_are_not_warned_about(site: Path) -> None:
    md(site, "a.md", "title: A\n", "[b](b.html) [c](c.md) [x](#x) [w](https://example.com/p.png) "
       "[feed](../feed.atom)")
    settings = make_settings(site, **ENV)
    assert check(settings, NOW).problems == ()


def test_oversized_hidden_unsafe_and_escaping_files_are_not_published(site: Path,
                                                                      tmp_path_factory) -> None:
    arts = site / "articles"
    write(arts / "big.bin", bytes(2000))
    write(arts / ".secret.png", png())
    write(arts / ".git" / "config", "x")
    write(arts / "My Photo.png", png())
    outside = tmp_path_factory.mktemp("outside") / "private.pdf"
    outside.write_bytes(PDF)
    os.symlink(outside, arts / "linked.pdf")
    write(arts / "inside.png", png())
    os.symlink(arts / "inside.png", arts / "alias.png")
    md(site, "a.md", "title: A\n", "Text.")
    report, settings = run(site, MAX_ASSET_BYTES="1000")
    problems = {p.path: p.reason for p in report.problems}
    assert "MAX_ASSET_BYTES" in problems["big.bin"]
    assert "URL" in problems["My Photo.png"]
    assert "outside" in problems["linked.pdf"]
    out = settings.output_dir / "articles"
    assert sorted(p.name for p in out.iterdir()) == ["a.html", "alias.png", "inside.png"]


def test_a_page_moved_by_its_slug_keeps_working_links(site: Path) -> None:
    write(site / "articles/2024/pics/a.png", png())
    md(site, "2024/post.md", "title: Moved\nslug: elsewhere/deep/moved\n", "![a](pics/a.png)")
    report, settings = run(site)
    assert not report.problems
    page = (settings.output_dir / "articles/elsewhere/deep/moved.html").read_text()
    assert 'src="../../2024/pics/a.png"' in page
    atom = parse(settings.output_dir / "feed.atom")
    assert f'src="{SITE_URL}articles/2024/pics/a.png"' in atom.entries[0].content[0].value


def test_enclosures_in_atom_rss_and_json_feed(site: Path) -> None:
    write(site / "articles/audio/episode-1.mp3", MP3)
    md(site, "show.md", "title: Episode 1\nenclosure: audio/episode-1.mp3\n", "Listen.")
    write(site / "articles/video.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    write(site / "articles/clip.txt", "title Clip\nenclosure video.mp4\ndate 2024-01-02 Watch.\n")
    report, settings = run(site)
    assert not report.problems, report.problems
    out = settings.output_dir
    url = SITE_URL + "articles/audio/episode-1.mp3"
    for name in ("feed.atom", "feed.rss"):
        entries = {e.title: e for e in parse(out / name).entries}
        (episode,) = entries["Episode 1"].enclosures
        assert (episode.href, int(episode.length), episode.type) == (url, len(MP3), "audio/mpeg")
        (clip,) = entries["Clip"].enclosures
        assert (int(clip.length), clip.type) == (112, "video/mp4")
    atom = (out / "feed.atom").read_text()
    assert f'<link href="{url}" rel="enclosure" type="audio/mpeg" length="{len(MP3)}"/>' in atom
    items = {i["title"]: i for i in json.loads((out / "feed.json").read_text())["items"]}
    assert items["Episode 1"]["attachments"] == [
        {"url": url, "mime_type": "audio/mpeg", "size_in_bytes": len(MP3)}]

    write(site / "articles/audio/episode-1.mp3", MP3 + bytes(10))  # length follows the file
    run(site)
    (episode,) = [e for e in parse(out / "feed.rss").entries if e.title == "Episode 1"]
    assert int(episode.enclosures[0].length) == len(MP3) + 10


def test_a_missing_enclosure_is_a_warning(site: Path) -> None:
    md(site, "show.md", "title: Episode\nenclosure: nowhere.mp3\n", "Listen.")
    problems = check(make_settings(site, **ENV), NOW).problems
    assert [(p.path, "nowhere.mp3" in p.reason) for p in problems] == [("show.md", True)]


def test_a_reference_warning_says_why_the_file_is_not_published(site: Path,
                                                                tmp_path: Path) -> None:
    """A link to a file that is there but refused says so (the writer would look for a
    missing file in vain); a web address as enclosure says it is one."""
    write(site / "articles/my pic.png", png())  # a name that breaks the URL rules
    write(site / "articles/big.png", png() + bytes(2000))  # over MAX_ASSET_BYTES below
    (site / "articles/folder.png").mkdir()
    outside = write(tmp_path / "elsewhere.png", png())
    (site / "articles/away.png").symlink_to(outside)
    md(site, "refs.md", "title: Refs\nenclosure: https://cdn.example/show.mp3\n",
       "![a](my%20pic.png) ![b](big.png) ![c](folder.png) ![d](away.png) ![e](gone.png)")
    settings = make_settings(site, **ENV, MAX_ASSET_BYTES="1000")
    warned = {p.reason.split("'")[1]: p.reason for p in check(settings, NOW).problems
              if p.path == "refs.md"}
    assert "a file whose name can't be used in a URL" in warned["my%20pic.png"]
    assert "over MAX_ASSET_BYTES (1,000)" in warned["big.png"]
    assert "which is not a file" in warned["folder.png"]
    assert "leads outside ARTICLES_DIR" in warned["away.png"]
    assert "names a missing file (gone.png)" in warned["gone.png"]
    assert "is a web address, not a file beside the article" in \
        warned["https://cdn.example/show.mp3"]
    assert len(warned) == 6, warned


def test_a_file_removed_under_an_unchanged_article_is_reported_and_leaves_its_page(
        site: Path) -> None:
    illustrated(site)
    write(site / "articles/audio/episode.mp3", MP3)
    md(site, "show.md", "title: Episode\nenclosure: audio/episode.mp3\n", "Listen.")
    report, settings = run(site)
    assert not report.problems, report.problems
    out = settings.output_dir
    image = SITE_URL + "articles/posts/img/dark.png"
    assert f'content="{image}"' in (out / "articles/posts/hello.html").read_text()

    (site / "articles/posts/img/dark.png").unlink()  # the articles stay as they were
    (site / "articles/audio/episode.mp3").unlink()
    report, _ = run(site)
    problems = [(p.path, p.reason) for p in report.problems]
    assert any(path == "posts/hello.md" and "posts/img/dark.png" in reason
               for path, reason in problems), problems
    assert any(path == "show.md" and "audio/episode.mp3" in reason
               for path, reason in problems), problems
    assert image not in (out / "articles/posts/hello.html").read_text()  # no og:image to nothing
    for name in ("feed.atom", "feed.rss"):  # no enclosure that leads nowhere
        entries = {e.title: e for e in parse(out / name).entries}
        assert entries["Episode"].enclosures == []


def test_a_link_warning_is_reported_by_every_publish_until_it_is_fixed(site: Path) -> None:
    md(site, "gone.md", "title: Gone\n", "![x](pics/nothing.png)")
    md(site, "other.md", "title: Other\n", "Text.")
    first, settings = run(site)
    assert [p.path for p in first.problems] == ["gone.md"]

    md(site, "other.md", "title: Other\n", "Text, edited.")  # gone.md is unchanged
    again, _ = run(site)
    assert [(p.path, "pics/nothing.png" in p.reason) for p in again.problems] == [("gone.md", True)]
    unchanged, _ = run(site)
    assert unchanged.nothing_changed
    assert [str(p) for p in unchanged.problems] == [str(p) for p in again.problems]

    write(site / "articles/pics/nothing.png", png())  # fixed by adding the file
    fixed, _ = run(site)
    assert fixed.problems == ()
    assert 'src="pics/nothing.png"' in (settings.output_dir / "articles/gone.html").read_text()
    assert (settings.output_dir / "articles/pics/nothing.png").read_bytes() == png()


def test_a_file_at_an_article_page_path_is_refused_by_check_as_by_publish(site: Path) -> None:
    md(site, "hello.md", "title: Hello\n", "Text.")
    write(site / "articles/hello.html", "<p>an old export</p>")
    md(site, "notes/first.md", "title: First\n", "Text.")
    write(site / "articles/notes/first.html", "<p>another</p>")
    md(site, "draft.md", "title: Draft\ndraft: true\n", "Text.")
    write(site / "articles/draft.html", "<p>shown while the article is a draft</p>")
    md(site, "b.md", "title: B\nslug: media/b\n", "Text.")
    write(site / "articles/media", "a file where the page's folder is")
    expected = [("hello.html", "articles/hello.html"), ("media", "articles/media"),
                ("notes/first.html", "articles/notes/first.html")]
    checked = check(make_settings(site, **ENV), NOW).problems
    assert [(p.path, p.reason.split()[4].rstrip(",")) for p in checked] == expected
    published, settings = run(site)
    assert [(p.path, p.reason.split()[4].rstrip(",")) for p in published.problems] == expected
    assert "<p>" not in (settings.output_dir / "articles/hello.html").read_text()[:20]
    result = digest_cli("check", cwd=site, env=ENV)
    assert result.returncode == 3 and "hello.html" in result.stderr, result.stderr
