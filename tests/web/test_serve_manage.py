"""The "manage your subscription" page over real HTTP: `digest serve` in its own process.

The link comes from a real digest mail (`digest send` to an aiosmtpd server); GET
shows the choices (the tags of the published articles), POST saves them, a bad or
tampered-with token is refused and changes nothing. The sign-up form offers the
topics too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from digest.mail.tokens import PURPOSE_MANAGE, PURPOSE_UNSUBSCRIBE, make_token
from tests.conftest import wait_for
from tests.fixtures_mail import NOW, SMTPServer
from tests.fixtures_serve import SECRET_KEY, Project, mails_to, served_project

_MANAGE = re.compile(r"http://\S+?/(manage\?token=[A-Za-z0-9_.-]+)")
ANN = "ann@example.org"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def smtp(smtp_servers: Callable[..., SMTPServer]) -> SMTPServer:
    return smtp_servers()


@pytest.fixture
def project(tmp_path: Path, smtp: SMTPServer) -> Iterator[Project]:
    with served_project(tmp_path, smtp) as running:
        yield running


def manage_link(smtp: SMTPServer, address: str) -> str:
    mails = mails_to(smtp, address)
    assert mails, f"no mail to {address}"
    body = mails[-1].parsed().get_body(("plain",))
    assert body is not None
    found = _MANAGE.search(body.get_content())
    assert found, body.get_content()
    return "/" + found.group(1)


def listed(project: Project, address: str) -> str:
    lines = project.cli("subscribers", "list").stdout.splitlines()
    return next(line for line in lines if line.startswith(address))


def test_manage_page_shows_and_saves_the_choices(project: Project, smtp: SMTPServer) -> None:
    project.cli("subscribers", "add", ANN)
    project.cli("send")
    link = manage_link(smtp, ANN)
    with httpx.Client(base_url=project.url, timeout=10) as client:
        page = client.get(link)
        assert page.status_code == 200, page.text
        assert page.headers["cache-control"] == "no-store"
        assert f"{ANN} gets every article, in every digest" in page.text
        for tag in ("reference", "plain-text", "meta", "getting-started"):
            assert f'name="topics" value="{tag}">' in page.text  # offered, not checked
        assert 'value="every" checked' in page.text

        saved = client.post(link, content="topics=meta&topics=plain-text&cadence=weekly",
                            headers=FORM)
        assert saved.status_code == 200, saved.text
        assert "the articles on meta, plain-text, once a week" in saved.text
        assert listed(project, ANN).endswith("weekly: meta,plain-text")

        again = client.get(link)
        assert 'value="meta" checked' in again.text
        assert 'value="reference">' in again.text
        assert 'value="weekly" checked' in again.text
        # A form without the cadence field (a template offering topics only) keeps it.
        kept = client.post(link, content="topics=reference", headers=FORM)
        assert kept.status_code == 200, kept.text
        assert "the articles on reference, once a week" in kept.text
        assert listed(project, ANN).endswith("weekly: reference")
        # A topic no article has is dropped; no topic is everything.
        assert client.post(link, content="topics=nope&cadence=every",
                           headers=FORM).status_code == 200
        assert "weekly" not in listed(project, ANN) and "meta" not in listed(project, ANN)


def test_bad_or_tampered_tokens_are_refused(project: Project, smtp: SMTPServer) -> None:
    project.cli("subscribers", "add", ANN)
    project.cli("send")
    link = manage_link(smtp, ANN)
    token = link.split("token=", 1)[1]
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    other = make_token(SECRET_KEY, PURPOSE_MANAGE, "bob@example.org", NOW)
    forged = token.split(".")[0] + "." + other.split(".", 1)[1]  # ann's address, bob's signature
    unsubscribe = make_token(SECRET_KEY, PURPOSE_UNSUBSCRIBE, ANN, NOW)
    wrong_key = make_token("another-secret-key-0123456789", PURPOSE_MANAGE, ANN, NOW)
    with httpx.Client(base_url=project.url, timeout=10) as client:
        for bad in (tampered, forged, unsubscribe, wrong_key):
            for method in ("GET", "POST"):
                answer = client.request(method, f"/manage?token={bad}",
                                        content="cadence=weekly", headers=FORM)
                assert answer.status_code == 403, (bad, method, answer.text)
                assert "cannot be used" in answer.text
        for bad in ("", "x", "a.b.c", token + "."):
            assert client.get(f"/manage?token={bad}").status_code == 400
        # A valid token of an address not on the list: nothing created.
        assert client.get(f"/manage?token={other}").status_code == 404
        assert client.post(f"/manage?token={other}", content="cadence=weekly",
                           headers=FORM).status_code == 404
        # A valid token with an unreadable form: refused, nothing changed.
        assert client.post(link, content="cadence=daily", headers=FORM).status_code == 400
        assert client.post(link, content="cadence=weekly",
                           headers={"content-type": "text/plain"}).status_code == 415
    assert "weekly" not in listed(project, ANN)
    assert "bob@example.org" not in project.cli("subscribers", "list").stdout


def test_sign_up_form_offers_the_topics(project: Project, smtp: SMTPServer) -> None:
    with httpx.Client(base_url=project.url, timeout=10) as client:
        index = client.get("/")
        assert f'<a href="{project.url}subscribe">Choose topics or a weekly digest</a>' in \
            index.text
        form = client.get("/subscribe")
        assert 'name="topics" value="meta">' in form.text
        assert 'value="weekly">' in form.text
        answer = client.post("/subscribe", content=f"email={ANN}&topics=meta&cadence=weekly",
                             headers=FORM)
        assert answer.status_code == 200, answer.text
    wait_for(lambda: bool(mails_to(smtp, ANN)), f"a confirmation mail to {ANN}")
    assert listed(project, ANN).split("\t")[1] == "pending"
    assert listed(project, ANN).endswith("weekly: meta")
