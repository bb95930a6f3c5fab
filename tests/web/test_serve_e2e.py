"""`digest serve` as a person runs it: the CLI in its own process, real HTTP, real SMTP.

Each test publishes the sample articles with `digest publish`, starts
`digest serve` on a free loopback port (BASE_URL pointing at it) and talks to
it with httpx, while mail goes to an aiosmtpd server.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from digest.mail.tokens import PURPOSE_UNSUBSCRIBE, make_token
from digest.settings import ENV_NAMES
from tests.conftest import REPO, digest_cli, wait_for
from tests.fixtures_mail import NOW, SMTPServer, free_port
from tests.fixtures_serve import SECRET_KEY, Project, mails_to, project_env, served_project

_CONFIRM = re.compile(r"http://\S+?/confirm\?token=[A-Za-z0-9_.-]+")


@pytest.fixture
def smtp(smtp_servers: Callable[..., SMTPServer]) -> SMTPServer:
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
    # Access log lines are written after the response is sent: wait for the last one.
    index_line = re.compile(r'INFO digest\.serve: 127\.0\.0\.1:\d+ "GET / HTTP/1\.1" 200 \d+')
    wait_for(lambda: bool(index_line.search(project.log())), "the access log line of GET /")
    assert '"GET /feed.atom HTTP/1.1" 304 0' in project.log()


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

    def welcomes() -> list[str]:
        return [str(m.parsed()["Subject"]) for m in mails_to(smtp, "reader@example.org")
                if str(m.parsed()["Subject"]).startswith("Welcome to")]

    wait_for(lambda: bool(welcomes()), "the welcome mail")
    project.cli("send")
    digests = [m for m in mails_to(smtp, "reader@example.org")
               if m.parsed()["Precedence"] == "bulk"]
    assert len(digests) == 1
    assert len(welcomes()) == 1
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


def test_run_with_serve_is_one_service_for_scheduler_and_web(tmp_path: Path,
                                                              smtp: SMTPServer) -> None:
    """`digest run --serve`: publishes on its schedule and serves it; SIGTERM stops both."""
    shutil.copytree(REPO / "articles", tmp_path / "articles")
    port = free_port()
    env = project_env(tmp_path, port, smtp, PUBLISH_INTERVAL="1h", DIGEST_SCHEDULE="0 7 1 1 *")
    missing = digest_cli("run", "--serve", cwd=tmp_path, env=dict(env, SECRET_KEY=""), timeout=60)
    assert missing.returncode == 2 and "SECRET_KEY" in missing.stderr
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    full_env.update(env, PYTHONPATH=str(REPO))
    url = f"http://127.0.0.1:{port}/"
    with subprocess.Popen([sys.executable, "-m", "digest", "run", "--serve"], cwd=tmp_path,
                          env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          ) as process:
        try:
            def published() -> bool:
                assert process.poll() is None
                try:
                    return httpx.get(url + "feed.atom", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(published, "the first publish to be served", timeout=30)
            token = make_token(SECRET_KEY, PURPOSE_UNSUBSCRIBE, "ann@example.org", NOW)
            assert httpx.post(f"{url}unsubscribe?token={token}", timeout=5).status_code == 200
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "digest run stopped" in text
    # The token acts for its address: the access log names the request, not the token.
    assert re.search(r'INFO digest\.serve: 127\.0\.0\.1:\d+ "POST /unsubscribe\?token=\[redacted\] '
                     r'HTTP/1\.1" 200', text), text
    assert token not in text and token.split(".")[0] not in text
    assert "unsubscribed" in digest_cli("subscribers", "list", cwd=tmp_path, env=env).stdout


def test_sighup_restarts_serve_with_the_settings_of_env(tmp_path: Path) -> None:
    """SIGHUP used to end `digest serve` silently (exit 129); now it reloads .env."""
    shutil.copytree(REPO / "articles", tmp_path / "articles")
    port = free_port()
    env = project_env(tmp_path, port, None)
    assert digest_cli("publish", cwd=tmp_path, env=env).returncode == 0
    del env["SERVE_PORT"]  # from .env, which SIGHUP reads anew
    (tmp_path / ".env").write_text(f"SERVE_PORT={port}\n")
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    full_env.update(env, PYTHONPATH=str(REPO))

    def answers(at: int) -> bool:
        assert process.poll() is None
        try:
            return httpx.get(f"http://127.0.0.1:{at}/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    with subprocess.Popen([sys.executable, "-m", "digest", "serve"], cwd=tmp_path,
                          env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          ) as process:
        try:
            wait_for(lambda: answers(port), "the server", timeout=30)
            moved = free_port()
            (tmp_path / ".env").write_text(f"SERVE_PORT={moved}\n")
            process.send_signal(signal.SIGHUP)
            wait_for(lambda: answers(moved), "the server on the new port", timeout=30)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "SIGHUP: reloading" in text and "Traceback" not in text
    assert f"serving {tmp_path / 'public'} on http://127.0.0.1:{moved}/" in text


def test_a_terminal_that_hangs_up_stops_serve_for_good(tmp_path: Path) -> None:
    """SIGHUP also comes from a closing terminal: then `digest serve` ends, not restarts."""
    port = free_port()
    env = project_env(tmp_path, port, None)
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    full_env.update(env, PYTHONPATH=str(REPO))
    pid, terminal = pty.fork()
    if pid == 0:  # the child: `digest serve` on the terminal's other side
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "digest", "serve"], full_env)  # noqa: S606
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 404
            except httpx.TransportError:
                return False

        wait_for(up, "the server", timeout=30)
        os.close(terminal)  # the terminal hangs up
        wait_for(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, "serve to end", timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert not up()
