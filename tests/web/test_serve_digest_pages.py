"""The web copy of a digest, end to end: `digest send` to a real SMTP server, the mail's
"view in browser" link answered by `digest serve`, kept by a later `digest publish`."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
from aiosmtpd.smtp import Envelope

from tests.fixtures_mail import Behaviour, SMTPServer
from tests.fixtures_serve import mails_to, served_project

_VIEW_HTML = re.compile(r'<a href="([^"]+)"[^>]*>View this digest in your browser</a>')
_VIEW_TEXT = re.compile(r"^View it in your browser: (\S+)\r?$", re.MULTILINE)
_READ = re.compile(r"^Read: (\S+)\r?$", re.MULTILINE)


def test_view_in_browser_page_is_online_before_the_first_message_and_stays(
        tmp_path: Path, smtp_servers: Callable[..., SMTPServer]) -> None:
    page = tmp_path / "public" / "digests" / "1.html"
    seen: list[bool] = []  # for each message, at DATA: did the page exist?

    def look(envelope: Envelope) -> None:
        seen.append(page.is_file())

    smtp = smtp_servers(behaviour=Behaviour(on_data=look))
    with served_project(tmp_path, smtp) as project:
        assert not page.exists()
        project.cli("subscribers", "add", "reader@example.org", "other@example.org")
        result = project.cli("send")
        assert "edition 1 (created" in result.stdout
        assert seen == [True, True]

        mail = mails_to(smtp, "reader@example.org")[0].parsed()
        html = mail.get_body(("html",))
        text = mail.get_body(("plain",))
        assert html is not None and text is not None
        found = _VIEW_HTML.search(html.get_content())
        assert found is not None
        url = found.group(1)
        assert url == project.url + "digests/1.html"
        assert _VIEW_TEXT.findall(text.get_content()) == [url]
        articles = _READ.findall(text.get_content())
        assert len(articles) == 4  # the published sample articles

        with httpx.Client(timeout=10) as client:
            answer = client.get(url)
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/html")
            for article in articles:
                assert f'href="{article}"' in answer.text
                assert client.get(article).status_code == 200
            listing = client.get(project.url + "digests/")
            assert listing.status_code == 200 and f'href="{url}"' in listing.text
            assert f'href="{project.url}digests/index.html">Past digests' in \
                client.get(project.url).text

            project.add_article("later.txt", "A later article", date="2024-04-05")
            project.cli("publish")
            assert "A later article" in client.get(project.url).text  # a full publish ran
            again = client.get(url)
            assert again.status_code == 200
            assert again.text == answer.text
            assert "A later article" not in again.text
