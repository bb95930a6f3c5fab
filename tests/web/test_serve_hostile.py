"""`digest serve` against hostile clients: every request answers within a bound.

A stranger can send any token, any number of header bytes, slowly or not at
all, and post from any page. These tests do that over real sockets against a
running `digest serve` (or, for the timeouts, against the same uvicorn set-up
with shorter limits in a thread) and check that the server answers, keeps
its memory and keeps answering everybody else.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.mail.tokens import PURPOSE_CONFIRM, PURPOSE_MANAGE, PURPOSE_UNSUBSCRIBE, make_token
from digest.web.limits import MAX_BODY, MAX_HEAD_BYTES, LimitedHttpToolsProtocol
from digest.web.server import create_app
from tests.conftest import make_settings, wait_for
from tests.fixtures_mail import NOW, start_server
from tests.fixtures_serve import SECRET_KEY, Project, running_server, served_project

TIMEOUT = 5.0
HOSTILE_TOKENS = [
    "AA.-1.AA",                      # looped forever in _base36
    "AA.-1." + "A" * 43,
    "YW5u.-zz." + "A" * 43,
    "YW5u.+1." + "A" * 43,
    "YW5u.001." + "A" * 43,
    "YW5u.ZZ." + "A" * 43,           # upper case: not the issuer's spelling
    "YW5u." + "z" * 40 + "." + "A" * 43,  # a huge "time"
    "A" * 6000,
    "." * 3000,
    "YW5u.1." + "A" * 5000,
    "\u0661\u0662.\u0663.\u0664",    # Arabic-Indic digits, which int() accepts
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One served project for the module: the tests here change little in it."""
    smtp = start_server()
    try:
        with served_project(tmp_path_factory.mktemp("hostile"), smtp) as running:
            yield running
    finally:
        smtp.controller.stop()


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _exchange(url: str, data: bytes, wait: float = TIMEOUT) -> bytes:
    """Send raw bytes, read until the server closes (or `wait` runs out)."""
    with socket.create_connection(_address(url), timeout=wait) as sock:
        sock.sendall(data)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _answers(project: Project) -> bool:
    return httpx.get(project.url + "feed.json", timeout=TIMEOUT).status_code == 200


# --- tokens -------------------------------------------------------------------------------


def test_malformed_tokens_get_400_at_once_and_the_server_keeps_answering(
        project: Project) -> None:
    with httpx.Client(base_url=project.url, timeout=TIMEOUT) as client:
        for token in HOSTILE_TOKENS:
            for path in ("unsubscribe", "confirm"):
                for method in ("GET", "POST"):
                    answer = client.request(method, f"/{path}", params={"token": token})
                    assert answer.status_code == 400, (method, path, token[:20])
                    assert "incomplete or damaged" in answer.text
            posted = client.post("/unsubscribe", data={"token": token})
            assert posted.status_code == (400 if len(token) < MAX_BODY - 10 else 413)
        assert _answers(project)
    assert "Traceback" not in project.log()


def test_a_forged_token_of_the_right_form_gets_403(project: Project) -> None:
    forged = make_token("not-the-key", PURPOSE_UNSUBSCRIBE, "ann@example.org", NOW)
    answer = httpx.post(project.url + "unsubscribe", params={"token": forged}, timeout=TIMEOUT)
    assert answer.status_code == 403


# --- request size -------------------------------------------------------------------------


