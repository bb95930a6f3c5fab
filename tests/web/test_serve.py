"""`digest serve` over real HTTP: a uvicorn server on a loopback port, httpx as the reader.

The output folder is laid out as the publisher leaves it: ``public`` is a
symlink to ``.public.generations/<N>``, and unchanged files are hard links
between generations.
"""

from __future__ import annotations

import gzip
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Route

from digest.errors import ServeError
from digest.settings import Settings, load_settings
from digest.web.server import create_app, serve
from tests.conftest import wait_for
from tests.fixtures_serve import running_server

ROOT = Path(__file__).resolve().parents[2]

ATOM = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<?xml-stylesheet href="feed.xsl" type="text/xsl"?>\n'
    b'<feed xmlns="http://www.w3.org/2005/Atom"><title>News</title>'
    + b"<entry><title>An article about the weather</title></entry>" * 40
    + b"</feed>\n"
)
RSS = b'<?xml version="1.0"?>\n<rss version="2.0"><channel><title>News</title></channel></rss>\n'
JSON_FEED = b'{"version": "https://jsonfeed.org/version/1.1", "title": "News", "items": []}\n'
INDEX = b"<!doctype html><title>News</title><h1>News</h1>\n" + b"<p>Lorem ipsum dolor.</p>\n" * 30
XSL = (
    b'<?xml version="1.0"?>\n<xsl:stylesheet version="1.0" '
    b'xmlns:xsl="http://www.w3.org/1999/XSL/Transform"/>\n'
)
CSS = b"body { font-family: sans-serif; }\n"
SECRET = b"root:x:0:0:secret outside the output folder\n"


