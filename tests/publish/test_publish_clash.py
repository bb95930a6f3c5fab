"""A new file can't take over a published article: on an id or slug clash, the newcomer loses.

Through the CLI, as a user publishes; the feed is read back with feedparser.
"""

from __future__ import annotations

from pathlib import Path

import feedparser

from tests.conftest import digest_cli, write

ENV = {"BASE_URL": "https://example.org/news/", "SITE_TITLE": "Example News",
       "DATABASE_URL": "sqlite:///state.sqlite3"}


def md(site: Path, name: str, title: str, extra: str = "") -> Path:
    return write(site / "articles" / name,
                 f"---\ntitle: {title}\ndate: 2024-01-01\n{extra}---\nText of {title}.\n")


def titles(site: Path) -> list[str]:
    parsed = feedparser.parse((site / "public" / "feed.atom").read_bytes())
    assert parsed.bozo == 0
    return sorted(e.title for e in parsed.entries)


def publish(site: Path, expect: int) -> str:
    result = digest_cli("publish", cwd=site, env=ENV)
    assert result.returncode == expect, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_newcomer_with_a_published_slug_is_refused_and_named(site: Path) -> None:
    md(site, "z-old.md", "Old", "slug: news/page\n")
    publish(site, 0)
    md(site, "a-new.md", "Intruder", "slug: news/page\n")  # sorts first by path
    for _ in range(2):  # and it is not remembered as established the second time either
        stderr = publish(site, 3)
        assert "problem: a-new.md: would have the same page as z-old.md" in stderr
        assert "rename a-new.md or set a different 'slug' in it" in stderr
        assert "Old" in titles(site) and "Intruder" not in titles(site)
        page = (site / "public" / "articles" / "news" / "page.html").read_text()
        assert "Text of Old." in page and "Intruder" not in page
        write(site / "articles" / "other.md", "---\ndate: 2024-01-02\n---\nAnother one, "
              f"touched {_}.\n")  # something else changed: not the nothing-changed path
    (site / "articles" / "z-old.md").unlink()
    publish(site, 0)
    assert "Intruder" in titles(site)


def test_a_newcomer_with_a_published_id_is_refused_and_named(site: Path) -> None:
    md(site, "b.md", "First", "id: tag:example.org,2024:one\n")
    publish(site, 0)
    md(site, "a.md", "Second", "id: tag:example.org,2024:one\n")
    stderr = publish(site, 3)
    assert "problem: a.md: has the same id as b.md, which keeps it" in stderr
    assert "give a.md a different 'id' header" in stderr
    assert titles(site) == ["First"]


def test_an_edit_that_takes_another_articles_slug_is_the_one_refused(site: Path) -> None:
    md(site, "b.md", "Bee")
    md(site, "c.md", "Sea")
    publish(site, 0)
    md(site, "c.md", "Sea edited", "slug: b\n")  # c now wants b's page
    stderr = publish(site, 3)
    assert "problem: c.md: would have the same page as b.md" in stderr
    assert "Bee" in titles(site)
    assert "Text of Bee." in (site / "public" / "articles" / "b.html").read_text()


def test_new_files_that_clash_only_with_each_other_keep_path_order(site: Path) -> None:
    md(site, "a.md", "Ay", "slug: same\n")
    md(site, "b.md", "Be", "slug: same\n")
    stderr = publish(site, 3)
    assert "problem: b.md: would have the same page as a.md" in stderr
    assert titles(site) == ["Ay"]
    check = digest_cli("check", cwd=site, env=ENV)
    assert check.returncode == 3 and "problem: b.md: would have the same page as a.md" in check.stderr
