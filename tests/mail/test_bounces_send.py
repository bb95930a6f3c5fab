"""Bounces at send time: real SMTP replies (aiosmtpd) drive the subscriber states.

A 5xx to RCPT makes the address bounced at once; 4xx deferrals make it
bounced after BOUNCE_SOFT_DAYS without a success; `digest history EDITION`
shows the replies; `digest subscribers reactivate` takes an address back.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from digest.mail.run import RetryPolicy
from digest.mail.send import send_digest
from digest.mail.smtp import Mailer, SMTPMailer
from digest.mail.subscribers import (
    get_subscriber,
    list_subscribers,
    reactivate,
    subscribe_many,
)
from digest.store.database import Store
from digest.store.edition_reports import problems
from tests.conftest import base_env, digest_cli, make_settings
from tests.fixtures_mail import (
    NOW,
    Behaviour,
    SMTPServer,
    add_articles,
    article,
    sample_articles,
)

Start = Callable[..., SMTPServer]
DEAD = "dead@example.org"
BUSY = "busy@example.org"
FINE = "fine@example.org"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def test_cli_send_hard_bounce_history_list_and_reactivate(
        tmp_path: Path, database_url: str, smtp_servers: Start) -> None:
    """As a user runs it: `digest send` against a server refusing one address with 550
    and deferring another once with 451."""
    server = smtp_servers(behaviour=Behaviour(
        reject_always={DEAD: "550 5.1.1 <dead@example.org>: user unknown"},
        rcpt_replies={BUSY: ["451 4.2.1 mailbox busy, try later"]}))
    env = {**base_env(tmp_path), **server.env(), "DATABASE_URL": database_url}
    store = Store.open(database_url, tmp_path)
    try:
        add_articles(store, *sample_articles(2))
    finally:
        store.close()
    result = digest_cli("subscribers", "add", DEAD, BUSY, FINE, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr

    result = digest_cli("send", cwd=tmp_path, env=env)
    assert result.returncode == 3, result.stderr  # some deliveries failed
    assert f"failed: {DEAD}: 550 5.1.1 <dead@example.org>: user unknown" in result.stderr
    assert "1 address bounced" in result.stderr
    assert sorted(r.rcpt_to for r in server.received) == [BUSY, FINE]  # 451 retried, then OK

    result = digest_cli("subscribers", "list", "--status", "bounced", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{DEAD}\tbounced\t")
    assert line.endswith("1 bounce: 550 5.1.1 <dead@example.org>: user unknown")

    result = digest_cli("history", "1", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()  # busy's 451 was followed by a success
    address, status, attempts, _when, reply = line.split("\t")
    assert (address, status, attempts, reply) == (
        DEAD, "failed", "1", "550 5.1.1 <dead@example.org>: user unknown")
    assert digest_cli("history", "7", cwd=tmp_path, env=env).returncode == 2

    store = Store.open(database_url, tmp_path)
    try:
        busy = get_subscriber(store, BUSY)
        assert busy is not None and busy.status == "subscribed"
        # A 451 that a retry within the same run got past is no deferral: not counted.
        assert (busy.bounces, busy.soft_bounce_since) == (0, None)
        add_articles(store, article("new.txt", "A new one", NOW + timedelta(hours=1)))
    finally:
        store.close()

    # The next edition skips the bounced address.
    server.received.clear()
    result = digest_cli("send", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "2 recipients" in result.stdout
    assert sorted(r.rcpt_to for r in server.received) == [BUSY, FINE]

    # An import keeps it bounced; reactivate takes it back.
    csv = tmp_path / "people.csv"
    csv.write_text(f"email\n{DEAD}\n", "utf-8")
    result = digest_cli("subscribers", "import", str(csv), cwd=tmp_path, env=env)
    assert f"kept bounced: {DEAD}" in result.stderr
    result = digest_cli("subscribers", "reactivate", DEAD, FINE, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{DEAD}: subscribed again", f"{FINE}: was not bounced"]
    result = digest_cli("subscribers", "list", "--status", "subscribed", cwd=tmp_path, env=env)
    assert DEAD in result.stdout


def test_soft_bounce_after_days_of_deferrals(tmp_path: Path, store: Store,
                                             smtp_servers: Start) -> None:
    """451 at every try: deferred on day 0, still subscribed on day 6, bounced on day 7."""
    server = smtp_servers(behaviour=Behaviour(reject_always={BUSY: "451 4.2.2 mailbox full"}))
    settings = make_settings(tmp_path, **server.env())
    add_articles(store, *sample_articles(1))
    subscribe_many(store, [(BUSY, None), (FINE, None)], NOW, source="cli")
    retry = RetryPolicy(attempts=2, max_total_attempts=100)

    def send(day: float) -> tuple[int, int, int]:
        def factory() -> Mailer:
            return SMTPMailer(settings)

        fake = FakeTime()
        report = send_digest(settings, store, factory, NOW + timedelta(days=day), retry=retry,
                             sleep=fake.sleep, monotonic=fake.monotonic)
        return report.deferred, report.failed, report.bounced

    assert send(0) == (1, 0, 0)
    busy = get_subscriber(store, BUSY)
    assert busy is not None and busy.status == "subscribed"
    assert busy.soft_bounce_since == NOW + timedelta(seconds=2)  # after one 2 s backoff
    assert busy.last_bounce == "451 4.2.2 mailbox full"
    assert send(6) == (1, 0, 0)
    [problem] = problems(store, 1)
    assert (problem.recipient, problem.status, problem.reply) == (
        BUSY, "pending", "451 4.2.2 mailbox full")
    assert send(7) == (0, 1, 1)
    busy = get_subscriber(store, BUSY)
    assert busy is not None and (busy.status, busy.bounces) == ("bounced", 3)
    [problem] = problems(store, 1)
    assert (problem.status, problem.reply) == (
        "failed", "deferred for 7 days or more: 451 4.2.2 mailbox full")
    assert [s.address for s in list_subscribers(store, "bounced")] == [BUSY]
    assert [r.rcpt_to for r in server.received] == [FINE]

    # Reactivated, it starts a new count of days.
    assert reactivate(store, BUSY, NOW + timedelta(days=8)) is True
    again = get_subscriber(store, BUSY)
    assert again is not None and (again.status, again.soft_bounce_since) == ("subscribed", None)


def test_a_success_between_deferrals_restarts_the_days(tmp_path: Path, store: Store,
                                                        smtp_servers: Start) -> None:
    behaviour = Behaviour(rcpt_replies={BUSY: ["452 4.2.2 over quota"] * 2})
    server = smtp_servers(behaviour=behaviour)
    settings = make_settings(tmp_path, **server.env())
    add_articles(store, *sample_articles(1))
    subscribe_many(store, [(BUSY, None)], NOW, source="cli")
    retry = RetryPolicy(attempts=2)
    fake = FakeTime()

    def send(day: float) -> None:
        send_digest(settings, store, lambda: SMTPMailer(settings), NOW + timedelta(days=day),
                    retry=retry, sleep=fake.sleep, monotonic=fake.monotonic, force=True)

    send(0)  # two 452: deferred
    busy = get_subscriber(store, BUSY)
    assert busy is not None and busy.soft_bounce_since is not None
    send(1)  # accepted: the streak ends
    busy = get_subscriber(store, BUSY)
    assert busy is not None and (busy.status, busy.soft_bounce_since) == ("subscribed", None)
    assert [r.rcpt_to for r in server.received] == [BUSY]


def test_connection_trouble_and_other_data_refusals_do_not_bounce(
        tmp_path: Path, store: Store, smtp_servers: Start) -> None:
    """A 554 to the data without an address status fails the delivery only; a 421 at RCPT is
    the server's trouble, not the address's."""
    server = smtp_servers(behaviour=Behaviour(
        data_replies=["554 5.6.0 message content rejected"],
        rcpt_replies={BUSY: ["421 4.3.2 shutting down"]}))
    settings = make_settings(tmp_path, **server.env())
    add_articles(store, *sample_articles(1))
    subscribe_many(store, [(BUSY, None), (FINE, None)], NOW, source="cli")
    fake = FakeTime()
    report = send_digest(settings, store, lambda: SMTPMailer(settings), NOW,
                         retry=RetryPolicy(attempts=1), sleep=fake.sleep,
                         monotonic=fake.monotonic)
    assert (report.failed, report.bounced, report.deferred) == (1, 0, 1)
    for address in (BUSY, FINE):
        subscriber = get_subscriber(store, address)
        assert subscriber is not None
        assert (subscriber.status, subscriber.bounces, subscriber.soft_bounce_since) == (
            "subscribed", 0, None)
