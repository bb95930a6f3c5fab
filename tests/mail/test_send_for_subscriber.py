"""`digest send --to` and `digest preview --for`: the next digest as one subscriber gets it.

Through the CLI in its own process, a real SMTP server (aiosmtpd) and both stores:
a subscriber's test message and preview list only the articles of their topics;
another address gets the whole edition; nothing is recorded (the real send
afterwards still gives each reader their articles); an unknown address is an
error that names it; a reader left nothing is told so, not mailed an empty
digest. Then, over two weeks of daily digests, what the view says each reader
gets is what the send gives them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from digest.mail.for_subscriber import subscriber_view, view_html, view_message
from digest.mail.previews import dry_run
from digest.mail.run import RetryPolicy
from digest.mail.send import send_digest
from digest.mail.smtp import SMTPMailer
from digest.mail.subscribers import Choices, subscribe_many
from digest.mail.tokens import PURPOSE_UNSUBSCRIBE, verify_token
from digest.model import Cadence
from digest.store.database import Store, StoredArticle
from tests.conftest import base_env, digest_cli, make_settings
from tests.fixtures_mail import NOW, Behaviour, Received, SMTPServer, add_articles, article
from tests.mail.test_topics_cadence import (
    DAYS,
    EVERYTHING,
    PYTHON,
    WEEKLY,
    carried,
    carried_in,
    moment,
    publish,
    readers,
)

Start = Callable[..., SMTPServer]
ANN = "ann@example.org"  # reads python
BOB = "bob@example.org"  # reads everything
WEEK = "week@example.org"  # reads everything, weekly
OPERATOR = "me@example.org"
PY_TITLES = ("Python packaging today", "Typing in Python")
COOK_TITLES = ("Bread without kneading",)


def tagged(slug: str, title: str, hours_ago: int, *tags: str) -> StoredArticle:
    return replace(article(f"{slug}.txt", title, NOW - timedelta(hours=hours_ago)), tags=tags)


PY_ARTICLES = (tagged("py-packaging", PY_TITLES[0], 3, "Python"),
               tagged("py-typing", PY_TITLES[1], 2, "Python", "Web"))
COOK_ARTICLES = (tagged("cook-bread", COOK_TITLES[0], 1, "Cooking"),)


@pytest.fixture
def project(tmp_path: Path, database_url: str, smtp_servers: Start
            ) -> tuple[dict[str, str], SMTPServer]:
    """A project on `database_url` with a real SMTP server; the environment of the CLI."""
    server = smtp_servers()
    env = {**base_env(tmp_path), **server.env(), "DATABASE_URL": database_url}
    return env, server


def cli(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    done = digest_cli(*args, cwd=cwd, env=env)
    return done.returncode, done.stdout, done.stderr


def setup_list(env: dict[str, str], tmp_path: Path, *articles: StoredArticle) -> None:
    store = Store.open(env["DATABASE_URL"], tmp_path)
    try:
        add_articles(store, *articles)
    finally:
        store.close()
    assert cli(env, tmp_path, "subscribers", "add", "--topics", "python", ANN)[0] == 0
    assert cli(env, tmp_path, "subscribers", "add", BOB)[0] == 0
    assert cli(env, tmp_path, "subscribers", "add", "--cadence", "weekly", WEEK)[0] == 0


def body(received: Received) -> str:
    message = received.parsed()
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def unsubscribe_address(received: Received) -> str:
    """The address the message's one-click unsubscribe link is signed for."""
    link = re.search(r"<(https://[^>]+)>", received.parsed()["List-Unsubscribe"])
    assert link is not None
    token = parse_qs(urlsplit(link.group(1)).query)["token"][0]
    return verify_token("test-secret-key-0123456789", PURPOSE_UNSUBSCRIBE, token,
                        datetime.now(UTC), None)


