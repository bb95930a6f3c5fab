"""`digest serve` as a person runs it: the CLI in its own process, real HTTP, real SMTP.

Each test publishes the sample articles with `digest publish`, starts
`digest serve` on a free loopback port (BASE_URL pointing at it) and talks to
it with httpx, while mail goes to an aiosmtpd server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import digest_cli
from tests.fixtures_mail import SMTPServer, smtp_servers  # noqa: F401
from tests.fixtures_serve import Project, mails_to, project_env, served_project, wait_for

_CONFIRM = re.compile(r"http://\S+?/confirm\?token=[A-Za-z0-9_.-]+")


@pytest.fixture
def smtp(smtp_servers: Callable[..., SMTPServer]) -> SMTPServer:  # noqa: F811
    return smtp_servers()


@pytest.fixture
def project(tmp_path: Path, smtp: SMTPServer) -> Iterator[Project]:
    with served_project(tmp_path, smtp) as running:
        yield running


def test_conditional_gets_follow_publishing(project: Project) -> None:
    with httpx.Client(base_url=project.url, timeout=10) as client:
        first = client.get("/feed.atom")
        assert first.status_code == 200
        etag = first.headers["etag"]
        for _ in range(2):
            again = client.get("/feed.atom", headers={"If-None-Match": etag})
            assert again.status_code == 304
            assert again.headers["etag"] == etag
        project.cli("publish")  # nothing changed: same bytes, same ETag
        assert client.get("/feed.atom", headers={"If-None-Match": etag}).status_code == 304

        path = project.base / "articles" / "001_plain_text_headers.txt"
        path.write_text(path.read_text(encoding="utf-8") + "\nA paragraph added later.\n",
                        encoding="utf-8")
        project.cli("publish")
        changed = client.get("/feed.atom", headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != etag
        assert "A paragraph added later." in changed.text
        assert client.get("/feed.atom", headers={
            "If-None-Match": changed.headers["etag"]}).status_code == 304

        index = client.get("/")
        assert f'<form class="subscribe" method="post" action="{project.url}subscribe">' \
            in index.text
    log = project.log()
    assert '"GET /feed.atom HTTP/1.1" 304 0' in log
    assert re.search(r'INFO digest\.serve: 127\.0\.0\.1:\d+ "GET / HTTP/1\.1" 200 \d+', log)


def test_subscribe_confirm_then_the_digest_reaches_the_address(project: Project,
                                                              smtp: SMTPServer) -> None:
    with httpx.Client(timeout=10) as client:
        answer = client.post(project.url + "subscribe", data={"email": "reader@example.org"})
        assert answer.status_code == 200
        wait_for(lambda: bool(mails_to(smtp, "reader@example.org")), "the confirmation mail")
        mail = mails_to(smtp, "reader@example.org")[0].parsed()
        body = mail.get_body(("plain",))
        assert body is not None
        match = _CONFIRM.search(body.get_content())
        assert match, body.get_content()
        link = match.group(0)
        assert link.startswith(project.url)

        assert "pending" in project.cli("subscribers", "list").stdout
        page = client.get(link)
        assert page.status_code == 200 and "Confirm" in page.text
        assert "pending" in project.cli("subscribers", "list").stdout  # GET changed nothing
        assert client.post(link).status_code == 200
        assert client.post(link).status_code == 200  # twice is harmless

    listed = project.cli("subscribers", "list").stdout
    assert re.search(r"reader@example\.org\s+subscribed", listed), listed
    project.cli("send")
    digests = [m for m in mails_to(smtp, "reader@example.org")
               if "List-Unsubscribe" in m.parsed()]
    assert len(digests) == 1
    assert "Welcome to digest" in digests[0].parsed().get_body(("plain",)).get_content()


def test_one_click_unsubscribe_from_a_real_digest_stops_the_next_one(project: Project,
                                                                    smtp: SMTPServer) -> None:
    project.cli("subscribers", "add", "ann@example.org", "bob@example.org")
    project.cli("send")
    first = mails_to(smtp, "ann@example.org")[0].parsed()
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.match(r"<(http://[^>]+)>", str(first["List-Unsubscribe"]))
    assert url, first["List-Unsubscribe"]
    assert url.group(1).startswith(project.url + "unsubscribe?token=")

    # What a mail provider does for RFC 8058 one-click: POST, no cookie, this body.
    done = httpx.post(url.group(1), content=b"List-Unsubscribe=One-Click", timeout=10,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200

    project.add_article("later.txt", "A later article")
    project.cli("publish")
    project.cli("send")
    assert len(mails_to(smtp, "ann@example.org")) == 1
    second = mails_to(smtp, "bob@example.org")
    assert len(second) == 2
    assert "A later article" in second[1].parsed().get_body(("plain",)).get_content()


def test_serve_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    env = project_env(tmp_path, 8080, None, SECRET_KEY="")
    result = digest_cli("serve", "--port", "0", cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2
    assert "SECRET_KEY is not set" in result.stderr
    assert "hint:" in result.stderr
