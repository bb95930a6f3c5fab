"""The mail commands through the CLI: send, preview, history, subscribers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli.main import cli
from digest.mail.subscribers import list_subscribers
from digest.store.database import Store
from digest.store.edition_reports import history
from tests.fixtures_mail import (
    PASSWORD,
    TLS,
    Behaviour,
    SMTPServer,
    cli_project,
    sample_articles,
)

ROOT = Path(__file__).resolve().parents[2]
Start = Callable[..., SMTPServer]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A clean environment and working folder with a state store holding 3 articles."""
    return cli_project(tmp_path, monkeypatch, articles=3)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def open_store(env: dict[str, str], tmp_path: Path) -> Store:
    return Store.open(env["DATABASE_URL"], tmp_path)


def test_subscribers_commands(env: dict[str, str], tmp_path: Path) -> None:
    result = invoke("subscribers", "add", "Ann@example.org", "Bob <bob@example.org>")
    assert result.exit_code == 0, result.output
    assert "2 added" in result.stdout
    result = invoke("subscribers", "remove", "ann@example.org")
    assert "ann@example.org: unsubscribed" in result.stdout
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\nann@example.org,Ann\ncarol@example.org,Carol\n"
                   "carol@example.org,Carol again\n", "utf-8")
    result = invoke("subscribers", "import", str(csv))
    assert result.exit_code == 0
    assert "1 added" in result.stdout and "1 kept unsubscribed" in result.stdout
    assert "kept unsubscribed: ann@example.org" in result.stderr
    result = invoke("subscribers", "list")
    assert result.stdout.splitlines()[0].startswith("ann@example.org\tunsubscribed")
    assert "bob@example.org\tsubscribed" in result.stdout
    assert "carol@example.org\tsubscribed" in result.stdout
    assert "2 subscribed, 0 pending, 1 unsubscribed" in result.stderr
    result = invoke("subscribers", "list", "--status", "unsubscribed")
    assert result.stdout.strip().split("\t")[0] == "ann@example.org"
    result = invoke("subscribers", "remove", "--forget", "ann@example.org")
    assert "deleted" in result.stdout


def test_bad_address_and_bad_import_line(env: dict[str, str], tmp_path: Path) -> None:
    result = invoke("subscribers", "add", "ok@example.org", "nope@")
    assert result.exit_code == 1
    assert "address 2: 'nope@' is not an email address" in result.stderr
    bad = tmp_path / "list.txt"
    bad.write_text("ok@example.org\nstill ok@example.org\n", "utf-8")
    result = invoke("subscribers", "import", str(bad))
    assert result.exit_code == 1
    assert f"{bad} line 2" in result.stderr
    store = open_store(env, tmp_path)
    try:
        assert list_subscribers(store) == []  # nothing half-imported
    finally:
        store.close()