def test_send_to_a_subscriber_carries_only_their_topics_and_records_nothing(
        tmp_path: Path, project: tuple[dict[str, str], SMTPServer]) -> None:
    env, server = project
    setup_list(env, tmp_path, *PY_ARTICLES, *COOK_ARTICLES)

    code, out, err = cli(env, tmp_path, "send", "--to", "Ann@Example.org")
    assert code == 0, err
    assert out == (f"sent a test of the next digest as {ANN} gets it (edition 1, 2 articles; "
                   f"the whole edition has 3) to {ANN} (nothing recorded)\n")
    (to_ann,) = server.received
    assert to_ann.rcpt_to == ANN
    assert to_ann.parsed()["Subject"] == "Example News: 2 new articles"
    text = body(to_ann)
    assert all(title in text for title in PY_TITLES)
    assert not any(title in text for title in COOK_TITLES)
    assert sorted(carried(to_ann)) == ["py-packaging", "py-typing"]

    # --as: Ann's articles in the operator's mailbox, with the operator's own links.
    code, out, err = cli(env, tmp_path, "send", "--to", OPERATOR, "--as", ANN)
    assert code == 0, err
    assert f"as {ANN} gets it" in out and f"to {OPERATOR}" in out
    as_ann = server.received[1]
    assert as_ann.rcpt_to == OPERATOR and as_ann.parsed()["To"] == OPERATOR
    assert sorted(carried(as_ann)) == ["py-packaging", "py-typing"]
    assert unsubscribe_address(as_ann) == OPERATOR

    # A subscriber of everything, and an address that is not a subscriber: the whole edition.
    assert cli(env, tmp_path, "send", "--to", BOB)[0] == 0
    code, out, err = cli(env, tmp_path, "send", "--to", "tester@example.org")
    assert code == 0, err
    assert "the whole edition: not a subscriber" in out
    for whole in server.received[2:]:
        assert sorted(carried(whole)) == ["cook-bread", "py-packaging", "py-typing"]
        assert whole.parsed()["Subject"] == "Example News: 3 new articles"

    # Nothing recorded: no edition, and the real send gives each reader their articles.
    assert cli(env, tmp_path, "history")[1].strip() == "no editions yet"
    before = len(server.received)
    code, out, err = cli(env, tmp_path, "send")
    assert code == 0, err
    real = {r.rcpt_to: sorted(carried(r)) for r in server.received[before:]}
    assert real == {ANN: ["py-packaging", "py-typing"],
                    BOB: ["cook-bread", "py-packaging", "py-typing"]}  # the weekly one waits


def test_preview_for_a_subscriber_shows_only_their_headlines(
        tmp_path: Path, project: tuple[dict[str, str], SMTPServer]) -> None:
    env, server = project
    setup_list(env, tmp_path, *PY_ARTICLES, *COOK_ARTICLES)
    for_ann, for_bob = tmp_path / "ann.html", tmp_path / "bob.html"

    code, out, err = cli(env, tmp_path, "preview", "--for", ANN, "--out", str(for_ann))
    assert code == 0, err
    assert out.strip() == str(for_ann)
    html = for_ann.read_text("utf-8")
    assert all(title in html for title in PY_TITLES)
    assert not any(title in html for title in COOK_TITLES)
    assert ANN in html and "you@example.org" not in html
    assert "2 new articles" in html  # the subject line, as in their message

    assert cli(env, tmp_path, "preview", "--for", BOB, "--out", str(for_bob))[0] == 0
    html = for_bob.read_text("utf-8")
    assert all(title in html for title in PY_TITLES + COOK_TITLES)
    assert server.received == []
    assert cli(env, tmp_path, "history")[1].strip() == "no editions yet"


def test_an_address_not_on_the_list_is_an_error_that_names_it(
        tmp_path: Path, project: tuple[dict[str, str], SMTPServer]) -> None:
    env, server = project
    setup_list(env, tmp_path, *PY_ARTICLES)
    target = tmp_path / "nobody.html"
    code, out, err = cli(env, tmp_path, "preview", "--for", "Nobody@Example.org",
                         "--out", str(target))
    assert code == 1
    assert "nobody@example.org is not on the subscriber list" in err
    assert "digest subscribers list" in err
    assert out == "" and not target.exists()
    code, out, err = cli(env, tmp_path, "send", "--to", OPERATOR, "--as", "nobody@example.org")
    assert code == 1 and "nobody@example.org is not on the subscriber list" in err
    code, out, err = cli(env, tmp_path, "send", "--as", ANN)
    assert code == 2 and "--as needs --to" in err
    code, out, err = cli(env, tmp_path, "preview", "--for", "not an address")
    assert code == 1 and "--for" in err
    assert server.received == []