def test_a_request_head_over_the_limit_gets_431(project: Project) -> None:
    one_long = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
    many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 0123456789\r\n" * 2000 + b"\r\n"
    long_url = b"GET /?" + b"q" * (MAX_HEAD_BYTES + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    for request in (one_long, many, long_url):
        answer = _exchange(project.url, request)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert answer.endswith(b"The request headers are too large.\n")
    fits = b"GET /feed.json HTTP/1.1\r\nHost: x\r\nX-Ok: " + b"a" * 8000 + b"\r\n\r\n"
    assert _exchange(project.url, fits, wait=1).startswith(b"HTTP/1.1 200 ")
    assert _answers(project)


def test_floods_of_header_bytes_do_not_grow_the_server(project: Project) -> None:
    """Four connections each sending up to 100 MB of one header (was +130 MB or more)."""
    assert _answers(project)
    before = _rss_kib(project.process.pid)
    sent: list[int] = []

    def flood() -> None:
        total = 0
        chunk = b"a" * 65536
        with socket.create_connection(_address(project.url), timeout=TIMEOUT) as sock:
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Flood: ")
                while total < 100 * 1024 * 1024:
                    sock.sendall(chunk)
                    total += len(chunk)
            except OSError:  # closed by the server (reset or broken pipe)
                pass
        sent.append(total)

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert len(sent) == 4 and max(sent) < 16 * 1024 * 1024, sent  # cut off early
    assert _answers(project)
    grown = _rss_kib(project.process.pid) - before
    assert grown < 10 * 1024, f"server RSS grew by {grown} KiB"


def test_form_bodies_over_the_limit_get_413(project: Project) -> None:
    with httpx.Client(base_url=project.url, timeout=TIMEOUT) as client:
        big = client.post("/subscribe", data={"email": "a" * 5000 + "@example.org"})
        assert big.status_code == 413

        def chunks() -> Iterator[bytes]:
            yield b"email="
            for _ in range(100):
                yield b"a" * 1000

        streamed = client.post("/subscribe", content=chunks(),
                               headers={"content-type": "application/x-www-form-urlencoded"})
        assert streamed.status_code == 413
        assert _answers(project)


# --- slow clients (same server set-up, shorter limits) ---------------------------------------


class _Quick(LimitedHttpToolsProtocol):
    head_timeout = 0.5
    body_timeout = 0.5


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("<p>hello</p>", encoding="utf-8")
    settings = make_settings(tmp_path, SECRET_KEY=SECRET_KEY)

    async def echo(request: Request) -> Response:  # a route that reads the whole body
        return Response(await request.body())

    app = create_app(settings, [Route("/echo", echo, methods=["POST"])])
    with running_server(app, _Quick) as url:
        yield url


def test_a_slow_request_head_gets_408_and_others_are_served_meanwhile(quick: str) -> None:
    with socket.create_connection(_address(quick), timeout=TIMEOUT) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert httpx.get(quick + "/", timeout=TIMEOUT).status_code == 200  # not blocked
        started = time.monotonic()
        answer = _read_all(slow)
        assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]


def test_a_trickled_head_is_cut_off_by_the_same_deadline(quick: str) -> None:
    with socket.create_connection(_address(quick), timeout=TIMEOUT) as slow:
        started = time.monotonic()
        try:
            slow.sendall(b"GET / HTTP/1.1\r\n")
            for _ in range(30):  # a byte every 0.1 s keeps no timer of its own alive
                slow.sendall(b"X")
                time.sleep(0.1)
        except OSError:
            pass
        answer = _read_all(slow)
        assert time.monotonic() - started < 3.5
    assert answer.startswith(b"HTTP/1.1 408 ") or answer == b"", answer[:80]


def test_a_silent_connection_is_closed(quick: str) -> None:
    with socket.create_connection(_address(quick), timeout=TIMEOUT) as idle:
        started = time.monotonic()
        assert _read_all(idle) == b""
        assert time.monotonic() - started < 3


def test_a_slow_body_is_cut_off(quick: str) -> None:
    with socket.create_connection(_address(quick), timeout=TIMEOUT) as slow:
        slow.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nsome")
        started = time.monotonic()
        assert httpx.post(quick + "/echo", content=b"ok", timeout=TIMEOUT).content == b"ok"
        answer = _read_all(slow)
        assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]


def test_an_unread_body_is_dropped_within_the_deadline(quick: str) -> None:
    with socket.create_connection(_address(quick), timeout=TIMEOUT) as slow:
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nsome")
        started = time.monotonic()
        answer = _read_all(slow)
        assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 405 "), answer[:80]


def test_keep_alive_requests_still_work(quick: str) -> None:
    with httpx.Client(base_url=quick, timeout=TIMEOUT) as client:
        for _ in range(3):
            assert client.get("/").status_code == 200
        assert client.post("/", content=b"x" * 2000).status_code == 405  # body dropped
        assert client.get("/").status_code == 200


# --- framing and origin -------------------------------------------------------------------


