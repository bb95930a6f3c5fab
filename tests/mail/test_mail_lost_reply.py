"""A lost reply after the data is "outcome unknown", never "not delivered, retry now".

RFC 5321 (4.5.3.2.6) gives a server 10 minutes to answer the end of data. A
server that stores the message and then answers late, or drops the
connection, may have delivered it: such a delivery is sent once more, by a
later run, with the same Message-ID, and never a third time. Real aiosmtpd
servers, state store on SQLite and PostgreSQL, and the CLI as a user runs it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import digest.store.database
from digest.cli.main import cli
from digest.errors import MailError
from digest.mail.outbox import Outbox
from digest.mail.run import RetryPolicy
from digest.mail.send import SendReport, claim_lease, send_digest
from digest.mail.smtp import Mailer, SMTPMailer
from digest.mail.subscribers import subscribe_many
from digest.settings import Settings
from digest.store.database import Store
from digest.store.edition_reports import history
from digest.store.migrations import MIGRATIONS
from digest.store.schema import deliveries
from tests.conftest import base_env, make_settings, wait_for
from tests.fixtures_mail import NOW, Behaviour, SMTPServer, add_articles, clean_environ, sample_articles

Start = Callable[..., SMTPServer]
FAST = {"SMTP_TIMEOUT": "0.2s"}  # far shorter than any reply delay used here


def fill(store: Store, recipients: int = 3) -> list[str]:
    add_articles(store, *sample_articles(3))
    addresses = [f"r{i:03d}@example.org" for i in range(recipients)]
    subscribe_many(store, [(a, None) for a in addresses], NOW, source="cli")
    return addresses


def send(settings: Settings, store: Store, now: datetime,
         mailer: Callable[[], Mailer] | None = None, **kwargs: object) -> SendReport:
    return send_digest(settings, store, mailer or (lambda: SMTPMailer(settings)), now,
                       sleep=lambda _s: None, **kwargs)  # type: ignore[arg-type]


def copies(server: SMTPServer) -> Counter[str]:
    return Counter(r.rcpt_to for r in server.received)


def message_ids(server: SMTPServer, address: str) -> list[str]:
    return [r.message_id for r in server.received if r.rcpt_to == address]


def test_dropped_reply_is_sent_once_more_later_with_the_same_message_id(
        tmp_path: Path, store: Store, smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(lose_reply_after_storing={"r001@example.org": 1}))
    settings = make_settings(tmp_path, **server.env())
    addresses = fill(store)

    first = send(settings, store, NOW)
    assert (first.sent, first.unknown, first.deferred, first.finished) == (2, 1, 0, False)
    assert not first.ok
    assert copies(server) == dict.fromkeys(addresses, 1)  # not 5 copies to r001
    [summary] = history(store)
    assert (summary.status, summary.sent, summary.unknown, summary.pending) == (
        "sending", 2, 1, 0)

    # Before the retry delay nobody sends it again.
    early = send(settings, store, NOW + timedelta(minutes=29))
    assert (early.sent, early.unknown, early.remaining) == (0, 0, 1)
    assert len(server.received) == 3

    later = send(settings, store, NOW + timedelta(minutes=31))
    assert (later.edition, later.created, later.sent, later.finished) == (1, False, 1, True)
    assert copies(server)["r001@example.org"] == 2
    first_id, second_id = message_ids(server, "r001@example.org")
    assert first_id == second_id and first_id
    [summary] = history(store)
    assert (summary.status, summary.sent, summary.unknown) == ("done", 3, 0)

    assert send(settings, store, NOW + timedelta(days=1)).edition is None
    assert len(server.received) == 4


def test_reply_lost_twice_is_unconfirmed_and_never_sent_again(
        tmp_path: Path, store: Store, smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(lose_reply_after_storing={"r000@example.org": 5}))
    settings = make_settings(tmp_path, **server.env())
    fill(store, recipients=2)
    policy = RetryPolicy(unknown_retry_after=timedelta(minutes=1))

    assert send(settings, store, NOW, retry=policy).unknown == 1
    second = send(settings, store, NOW + timedelta(minutes=2), retry=policy)
    assert (second.sent, second.unknown, second.remaining, second.finished) == (0, 1, 0, True)
    for hours in (1, 24):
        assert send(settings, store, NOW + timedelta(hours=hours), retry=policy).edition is None
    assert copies(server) == {"r000@example.org": 2, "r001@example.org": 1}
    [summary] = history(store)
    assert (summary.status, summary.sent, summary.unknown, summary.pending) == ("done", 1, 1, 0)
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(deliveries).where(
            deliveries.c.recipient == "r000@example.org")).one()
    assert (row.status, row.lost_replies, row.claimed_by) == ("unconfirmed", 2, None)


def test_the_run_that_lost_a_reply_never_sends_it_again(
        tmp_path: Path, store: Store, smtp_servers: Start) -> None:
    # Even when the retry is due at once, the run that lost the reply leaves it.
    server = smtp_servers(behaviour=Behaviour(lose_reply_after_storing={"r000@example.org": 1}))
    settings = make_settings(tmp_path, **server.env())
    addresses = fill(store, recipients=2)
    policy = RetryPolicy(unknown_retry_after=timedelta(0))
    report = send(settings, store, NOW, retry=policy)
    assert (report.sent, report.unknown, report.remaining) == (1, 1, 1)
    assert copies(server) == dict.fromkeys(addresses, 1)
    assert send(settings, store, NOW + timedelta(minutes=1), retry=policy).sent == 1  # next run
    assert copies(server) == {"r000@example.org": 2, "r001@example.org": 1}


def test_reply_later_than_the_end_of_data_wait_is_unknown(
        tmp_path: Path, store: Store, smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(reply_delay_after_storing=1.0))
    settings = make_settings(tmp_path, **{**server.env(), **FAST})
    addresses = fill(store, recipients=2)

    report = send(settings, store, NOW,
                  mailer=lambda: SMTPMailer(settings, end_of_data_timeout=0.4))
    assert (report.sent, report.unknown) == (0, 2)
    assert copies(server) == dict.fromkeys(addresses, 1)
    assert history(store)[0].unknown == 2

    server.behaviour.reply_delay_after_storing = 0.0  # the server recovered
    later = send(settings, store, NOW + timedelta(minutes=31))
    assert (later.sent, later.unknown, later.finished) == (2, 0, True)
    assert copies(server) == dict.fromkeys(addresses, 2)
    for address in addresses:
        assert len(set(message_ids(server, address))) == 1


def test_slow_reply_within_the_end_of_data_wait_is_delivered(
        tmp_path: Path, store: Store, smtp_servers: Start) -> None:
    # The reply comes after SMTP_TIMEOUT (0.2 s), well within the 10-minute wait.
    server = smtp_servers(behaviour=Behaviour(reply_delay_after_storing=0.5))
    settings = make_settings(tmp_path, **{**server.env(), **FAST, "SMTP_CONNECTIONS": "1"})
    addresses = fill(store, recipients=2)
    report = send(settings, store, NOW)
    assert (report.sent, report.unknown, report.deferred, report.finished) == (2, 0, 0, True)
    assert report.ok
    assert copies(server) == dict.fromkeys(addresses, 1)
    assert server.handler.connections == 1  # no timeout dropped the connection


def test_lost_replies_in_a_row_stop_the_run(tmp_path: Path, store: Store,
                                            smtp_servers: Start) -> None:
    addresses = [f"r{i:03d}@example.org" for i in range(5)]
    server = smtp_servers(behaviour=Behaviour(
        lose_reply_after_storing=dict.fromkeys(addresses, 9)))
    settings = make_settings(tmp_path, **server.env(), SMTP_CONNECTIONS="1")
    fill(store, recipients=5)
    with pytest.raises(MailError, match="3 messages in a row got no reply"):
        send(settings, store, NOW)
    assert copies(server) == dict.fromkeys(addresses[:3], 1)
    [summary] = history(store)
    assert (summary.unknown, summary.pending, summary.sent) == (3, 2, 0)


def test_no_other_sender_can_claim_while_a_reply_is_awaited(
        tmp_path: Path, database_url: str, store: Store, smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(reply_delay_after_storing=1.0))
    settings = make_settings(tmp_path, **{**server.env(), **FAST})
    fill(store, recipients=2)
    assert claim_lease(settings) > timedelta(minutes=15)  # 10-minute wait, renewed at 1/3
    reports: list[SendReport] = []
    sender = threading.Thread(target=lambda: reports.append(send(settings, store, NOW)))
    sender.start()
    try:
        wait_for(lambda: bool(server.received), "the first message", 10)
        # Another node, 11 minutes on (past the old 5-minute lease, past the 10-minute
        # wait), finds nothing to claim: the awaited message and the rest of the batch.
        other_store = Store.open(database_url, tmp_path)
        try:
            other = Outbox(other_store, owner="other-node|ns|1|x")
            assert other.claim(1, NOW + timedelta(minutes=11), 100) == []
        finally:
            other_store.close()
    finally:
        sender.join(timeout=20)
    assert reports and reports[0].sent == 2
    assert len(server.received) == 2


def test_migration_adds_lost_replies_to_existing_deliveries(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tuple(m for m in MIGRATIONS if m.name < "0004_lost_replies")
    with monkeypatch.context() as patch:
        patch.setattr(digest.store.database, "MIGRATIONS", before)
        old = Store.open(database_url, tmp_path)
        try:
            with old.transaction() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO editions VALUES (1, 'u', 'sending', '2024-05-06', NULL, 0, 1)")
                conn.exec_driver_sql(
                    "INSERT INTO deliveries VALUES (1, 'ann@example.org', '<m@x>', 'pending', "
                    "0, NULL, NULL, '2024-05-06', NULL)")
                conn.exec_driver_sql(
                    "INSERT INTO subscribers VALUES ('ann@example.org', NULL, 'subscribed', "
                    "'cli', '2024-05-06', '2024-05-06')")
        finally:
            old.close()
    upgraded = Store.open(database_url, tmp_path)
    try:
        assert "0004_lost_replies" in upgraded.applied_migrations()  # later ones may follow
        [claimed] = Outbox(upgraded).claim(1, NOW, 10)
        assert (claimed.recipient, claimed.lost_replies) == ("ann@example.org", 0)
    finally:
        upgraded.close()


# -- through the CLI ---------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_send_exit_status_and_history_show_unknown(
        tmp_path: Path, smtp_servers: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    server = smtp_servers(behaviour=Behaviour(lose_reply_after_storing={"bob@example.org": 1}))
    clean_environ(monkeypatch)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    for key, value in {**base_env(tmp_path), **server.env(), "DATABASE_URL": url}.items():
        monkeypatch.setenv(key, value)
    prepared = Store.open(url, tmp_path)
    try:
        add_articles(prepared, *sample_articles(3))
    finally:
        prepared.close()
    invoke("subscribers", "add", "ann@example.org", "bob@example.org")

    result = invoke("send")
    assert result.exit_code == 4
    assert "2 recipients): 1 sent, 0 failed, 0 skipped, 0 deferred, 1 unknown" in result.stdout
    assert "1 message got no reply after their data" in result.stderr
    table = invoke("history").stdout.splitlines()
    assert table[0].split()[-2:] == ["pending", "unknown"]
    assert table[1].split()[3:] == ["sending", "3", "2", "1", "0", "0", "0", "1"]

    assert invoke("send").exit_code == 0  # too early: nothing sent, nothing lost
    assert len(server.received) == 2
    # Half an hour later (the stored "not before" moved back instead of waiting).
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.status == "unknown")
                     .values(claimed_until="2000-01-01T00:00:00.000000+00:00"))
    engine.dispose()
    result = invoke("send")
    assert result.exit_code == 0
    assert "1 sent" in result.stdout
    assert copies(server) == {"ann@example.org": 1, "bob@example.org": 2}
    assert len(set(message_ids(server, "bob@example.org"))) == 1
    assert invoke("history").stdout.splitlines()[1].split()[3:] == [
        "done", "3", "2", "2", "0", "0", "0", "0"]
    assert "nothing to send" in invoke("send").stdout
    assert len(server.received) == 3