class Site:
    """An output folder in generations, as the publisher writes it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.public = base / "public"
        self.generations = base / ".public.generations"
        self.number = 0

    @property
    def current(self) -> Path:
        return self.generations / str(self.number)

    def publish(self, files: dict[str, bytes], previous: dict[str, bytes] | None = None) -> Path:
        """Write a new generation (hard-linking files unchanged since `previous`) and swap."""
        old = self.current if self.number else None
        self.number += 1
        folder = self.current
        folder.mkdir(parents=True)
        for name, data in files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if old is not None and previous is not None and previous.get(name) == data:
                os.link(old / name, target)
            else:
                target.write_bytes(data)
        link = self.base / "public.new"
        link.symlink_to(folder.relative_to(self.base))
        os.replace(link, self.public)
        return folder


@dataclass
class Running:
    site: Site
    files: dict[str, bytes]
    client: httpx.Client
    url: str


FILES = {
    "feed.atom": ATOM,
    "feed.rss": RSS,
    "feed.json": JSON_FEED,
    "feed.xsl": XSL,
    "style.css": CSS,
    "index.html": INDEX,
    "archive/index.html": INDEX.replace(b"News", b"Archive"),
    "archive/feed.xml": ATOM.replace(b"News", b"Archive"),
}


def _settings(base: Path, port: int = 8080) -> Settings:
    return load_settings({"OUTPUT_DIR": "public", "SERVE_PORT": str(port)}, base)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    built = Site(tmp_path)
    built.publish(FILES)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return built


@pytest.fixture
def web(site: Site) -> Iterator[Running]:
    with running_server(create_app(_settings(site.base))) as url, httpx.Client(
        base_url=url, timeout=10
    ) as client:
        yield Running(site, dict(FILES), client, url)


def rewrite(path: Path, data: bytes) -> None:
    """Change a file in place, as a person editing it would.

    The kernel stamps mtime from a coarse clock (a few ms), so two writes in
    quick succession can share one; a person's edit never is that quick.
    """
    before = path.stat().st_mtime_ns
    path.write_bytes(data)
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 10_000_000, before + 10_000_000))


def raw_get(web: Running, target: bytes, method: str = "GET") -> httpx.Response:
    """A request whose target is sent exactly as given (httpx would normalise it)."""
    return web.client.request(method, "/", extensions={"target": target})


# --- content types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/feed.atom", "application/atom+xml"),
        ("/feed.rss", "application/rss+xml"),
        ("/feed.json", "application/feed+json"),
        ("/feed.xsl", "text/xsl"),
        ("/style.css", "text/css"),
        ("/", "text/html; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/archive/", "text/html; charset=utf-8"),
        ("/archive/feed.xml", "application/atom+xml"),
    ],
)
def test_files_are_served_with_their_content_type(web: Running, path: str, media_type: str) -> None:
    response = web.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type.split(";")[0]
    if "charset" in media_type:
        assert response.headers["content-type"] == media_type
    name = path.lstrip("/")
    name = name + "index.html" if not name or name.endswith("/") else name
    assert response.content == web.files[name]


def test_folder_without_slash_redirects_to_its_index(web: Running) -> None:
    response = web.client.get("/archive?page=2")
    assert response.status_code == 301
    assert response.headers["location"] == "/archive/?page=2"
    assert web.client.get("/archive", follow_redirects=True).content == web.files[
        "archive/index.html"
    ]


def test_redirect_never_leaves_the_site(web: Running) -> None:
    (web.site.current / "evil.example").mkdir()
    response = raw_get(web, b"//evil.example")
    assert response.status_code == 301
    assert response.headers["location"] == "/evil.example/"


# --- conditional requests ------------------------------------------------------------------


def test_polling_an_unchanged_feed_gets_304_with_the_same_etag(web: Running) -> None:
    first = web.client.get("/feed.atom")
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.headers["last-modified"]
    for _ in range(3):
        again = web.client.get("/feed.atom", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == "no-cache"
        assert again.headers["vary"] == "Accept-Encoding, Accept"  # styled feed: see below


def test_weak_and_listed_etags_match(web: Running) -> None:
    etag = web.client.get("/feed.atom").headers["etag"]
    listed = f'"something-else", W/{etag}'
    assert web.client.get("/feed.atom", headers={"If-None-Match": listed}).status_code == 304
    assert web.client.get("/feed.atom", headers={"If-None-Match": "*"}).status_code == 304
    other = web.client.get("/feed.atom", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200
    assert other.content == ATOM


def test_if_modified_since(web: Running) -> None:
    first = web.client.get("/feed.rss")
    modified = first.headers["last-modified"]
    assert web.client.get("/feed.rss", headers={"If-Modified-Since": modified}).status_code == 304
    later = formatdate(time.time() + 3600, usegmt=True)
    assert web.client.get("/feed.rss", headers={"If-Modified-Since": later}).status_code == 304
    earlier = formatdate(time.time() - 86400 * 365, usegmt=True)
    response = web.client.get("/feed.rss", headers={"If-Modified-Since": earlier})
    assert response.status_code == 200
    assert response.content == RSS
    garbage = web.client.get("/feed.rss", headers={"If-Modified-Since": "yesterday"})
    assert garbage.status_code == 200


def test_if_none_match_wins_over_if_modified_since(web: Running) -> None:
    first = web.client.get("/feed.atom")
    headers = {"If-None-Match": '"stale"', "If-Modified-Since": first.headers["last-modified"]}
    assert web.client.get("/feed.atom", headers=headers).status_code == 200


def test_a_file_changed_on_disk_is_served_new_at_the_next_request(web: Running) -> None:
    first = web.client.get("/feed.atom")
    etag = first.headers["etag"]
    newer = ATOM.replace(b"weather", b"harvest")
    rewrite(web.site.current / "feed.atom", newer)  # same size, same inode
    response = web.client.get("/feed.atom", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.content == newer
    assert response.headers["etag"] != etag
    polled = web.client.get("/feed.atom", headers={"If-None-Match": response.headers["etag"]})
    assert polled.status_code == 304


def test_a_new_generation_changes_only_what_changed(web: Running) -> None:
    atom = web.client.get("/feed.atom")
    css = web.client.get("/style.css")
    changed = dict(FILES, **{"feed.atom": ATOM.replace(b"</feed>", b"<entry/></feed>")})
    del changed["feed.rss"]
    web.site.publish(changed, previous=FILES)
    assert (web.site.current / "style.css").stat().st_ino == (
        web.site.generations / "1" / "style.css"
    ).stat().st_ino

    unchanged = web.client.get("/style.css", headers={"If-None-Match": css.headers["etag"]})
    assert unchanged.status_code == 304
    new = web.client.get("/feed.atom", headers={"If-None-Match": atom.headers["etag"]})
    assert new.status_code == 200
    assert new.content == changed["feed.atom"]
    assert web.client.get("/feed.rss").status_code == 404


def test_republishing_unchanged_files_keeps_answering_304(web: Running) -> None:
    names = ("feed.atom", "feed.json")
    etags = {name: web.client.get("/" + name).headers["etag"] for name in names}
    for _ in range(3):
        web.site.publish(FILES, previous=FILES)
        for name, etag in etags.items():
            response = web.client.get("/" + name, headers={"If-None-Match": etag})
            assert response.status_code == 304, name


# --- HEAD, gzip, methods, 404 --------------------------------------------------------------


def test_head_has_the_headers_of_get_and_no_body(web: Running) -> None:
    get = web.client.get("/feed.atom", headers={"Accept-Encoding": "identity"})
    head = web.client.head("/feed.atom", headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "content-length", "etag", "last-modified"):
        assert head.headers[name] == get.headers[name]
    assert int(head.headers["content-length"]) == len(ATOM)
    missing = web.client.head("/nothing-here")
    assert missing.status_code == 404
    assert missing.content == b""


def test_gzip_for_clients_that_accept_it(web: Running) -> None:
    with web.client.stream("GET", "/feed.atom", headers={"Accept-Encoding": "gzip"}) as response:
        wire = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding, Accept"
    assert len(wire) == int(response.headers["content-length"]) < len(ATOM)
    assert gzip.decompress(wire) == ATOM

    plain = web.client.get("/feed.atom", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding, Accept"
    assert plain.content == ATOM
    refused = web.client.get("/feed.atom", headers={"Accept-Encoding": "gzip;q=0, br"})
    assert "content-encoding" not in refused.headers

    gzip_tag = response.headers["etag"]
    polled = web.client.get(
        "/feed.atom", headers={"Accept-Encoding": "gzip", "If-None-Match": gzip_tag}
    )
    assert polled.status_code == 304
    assert polled.headers["etag"] == gzip_tag


BROWSER_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                  "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_a_styled_feed_is_xml_for_browsers_and_atom_for_readers(web: Running, encoding: str) -> None:
    """Browsers show application/atom+xml as text; only an XML type gets the XSL applied."""
    browser = web.client.get("/feed.atom", headers={"Accept": BROWSER_ACCEPT,
                                                     "Accept-Encoding": encoding})
    assert browser.headers["content-type"] == "application/xml"
    assert browser.content == ATOM
    for accept in ("application/atom+xml, application/xml;q=0.9, */*;q=0.1", "*/*", None):
        headers = {"Accept-Encoding": encoding} | ({"Accept": accept} if accept else {})
        reader = web.client.get("/feed.atom", headers=headers)
        assert reader.headers["content-type"] == "application/atom+xml", accept
        assert reader.headers["etag"] == browser.headers["etag"]
        assert "Accept" in reader.headers["vary"]
    polled = web.client.get("/feed.atom", headers={"Accept": BROWSER_ACCEPT,
                                                    "Accept-Encoding": encoding,
                                                    "If-None-Match": browser.headers["etag"]})
    assert polled.status_code == 304
    unstyled = web.client.get("/feed.rss", headers={"Accept": BROWSER_ACCEPT})
    assert unstyled.headers["content-type"] == "application/rss+xml"  # names no stylesheet
    # Every feed varies on Accept: a page published beside it (feed.html) goes to browsers.
    assert "Accept" in unstyled.headers["vary"]


def test_wrong_methods_on_a_static_file_get_405(web: Running) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = web.client.request(method, "/feed.atom", content=b"x")
        assert response.status_code == 405, method
        assert response.headers["allow"] == "GET, HEAD"
    assert web.client.get("/feed.atom").content == ATOM


def test_missing_pages_get_a_plain_404_page(web: Running) -> None:
    response = web.client.get("/no/such/page.html")
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert b"Not found" in response.content
    assert web.client.get("/archive/missing/").status_code == 404


# --- nothing outside the output folder -----------------------------------------------------


TRAVERSALS = [
    b"/../etc/passwd",
    b"/../../../../../../etc/passwd",
    b"/../secret.txt",
    b"/%2e%2e/secret.txt",
    b"/%2E%2E/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/..%2fsecret.txt",
    b"/%2e%2e%2fsecret.txt",
    b"/archive/..%2f..%2fsecret.txt",
    b"/..%5csecret.txt",
    b"/..\\secret.txt",
    b"/archive/%2e%2e/%2e%2e/secret.txt",
    b"/feed.atom%00.html",
    b"/%00",
    b"/.%2e/secret.txt",
    b"/%252e%252e/secret.txt",
    b"/.public.generations/1/feed.atom",
    b"/../.public.generations/1/feed.atom",
    b"/passwd-link",
    b"/etc-link/passwd",
    b"/secret-link",
    b"/old-generation-link",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=[t.decode("latin-1") for t in TRAVERSALS])
def test_nothing_outside_the_output_folder_is_reachable(web: Running, target: bytes) -> None:
    current = web.site.current
    (current / "passwd-link").symlink_to("/etc/passwd")
    (current / "etc-link").symlink_to("/etc")
    (current / "secret-link").symlink_to(web.site.base / "secret.txt")
    web.site.publish(dict(FILES, **{"feed.atom": b"<feed/>"}), previous=FILES)
    for name in ("passwd-link", "etc-link", "secret-link"):
        (web.site.current / name).symlink_to(os.readlink(current / name))
    (web.site.current / "old-generation-link").symlink_to(current / "feed.atom")
    for method in ("GET", "HEAD"):
        response = raw_get(web, target, method)
        assert response.status_code in (400, 404), (method, response.status_code)
        assert b"root:" not in response.content
        assert b"secret" not in response.content
        assert b"weather" not in response.content


def test_symlink_inside_the_generation_is_followed_when_it_stays_inside(web: Running) -> None:
    (web.site.current / "latest.atom").symlink_to("feed.atom")
    response = web.client.get("/latest.atom")
    assert response.status_code == 200
    assert response.content == ATOM


def test_missing_output_folder_gives_404_until_the_first_publish(tmp_path: Path) -> None:
    with running_server(create_app(_settings(tmp_path))) as url, httpx.Client(
        base_url=url
    ) as client:
        assert client.get("/").status_code == 404
        Site(tmp_path).publish(FILES)
        assert client.get("/").content == INDEX


def test_large_files_are_streamed_and_still_conditional(site: Site) -> None:
    big = bytes(range(256)) * 6000  # 1.5 MB, above the in-memory limit
    (site.current / "podcast.mp3").write_bytes(big)
    with running_server(create_app(_settings(site.base))) as url, httpx.Client(
        base_url=url
    ) as client:
        response = client.get("/podcast.mp3")
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.content == big
        polled = client.get("/podcast.mp3", headers={"If-None-Match": response.headers["etag"]})
        assert polled.status_code == 304
        head = client.head("/podcast.mp3")
        assert head.headers["content-length"] == str(len(big)) and head.content == b""
        rewrite(site.current / "podcast.mp3", big[::-1])
        changed = client.get("/podcast.mp3", headers={"If-None-Match": response.headers["etag"]})
        assert changed.status_code == 200
        assert changed.content == big[::-1]


# --- logging, extra routes, serve() --------------------------------------------------------


def test_one_access_log_line_per_request(web: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="digest.serve")
    web.client.get("/feed.atom", headers={"Accept-Encoding": "identity"})
    web.client.get("/nope")

    def access_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "digest.serve"]

    # The line is logged once the response is sent, so it may trail the client's read.
    wait_for(lambda: len(access_lines()) >= 2, "two access log lines")
    time.sleep(0.05)  # and no third line trails them
    lines = access_lines()
    assert len(lines) == 2
    assert any('"GET /feed.atom HTTP/1.1" 200 ' + str(len(ATOM)) in line for line in lines)
    assert any('"GET /nope HTTP/1.1" 404' in line for line in lines)


def test_extra_routes_take_precedence_over_files(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="digest.serve")
    started: list[bool] = []

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.query_params.get('name', '')}")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    routes: list[BaseRoute] = [
        Route("/hello", hello, methods=["GET", "POST"]),
        Route("/feed.rss", hello, methods=["POST"]),
    ]
    app = create_app(_settings(site.base), routes, lifespan=lifespan)
    with running_server(app) as url, httpx.Client(base_url=url) as client:
        assert started == [True]
        assert client.post("/hello?name=ann").text == "hello ann"
        assert client.post("/feed.rss").text == "hello "
        # A route that matches the path but not the method answers for itself.
        assert client.get("/feed.rss").status_code == 405
        assert client.get("/feed.atom").content == ATOM
    lines = [r.getMessage() for r in caplog.records if r.name == "digest.serve"]
    assert any('"POST /hello?name=ann HTTP/1.1" 200 9' in line for line in lines)


def test_serve_refuses_a_port_in_use(site: Site) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError) as caught:
            serve(_settings(site.base, port))
    assert str(port) in caught.value.message
    assert caught.value.hint and "SERVE_PORT" in caught.value.hint


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_until_a_signal_and_stops_cleanly(site: Site, stop: signal.Signals) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    program = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from digest.web.server import serve\n"
        "from digest.settings import load_settings\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s')\n"
        f"serve(load_settings({{'OUTPUT_DIR': 'public', 'SERVE_PORT': '{port}'}}, Path.cwd()))\n"
        "print('returned')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with subprocess.Popen(
        [sys.executable, "-c", program], cwd=site.base, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    ) as process:
        try:
            answers: list[httpx.Response] = []

            def answered() -> bool:
                assert process.poll() is None, "the server ended before it answered"
                try:
                    answers.append(httpx.get(f"http://127.0.0.1:{port}/feed.json"))
                except httpx.ConnectError:
                    return False
                return True

            wait_for(answered, "the server to answer")
            assert answers[0].content == JSON_FEED
            process.send_signal(stop)
            output, _ = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "http=" in text and "returned" in text
    assert '"GET /feed.json HTTP/1.1" 200' in text


def test_serve_reports_a_failed_start_up_as_serve_error(site: Site) -> None:
    @asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("the store cannot be opened")
        yield  # pragma: no cover

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServeError) as caught:
        serve(_settings(site.base, port), lifespan=broken)
    assert "start-up" in caught.value.message
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # the port was released
