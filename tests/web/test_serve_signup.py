"""Unsubscribe, subscribe and confirm over real HTTP (uvicorn on loopback, in this process).

The confirmation mail goes to a real SMTP server (aiosmtpd); the state is a
SQLite store. The end-to-end runs with the `digest` command are in
test_serve_e2e.py.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from digest.errors import ConfigError
from digest.mail.smtp import SMTPMailer
from digest.mail.subscribers import (
    PENDING,
    SUBSCRIBED,
    UNSUBSCRIBED,
    get_subscriber,
    subscribe,
    subscribe_many,
)
from digest.mail.tokens import PURPOSE_CONFIRM, PURPOSE_UNSUBSCRIBE, make_token
from digest.settings import Settings, load_settings
from digest.store.database import Store
from digest.web.app import serve_site, site_routes
from digest.web.rate_limit import Window
from digest.web.server import create_app
from digest.web.signup import Signup, SignupLimits
from tests.conftest import wait_for
from tests.fixtures_mail import NOW, SMTPServer, free_port, sample_articles
from tests.fixtures_serve import SECRET_KEY, mails_to, running_server

GENEROUS = SignupLimits(per_client=(Window(100, 600.0),), per_address=(Window(5, 600.0),),
                        overall=(Window(100, 3600.0),))
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}
_LINK = re.compile(r"https?://\S+?/confirm\?token=[A-Za-z0-9_.-]+")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Web:
    client: httpx.Client
    url: str
    settings: Settings
    store: Store
    smtp: SMTPServer
    clock: Clock
    signup: Signup

    def status(self, address: str) -> str | None:
        found = get_subscriber(self.store, address)
        return found.status if found else None

    def subscribe(self, address: str, **headers: str) -> httpx.Response:
        return self.client.post("/subscribe", data={"email": address}, headers=headers)

    def confirmation_link(self, address: str) -> str:
        """Path and query of the newest confirmation link mailed to `address`."""
        self.signup.wait_idle(10)
        mails = mails_to(self.smtp, address)
        assert mails, f"no confirmation mail to {address}"
        body = mails[-1].parsed().get_body(("plain",))
        assert body is not None
        match = _LINK.search(body.get_content())
        assert match, body.get_content()
        parts = urlsplit(match.group(0))
        return f"{parts.path}?{parts.query}"

    def token(self, purpose: str, address: str, issued: datetime | None = None) -> str:
        return make_token(SECRET_KEY, purpose, address, issued or self.clock.now)


def settings_for(base: Path, smtp: SMTPServer | None, **values: str) -> Settings:
    merged = {"BASE_URL": "https://news.example.org/", "SITE_TITLE": "Example News",
              "OUTPUT_DIR": "public", "SECRET_KEY": SECRET_KEY, "SUBSCRIBE_FORM": "on",
              "DIGEST_FROM": "Example News <news@example.org>"}
    merged.update(smtp.env() if smtp else {})
    merged.update(values)
    return load_settings(merged, base)


@pytest.fixture
def make_web(tmp_path: Path, smtp_servers: Callable[..., SMTPServer]
             ) -> Iterator[Callable[..., Web]]:
    opened: list[Any] = []

    def make(limits: SignupLimits = GENEROUS, **values: str) -> Web:
        smtp = smtp_servers()
        settings = settings_for(tmp_path, smtp, **values)
        (tmp_path / "public").mkdir(exist_ok=True)
        (tmp_path / "secret.txt").write_text("secret outside the output folder\n")
        store = Store.open(f"sqlite:///{tmp_path / 'state.sqlite3'}", tmp_path)
        clock = Clock(NOW)
        routes, lifespan, signup = site_routes(settings, store, lambda: SMTPMailer(settings),
                                               clock, limits)
        server = running_server(create_app(settings, routes, lifespan=lifespan))
        url = server.__enter__()
        client = httpx.Client(base_url=url, timeout=10)
        opened.append((server, client, store))
        return Web(client, url, settings, store, smtp, clock, signup)

    yield make
    for server, client, store in reversed(opened):
        client.close()
        server.__exit__(None, None, None)
        store.close()


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    return make_web()


# --- unsubscribe ----------------------------------------------------------------------------


def test_get_on_an_unsubscribe_link_shows_a_button_and_changes_nothing(web: Web) -> None:
    subscribe(web.store, "ann@example.org", NOW)
    token = web.token(PURPOSE_UNSUBSCRIBE, "ann@example.org")
    for _ in range(2):  # a mail scanner may follow the link more than once
        page = web.client.get(f"/unsubscribe?token={token}")
        assert page.status_code == 200
        assert '<form class="action" method="post"' in page.text
        assert f'action="unsubscribe?token={token}"' in page.text
        assert "ann@example.org" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert web.client.head(f"/unsubscribe?token={token}").status_code == 200
    assert web.status("ann@example.org") == SUBSCRIBED


def test_one_click_post_unsubscribes_and_is_idempotent(web: Web) -> None:
    subscribe(web.store, "ann@example.org", NOW)
    subscribe(web.store, "bob@example.org", NOW)
    token = web.token(PURPOSE_UNSUBSCRIBE, "ann@example.org", NOW - timedelta(days=400))
    for _ in range(2):
        # RFC 8058: the token is in the URL; the body is List-Unsubscribe=One-Click.
        done = web.client.post(f"/unsubscribe?token={token}",
                               content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert done.status_code == 200
        assert "Unsubscribed" in done.text
        assert web.status("ann@example.org") == UNSUBSCRIBED
    assert web.status("bob@example.org") == SUBSCRIBED
    # Mail providers may send multipart/form-data; a button posts the token as a field.
    bob = web.token(PURPOSE_UNSUBSCRIBE, "bob@example.org")
    multipart = web.client.post(f"/unsubscribe?token={bob}",
                                files={"List-Unsubscribe": (None, "One-Click")})
    assert multipart.status_code == 200
    assert web.status("bob@example.org") == UNSUBSCRIBED
    carl = web.token(PURPOSE_UNSUBSCRIBE, "carl@example.org")
    field = web.client.post("/unsubscribe", data={"token": carl})
    assert field.status_code == 200
    assert web.status("carl@example.org") == UNSUBSCRIBED  # remembered: no later re-import


def _tampered(token: str) -> str:
    _, issued, signature = token.split(".")
    other = make_token(SECRET_KEY, PURPOSE_UNSUBSCRIBE, "eve@example.org", NOW).split(".")[0]
    return ".".join((other, issued, signature))


@pytest.mark.parametrize(("kind", "status"), [
    ("forged", 403), ("tampered", 403), ("other purpose", 403), ("malformed", 400),
    ("missing", 400), ("future", 403),
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_unsubscribe_links_are_refused_plainly(web: Web, kind: str, status: int,
                                                   method: str) -> None:
    subscribe(web.store, "ann@example.org", NOW)
    good = web.token(PURPOSE_UNSUBSCRIBE, "ann@example.org")
    token = {
        "forged": make_token("not-the-key", PURPOSE_UNSUBSCRIBE, "ann@example.org", NOW),
        "tampered": _tampered(good),
        "other purpose": web.token(PURPOSE_CONFIRM, "ann@example.org"),
        "malformed": good[:12],
        "missing": "",
        "future": web.token(PURPOSE_UNSUBSCRIBE, "ann@example.org", NOW + timedelta(days=1)),
    }[kind]
    response = web.client.request(method, f"/unsubscribe?token={token}",
                                  content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert response.status_code == status
    assert "Link not valid" in response.text
    assert "<form" not in response.text
    assert web.status("ann@example.org") == SUBSCRIBED
    assert web.status("eve@example.org") is None


def test_wrong_methods_on_the_dynamic_routes_get_405(web: Web) -> None:
    for path in ("/unsubscribe", "/subscribe", "/confirm"):
        for method in ("PUT", "DELETE", "PATCH"):
            response = web.client.request(method, path, content=b"x")
            assert response.status_code == 405, (method, path)
            assert "POST" in response.headers["allow"]


TRAVERSALS = [b"/unsubscribe/../secret.txt", b"/subscribe/..%2f..%2fsecret.txt",
              b"/confirm%2f..%2f..%2fsecret.txt", b"/unsubscribe%00", b"/../secret.txt"]


@pytest.mark.parametrize("target", TRAVERSALS, ids=[t.decode() for t in TRAVERSALS])
def test_paths_near_the_routes_reach_nothing_outside(web: Web, target: bytes) -> None:
    for method in ("GET", "POST"):
        response = web.client.request(method, "/", extensions={"target": target})
        assert response.status_code in (400, 404, 405), (method, response.status_code)
        assert b"secret outside" not in response.content


def test_request_body_size_is_bounded(web: Web) -> None:
    token = web.token(PURPOSE_UNSUBSCRIBE, "ann@example.org")
    big = web.client.post(f"/unsubscribe?token={token}", content=b"x" * 100_000,
                          headers=ONE_CLICK)
    assert big.status_code == 413
    assert web.subscribe("a" * 5000 + "@example.org").status_code == 413


# --- subscribe and confirm ------------------------------------------------------------------


def test_subscribe_mails_a_link_and_only_a_confirmed_address_is_subscribed(web: Web) -> None:
    form = web.client.get("/subscribe")
    assert form.status_code == 200 and 'name="email"' in form.text
    answer = web.subscribe("New.Reader@Example.org")
    assert answer.status_code == 200
    assert "Check your inbox" in answer.text
    link = web.confirmation_link("new.reader@example.org")
    mail = mails_to(web.smtp, "new.reader@example.org")[0].parsed()
    assert mail["Subject"] == "Confirm your subscription to Example News"
    assert mail["From"].addresses[0].addr_spec == "news@example.org"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert web.status("new.reader@example.org") == PENDING

    for _ in range(2):  # scanners follow links: GET shows a button only
        page = web.client.get(link)
        assert page.status_code == 200
        assert "Confirm your subscription" in page.text
        assert 'action="confirm?token=' in page.text
    assert web.status("new.reader@example.org") == PENDING

    for _ in range(2):  # confirming twice is harmless
        done = web.client.post(link)
        assert done.status_code == 200
        assert "Subscribed" in done.text
        assert web.status("new.reader@example.org") == SUBSCRIBED


def test_the_answer_does_not_tell_whether_an_address_is_subscribed(web: Web) -> None:
    subscribe(web.store, "known@example.org", NOW)
    known = web.subscribe("known@example.org")
    unknown = web.subscribe("unknown@example.org")
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    web.signup.wait_idle(10)
    wait_for(lambda: len(mails_to(web.smtp, "unknown@example.org")) == 1, "the mail")
    assert mails_to(web.smtp, "known@example.org") == []  # subscribed: nothing to confirm
    assert web.status("known@example.org") == SUBSCRIBED


def test_an_unsubscribed_address_needs_a_new_confirmation(web: Web) -> None:
    web.subscribe("ann@example.org")
    first = web.confirmation_link("ann@example.org")
    assert web.client.post(first).status_code == 200
    unsubscribe = web.token(PURPOSE_UNSUBSCRIBE, "ann@example.org")
    web.client.post(f"/unsubscribe?token={unsubscribe}")
    assert web.status("ann@example.org") == UNSUBSCRIBED

    again = web.client.post(first)  # the old link does not bring it back
    assert again.status_code == 409
    assert web.status("ann@example.org") == UNSUBSCRIBED

    web.clock.now += timedelta(minutes=1)
    web.subscribe("ann@example.org")
    second = web.confirmation_link("ann@example.org")
    assert second != first
    # Until confirmed it stays unsubscribed: an import or DIGEST_RECIPIENTS keeps it so.
    assert web.status("ann@example.org") == UNSUBSCRIBED
    report = subscribe_many(web.store, [("ann@example.org", None)], web.clock.now,
                            source="import")
    assert report.kept_unsubscribed == ("ann@example.org",)
    assert web.client.get(second).status_code == 200
    assert web.status("ann@example.org") == UNSUBSCRIBED
    assert web.client.post(first).status_code == 409  # still not the old link
    for _ in range(2):
        assert web.client.post(second).status_code == 200
        assert web.status("ann@example.org") == SUBSCRIBED


def test_an_expired_or_forged_confirmation_link_is_refused(web: Web) -> None:
    web.subscribe("ann@example.org")
    link = web.confirmation_link("ann@example.org")
    web.clock.now += timedelta(days=4)
    for method in ("GET", "POST"):
        late = web.client.request(method, link)
        assert late.status_code == 403
        assert "expired" in late.text
    assert web.status("ann@example.org") == PENDING
    forged = make_token("not-the-key", PURPOSE_CONFIRM, "ann@example.org", web.clock.now)
    assert web.client.post(f"/confirm?token={forged}").status_code == 403
    unsubscribe_token = web.token(PURPOSE_UNSUBSCRIBE, "ann@example.org")
    assert web.client.post(f"/confirm?token={unsubscribe_token}").status_code == 403
    assert web.status("ann@example.org") == PENDING


def test_invalid_addresses_and_other_forms_are_refused(web: Web) -> None:
    for bad in ("", "not-an-address", "a@b", "x@example.org\r\nBcc: y@example.org"):
        response = web.subscribe(bad)
        assert response.status_code == 400, bad
    json = web.client.post("/subscribe", json={"email": "ann@example.org"})
    assert json.status_code == 415
    multipart = web.client.post("/subscribe", files={"email": (None, "ann@example.org")})
    assert multipart.status_code == 415
    web.signup.wait_idle(10)
    assert web.smtp.received == []


def test_a_form_on_another_site_cannot_post_sign_ups(web: Web) -> None:
    refused = [
        web.subscribe("ann@example.org", origin="https://evil.example"),
        web.subscribe("ann@example.org", origin="null"),
        web.subscribe("ann@example.org", **{"sec-fetch-site": "cross-site"}),
        web.subscribe("ann@example.org", origin=web.url),  # the Host header is no proof
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    web.signup.wait_idle(10)
    assert web.smtp.received == []
    same_site = web.subscribe("ann@example.org", origin="https://NEWS.example.org:443",
                              **{"sec-fetch-site": "same-origin"})
    assert same_site.status_code == 200
    public = web.subscribe("bob@example.org", origin="https://news.example.org")
    assert public.status_code == 200  # BASE_URL's origin, as behind a reverse proxy
    web.signup.wait_idle(10)
    assert len(web.smtp.received) == 2


def test_rate_limits_per_client_per_address_and_overall(make_web: Callable[..., Web]) -> None:
    web = make_web(SignupLimits(per_client=(Window(4, 600.0),),
                                per_address=(Window(1, 600.0),),
                                overall=(Window(2, 3600.0),)))
    answers = [web.subscribe("ann@example.org") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].text == answers[1].text  # the address's own limit is not told
    busy = [web.subscribe("bob@example.org"), web.subscribe("carl@example.org")]
    assert [b.status_code for b in busy] == [200, 503]  # overall: 2 mails per hour
    limited = web.subscribe("dora@example.org")
    assert limited.status_code == 429  # this client: 4 posts per 10 minutes
    assert limited.headers["retry-after"]
    web.signup.wait_idle(10)
    assert sorted(m.rcpt_to for m in web.smtp.received) == ["ann@example.org",
                                                             "bob@example.org"]


def test_without_the_form_setting_only_unsubscribe_is_served(make_web: Callable[..., Web]
                                                              ) -> None:
    web = make_web(SUBSCRIBE_FORM="off")
    assert web.subscribe("ann@example.org").status_code == 404
    assert web.client.get("/confirm?token=x").status_code == 404
    token = web.token(PURPOSE_UNSUBSCRIBE, "ann@example.org")
    assert web.client.post(f"/unsubscribe?token={token}").status_code == 200


def test_one_access_log_line_per_request(web: Web, caplog: pytest.LogCaptureFixture) -> None:
    token = web.token(PURPOSE_UNSUBSCRIBE, "ann@example.org")
    with caplog.at_level(logging.INFO, logger="digest.serve"):
        web.client.get(f"/unsubscribe?token={token}")
        web.client.post(f"/unsubscribe?token={token}")
        web.client.post("/unsubscribe?token=bad")

        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "digest.serve"]

        # the server logs a request after its response has gone out: wait for the last line
        wait_for(lambda: len(logged()) >= 3, "three access log lines")
    lines = logged()
    assert len(lines) == 3
    assert re.match(r'^127\.0\.0\.1:\d+ "GET /unsubscribe\?token=\[redacted\] HTTP/1\.1" 200 \d+$',
                    lines[0])
    assert '"POST /unsubscribe?token=[redacted] HTTP/1.1" 400' in lines[2]
    assert not any(token in line for line in lines)


# --- start-up and the stop event ------------------------------------------------------------


def test_serving_needs_secret_key_and_the_form_needs_digest_from(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.sqlite3'}", tmp_path)
    try:
        for values, name in (({"SECRET_KEY": ""}, "SECRET_KEY"),
                             ({"DIGEST_FROM": ""}, "DIGEST_FROM")):
            settings = settings_for(tmp_path, None, **values)
            with pytest.raises(ConfigError, match=name):
                serve_site(settings, store, lambda s=settings: SMTPMailer(s), Clock(NOW))
        no_form = settings_for(tmp_path, None, DIGEST_FROM="", SUBSCRIBE_FORM="off")
        stop = threading.Event()
        stop.set()  # starts, then stops at once: DIGEST_FROM is not needed without the form
        serve_site(replace(no_form, serve_port=free_port()), store,
                   lambda: SMTPMailer(no_form), Clock(NOW), stop=stop)
    finally:
        store.close()


def test_serve_site_runs_in_a_thread_until_the_stop_event(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("<p>hello</p>\n")
    settings = replace(settings_for(tmp_path, None), serve_port=free_port())
    store = Store.open(f"sqlite:///{tmp_path / 's.sqlite3'}", tmp_path)
    stop = threading.Event()
    ready: list[tuple[str, int]] = []
    thread = threading.Thread(target=serve_site, args=(settings, store,
                              lambda: SMTPMailer(settings), Clock(NOW)),
                              kwargs={"stop": stop, "on_ready": ready.append})
    thread.start()
    try:
        wait_for(lambda: bool(ready), "the server to start")
        host, port = ready[0]
        assert httpx.get(f"http://{host}:{port}/", timeout=5).text == "<p>hello</p>\n"
    finally:
        stop.set()
        thread.join(timeout=15)
        store.close()
    assert not thread.is_alive()


def test_confirming_sends_one_welcome_mail_with_the_latest_articles(web: Web) -> None:
    web.store.save_articles(sample_articles(2), [])
    web.subscribe("ann@example.org")
    link = web.confirmation_link("ann@example.org")
    for _ in range(2):  # confirming twice welcomes once
        assert web.client.post(link).status_code == 200
    web.signup.wait_idle(10)
    wait_for(lambda: len(mails_to(web.smtp, "ann@example.org")) == 2, "the welcome mail")
    web.signup.wait_idle(10)
    _confirmation, welcome = (m.parsed() for m in mails_to(web.smtp, "ann@example.org"))
    assert welcome["Subject"] == "Welcome to Example News"
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = welcome.get_body(("plain",))
    html = welcome.get_body(("html",))
    assert text is not None and html is not None
    assert "ann@example.org is now subscribed" in text.get_content()
    assert "Headline number 1" in text.get_content()
    assert "Headline number 1" in html.get_content()
    assert len(mails_to(web.smtp, "ann@example.org")) == 2