def test_a_reader_left_nothing_is_told_why_and_not_mailed(
        tmp_path: Path, project: tuple[dict[str, str], SMTPServer]) -> None:
    env, server = project
    setup_list(env, tmp_path, *COOK_ARTICLES)  # nothing on python
    target = tmp_path / "ann.html"

    code, out, err = cli(env, tmp_path, "preview", "--for", ANN, "--out", str(target))
    assert code == 0, err
    assert out == "" and not target.exists()
    assert f"{ANN} gets no message in edition 1: nothing new for them is on their topics " \
           "(python); `digest send` skips them this time" in err
    code, out, err = cli(env, tmp_path, "send", "--to", ANN)
    assert code == 0, err
    assert out.startswith(f"nothing sent: {ANN} gets no message in edition 1")

    # Weekly, subscribed just now: their day has not come; the week's articles wait for it.
    code, out, err = cli(env, tmp_path, "send", "--to", OPERATOR, "--as", WEEK)
    assert code == 0, err
    assert f"{WEEK} reads weekly and edition 1 is not their weekly message" in out
    assert "wait for the first edition made on or after Monday" in out
    assert server.received == []

    # Unsubscribed: on the list, sent nothing. As a --to address it is no subscriber.
    assert cli(env, tmp_path, "subscribers", "remove", BOB)[0] == 0
    code, out, err = cli(env, tmp_path, "preview", "--for", BOB)
    assert code == 0 and f"{BOB} unsubscribed: `digest send` sends them nothing" in err
    assert cli(env, tmp_path, "send", "--to", BOB)[0] == 0
    (whole,) = server.received
    assert carried(whole) == ["cook-bread"]

    # Nothing new at all (after the real send): said, for anyone.
    assert cli(env, tmp_path, "send")[0] == 0
    code, out, err = cli(env, tmp_path, "preview", "--for", ANN)
    assert code == 0 and "no new articles since the last digest" in err


def test_send_to_with_nothing_new_sends_nothing_unless_forced_as_the_send_does(
        tmp_path: Path, project: tuple[dict[str, str], SMTPServer]) -> None:
    env, server = project
    setup_list(env, tmp_path, *PY_ARTICLES)
    assert cli(env, tmp_path, "send")[0] == 0  # edition 1 to Ann and Bob
    served = len(server.received)

    # Nothing new: no test, for a subscriber or any other address, and the way to send one.
    for address in (ANN, OPERATOR):
        code, out, err = cli(env, tmp_path, "send", "--to", address)
        assert code == 0, err
        assert out.startswith("nothing sent: no new articles since the last digest")
        assert out.rstrip().endswith("(--force sends a test anyway)")
    code, out, err = cli(env, tmp_path, "send", "--to", OPERATOR, "--as", ANN)
    assert code == 0 and out.startswith("nothing sent: no new articles"), err
    assert len(server.received) == served

    # --force: the test is what a forced send gives, an edition with no article.
    code, out, err = cli(env, tmp_path, "send", "--to", ANN, "--force")
    assert code == 0, err
    assert out == (f"sent a test of the next digest as {ANN} gets it (edition 2, the whole "
                   f"edition: 0 articles) to {ANN} (nothing recorded)\n")
    code, out, err = cli(env, tmp_path, "send", "--to", OPERATOR, "--force")
    assert code == 0 and "the whole edition: not a subscriber" in out, err
    tests = server.received[served:]
    assert [t.rcpt_to for t in tests] == [ANN, OPERATOR]
    assert [carried(t) for t in tests] == [[], []]

    # Nothing recorded: the real send still has nothing to send; forced, it sends what the
    # tests showed.
    code, out, err = cli(env, tmp_path, "send")
    assert code == 0 and "nothing to send" in out, err
    assert cli(env, tmp_path, "send", "--force")[0] == 0
    forced = {r.rcpt_to: r for r in server.received[served + len(tests):]}
    assert sorted(forced) == [ANN, BOB]
    assert forced[ANN].parsed()["Subject"] == tests[0].parsed()["Subject"]
    assert carried(forced[ANN]) == []


def test_each_day_the_view_of_each_reader_is_what_the_send_gives_them(
        tmp_path: Path, store: Store, database_url: str, smtp_servers: Start) -> None:
    """Two weeks of daily digests (topics, weekly, days with nothing for some): before each
    send, the view of each reader is exactly their message, or no message and why."""
    server = smtp_servers()
    settings = make_settings(tmp_path, **server.env(), DATABASE_URL=database_url,
                             SMTP_CONNECTIONS="1", WEEKLY_DAY="monday")
    kinds = readers(store)
    published: dict[str, tuple[int, tuple[str, ...]]] = {}
    without: dict[tuple[int, str], str] = {}
    for day in range(DAYS):
        publish(store, day, published)
        views = {address: subscriber_view(settings, store, address, moment(day))
                 for address in kinds}
        before = len(server.received)
        send_digest(settings, store, lambda: SMTPMailer(settings), moment(day))
        got = {r.rcpt_to: carried(r) for r in server.received[before:]}
        for address, view in views.items():
            if address not in got:
                assert view.message is None, (day, address)
                without[(day, address)] = kind_of(view.why_not)
                continue
            message = view_message(settings, view, address, moment(day))
            assert carried_in(message.data) == got[address], (day, address)
            assert view.count == len(got[address])
            html = view_html(settings, view)
            assert all(f"articles/{slug}.html" in html for slug in got[address])
    assert without == {
        (3, PYTHON): "topics", (6, PYTHON): "topics",  # only cooking; nothing new (Monday)
        (6, EVERYTHING): "nothing for them",  # the Monday's edition is the weekly reader's
        **dict.fromkeys([(4, a) for a in kinds], "nothing new"),  # no edition at all
        **dict.fromkeys([(d, WEEKLY) for d in range(DAYS) if d not in (4, 6, 13)], "weekly")}


