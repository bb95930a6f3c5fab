"""SMTP_CONNECTIONS workers: each over its own connection, one outbox, one rate limit.

Real aiosmtpd servers, state store on SQLite and PostgreSQL. The kill -9 test
with 8 connections is in test_mail_crash.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from digest.mail.outbox import Outbox
from digest.mail.send import send_digest
from digest.mail.smtp import MemoryMailer, SMTPMailer, too_many_connections
from digest.mail.subscribers import subscribe_many
from digest.store.database import Store
from digest.store.edition_reports import history
from digest.store.recorder import Recorder
from tests.conftest import make_settings
from tests.fixtures_mail import NOW, Behaviour, SMTPServer, add_articles, sample_articles

Start = Callable[..., SMTPServer]


def fill(store: Store, recipients: int) -> list[str]:
    add_articles(store, *sample_articles(3))
    addresses = [f"r{i:03d}@example.org" for i in range(recipients)]
    subscribe_many(store, [(a, None) for a in addresses], NOW, source="cli")
    return addresses


def test_workers_send_in_parallel_each_recipient_once(tmp_path: Path, store: Store,
                                                      smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(delay=0.01))
    settings = make_settings(tmp_path, **server.env(), SMTP_CONNECTIONS="8")
    addresses = fill(store, 160)
    seen: list[tuple[int, int]] = []
    report = send_digest(settings, store, lambda: SMTPMailer(settings), NOW,
                         progress=lambda done, total: seen.append((done, total)), batch=25)
    assert (report.sent, report.failed, report.deferred, report.finished) == (160, 0, 0, True)
    assert Counter(r.rcpt_to for r in server.received) == dict.fromkeys(addresses, 1)
    assert server.handler.connections == 8
    assert server.handler.peak_connections > 1  # the sessions overlapped
    # The progress bar counts every delivery once, in order, up to the total.
    assert [done for done, _total in seen] == list(range(1, 161))
    assert {total for _done, total in seen} == {160}
    [summary] = history(store)
    assert (summary.sent, summary.pending, summary.status) == (160, 0, "done")


def test_records_queued_together_share_one_commit(tmp_path: Path) -> None:
    # Group commit: records that wait at the same moment (here: while SQLite's write
    # lock is held) are committed in one transaction, each future resolved after it.
    store = Store.open("sqlite:///group.sqlite3", tmp_path)
    try:
        fill(store, 30)
        outbox = Outbox(store)
        edition, _created = outbox.open_or_create(store.load_articles().values(), NOW,
                                                  message_id=lambda uid, a: f"<{uid}.{a}>")
        assert edition is not None
        claimed = outbox.claim(edition.id, NOW, 30)
        recorder = Recorder(outbox)
        with store.writing():
            futures = [recorder.submit(d, NOW, 1) for d in claimed]
            time.sleep(0.05)
            assert not any(f.done() for f in futures)  # nothing is recorded before its commit
        assert all(f.result(10) for f in futures)
        recorder.close()
        assert 1 <= recorder.commits <= 2  # the first may have gone alone
        [summary] = history(store)
        assert summary.sent == 30
    finally:
        store.close()


def test_records_of_all_senders_share_one_statement(store: Store) -> None:
    # SQLite and PostgreSQL (one UPDATE for the group there): with 4 senders the writer
    # holds the group until each has a record in it; a claim lost meanwhile is False.
    fill(store, 8)
    outbox = Outbox(store)
    edition, _created = outbox.open_or_create(store.load_articles().values(), NOW,
                                              message_id=lambda uid, a: f"<{uid}.{a}>")
    assert edition is not None
    claimed = outbox.claim(edition.id, NOW, 8)
    outbox.release([claimed[3]], NOW)  # given back: no longer ours to mark sent
    recorder = Recorder(outbox, senders=4, max_wait=30)
    try:
        futures = [recorder.submit(d, NOW, 1) for d in claimed[:3]]
        time.sleep(0.05)
        assert not any(f.done() for f in futures)  # waiting for the fourth sender
        futures.append(recorder.submit(claimed[3], NOW, 1))
        assert [f.result(10) for f in futures] == [True, True, True, False]
        assert recorder.commits == 1
        # One sender needs its record now: written without waiting for the others.
        alone = recorder.submit(claimed[4], NOW, 2)
        recorder.hurry(alone)
        assert alone.result(10) is True
        assert recorder.commits == 2
    finally:
        recorder.close()
    counts = outbox.counts(edition.id)
    assert (counts["sent"], counts["pending"], counts["sending"]) == (4, 1, 3)
    [summary] = history(store)
    assert summary.sent == 4


def test_rate_limit_is_one_limit_for_the_whole_process(tmp_path: Path, store: Store) -> None:
    settings = make_settings(tmp_path, SMTP_RATE_LIMIT="40", SMTP_CONNECTIONS="4")
    fill(store, 21)
    mailer = MemoryMailer()
    started = time.monotonic()
    report = send_digest(settings, store, lambda: mailer, NOW)
    elapsed = time.monotonic() - started
    assert report.sent == 21
    # 21 messages at 40 a second over 4 connections: 20 intervals of 25 ms, not 5.
    assert elapsed >= 20 / 40 * 0.95


def test_421_on_one_connection_does_not_stop_the_others(tmp_path: Path, store: Store,
                                                        smtp_servers: Start) -> None:
    addresses = [f"r{i:03d}@example.org" for i in range(40)]
    server = smtp_servers(behaviour=Behaviour(delay=0.002, rcpt_replies={
        addresses[0]: ["421 4.4.2 closing connection"]}))
    settings = make_settings(tmp_path, **server.env(), SMTP_CONNECTIONS="4")
    fill(store, 40)
    others_done = threading.Event()

    def backoff(seconds: float) -> None:
        # The worker that got the 421 waits until every other recipient is served:
        # proof that the other connections went on without it.
        assert others_done.wait(30), "the other workers stopped"

    def watch() -> None:
        while len(server.received) < 39:
            time.sleep(0.01)
        others_done.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    report = send_digest(settings, store, lambda: SMTPMailer(settings), NOW, sleep=backoff)
    assert (report.sent, report.deferred, report.finished) == (40, 0, True)
    assert Counter(r.rcpt_to for r in server.received) == dict.fromkeys(addresses, 1)
    assert server.handler.connections == 5  # the one that got the 421 connected again
    assert server.received[-1].rcpt_to == addresses[0]


def test_too_many_connections_makes_digest_use_fewer(tmp_path: Path, store: Store,
                                                     smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(delay=0.005, max_connections=2))
    settings = make_settings(tmp_path, **server.env(), SMTP_CONNECTIONS="6")
    addresses = fill(store, 60)
    report = send_digest(settings, store, lambda: SMTPMailer(settings), NOW,
                         sleep=lambda _s: None)
    assert (report.sent, report.deferred, report.failed, report.finished) == (60, 0, 0, True)
    assert Counter(r.rcpt_to for r in server.received) == dict.fromkeys(addresses, 1)
    assert server.handler.peak_connections == 2
    assert server.handler.refused_connections >= 1
    # The refused workers retired: no retry storm against the limit.
    assert server.handler.refused_connections <= 4


def test_too_many_connections_replies_are_recognised() -> None:
    assert too_many_connections("421 4.7.0 mx Error: too many connections from 192.0.2.1")
    assert too_many_connections("452 4.3.2 Too many concurrent SMTP connections")
    assert too_many_connections("421 Too many sessions")
    assert not too_many_connections("421 4.4.2 closing connection")
    assert not too_many_connections("550 5.7.1 too many connections")  # 5xx: not ours
