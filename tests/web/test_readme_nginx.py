"""The README's nginx feed negotiation, run by a real nginx over a published site.

The snippet is taken from README.md itself (the ```nginx block that maps
``$http_accept``), so the documentation and this test cannot drift apart. Only
its ``root`` is pointed at the published output and a ``listen`` on a free port
is added. Without nginx the test is skipped with a notice; in CI (CI=true) it
fails instead, as .ci/run installs nginx.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import feedparser
import httpx
import pytest

from tests.conftest import REPO, missing, stop_process, wait_for, write
from tests.fixtures_mail import free_port
from tests.publish.test_assets import run

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
READERS = ("application/atom+xml, application/rss+xml;q=0.9, text/html;q=0.5, */*;q=0.1",
           "application/rss+xml, application/rdf+xml;q=0.8, */*;q=0.5", "*/*", None)
DOC_ROOT = "root /srv/digest/public;"

_CONFIG = """\
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{snippet}
}}
"""


def readme_snippet() -> str:
    """The README's nginx block that negotiates the feed (the one mapping $http_accept)."""
    blocks = re.findall(r"^( *)```nginx\n(.*?)^\1```", (REPO / "README.md").read_text(),
                        re.MULTILINE | re.DOTALL)
    found = [textwrap.dedent(body) for _, body in blocks if "$http_accept" in body]
    assert len(found) == 1, "README.md should have one ```nginx block mapping $http_accept"
    return found[0]


def nginx_binary() -> str | None:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found if os.access(found, os.X_OK) else None


@dataclass(frozen=True)
class Nginx:
    url: str
    output: Path


@pytest.fixture
def nginx(site: Path, tmp_path: Path) -> Iterator[Nginx]:
    binary = nginx_binary()
    if binary is None:
        missing("nginx is not installed (apt-get install nginx-light)",
                "the README's nginx snippet is not tested")
    write(site / "articles" / "a.txt", "tags Plain Text\ndate 2024-03-01 An article. Body.\n")
    write(site / "articles" / "b.md", "---\ndate: 2024-03-02\ntags: [news]\n---\nAnother one.\n")
    report, settings = run(site)
    assert report.published == 2 and not report.problems
    snippet = readme_snippet()
    assert DOC_ROOT in snippet, f"the README's snippet no longer says {DOC_ROOT!r}"
    port = free_port()
    served = snippet.replace(DOC_ROOT, f"root {settings.output_dir};").replace(
        "server {", f"server {{\n    listen 127.0.0.1:{port};", 1)
    folder = tmp_path / "nginx"
    folder.mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(_CONFIG.format(d=folder, snippet=textwrap.indent(served, "    ")))
    process = subprocess.Popen([binary, "-p", str(folder), "-e", str(folder / "error.log"),
                                "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)

    def listening() -> bool:
        if process.poll() is not None:
            log = (folder / "error.log").read_text() if (folder / "error.log").exists() else ""
            pytest.fail(f"nginx exited: {process.stderr.read().decode() if process.stderr else ''}"
                        f"{log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_for(listening, "nginx to listen")
        yield Nginx(f"http://127.0.0.1:{port}", settings.output_dir)
    finally:
        stop_process(process)


def get(server: Nginx, path: str, accept: str | None) -> httpx.Response:
    headers = {} if accept is None else {"Accept": accept}
    response = httpx.get(server.url + path, headers=headers)
    assert response.status_code == 200, (path, accept, response.status_code)
    return response


@pytest.mark.parametrize("feed", ["feed.atom", "feed.rss", "tags/plain-text.atom"])
def test_a_browser_asking_for_a_feed_gets_its_html_page(nginx: Nginx, feed: str) -> None:
    page = "tags/plain-text.html" if feed.startswith("tags/") else "feed.html"
    response = get(nginx, f"/{feed}", BROWSER)
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == (nginx.output / page).read_bytes()
    assert "Accept" in response.headers["vary"]


@pytest.mark.parametrize("accept", READERS)
def test_a_feed_reader_gets_the_feed_with_its_type(nginx: Nginx, accept: str | None) -> None:
    for feed, kind, version in (("feed.atom", "application/atom+xml", "atom10"),
                                ("feed.rss", "application/rss+xml", "rss20"),
                                ("tags/plain-text.atom", "application/atom+xml", "atom10")):
        response = get(nginx, f"/{feed}", accept)
        assert response.headers["content-type"] == kind, (feed, accept)
        assert response.content == (nginx.output / feed).read_bytes()
        assert "Accept" in response.headers["vary"]
        parsed = feedparser.parse(response.content)
        assert parsed.bozo == 0 and parsed.version == version and parsed.entries


def test_other_files_are_served_as_they_are(nginx: Nginx) -> None:
    page = get(nginx, "/index.html", BROWSER)
    assert page.headers["content-type"].startswith("text/html")
    assert page.content == (nginx.output / "index.html").read_bytes()
