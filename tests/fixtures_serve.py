"""Fixtures of the web server tests: uvicorn in a thread, and `digest serve` as a process.

:func:`running_server` runs an app as `digest serve` configures uvicorn, in a
thread of the test process. :func:`served_project` makes a project folder
(sample articles, SQLite state, a test SMTP server), publishes it with the
real CLI and runs ``python -m digest serve`` on a free loopback port, with
BASE_URL pointing at it, so links in mail and pages lead back to it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from digest.web.limits import LimitedHttpToolsProtocol
from digest.web.server import DigestApp, build_server, listen
from tests.conftest import REPO, cli_env, digest_cli, wait_for
from tests.fixtures_mail import Received, SMTPServer, free_port

SECRET_KEY = "serve-test-secret-key-0123456789"
ARTICLE = "title {title}\ndate {date} {lead}\n\nA second paragraph.\n"


@contextmanager
def running_server(app: DigestApp, protocol: type[LimitedHttpToolsProtocol] | None = None,
                   ) -> Iterator[str]:
    """Run `app` on uvicorn (as `digest serve` configures it) in a thread; yield its URL."""
    sock = listen("127.0.0.1", 0)
    server = build_server(app) if protocol is None else build_server(app, protocol)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        def started() -> bool:
            assert thread.is_alive(), "the server thread ended before it started"
            return bool(server.started)

        wait_for(started, "the server to start", timeout=10)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()


def mails_to(smtp: SMTPServer, address: str) -> list[Received]:
    return [m for m in smtp.received if m.rcpt_to == address]


@dataclass
class Project:
    """A published project folder served by a `digest serve` process."""

    base: Path
    env: dict[str, str]
    url: str  # with a trailing slash
    process: subprocess.Popen[bytes]
    log_path: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = digest_cli(*args, cwd=self.base, env=self.env)
        assert result.returncode in (0, 3), result.stderr
        return result

    def add_article(self, name: str, title: str, date: str = "2024-04-02",
                    lead: str = "Something happened today.") -> None:
        path = self.base / "articles" / name
        path.write_text(ARTICLE.format(title=title, date=date, lead=lead), encoding="utf-8")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def project_env(base: Path, port: int, smtp: SMTPServer | None, **extra: str) -> dict[str, str]:
    env = {
        "BASE_URL": f"http://127.0.0.1:{port}/",
        "SITE_TITLE": "Served News",
        "DATABASE_URL": "sqlite:///state.sqlite3",
        "SECRET_KEY": SECRET_KEY,
        "DIGEST_FROM": "Served News <news@example.org>",
        "SUBSCRIBE_FORM": "on",
        "SERVE_HOST": "127.0.0.1",
        "SERVE_PORT": str(port),
    }
    if smtp is not None:
        env.update(smtp.env())
    env.update(extra)
    return env


@contextmanager
def served_project(base: Path, smtp: SMTPServer | None, **extra: str) -> Iterator[Project]:
    """Copy the sample articles, publish them with the CLI, run `digest serve` on them."""
    shutil.copytree(REPO / "articles", base / "articles")
    port = free_port()
    env = project_env(base, port, smtp, **extra)
    result = digest_cli("publish", cwd=base, env=env)
    assert result.returncode == 0, result.stderr
    log_path = base / "serve.log"
    with log_path.open("wb") as log, subprocess.Popen(
        [sys.executable, "-m", "digest", "serve"], cwd=base, env=cli_env(env),
        stdout=log, stderr=subprocess.STDOUT,
    ) as process:
        project = Project(base, env, f"http://127.0.0.1:{port}/", process, log_path)
        try:
            def up() -> bool:
                assert process.poll() is None, project.log()
                try:
                    return httpx.get(project.url + "feed.json", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(up, "digest serve to answer")
            yield project
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0, project.log()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