def test_published_pages_cannot_be_framed(project: Project) -> None:
    with httpx.Client(base_url=project.url, timeout=TIMEOUT) as client:
        for path in ("/", "/feed.atom", "/no/such/page", "/subscribe", "/unsubscribe"):
            answer = client.get(path)
            policy = answer.headers.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in policy, path
            assert answer.headers.get("x-frame-options") == "DENY", path
        index = client.get("/")
        assert "script-src 'none'" in index.headers["content-security-policy"]
        assert '<meta http-equiv="Content-Security-Policy"' in index.text
        assert client.get("/", headers={"Accept-Encoding": "gzip"}).headers.get(
            "x-frame-options") == "DENY"


def test_sign_up_posts_are_checked_against_base_url_not_host(project: Project) -> None:
    base = project.url.rstrip("/")
    form = {"email": "reader@example.org"}
    with httpx.Client(base_url=project.url, timeout=TIMEOUT) as client:
        spoofed = client.post("/subscribe", data=form,
                              headers={"Host": "evil.example", "Origin": "http://evil.example"})
        assert spoofed.status_code == 403
        other_port = client.post("/subscribe", data=form,
                                 headers={"Origin": "http://127.0.0.1:1"})
        assert other_port.status_code == 403
        own = client.post("/subscribe", data=form,
                          headers={"Host": "proxy.internal", "Origin": base})
        assert own.status_code == 200
        no_origin = client.post("/subscribe", data={"email": "other@example.org"})
        assert no_origin.status_code == 200  # not a browser: the rate limits apply


def test_one_click_unsubscribe_works_without_or_with_a_foreign_origin(project: Project) -> None:
    project.cli("subscribers", "add", "ann@example.org", "bob@example.org")
    one_click = {"Content-Type": "application/x-www-form-urlencoded"}
    for address, origin in (("ann@example.org", None), ("bob@example.org", "https://mail.example")):
        token = make_token(SECRET_KEY, PURPOSE_UNSUBSCRIBE, address, NOW)
        headers = dict(one_click, **({"Origin": origin} if origin else {}))
        done = httpx.post(project.url + "unsubscribe", params={"token": token}, timeout=TIMEOUT,
                          content=b"List-Unsubscribe=One-Click", headers=headers)
        assert done.status_code == 200, address
    listed = project.cli("subscribers", "list").stdout
    assert "subscribed" not in listed.replace("unsubscribed", ""), listed


def test_the_access_log_never_holds_a_token(project: Project) -> None:
    """A token in a link acts for its address (a manage token never expires): the access
    log used to show it in full, to whoever reads the log or the log collector."""
    project.cli("subscribers", "add", "logged@example.org")
    before = len(project.log())
    tokens = {purpose: make_token(SECRET_KEY, purpose, "logged@example.org", NOW)
              for purpose in (PURPOSE_MANAGE, PURPOSE_CONFIRM, PURPOSE_UNSUBSCRIBE)}
    for route, purpose in (("manage", PURPOSE_MANAGE), ("confirm", PURPOSE_CONFIRM),
                           ("unsubscribe", PURPOSE_UNSUBSCRIBE)):
        for query in (f"token={tokens[purpose]}", f"a=1&Token={tokens[purpose]}&b=2",
                      f"%74oken={tokens[purpose]}"):
            httpx.get(f"{project.url}{route}?{query}", timeout=TIMEOUT)
    httpx.post(f"{project.url}unsubscribe?token={tokens[PURPOSE_UNSUBSCRIBE]}",
               content=b"List-Unsubscribe=One-Click", timeout=TIMEOUT,
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    listed = project.cli("subscribers", "list").stdout
    assert any("logged@example.org" in line and "unsubscribed" in line
               for line in listed.splitlines()), listed

    def logged() -> str:
        return project.log()[before:]

    wait_for(lambda: logged().count('"POST /unsubscribe?token=[redacted] HTTP/1.1" 200') == 1,
             "the access log line of the one-click unsubscribe")
    log = logged()
    assert '"GET /manage?a=1&Token=[redacted]&b=2 HTTP/1.1"' in log
    assert '"GET /confirm?%74oken=[redacted] HTTP/1.1"' in log
    for token in tokens.values():
        assert token not in log and token.split(".")[-1] not in log
