"""Real clients against `digest serve`: the newsboat feed reader and headless Chromium.

They need Debian's ``newsboat`` and ``chromium`` and the ``playwright`` Python
package (dev extras; its own browser download is not used). Without them
these tests are skipped with the reason, except in CI (``CI`` set), where
.ci/run installs them and a missing one fails.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import missing, wait_for, write
from tests.fixtures_mail import SMTPServer
from tests.fixtures_serve import Project, mails_to, served_project
from tests.publish.test_assets import png

pytestmark = pytest.mark.slow  # real client programs: a browser start alone takes seconds

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _require(found: Any, what: str, install: str) -> None:
    if found:
        return
    missing(f"{what} is not installed ({install})", ".ci/run installs it")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def smtp(smtp_servers: Callable[..., SMTPServer]) -> SMTPServer:
    return smtp_servers()


@pytest.fixture
def project(tmp_path: Path, smtp: SMTPServer) -> Iterator[Project]:
    with served_project(tmp_path / "site", smtp) as running:
        yield running


# --- newsboat -------------------------------------------------------------------------------


class Newsboat:
    def __init__(self, folder: Path, feed_url: str) -> None:
        folder.mkdir()
        self.folder = folder
        (folder / "urls").write_text(feed_url + "\n")
        (folder / "config").write_text("")
        self.cache = folder / "cache.db"

    def reload(self) -> None:
        """One `newsboat -x reload`; its debug log (errors included) goes to `self.log`.

        newsboat exits 0 even when the download failed, so the log is the only
        place a failed fetch shows.
        """
        result = subprocess.run(
            ["newsboat", "-x", "reload", "-u", str(self.folder / "urls"), "-c", str(self.cache),
             "-C", str(self.folder / "config"), "-d", str(self.log), "-l", "4"],
            env={"HOME": str(self.folder), "PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
            capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr + result.stdout

    @property
    def log(self) -> Path:
        return self.folder / "newsboat.log"

    def items(self) -> dict[str, bool]:
        """Title -> unread, from newsboat's cache."""
        with sqlite3.connect(self.cache) as db:
            return {title: bool(unread)
                    for title, unread in db.execute("SELECT title, unread FROM rss_item")}

    def mark_all_read(self) -> None:
        with sqlite3.connect(self.cache) as db:
            db.execute("UPDATE rss_item SET unread = 0")