def test_send_dry_run_touches_nothing(env: dict[str, str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_RECIPIENTS", "ann@example.org,bob@example.org")
    result = invoke("send", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "To: ann@example.org" in result.stdout
    assert "would send 2 messages" in result.stderr
    out = tmp_path / "eml"
    result = invoke("send", "--dry-run", "--out", str(out))
    files = sorted(p.name for p in out.iterdir())
    assert files == ["00001-ann@example.org.eml", "00002-bob@example.org.eml"]
    parsed = message_from_bytes((out / files[1]).read_bytes(), policy=policy.default)
    assert parsed["To"] == "bob@example.org"
    store = open_store(env, tmp_path)
    try:
        assert list_subscribers(store) == [] and history(store) == []
    finally:
        store.close()


def test_send_dry_run_with_nothing_new_says_nothing_to_send_as_send_does(
        env: dict[str, str], tmp_path: Path, smtp_servers: Start,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = smtp_servers()
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DIGEST_RECIPIENTS", "ann@example.org,bob@example.org")
    assert invoke("send").exit_code == 0  # the 3 articles go out in edition 1
    received = len(server.received)

    dry = invoke("send", "--dry-run")
    real = invoke("send")

    assert dry.exit_code == real.exit_code == 0
    assert dry.stdout == real.stdout == ("no new articles since the last digest: nothing to send "
                                         "(--force sends anyway)\n")
    assert "would send" not in dry.stderr
    forced = invoke("send", "--dry-run", "--force")
    assert forced.exit_code == 0 and "would send 2 messages" in forced.stderr
    assert len(server.received) == received
    assert invoke("history").stdout.count("done") == 1


def test_send_to_one_address_records_nothing(env: dict[str, str], tmp_path: Path,
                                             smtp_servers: Start,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server = smtp_servers()
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    result = invoke("send", "--to", "Tester@Example.org")
    assert result.exit_code == 0, result.output
    assert [r.rcpt_to for r in server.received] == ["tester@example.org"]
    assert server.received[0].parsed()["Subject"] == "Example News: 3 new articles"
    assert invoke("history").stdout.strip() == "no editions yet"


def test_send_history_and_exit_codes(env: dict[str, str], smtp_servers: Start,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    server = smtp_servers(behaviour=Behaviour(
        reject_always={"bad@example.org": "550 5.1.1 no such user"}))
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    invoke("subscribers", "add", "ann@example.org", "bad@example.org", "bob@example.org")
    result = invoke("send")
    assert result.exit_code == 3
    assert "edition 1 (created, 3 articles, 3 recipients): 2 sent, 1 failed" in result.stdout
    assert "failed: bad@example.org: 550 5.1.1 no such user" in result.stderr
    result = invoke("send")
    assert result.exit_code == 0
    assert "nothing to send" in result.stdout
    table = invoke("history").stdout.splitlines()
    assert table[0].split() == ["#", "created", "(UTC)", "status", "articles", "recipients",
                                "sent", "failed", "skipped", "pending", "unknown"]
    assert table[1].split()[3:] == ["done", "3", "3", "2", "1", "0", "0", "0"]


def test_send_needs_secret_key(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY")
    result = invoke("send")
    assert result.exit_code == 2
    assert "SECRET_KEY" in result.stderr


def test_preview_writes_html(env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "preview.html"
    result = invoke("preview", "--out", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(target)
    html = target.read_text("utf-8")
    assert "Headline number 2" in html and "you@example.org" in html


def test_preview_without_out_writes_a_new_private_file_each_time(env: dict[str, str]) -> None:
    first = Path(invoke("preview").stdout.strip())
    second = Path(invoke("preview").stdout.strip())
    try:
        assert first != second and first.name.startswith("digest-preview-")
        for path in (first, second):
            assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
            assert "Headline number 2" in path.read_text("utf-8")
    finally:
        first.unlink()
        second.unlink()


def test_password_never_printed_even_with_debug(env: dict[str, str], tmp_path: Path,
                                                smtp_servers: Start, tls: TLS) -> None:
    server = smtp_servers(security="starttls", auth=True, tls=tls)
    store = open_store(env, tmp_path)
    try:
        from digest.mail.subscribers import subscribe

        subscribe(store, "ann@example.org", sample_articles(1)[0].published)
    finally:
        store.close()
    child_env = dict(os.environ)
    child_env.update(env)
    child_env.update(server.env())
    wrong = "Wr0ng-" + PASSWORD
    child_env.update(SMTP_PASSWORD=wrong, SMTP_CA_FILE=str(tls.ca_file),
                     PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "digest", "--debug", "send"], cwd=tmp_path,
                          env=child_env, capture_output=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert b"Traceback" in output and b"SMTPConfigError" in output
    assert b"SMTP_USERNAME" in output
    assert wrong.encode() not in output and PASSWORD.encode() not in output
    # Without --debug: a one-line error and a hint, exit code 2.
    done = subprocess.run([sys.executable, "-m", "digest", "send"], cwd=tmp_path,
                          env=child_env, capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"hint: check SMTP_USERNAME and SMTP_PASSWORD" in done.stderr
    assert wrong.encode() not in done.stdout + done.stderr
