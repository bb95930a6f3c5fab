"""Topics and cadence: each article reaches each subscriber at most once.

Three readers (everything / every digest; one topic / every digest; everything /
weekly) over two weeks of daily digests on a fake clock, through a real SMTP
server, on SQLite and PostgreSQL: each gets each article exactly once, or never
when their topics exclude it; a reader with nothing new gets no message; the
weekly one gets one message each WEEKLY_DAY gathering the week. Then the same with
two of the daily sends killed mid-send (SIGKILL, a real process) and resumed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from digest.mail.previews import dry_run
from digest.mail.send import SendReport, send_digest
from digest.mail.smtp import SMTPMailer
from digest.mail.subscribers import Choices, subscribe_many
from digest.model import Cadence
from digest.settings import Settings
from digest.store.database import Store, StoredArticle
from tests.conftest import REPO, base_env, make_settings, wait_for
from tests.fixtures_mail import NOW, Behaviour, Received, SMTPServer, add_articles, article

START = NOW + timedelta(days=1)  # NOW is a Monday: start on a Tuesday
DAYS = 14
EVERYTHING = "all@example.org"
PYTHON = "py@example.org"
WEEKLY = "week@example.org"
_READ = re.compile(r"articles/([A-Za-z0-9_-]+)\.html")


def day_articles(day: int) -> list[StoredArticle]:
    """What is published before the digest of `day`: python and cooking pieces, some days
    an untagged one; day 3 only cooking; day 4 nothing; day 6 (a Monday) nothing new."""
    when = START + timedelta(days=day) - timedelta(hours=1)
    if day in (4, 6):
        return []
    found = [tagged(f"d{day:02d}-cook", when, "Cooking")]
    if day != 3:
        found.append(tagged(f"d{day:02d}-py", when - timedelta(minutes=5), "Python", "Web"))
    if day % 3 == 0:
        found.append(tagged(f"d{day:02d}-misc", when - timedelta(minutes=10)))
    return found


def tagged(slug: str, when: datetime, *tags: str) -> StoredArticle:
    return replace(article(f"{slug}.txt", f"Article {slug}", when), tags=tags)


def readers(store: Store, per_kind: int = 1) -> dict[str, str]:
    """Subscribe the three kinds (per_kind of each); address -> kind."""
    kinds = {EVERYTHING: Choices(), PYTHON: Choices(("python",)),
             WEEKLY: Choices((), Cadence.WEEKLY)}
    found: dict[str, str] = {}
    for kind, choices in kinds.items():
        local, domain = kind.split("@")
        addresses = [kind] if per_kind == 1 else [f"{local}{i:02d}@{domain}"
                                                  for i in range(per_kind)]
        subscribe_many(store, [(a, None) for a in addresses], NOW, source="cli", choices=choices)
        found.update(dict.fromkeys(addresses, kind))
    return found


def carried(received: Received) -> list[str]:
    return carried_in(received.data)


def carried_in(data: bytes) -> list[str]:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return _READ.findall(body.get_content())


def expected_for(kind: str, published: dict[str, tuple[int, tuple[str, ...]]]) -> set[str]:
    """Everything (the last Monday's weekly message gathers up to day 13), or the python
    ones."""
    if kind == PYTHON:
        return {slug for slug, (_day, tags) in published.items() if "Python" in tags}
    return set(published)


def check(received: list[Received], kinds: dict[str, str],
          published: dict[str, tuple[int, tuple[str, ...]]], kills: int = 0) -> None:
    """Each reader got each article meant for them once (messages resent after a kill
    count once: same Message-ID), none other, and no message without an article."""
    by_id: dict[tuple[str, str], Received] = {}
    resent = Counter[str]()
    for r in received:
        if (r.rcpt_to, r.message_id) in by_id:
            resent[r.rcpt_to] += 1
            assert carried(by_id[(r.rcpt_to, r.message_id)]) == carried(r)  # the same message
        by_id[(r.rcpt_to, r.message_id)] = r
    assert sum(resent.values()) <= kills  # one in flight per connection (1) per kill
    per_reader: dict[str, list[str]] = defaultdict(list)
    days: dict[str, list[int]] = defaultdict(list)
    for (rcpt, _mid), r in by_id.items():
        slugs = carried(r)
        assert slugs, f"{rcpt} got a message without an article"
        per_reader[rcpt] += slugs
        days[rcpt].append(max(published[s][0] for s in slugs))
    for address, kind in kinds.items():
        got = per_reader[address]
        assert len(got) == len(set(got)), f"{address} got an article twice"
        assert set(got) == expected_for(kind, published), address
        if kind == WEEKLY:
            assert max(days[address]) == 13  # the last Monday gathers up to day 13


def publish(store: Store, day: int, published: dict[str, tuple[int, tuple[str, ...]]]) -> None:
    new = day_articles(day)
    add_articles(store, *new)
    for a in new:
        published[a.slug] = (day, a.tags)


def moment(day: int) -> datetime:
    return START + timedelta(days=day)


def test_two_weeks_of_topics_and_cadence(tmp_path: Path, store: Store, database_url: str,
                                         smtp_servers: Callable[..., SMTPServer]) -> None:
    server = smtp_servers()
    settings = make_settings(tmp_path, **server.env(), DATABASE_URL=database_url,
                             SMTP_CONNECTIONS="1", WEEKLY_DAY="monday")
    kinds = readers(store)
    published: dict[str, tuple[int, tuple[str, ...]]] = {}
    per_day: list[Counter[str]] = []
    for day in range(DAYS):
        publish(store, day, published)
        before = len(server.received)
        dry = dry_run(settings, store, moment(day))  # what the send will do, exactly
        report = send(settings, store, moment(day))
        per_day.append(Counter(r.rcpt_to for r in server.received[before:]))
        assert {m.recipient: carried_in(m.data) for m in dry or []} == {
            r.rcpt_to: carried(r) for r in server.received[before:]}
        if day == 4:
            assert report.edition is None  # nothing new, not a Monday: no edition
        if day == 6:  # a Monday with nothing new: an edition for the weekly reader only
            assert report.edition is not None and report.articles == 0
            assert per_day[-1] == Counter({WEEKLY: 1})
        # A second send the same day finds nothing more, weekly reader included.
        assert send(settings, store, moment(day) + timedelta(hours=2)).edition is None
    assert per_day[3] == Counter({EVERYTHING: 1})  # only cooking: nothing for python
    assert per_day[13] == Counter({EVERYTHING: 1, PYTHON: 1, WEEKLY: 1})
    check(server.received, kinds, published)
    # The weekly message says how many articles it gathers.
    weekly = [r for r in server.received if r.rcpt_to == WEEKLY]
    # One message each Monday (days 6 and 13), gathering up to day 5, then up to day 13.
    assert [max(published[s][0] for s in carried(r)) for r in weekly] == [5, 13]
    count = len(carried(weekly[0]))
    assert weekly[0].parsed()["Subject"] == f"Example News: {count} new articles"


def test_topics_of_a_reader_can_change_and_only_new_articles_follow(
        tmp_path: Path, store: Store, smtp_servers: Callable[..., SMTPServer]) -> None:
    """A reader changing topics gets what is new from then on; never an article again."""
    server = smtp_servers()
    settings = make_settings(tmp_path, **server.env(), SMTP_CONNECTIONS="1",
                             DATABASE_URL=f"sqlite:///{tmp_path / 'state.sqlite3'}")
    store.close()
    store = Store.open(settings.database_url, tmp_path)
    try:
        subscribe_many(store, [(PYTHON, None)], NOW, source="cli", choices=Choices(("python",)))
        published: dict[str, tuple[int, tuple[str, ...]]] = {}
        publish(store, 0, published)
        send(settings, store, moment(0))
        subscribe_many(store, [(PYTHON, None)], NOW, source="cli", choices=Choices())
        publish(store, 1, published)
        send(settings, store, moment(1))
        got = [slug for r in server.received for slug in carried(r)]
        assert got == ["d00-py", "d01-cook", "d01-py"]  # d00-cook was passed over for good
    finally:
        store.close()


def send(settings: Settings, store: Store, now: datetime) -> SendReport:
    return send_digest(settings, store, lambda: SMTPMailer(settings), now)


# -- killed mid-send ------------------------------------------------------------------------

PER_KIND = 25  # readers of each kind: enough messages to kill a send in the middle


def send_process(env: dict[str, str], cwd: Path, at: datetime) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.mail.send_at", at.isoformat()],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_mid_send_and_resume_keep_each_article_once(
        tmp_path: Path, database_url: str, smtp_servers: Callable[..., SMTPServer]) -> None:
    server = smtp_servers(behaviour=Behaviour(delay=0.005))
    settings = make_settings(tmp_path, **server.env(), DATABASE_URL=database_url,
                             SMTP_CONNECTIONS="1")
    env = {key: value for key, value in os.environ.items()
           if key not in base_env(tmp_path) and not key.startswith(("SMTP_", "DIGEST_"))}
    env.update(base_env(tmp_path))
    env.update(server.env())
    env.update(DATABASE_URL=database_url, PYTHONPATH=str(REPO), SMTP_CONNECTIONS="1")
    store = Store.open(database_url, tmp_path)
    kills = 0
    try:
        kinds = readers(store, PER_KIND)
        published: dict[str, tuple[int, tuple[str, ...]]] = {}
        for day in range(DAYS):
            publish(store, day, published)
            if day not in (5, 13):  # a Sunday and the last Monday are killed
                send(settings, store, moment(day))
                continue
            before = len(server.received)
            first = send_process(env, tmp_path, moment(day))
            try:
                def received(count: int, process: subprocess.Popen[bytes] = first,
                             start: int = before) -> bool:
                    assert process.poll() is None, "the send ended before it could be killed"
                    return len(server.received) - start >= count

                wait_for(lambda: received(PER_KIND), f"{PER_KIND} messages", 60)
                first.send_signal(signal.SIGKILL)
            finally:
                if first.poll() is None:
                    first.kill()
                first.communicate(timeout=30)
            assert first.returncode == -signal.SIGKILL
            due = 3 * PER_KIND if day == 13 else 2 * PER_KIND
            assert len(server.received) - before < due  # killed mid-send
            kills += 1
            # Resumed a little later (another process), then nothing more that day.
            second = send_process(env, tmp_path, moment(day) + timedelta(minutes=20))
            out, err = second.communicate(timeout=120)
            assert second.returncode == 0, err.decode()
            assert b"created=False" in out
            assert send(settings, store, moment(day) + timedelta(hours=1)).edition is None
        check(server.received, kinds, published, kills)
    finally:
        store.close()


def test_new_subscribers_get_what_is_new_from_when_they_joined(
        tmp_path: Path, store: Store, database_url: str,
        smtp_servers: Callable[..., SMTPServer]) -> None:
    """A reader added between editions starts after the last edition made before them:
    nothing older, even in a weekly reader's first message."""
    server = smtp_servers()
    settings = make_settings(tmp_path, **server.env(), DATABASE_URL=database_url,
                             SMTP_CONNECTIONS="1")
    subscribe_many(store, [(EVERYTHING, None)], NOW, source="cli")
    published: dict[str, tuple[int, tuple[str, ...]]] = {}
    for day in range(DAYS - 6):  # day 0 (Tuesday) to day 7 (the Tuesday after)
        publish(store, day, published)
        if day == 1:
            subscribe_many(store, [(WEEKLY, None)], moment(day) - timedelta(minutes=30),
                           source="cli", choices=Choices((), Cadence.WEEKLY))
        send(settings, store, moment(day))
        if day == 1:
            subscribe_many(store, [(PYTHON, None)], moment(day) + timedelta(minutes=30),
                           source="cli", choices=Choices(("python",)))
    got: dict[str, list[str]] = defaultdict(list)
    for r in server.received:
        got[r.rcpt_to] += carried(r)
    assert sorted(got[EVERYTHING]) == sorted(published)
    assert sorted(got[WEEKLY]) == sorted(s for s, (d, _t) in published.items() if 1 <= d <= 5)
    assert [r.rcpt_to for r in server.received].count(WEEKLY) == 1  # the Monday, day 6
    assert sorted(got[PYTHON]) == sorted(s for s, (d, tags) in published.items()
                                         if d >= 2 and "Python" in tags)


def test_a_weekly_day_without_an_edition_moves_the_weekly_message_to_the_next_one(
        tmp_path: Path, store: Store, smtp_servers: Callable[..., SMTPServer]) -> None:
    server = smtp_servers()
    settings = make_settings(tmp_path, **server.env(), SMTP_CONNECTIONS="1",
                             DATABASE_URL=f"sqlite:///{tmp_path / 'state.sqlite3'}")
    store.close()
    store = Store.open(settings.database_url, tmp_path)
    try:
        kinds = readers(store)
        published: dict[str, tuple[int, tuple[str, ...]]] = {}
        for day in range(DAYS):
            publish(store, day, published)
            if day != 6:  # no digest at all on the first Monday (the service was down)
                send(settings, store, moment(day))
        weekly = [r for r in server.received if r.rcpt_to == WEEKLY]
        assert [max(published[s][0] for s in carried(r)) for r in weekly] == [7, 13]
        check(server.received, kinds, published)  # still each article once
    finally:
        store.close()


def test_a_weekly_reader_who_joins_mid_week_waits_for_the_next_weekly_day(
        tmp_path: Path, store: Store, smtp_servers: Callable[..., SMTPServer]) -> None:
    """Even when the last edition before they joined is older than this week's start."""
    server = smtp_servers()
    settings = make_settings(tmp_path, **server.env(), SMTP_CONNECTIONS="1",
                             DATABASE_URL=f"sqlite:///{tmp_path / 'state.sqlite3'}")
    store.close()
    store = Store.open(settings.database_url, tmp_path)
    try:
        subscribe_many(store, [(EVERYTHING, None)], NOW, source="cli")
        published: dict[str, tuple[int, tuple[str, ...]]] = {}
        publish(store, 0, published)
        send(settings, store, moment(0))  # Tuesday; then no edition until Wednesday, day 8
        subscribe_many(store, [(WEEKLY, None)], moment(8) - timedelta(hours=2), source="cli",
                       choices=Choices((), Cadence.WEEKLY))
        for day in range(8, DAYS):
            publish(store, day, published)
            send(settings, store, moment(day))
        weekly = [r for r in server.received if r.rcpt_to == WEEKLY]
        assert len(weekly) == 1  # on Monday, day 13
        assert sorted(carried(weekly[0])) == sorted(
            s for s, (d, _t) in published.items() if d >= 8)
    finally:
        store.close()