def test_newsboat_reads_the_feed_and_gets_exactly_the_new_article(project: Project,
                                                                  tmp_path: Path) -> None:
    _require(shutil.which("newsboat"), "newsboat", "apt-get install -y newsboat")
    reader = Newsboat(tmp_path / "newsboat", project.url + "feed.atom")
    reader.reload()
    first = reader.items()
    assert set(first) >= {"Welcome to digest", "Plain-text articles can carry headers too",
                          "Front matter: every key digest reads"}
    assert len(first) == 4 and all(first.values())

    reader.mark_all_read()
    reader.reload()  # nothing new (newsboat asks with If-Modified-Since: a 304)
    assert len(reader.items()) == 4 and not any(reader.items().values())

    project.add_article("breaking.txt", "Breaking news from the valley", date="2024-04-03")
    published = project.cli("publish")
    assert published.returncode == 0, published.stderr
    served = httpx.get(project.url + "feed.atom", headers={"Accept": "*/*"}, timeout=10)
    assert "Breaking news from the valley" in served.text, served.headers
    after: dict[str, bool] = {}
    for attempt in range(3):  # as a reader's next reload would: newsboat hides failed fetches
        reader.reload()
        after = reader.items()
        if "Breaking news from the valley" in after:
            break
        # Said, not warned: the suite turns warnings into errors, which ended the test at
        # the first miss instead of reloading again as the loop means to.
        print(f"newsboat reload {attempt + 1} missed the new article; its log: "
              f"{reader.log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        time.sleep(1)
    assert len(after) == 5, (  # stable entry ids: nothing old comes back as new
        after, reader.log.read_text(errors="replace")[-3000:], project.log()[-3000:])
    assert [title for title, unread in after.items() if unread] == [
        "Breaking news from the valley"]


def test_newsboat_subscribes_to_a_tag_feed(project: Project, tmp_path: Path) -> None:
    _require(shutil.which("newsboat"), "newsboat", "apt-get install -y newsboat")
    reader = Newsboat(tmp_path / "newsboat", project.url + "tags/reference.atom")
    reader.reload()
    assert set(reader.items()) == {"Plain-text articles can carry headers too",
                                   "Front matter: every key digest reads"}


# --- Chromium -------------------------------------------------------------------------------


def test_a_browser_reads_the_site_subscribes_and_unsubscribes(project: Project,
                                                             smtp: SMTPServer) -> None:
    chromium = _chromium()
    _require(chromium, "chromium", "apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(None, "the playwright package", "pip install -e '.[dev]'")
        raise
    project.cli("subscribers", "add", "ann@example.org")
    project.cli("send")
    header = str(mails_to(smtp, "ann@example.org")[0].parsed()["List-Unsubscribe"])
    match = re.match(r"<(http://[^>]+)>", header)
    assert match, header
    unsubscribe_url = match.group(1)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(project.url)
            assert page.title() == "Served News"
            page.click("a.feed-link")
            page.wait_for_url(project.url + "feed.atom")
            # The feed URL answers a browser with the page published beside the feed:
            # HTML, no XSLT (Chromium is removing it, with a warning banner meanwhile).
            assert page.evaluate("document.contentType") == "text/html"
            assert page.evaluate("document.querySelector('link[rel=stylesheet]') !== null")
            assert page.evaluate("""() => [...document.childNodes].every(
                n => n.nodeType !== Node.PROCESSING_INSTRUCTION_NODE)""")
            text = page.inner_text("body")
            assert "This is a web feed" in text and "XSLT" not in text
            assert "Welcome to digest" in text
            assert page.input_value("input.feed-url") == project.url + "feed.atom"

            page.goto(project.url)
            page.fill("form.subscribe input[name=email]", "reader@example.org")
            page.click("form.subscribe button")
            page.wait_for_url(project.url + "subscribe")
            assert "Check your inbox" in page.inner_text("main")
            wait_for(lambda: bool(mails_to(smtp, "reader@example.org")), "the confirmation")

            page.goto(unsubscribe_url)
            assert "Unsubscribe?" in page.inner_text("main")
            assert "ann@example.org" in page.inner_text("main")
            assert "ann@example.org  subscribed" in _listing(project)  # GET changed nothing
            page.click("form.action button")
            page.wait_for_load_state()
            assert "Unsubscribed" in page.inner_text("main")
        finally:
            browser.close()
    assert re.search(r"ann@example\.org\s+unsubscribed", _listing(project))


def _listing(project: Project) -> str:
    return re.sub(r"[ \t]+", "  ", project.cli("subscribers", "list").stdout)


def test_a_browser_shows_an_articles_image(project: Project) -> None:
    chromium = _chromium()
    _require(chromium, "chromium", "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright  # optional, as above

    write(project.base / "articles" / "pics" / "sky.png", png(8, 6))
    write(project.base / "articles" / "sky.md",
          "---\ntitle: Sky\ndate: 2024-04-05\n---\n![The sky](pics/sky.png)\n")
    assert project.cli("publish").returncode == 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(project.url + "articles/sky.html")
            page.wait_for_function("document.images.length > 0 && document.images[0].complete")
            assert page.evaluate("document.images[0].naturalWidth") == 8
        finally:
            browser.close()


def test_a_browser_shows_the_digest_page_its_image_a_caption_and_dark_mode(
        project: Project, smtp: SMTPServer) -> None:
    chromium = _chromium()
    _require(chromium, "chromium", "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright  # optional, as above

    write(project.base / "articles" / "pics" / "sky.png", png(8, 6))
    write(project.base / "articles" / "sky.md",
          "---\ntitle: Sky\ndate: 2024-04-05\n---\n![The sky at dusk](pics/sky.png)\n")
    assert project.cli("publish").returncode == 0
    project.cli("subscribers", "add", "ann@example.org")
    project.cli("send")
    html = mails_to(smtp, "ann@example.org")[0].parsed().get_body(("html",))
    assert html is not None
    view = re.search(r'<a href="([^"]+)"[^>]*>View this digest in your browser', html.get_content())
    assert view is not None and view.group(1) == project.url + "digests/1.html"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(view.group(1))
            assert page.title().startswith("Digest 1 (")
            assert "Sky" in page.inner_text("main")
            page.wait_for_function("document.images.length > 0 && document.images[0].complete")
            assert page.evaluate("document.images[0].naturalWidth") == 8
            background = "getComputedStyle(document.body).backgroundColor"
            page.emulate_media(color_scheme="light")
            assert page.evaluate(background) == "rgb(255, 255, 255)"
            page.emulate_media(color_scheme="dark")
            assert page.evaluate(background) == "rgb(22, 22, 24)"

            page.goto(project.url + "articles/sky.html")
            assert page.inner_text("figure figcaption") == "The sky at dusk"
            page.wait_for_function("document.images.length > 0 && document.images[0].complete")
            assert page.evaluate("document.images[0].naturalWidth") == 8
        finally:
            browser.close()
