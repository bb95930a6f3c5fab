"""Bounces that arrive later: VERP envelope senders, then `digest bounces import`.

The returned messages in tests/mail/returned/ are written for these tests
after RFC 3464 and RFC 5965 and the layouts Postfix, Exim, Microsoft 365 and
Gmail use; @@VERP@@ and @@RCPT@@ are filled with what the test send used.
"""

from __future__ import annotations

import imaplib
import os
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.mail.dsn import Report, ReportError, parse_report
from digest.mail.subscribers import get_subscriber, list_subscribers, subscribe_many
from digest.mail.verp import VerpError, make_token, parse_token, tokens_in
from digest.store.database import Store
from tests.conftest import base_env, cli_env, digest_cli
from tests.fixtures_imap import ImapMailbox
from tests.fixtures_mail import NOW, SMTPServer, add_articles, sample_articles

Start = Callable[..., SMTPServer]
RETURNED = Path(__file__).parent / "returned"
BOUNCES = "bounces@example.org"
SECRET = "test-secret-key-0123456789"
FIXTURES = {  # file -> (recipient, subscriber status afterwards, bounces counted)
    "postfix_user_unknown.eml": ("pf@example.org", "bounced", 1),
    "exim_delayed.eml": ("ex@example.org", "subscribed", 1),
    "microsoft_recipient_not_found.eml": ("ms@example.org", "bounced", 1),
    "google_address_not_found.eml": ("gg@example.org", "bounced", 1),
    "arf_complaint.eml": ("arf@example.org", "unsubscribed", 1),
    "out_of_office.eml": ("ooo@example.org", "subscribed", 0),
}


def fill(name: str, verp: str, recipient: str) -> bytes:
    text = (RETURNED / name).read_text("ascii")
    return text.replace("@@VERP@@", verp).replace("@@RCPT@@", recipient).encode("ascii")


