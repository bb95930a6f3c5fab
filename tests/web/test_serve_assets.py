"""An article with an image, a PDF and an MP3, end to end: `digest publish` and `digest serve`
as processes, feeds read by feedparser, the digest mail caught by aiosmtpd, every link fetched."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

import feedparser
import httpx
import pytest

from tests.conftest import write
from tests.fixtures_mail import SMTPServer
from tests.fixtures_serve import mails_to, served_project
from tests.publish.test_assets import MP3, PDF, png

ARTICLE = """---
title: Night sky
date: 2024-04-03
enclosure: media/night.mp3
tags: [astronomy]
---
![The night sky](media/night.png)

The [full report](media/report.pdf) is here.
"""


@pytest.fixture
def smtp(smtp_servers: Callable[..., SMTPServer]) -> SMTPServer:
    return smtp_servers()


@pytest.mark.slow
def test_image_pdf_and_mp3_work_on_the_page_in_feeds_and_in_the_digest(tmp_path: Path,
                                                                       smtp: SMTPServer) -> None:
    with served_project(tmp_path, smtp) as project, \
            httpx.Client(timeout=10) as client:
        arts = project.base / "articles"
        write(arts / "media" / "night.png", png(4, 4))
        write(arts / "media" / "report.pdf", PDF)
        write(arts / "media" / "night.mp3", MP3)
        write(arts / "night.md", ARTICLE)
        result = project.cli("publish")
        assert result.returncode == 0, result.stderr
        image = project.url + "articles/media/night.png"
        pdf = project.url + "articles/media/report.pdf"
        mp3 = project.url + "articles/media/night.mp3"

        page_url = project.url + "articles/night.html"
        page = client.get(page_url)
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert {urljoin(page_url, s) for s in sources} >= {image, pdf}

        for name in ("feed.atom", "feed.rss"):
            parsed = feedparser.parse(client.get(project.url + name).content)
            assert parsed.bozo == 0, parsed.get("bozo_exception")
            (entry,) = [e for e in parsed.entries if e.title == "Night sky"]
            content = entry.content[0].value
            assert f'src="{image}"' in content and f'href="{pdf}"' in content
            assert [(e.href, int(e.length)) for e in entry.enclosures] == [(mp3, len(MP3))]
        feed = client.get(project.url + "feed.json").json()
        (item,) = [i for i in feed["items"] if i["title"] == "Night sky"]
        assert item["attachments"][0]["url"] == mp3

        for url, body, media in ((image, png(4, 4), "image/png"), (pdf, PDF, "application/pdf"),
                                 (mp3, MP3, "audio/mpeg")):
            answer = client.get(url)
            assert answer.status_code == 200 and answer.content == body
            assert answer.headers["content-type"].startswith(media)

        project.cli("subscribers", "add", "ann@example.org")
        project.cli("send")
        (mail,) = mails_to(smtp, "ann@example.org")
        html = mail.parsed().get_body(("html",))
        assert html is not None
        shown = re.findall(r'<img [^>]*src="([^"]+)"', html.get_content())
        assert shown == [image]
        assert client.get(shown[0]).status_code == 200


@pytest.mark.slow
def test_browsers_get_the_feed_page_and_feed_readers_the_feed(tmp_path: Path) -> None:
    with served_project(tmp_path, None) as project, httpx.Client(timeout=10) as client:
        browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                   "Accept-Encoding": "gzip"}
        page = client.get(project.url + "feed.atom", headers=browser)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "Accept" in [v.strip() for v in page.headers["vary"].split(",")]
        assert f'value="{project.url}feed.atom"' in page.text  # the address to copy
        assert "This is a web feed" in page.text and "xml-stylesheet" not in page.text
        assert page.text == client.get(project.url + "feed.html").text
        again = client.get(project.url + "feed.atom",
                           headers={**browser, "If-None-Match": page.headers["etag"]})
        assert again.status_code == 304

        for accept in ("application/atom+xml", "*/*", None):
            reader = client.get(project.url + "feed.atom",
                                headers={"Accept": accept} if accept else {})
            assert reader.headers["content-type"] == "application/atom+xml"
            assert "Accept" in reader.headers["vary"]
            parsed = feedparser.parse(reader.content)
            assert parsed.bozo == 0 and parsed.version == "atom10"
        tag_page = client.get(project.url + "tags/reference.atom", headers=browser)
        assert tag_page.headers["content-type"].startswith("text/html")
        assert 'href="' + project.url + 'tags/reference.atom"' in tag_page.text