def kind_of(why_not: str) -> str:
    if "reads weekly" in why_not:
        return "weekly"
    if why_not.startswith("no new articles since the last digest"):
        return "nothing new"
    if "nothing new for them is on their topics (python)" in why_not:
        return "topics"
    assert "nothing is new for them since their last message" in why_not, why_not
    return "nothing for them"


def test_during_an_open_edition_the_view_is_the_delivery_left_to_do(
        tmp_path: Path, smtp_servers: Start) -> None:
    """An edition stopped halfway: a reader not yet served sees their stored message; one
    already served is told the edition has nothing left for them."""
    server = smtp_servers(behaviour=Behaviour(
        rcpt_replies={PYTHON: ["451 4.3.0 try again later"]}))
    settings = make_settings(tmp_path, **server.env(), SMTP_CONNECTIONS="1",
                             DATABASE_URL=f"sqlite:///{tmp_path / 'state.sqlite3'}")
    store = Store.open(settings.database_url, tmp_path)
    try:
        subscribe_many(store, [(EVERYTHING, None)], NOW, source="cli")
        subscribe_many(store, [(PYTHON, None)], NOW, source="cli", choices=Choices(("python",)))
        subscribe_many(store, [(WEEKLY, None)], NOW, source="cli",
                       choices=Choices((), Cadence.WEEKLY))
        published: dict[str, tuple[int, tuple[str, ...]]] = {}
        publish(store, 0, published)
        report = send_digest(settings, store, lambda: SMTPMailer(settings), moment(0),
                             retry=RetryPolicy(attempts=1), sleep=lambda _s: None)
        assert report.deferred == 1 and not report.finished  # the python reader: later
        later = moment(0) + timedelta(minutes=11)
        waiting = subscriber_view(settings, store, PYTHON, later)
        assert waiting.message is not None and waiting.message.edition.id == 1
        served = subscriber_view(settings, store, EVERYTHING, later)
        assert served.message is None
        assert served.why_not.startswith("edition 1 is being sent and has no message left "
                                         f"for {EVERYTHING}")
        send_digest(settings, store, lambda: SMTPMailer(settings), later)
        resent = server.received[-1]
        assert resent.rcpt_to == PYTHON
        test = view_message(settings, waiting, PYTHON, later)
        assert carried_in(test.data) == carried(resent) == ["d00-py"]
    finally:
        store.close()


def test_a_new_digest_recipient_gets_no_message_from_an_edition_being_sent(
        tmp_path: Path, smtp_servers: Start) -> None:
    """An address added to DIGEST_RECIPIENTS while an edition is half sent joins the list,
    but the edition's deliveries were fixed when it was made: the dry run shows no message
    for it, as the resumed send sends none."""
    server = smtp_servers(behaviour=Behaviour(
        rcpt_replies={PYTHON: ["451 4.3.0 try again later"]}))
    env = {**server.env(), "SMTP_CONNECTIONS": "1",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite3'}"}
    settings = make_settings(tmp_path, **env)
    store = Store.open(settings.database_url, tmp_path)
    try:
        subscribe_many(store, [(EVERYTHING, None)], NOW, source="cli")
        subscribe_many(store, [(PYTHON, None)], NOW, source="cli", choices=Choices(("python",)))
        publish(store, 0, {})
        report = send_digest(settings, store, lambda: SMTPMailer(settings), moment(0),
                             retry=RetryPolicy(attempts=1), sleep=lambda _s: None)
        assert report.deferred == 1 and not report.finished
        later = moment(0) + timedelta(minutes=11)
        newcomer = "new@example.org"
        settings = make_settings(tmp_path, **env, DIGEST_RECIPIENTS=newcomer)
        dry = dry_run(settings, store, later)
        assert dry is not None and [m.recipient for m in dry] == [PYTHON]
        before = len(server.received)
        send_digest(settings, store, lambda: SMTPMailer(settings), later)
        assert [r.rcpt_to for r in server.received[before:]] == [PYTHON]
    finally:
        store.close()