def test_returned_messages_travel_to_the_subscriber_status(
        tmp_path: Path, database_url: str, smtp_servers: Start) -> None:
    server = smtp_servers()
    env = {**base_env(tmp_path), **server.env(), "DATABASE_URL": database_url,
           "BOUNCE_ADDRESS": BOUNCES}
    store = Store.open(database_url, tmp_path)
    try:
        add_articles(store, *sample_articles(2))
        subscribe_many(store, [(r, None) for r, _, _ in FIXTURES.values()]
                       + [("bystander@example.org", None)], NOW, source="cli")
    finally:
        store.close()
    result = digest_cli("send", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    senders = {r.rcpt_to: r.mail_from for r in server.received}
    assert len(set(senders.values())) == len(senders) == 7  # one envelope sender each
    for recipient, sender in senders.items():
        local, domain = sender.split("@")
        assert domain == "example.org" and local.startswith("bounces+") and len(local) <= 64
        assert parse_token(SECRET, local.removeprefix("bounces+")).edition == 1
        assert received_from(server, recipient) == "Example News <news@example.org>"

    files = []
    for name, (recipient, _, _) in FIXTURES.items():
        path = tmp_path / name
        path.write_bytes(fill(name, senders[recipient], recipient))
        files.append(str(path))
    # A forged report: a valid-looking address, a token not signed with our key.
    forged = tmp_path / "forged.eml"
    forged.write_bytes(fill("postfix_user_unknown.eml",
                            "bounces+1-0123456789abcdef0123-0123456789abcdef0123@example.org",
                            "bystander@example.org"))
    files.append(str(forged))

    result = digest_cli("bounces", "import", *files, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    *lines, summary = result.stdout.splitlines()
    assert len(lines) == 6  # one line per message, the unrecognised one not listed
    assert summary == ("3 bounced, 1 counted, 1 unsubscribed, 1 unrecognised, 1 unmatched, "
                       "0 unreadable")
    assert lines[-1].startswith(f"{forged}\tunmatched\t-\tbounce 5.1.1 ")
    store = Store.open(database_url, tmp_path)
    try:
        for name, (recipient, status, bounces) in FIXTURES.items():
            subscriber = get_subscriber(store, recipient)
            assert subscriber is not None
            assert (subscriber.status, subscriber.bounces) == (status, bounces), name
        google = get_subscriber(store, "gg@example.org")
        assert google is not None and google.last_bounce == (
            "bounce 5.1.1 550-5.1.1 The email account that you tried to reach does not exist.")
        complaint = get_subscriber(store, "arf@example.org")
        assert complaint is not None and complaint.last_bounce == "complaint abuse ExampleFBL/1.0"
        bystander = get_subscriber(store, "bystander@example.org")
        assert bystander is not None and (bystander.status, bystander.bounces) == (
            "subscribed", 0)
    finally:
        store.close()

    # `digest history 1` shows what came back later against the edition it names.
    result = digest_cli("history", "1", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    shown = {line.split("\t")[0]: line.split("\t") for line in result.stdout.splitlines()}
    assert sorted(shown) == ["arf@example.org", "ex@example.org", "gg@example.org",
                             "ms@example.org", "pf@example.org"]
    for recipient in ("pf@example.org", "ms@example.org", "gg@example.org"):
        assert shown[recipient][1] == "failed"
        assert shown[recipient][4].startswith("bounced later: bounce 5.")
    assert shown["gg@example.org"][4] == ("bounced later: bounce 5.1.1 550-5.1.1 The email "
                                          "account that you tried to reach does not exist.")
    assert shown["ex@example.org"][1:2] == ["sent"]
    assert shown["ex@example.org"][4].startswith("delayed later: delay 4.")
    assert shown["arf@example.org"][1:2] == ["sent"]
    assert shown["arf@example.org"][4] == "complaint later: complaint abuse ExampleFBL/1.0"
    assert "edition 1: 5 failed, deferred, unknown or reported deliveries" in result.stderr
    listing = digest_cli("history", cwd=tmp_path, env=env).stdout.splitlines()[1].split()
    assert (listing[6], listing[7]) == ("4", "3")  # sent, failed

    # Standard input, as an MTA's pipe gives it (with an mbox From line first).
    result = subprocess.run(
        [sys.executable, "-m", "digest", "bounces", "import"], cwd=tmp_path,
        input=b"From MAILER-DAEMON Mon May  6 07:00:05 2024\n"
        + fill("exim_delayed.eml", senders["ex@example.org"], "ex@example.org"),
        env=cli_env(env), capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert b"stdin\tcounted\tex@example.org\tdelay 4.0.0 452 4.2.2 Mailbox full" in result.stdout


def received_from(server: SMTPServer, recipient: str) -> str:
    [received] = [r for r in server.received if r.rcpt_to == recipient]
    return str(received.parsed()["From"])


def test_bounces_import_needs_bounce_address(tmp_path: Path) -> None:
    result = digest_cli("bounces", "import", cwd=tmp_path, env=base_env(tmp_path))
    assert result.returncode == 2
    assert "BOUNCE_ADDRESS" in result.stderr


def test_bounces_import_at_a_terminal_says_what_it_reads_instead_of_waiting(
        tmp_path: Path) -> None:
    """No FILES and standard input a terminal: the command would wait for a message with
    no prompt; it says what to give it (exit 2), and reads nothing."""
    env = {**base_env(tmp_path), "BOUNCE_ADDRESS": BOUNCES}
    leader, follower = os.openpty()
    try:
        for args in ((), ("-",)):
            result = subprocess.run([sys.executable, "-m", "digest", "bounces", "import", *args],
                                    cwd=tmp_path, stdin=follower, env=cli_env(env),
                                    capture_output=True, timeout=60, check=False)
            assert result.returncode == 2, result.stderr
            assert b"no message to read: give FILES, or pipe a message in" in result.stderr
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.parametrize(("name", "kind", "status"), [
    ("postfix_user_unknown.eml", "permanent", "5.1.1"),
    ("exim_delayed.eml", "temporary", "4.0.0"),
    ("microsoft_recipient_not_found.eml", "permanent", "5.1.10"),
    ("google_address_not_found.eml", "permanent", "5.1.1"),
    ("arf_complaint.eml", "complaint", "abuse"),
    ("out_of_office.eml", "unrecognised", ""),
])
def test_each_form_is_classified(name: str, kind: str, status: str) -> None:
    token = make_token(SECRET, 3, "uid", "r@example.org")
    report = parse_report(fill(name, f"bounces+{token}@example.org", "r@example.org"), BOUNCES)
    assert (report.kind, report.status) == (kind, status)
    assert report.tokens == (token,)
    if kind in ("permanent", "temporary"):
        assert report.recipient == "r@example.org"


def test_verp_tokens_are_strict() -> None:
    token = make_token(SECRET, 12, "uid", "r@example.org")
    assert parse_token(SECRET, token.upper()).edition == 12  # a server may change the case
    for bad in (token + "0", "0" + token, token.replace("-", "_"), "12-" + "0" * 20 + "-" + "0" * 20,
                "", "x" * 1000):
        with pytest.raises(VerpError):
            parse_token(SECRET, bad)
    with pytest.raises(VerpError):
        parse_token("another-secret", token)
    assert tokens_in(f"To: <Bounces+{token}@Example.org>, xbounces+{token}@example.org",
                     BOUNCES) == [token]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_raise_only_report_error(data: bytes) -> None:
    try:
        report = parse_report(data, BOUNCES)
    except ReportError:
        return
    assert isinstance(report, Report)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(FIXTURES)), st.data())
def test_damaged_reports_raise_only_report_error(name: str, data: st.DataObject) -> None:
    original = bytearray(fill(name, "bounces+1-" + "a" * 20 + "-" + "b" * 20 + "@example.org",
                              "r@example.org"))
    for _ in range(data.draw(st.integers(1, 20))):
        if not original:
            break
        at = data.draw(st.integers(0, len(original) - 1))
        original[at:at + data.draw(st.integers(0, 40))] = data.draw(st.binary(max_size=40))
    try:
        report = parse_report(bytes(original), BOUNCES)
    except ReportError:
        return
    assert report.kind in ("permanent", "temporary", "complaint", "unrecognised")



# -- digest bounces fetch, against Dovecot --------------------------------------------------


def sent_digest(tmp_path: Path, server: SMTPServer, recipients: list[str],
                extra: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Send one edition with VERP to `recipients`; (environment, recipient -> sender)."""
    env = {**base_env(tmp_path), **server.env(),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite3'}",
           "BOUNCE_ADDRESS": BOUNCES, **extra}
    store = Store.open(env["DATABASE_URL"], tmp_path)
    try:
        add_articles(store, *sample_articles(1))
        subscribe_many(store, [(r, None) for r in recipients], NOW, source="cli")
    finally:
        store.close()
    result = digest_cli("send", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return env, {r.rcpt_to: r.mail_from for r in server.received}


def statuses(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    store = Store.open(env["DATABASE_URL"], tmp_path)
    try:
        return {s.address: str(s.status) for s in list_subscribers(store)}
    finally:
        store.close()


def imap_client(mailbox: ImapMailbox) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context(cafile=str(mailbox.server.ca_file))
    client = imaplib.IMAP4_SSL("localhost", mailbox.server.imaps_port, ssl_context=context,
                               timeout=10)
    client.login(mailbox.user, mailbox.password)
    return client


def uids(client: imaplib.IMAP4_SSL, folder: str, criterion: str = "ALL") -> int:
    client.select(f'"{folder}"')
    _typ, data = client.uid("SEARCH", criterion)
    return len((data[0] or b"").split())


def test_fetch_over_imaps_moves_what_it_acted_on(tmp_path: Path, smtp_servers: Start,
                                                 imap_mailbox: ImapMailbox) -> None:
    people = ["pf@example.org", "arf@example.org", "ooo@example.org"]
    env, senders = sent_digest(tmp_path, smtp_servers(), people, {
        "BOUNCE_IMAP_URL": imap_mailbox.url("imaps"), "BOUNCE_IMAP_DONE": "Processed",
        "SSL_CERT_FILE": str(imap_mailbox.server.ca_file)})
    client = imap_client(imap_mailbox)
    try:
        client.create('"Processed"')
        for name, person in (("postfix_user_unknown.eml", people[0]),
                             ("arf_complaint.eml", people[1]), ("out_of_office.eml", people[2])):
            typ, _ = client.append("INBOX", None, None, fill(name, senders[person], person))
            assert typ == "OK"
    finally:
        client.logout()

    result = digest_cli("bounces", "fetch", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "1 bounced, 0 counted, 1 unsubscribed, 1 unrecognised, 0 unmatched, 0 unreadable")
    assert statuses(env, tmp_path) == {"pf@example.org": "bounced",
                                       "arf@example.org": "unsubscribed",
                                       "ooo@example.org": "subscribed"}
    client = imap_client(imap_mailbox)
    try:
        assert uids(client, "Processed") == 2
        assert (uids(client, "INBOX"), uids(client, "INBOX", "UNSEEN")) == (1, 0)  # left, seen
    finally:
        client.logout()
    # A second fetch finds nothing new.
    result = digest_cli("bounces", "fetch", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("0 bounced, 0 counted, 0 unsubscribed, 0 ")


def test_fetch_over_starttls_deletes_and_refuses_untrusted_or_wrong_login(
        tmp_path: Path, smtp_servers: Start, imap_mailbox: ImapMailbox) -> None:
    env, senders = sent_digest(tmp_path, smtp_servers(), ["ex@example.org"], {
        "BOUNCE_IMAP_URL": imap_mailbox.url("imap"),
        "SSL_CERT_FILE": str(imap_mailbox.server.ca_file)})
    client = imap_client(imap_mailbox)
    try:
        client.append("INBOX", None, None,
                      fill("exim_delayed.eml", senders["ex@example.org"], "ex@example.org"))
    finally:
        client.logout()
    untrusted = {k: v for k, v in env.items() if k != "SSL_CERT_FILE"}
    result = digest_cli("bounces", "fetch", cwd=tmp_path, env=untrusted)
    assert result.returncode == 1
    assert "is not trusted" in result.stderr
    wrong = {**env, "BOUNCE_IMAP_URL": imap_mailbox.url("imaps").replace(
        imap_mailbox.password, "wrong")}
    result = digest_cli("bounces", "fetch", cwd=tmp_path, env=wrong)
    assert result.returncode == 1
    assert "login failed" in result.stderr and "BOUNCE_IMAP_URL" in result.stderr
    assert imap_mailbox.password not in result.stderr + result.stdout

    result = digest_cli("bounces", "fetch", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "\tcounted\tex@example.org\tdelay 4.0.0" in result.stdout
    client = imap_client(imap_mailbox)
    try:
        assert uids(client, "INBOX") == 0  # deleted (BOUNCE_IMAP_DONE=delete, the default)
    finally:
        client.logout()


def test_run_once_fetches_and_status_shows_the_job(tmp_path: Path, smtp_servers: Start,
                                                   imap_mailbox: ImapMailbox) -> None:
    env, senders = sent_digest(tmp_path, smtp_servers(), ["gg@example.org"], {
        "BOUNCE_IMAP_URL": imap_mailbox.url("imaps"), "BOUNCE_FETCH_INTERVAL": "15m",
        "SSL_CERT_FILE": str(imap_mailbox.server.ca_file), "ARTICLES_DIR": "articles"})
    (tmp_path / "articles").mkdir()
    client = imap_client(imap_mailbox)
    try:
        client.append("INBOX", None, None, fill("google_address_not_found.eml",
                                                senders["gg@example.org"], "gg@example.org"))
    finally:
        client.logout()
    result = digest_cli("run", "--once", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert statuses(env, tmp_path) == {"gg@example.org": "bounced"}
    status = digest_cli("status", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if "fetch-bounces" in x)
    assert "every 15m" in line
    assert "1 message: 1 bounced" in status.stdout
