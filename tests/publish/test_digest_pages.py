"""Web copies of the digest editions: digests/<n>.html and digests/index.html.

Golden files are in tests/golden/site/digests/ (regenerate with
``DIGEST_REGEN_GOLDEN=1 python -m pytest tests/publish/test_digest_pages.py``).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.mail.outbox import Outbox
from digest.model import Edition
from digest.publish.build import publish
from digest.publish.output import current_generation
from digest.publish.web_copy import publish_digest_pages
from digest.settings import Settings
from digest.store.database import Store
from digest.store.editions import load_editions
from tests.conftest import REPO, make_settings, write
from tests.fixtures_mail import add_articles, sample_articles
from tests.publish.test_assets import png

GOLDEN = REPO / "tests" / "golden" / "site"
REGEN = os.environ.get("DIGEST_REGEN_GOLDEN") == "1"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SITE_URL = "https://example.org/news/"


def make_edition(store: Store, now: datetime, force: bool = False) -> Edition:
    """A new edition (no subscribers, so it is finished at once: the next one can be made)."""
    outbox = Outbox(store)
    edition, created = outbox.open_or_create(
        store.load_articles().values(), now, message_id=lambda uid, a: f"<{uid}.{a}>",
        force=force)
    assert edition is not None and created
    assert outbox.finish(edition.id, now)
    return edition


def illustrated_site(base: Path) -> None:
    shutil.copytree(REPO / "articles", base / "articles")
    write(base / "articles" / "pictures" / "dark.png", png())
    write(base / "articles" / "pictures" / "night.md",
          "---\ntitle: A night picture\ndate: 2026-01-10\nsummary: The sky at night.\n---\n"
          "![The sky, dark](dark.png)\n")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Settings, Store]:
    illustrated_site(tmp_path)
    settings = make_settings(tmp_path, BASE_URL=SITE_URL, SUBSCRIBE_FORM="on")
    store = Store.open(settings.database_url, tmp_path)
    publish(settings, store, NOW)
    yield settings, store
    store.close()


@pytest.mark.parametrize("name", ["digests/1.html", "digests/index.html"])
def test_digest_pages_match_golden_files(project: tuple[Settings, Store], name: str) -> None:
    settings, store = project
    make_edition(store, NOW + timedelta(hours=1))
    assert publish_digest_pages(settings, store)
    actual = (settings.output_dir / name).read_text(encoding="utf-8")
    golden = GOLDEN / name
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


def test_page_links_each_article_absolutely_and_its_image_is_published(
        project: tuple[Settings, Store]) -> None:
    settings, store = project
    edition = make_edition(store, NOW + timedelta(hours=1))
    publish_digest_pages(settings, store)
    out = settings.output_dir
    page = (out / "digests/1.html").read_text(encoding="utf-8")
    assert len(edition.items) == 5  # the published sample articles and the picture
    for item in edition.items:
        url = f"{SITE_URL}articles/{item.slug}.html"
        assert f'href="{url}"' in page
        assert (out / url.removeprefix(SITE_URL)).is_file()
    assert f'<img src="{SITE_URL}articles/pictures/dark.png"' in page
    assert (out / "articles/pictures/dark.png").read_bytes() == png()
    index = (out / "digests/index.html").read_text(encoding="utf-8")
    assert f'href="{SITE_URL}digests/1.html"' in index
    front = (out / "index.html").read_text(encoding="utf-8")
    assert f'<a href="{SITE_URL}digests/index.html">Past digests</a>' in front


def test_new_generation_keeps_the_rest_of_the_site_as_hard_links(
        project: tuple[Settings, Store]) -> None:
    settings, store = project
    out = settings.output_dir
    before = current_generation(out)
    assert before is not None
    files = sorted(p.relative_to(before) for p in before.rglob("*") if p.is_file())
    old_index = (before / "digests/index.html").read_text(encoding="utf-8")
    assert "No digest sent yet." in old_index and not (before / "digests/1.html").exists()
    make_edition(store, NOW + timedelta(hours=1))
    assert publish_digest_pages(settings, store)
    after = current_generation(out)
    assert after is not None and after != before
    for relative in files:
        if relative.as_posix() != "digests/index.html":
            assert (after / relative).stat().st_ino == (before / relative).stat().st_ino, relative
    assert (after / "digests/1.html").is_file()
    # Resumed: the pages online are already right, so no new generation is made.
    assert not publish_digest_pages(settings, store)
    assert current_generation(out) == after


def test_a_later_publish_renders_every_past_edition_again(
        project: tuple[Settings, Store]) -> None:
    settings, store = project
    make_edition(store, NOW + timedelta(hours=1))
    publish_digest_pages(settings, store)
    first = (settings.output_dir / "digests/1.html").read_bytes()
    write(settings.articles_dir / "later.md",
          "---\ntitle: Later news\ndate: 2026-01-15\n---\nText.\n")
    publish(settings, store, NOW + timedelta(hours=2))
    make_edition(store, NOW + timedelta(hours=3))
    publish_digest_pages(settings, store)
    write(settings.articles_dir / "latest.md",
          "---\ntitle: Latest news\ndate: 2026-01-15\n---\nText.\n")
    report = publish(settings, store, NOW + timedelta(hours=4))
    assert not report.nothing_changed
    out = settings.output_dir
    second = (out / "digests/2.html").read_text(encoding="utf-8")
    assert "Later news" in second and "Latest news" not in second
    assert f'rel="prev" href="{SITE_URL}digests/1.html"' in second
    kept = (out / "digests/1.html").read_bytes()
    assert f'rel="next" href="{SITE_URL}digests/2.html"'.encode() in kept
    assert kept.split(b'<nav class="pages">')[0] == first.split(b'<nav class="pages">')[0]
    index = (out / "digests/index.html").read_text(encoding="utf-8")
    assert index.index("digests/2.html") < index.index("digests/1.html")  # newest first


def test_without_any_output_the_pages_go_alone_and_the_next_publish_is_full(
        project: tuple[Settings, Store]) -> None:
    settings, store = project
    out = settings.output_dir
    generations = current_generation(out)
    assert generations is not None
    shutil.rmtree(generations.parent)  # the output is lost; the store still remembers it
    out.unlink()
    make_edition(store, NOW + timedelta(hours=1))
    assert publish_digest_pages(settings, store)
    assert sorted(p.name for p in out.rglob("*")) == ["1.html", "digests", "index.html"]
    report = publish(settings, store, NOW + timedelta(hours=2))  # no file changed meanwhile
    assert not report.nothing_changed
    assert (out / "index.html").is_file() and (out / "articles/pictures/dark.png").is_file()
    assert (out / "digests/1.html").is_file()


def test_pages_for_a_store_that_was_never_published(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, BASE_URL=SITE_URL)  # no articles folder at all
    store = Store.open(settings.database_url, tmp_path)
    try:
        add_articles(store, *sample_articles(2))
        make_edition(store, NOW)
        assert publish_digest_pages(settings, store)
    finally:
        store.close()
    page = (settings.output_dir / "digests/1.html").read_text(encoding="utf-8")
    assert "Headline number 0" in page and "Headline number 1" in page


def test_no_digest_pages_without_digest_from_and_editions(tmp_path: Path) -> None:
    illustrated_site(tmp_path)
    settings = make_settings(tmp_path, BASE_URL=SITE_URL, DIGEST_FROM="")
    store = Store.open(settings.database_url, tmp_path)
    try:
        publish(settings, store, NOW)
    finally:
        store.close()
    assert not (settings.output_dir / "digests").exists()
    assert "Past digests" not in (settings.output_dir / "index.html").read_text(encoding="utf-8")


def test_load_editions_on_both_backends(store: Store) -> None:
    add_articles(store, *sample_articles(3))
    first = make_edition(store, NOW)
    second = make_edition(store, NOW + timedelta(days=1), force=True)
    loaded = load_editions(store)
    assert [e.id for e in loaded] == [first.id, second.id] == [1, 2]
    assert loaded[0].items == first.items and len(first.items) == 3
    assert loaded[1].items == ()
    assert loaded[0].created_at == NOW


def test_every_page_links_the_stylesheet_that_has_dark_mode(
        project: tuple[Settings, Store]) -> None:
    settings, store = project
    make_edition(store, NOW + timedelta(hours=1))
    publish_digest_pages(settings, store)
    out = settings.output_dir
    pages = sorted(out.rglob("*.html"))
    assert {"index.html", "feed.html", "digests/1.html", "digests/index.html",
            "tags/index.html", "articles/pictures/night.html"} <= {
        p.relative_to(out).as_posix() for p in pages}
    for page in pages:
        assert f'<link rel="stylesheet" href="{SITE_URL}style.css">' in \
            page.read_text(encoding="utf-8"), page
    css = (out / "style.css").read_text(encoding="utf-8")
    assert "color-scheme: light dark" in css
    assert "@media (prefers-color-scheme: dark)" in css
    for element in ("pre", "table", "blockquote", "figcaption", "img"):
        assert f".body {element}" in css, element
    xsl = (out / "feed.xsl").read_text(encoding="utf-8")  # static hosts' feed view
    assert "color-scheme: light dark" in xsl and "prefers-color-scheme: dark" in xsl
