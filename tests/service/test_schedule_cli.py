"""`digest run` and `digest status` as a user runs them: subprocesses, signals, exit codes."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.mail.outbox import Outbox
from digest.mail.subscribers import subscribe_many
from digest.service.jobs import SEND
from digest.store import runs as job_runs
from digest.store.database import Store
from digest.store.edition_reports import history
from tests.conftest import base_env, copy_sample, digest_cli, write
from tests.fixtures_mail import NOW, Behaviour, SMTPServer, add_articles, sample_articles
from tests.schedule_process import DigestRun

NEVER = "0 0 1 1 *"


@pytest.fixture
def runs() -> Iterator[Callable[..., DigestRun]]:
    """runs(cwd, env, *args) starts `digest run`; whatever still runs is killed at the end."""
    started: list[DigestRun] = []

    def start(cwd: Path, env: dict[str, str], *args: str) -> DigestRun:
        run = DigestRun(cwd, env, *args)
        started.append(run)
        return run

    yield start
    for run in started:
        run.close()


def env_for(site: Path, database_url: str, **values: str) -> dict[str, str]:
    env = base_env(site)
    env.update(DATABASE_URL=database_url, PUBLISH_INTERVAL="1h", DIGEST_SCHEDULE=NEVER)
    env.update(values)
    return env


def test_a_second_run_on_the_same_sqlite_store_refuses_to_start(
        site: Path, runs: Callable[..., DigestRun]) -> None:
    env = env_for(site, "sqlite:///state.sqlite3")
    first = runs(site, env)
    first.wait_for_log("digest run started")
    second = digest_cli("run", cwd=site, env=env, timeout=60)
    assert second.returncode == 1
    assert "error: another `digest run` (pid " in second.stderr
    assert f"pid {first.pid} on " in second.stderr
    assert "is already running on the state store" in second.stderr
    assert "hint: stop the other `digest run` first" in second.stderr
    assert "Traceback" not in second.stderr
    status = digest_cli("status", cwd=site, env=env)
    assert f"service: running (pid {first.pid} on " in status.stdout
    # The lock dies with its process, SIGKILL included.
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    third = runs(site, env)
    third.wait_for_log("digest run started")
    assert third.stop() == 0
    assert "service: not running" in digest_cli("status", cwd=site, env=env).stdout


def test_on_postgresql_a_second_run_follows_and_takes_over_when_the_leader_is_killed(
        site: Path, database_url: str, runs: Callable[..., DigestRun]) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite: one `digest run` per store (the test above)")
    env = env_for(site, database_url, LEADER_LEASE="3s")
    first = runs(site, env)
    first.wait_for_log("is the leader")
    second = runs(site, env)
    second.wait_for_log("registered")
    status = digest_cli("status", cwd=site, env=env)
    assert f"service: running (pid {first.pid} on " in status.stdout
    assert f"nodes: 2; leader: pid {first.pid} on " in status.stdout
    assert re.search(rf"leader +pid {first.pid} on .*: alive", status.stdout)
    assert re.search(rf"follower +pid {second.pid} on .*: alive", status.stdout)
    assert "is the leader" not in second.output()
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second.wait_for_log("is the leader", timeout=10)  # within LEADER_LEASE
    shown: list[str] = []

    def stale_shown() -> bool:
        shown[:] = [digest_cli("status", cwd=site, env=env).stdout]
        return f"nodes: 2 (1 stale); leader: pid {second.pid} on " in shown[0]

    second.wait_for(stale_shown, "the killed node shown as stale", 30)
    assert f"service: running (pid {second.pid} on " in shown[0]
    assert re.search(rf"^  gone +pid {first.pid} on .*: stale$", shown[0], re.MULTILINE)
    assert re.search(rf"^  leader +pid {second.pid} on .*: alive$", shown[0], re.MULTILINE)
    assert second.stop() == 0
    assert "Traceback" not in second.output()


def test_once_with_json_logs_reports_a_failing_job_and_exits_1(site: Path) -> None:
    copy_sample(site)
    env = env_for(site, "sqlite:///state.sqlite3")
    del env["SECRET_KEY"]
    result = digest_cli("run", "--once", "--log-format", "json", cwd=site, env=env)
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    publish = next(r for r in records if r.get("job") == "publish")
    assert publish["level"] == "INFO" and publish["outcome"] == "ok"
    assert isinstance(publish["duration"], float)
    assert publish["message"].startswith("publish: 1 article: 1 new")
    send = next(r for r in records if r.get("job") == "send-digest")
    assert send["level"] == "ERROR" and send["outcome"] == "failed"
    assert "SECRET_KEY is not set" in send["message"] and "hint:" in send["message"]
    assert send["time"].endswith("Z")
    status = digest_cli("status", cwd=site, env=env)
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[0] == "service: not running (start it with `digest run`)"
    assert lines[1].split() == ["publish", "every", "1h"]
    assert lines[2].split()[1:] == ["at", "the", "start", "of", "`digest", "run`"]
    assert lines[3].strip().startswith("last: ok at ") and "1 article: 1 new" in lines[3]
    assert lines[4] == f"send-digest  '{NEVER}' in UTC"
    assert "next: " in lines[5] and "01-01 00:00:00 UTC (when `digest run` runs)" in lines[5]
    assert "last: failed at " in lines[6] and "SECRET_KEY is not set" in lines[6]


def _a_send_due(site: Path, server: SMTPServer, recipients: list[str],
                **settings: str) -> dict[str, str]:
    """A published site whose scheduled send fell due a minute ago, while `digest run` was
    not running (so a start catches up on it); its environment."""
    due = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    env = env_for(site, "sqlite:///state.sqlite3", **server.env(),
                  DIGEST_RECIPIENTS=",".join(recipients),
                  DIGEST_SCHEDULE=f"{due.minute} {due.hour} * * *", **settings)
    copy_sample(site)
    assert digest_cli("publish", cwd=site, env=env).returncode == 0
    store = Store.open(env["DATABASE_URL"], site)
    try:  # the service was last running before `due`: it catches up at start
        job_runs.cover(store, SEND, due - timedelta(minutes=1))
    finally:
        store.close()
    return env


def test_sigterm_stops_a_send_between_messages_and_the_rest_goes_out_once(
        site: Path, smtp_servers: Callable[..., SMTPServer],
        runs: Callable[..., DigestRun]) -> None:
    server = smtp_servers(behaviour=Behaviour(delay=0.3))
    recipients = [f"reader{n:02d}@example.org" for n in range(12)]
    env = _a_send_due(site, server, recipients)
    run = runs(site, env)
    run.wait_for(lambda: len(server.received) >= 3, "three messages", 30)
    assert run.stop() == 0
    sent_by_run = len(server.received)
    assert sent_by_run < len(recipients)
    output = run.output()
    assert "sending it now" in output and "stopped, the next run resumes it" in output
    store = Store.open(env["DATABASE_URL"], site)
    try:
        (edition,) = history(store)
        assert (edition.sent, edition.pending) == (sent_by_run, len(recipients) - sent_by_run)
        assert job_runs.last_run(store, SEND).outcome == "stopped"  # type: ignore[union-attr]
    finally:
        store.close()
    resumed = digest_cli("send", cwd=site, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(m.rcpt_to for m in server.received) == recipients  # each exactly once


def test_help_of_run_and_status(tmp_path: Path) -> None:
    for command in ("run", "status"):
        result = digest_cli(command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "Usage:" in result.stdout
    assert "--log-format [text|json]" in digest_cli("run", "--help", cwd=tmp_path).stdout


def test_a_bad_schedule_stops_run_at_start(site: Path) -> None:
    result = digest_cli("run", cwd=site, env={"DIGEST_SCHEDULE": "0 7 * * 8"})
    assert result.returncode == 2
    assert "DIGEST_SCHEDULE='0 7 * * 8' is not a crontab expression" in result.stderr
    write(site / ".env", "DIGEST_SCHEDULE=every morning\n")
    assert digest_cli("status", cwd=site).returncode == 2


def test_status_shows_each_open_editions_progress_and_who_holds_claims(
        site: Path, database_url: str) -> None:
    env = env_for(site, database_url)
    store = Store.open(database_url, site)
    try:
        add_articles(store, *sample_articles(2))
        subscribe_many(store, [(f"r{i}@example.org", None) for i in range(8)], NOW,
                       source="cli")
        first = Outbox(store, owner="mail-1|ns|111|a")
        edition, _ = first.open_or_create(store.load_articles().values(), NOW,
                                          lambda uid, a: f"<{uid}.{a}@t>")
        assert edition is not None
        mine = first.claim(edition.id, NOW, 4)
        first.mark_sent(mine[0], NOW, 1)
        first.mark_sent(mine[1], NOW, 1)
        first.mark_unknown(mine[2], NOW, 1, "lost", NOW + timedelta(minutes=30))
        Outbox(store, owner="mail-2|ns|222|b").claim(edition.id, NOW, 2)
    finally:
        store.close()
    shown = digest_cli("status", cwd=site, env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    at = lines.index("edition 1 (sending, 8 recipients): 2 sent, 2 pending, 3 claimed, "
                     "1 unknown, 0 failed, 0 skipped")
    assert lines[at + 1:] == ["  1 being sent by pid 111 on mail-1",
                              "  2 being sent by pid 222 on mail-2"]


def test_sighup_reloads_the_settings_of_env_in_the_same_process(
        site: Path, runs: Callable[..., DigestRun]) -> None:
    """SIGHUP used to kill `digest run` at once, without a line in the log (exit 129)."""
    env = env_for(site, "sqlite:///state.sqlite3")
    del env["PUBLISH_INTERVAL"]  # from .env, which SIGHUP reads anew
    dotenv = site / ".env"
    write(dotenv, "PUBLISH_INTERVAL=1h\n")
    run = runs(site, env)
    run.wait_for_log("digest run started")
    assert "publish: every 1h" in run.output()

    write(dotenv, "PUBLISH_INTERVAL=soon\n")  # an error: it keeps running as it was
    run.process.send_signal(signal.SIGHUP)
    run.wait_for_log("SIGHUP: not reloading, the settings have an error: PUBLISH_INTERVAL")
    assert run.process.poll() is None

    write(dotenv, "PUBLISH_INTERVAL=2h\n")
    run.process.send_signal(signal.SIGHUP)
    run.wait_for_log("publish: every 2h")
    run.wait_for(lambda: run.output().count("digest run started") == 2, "the second start")
    status = digest_cli("status", cwd=site, env=env)
    assert f"service: running (pid {run.pid} " in status.stdout  # the same process
    assert "every 2h" in status.stdout
    assert run.stop() == 0
    output = run.output()
    assert "SIGHUP: reloading" in output and "Traceback" not in output
    assert output.count("digest run stopped") == 2


def test_an_open_edition_is_resumed_without_waiting_for_the_next_scheduled_send(
        site: Path, smtp_servers: Callable[..., SMTPServer],
        runs: Callable[..., DigestRun]) -> None:
    """A send cut short (SIGTERM here; the relay down does the same once its deferrals run
    out) used to wait for the next DIGEST_SCHEDULE time: for a daily digest, a day late."""
    server = smtp_servers(behaviour=Behaviour(delay=0.3))
    recipients = [f"reader{n:02d}@example.org" for n in range(12)]
    env = _a_send_due(site, server, recipients, SMTP_CONNECTIONS="1")
    first = runs(site, env)
    first.wait_for(lambda: len(server.received) >= 2, "two messages", 30)
    assert first.stop() == 0
    assert len(server.received) < len(recipients)
    store = Store.open(env["DATABASE_URL"], site)
    try:  # as after a scheduled send that ended with deliveries deferred (the relay down)
        job_runs.cover(store, SEND, datetime.now(UTC))
    finally:
        store.close()

    again = runs(site, env)  # no catch-up: the next scheduled send is tomorrow's
    again.wait_for(lambda: len(server.received) == len(recipients), "the rest of the edition",
                   30)
    again.wait_for_log("resume-send: edition 1 ")
    assert again.stop() == 0
    assert "sending it now" not in again.output()
    assert sorted(m.rcpt_to for m in server.received) == recipients  # each exactly once
    store = Store.open(env["DATABASE_URL"], site)
    try:
        (edition,) = history(store)
        assert (edition.status, edition.sent, edition.pending) == ("done", 12, 0)
    finally:
        store.close()


@pytest.mark.parametrize("victim", ["state.sqlite3", "state.sqlite3.run-lock"])
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_sqlite_store_or_lock_file_stops_run(
        site: Path, runs: Callable[..., DigestRun], victim: str, how: str) -> None:
    """`digest run` went on with its state in an unlinked file (`digest status` showed an empty
    store, the next start began anew) or with a lock a second `digest run` no longer saw."""
    env = env_for(site, "sqlite:///state.sqlite3", PUBLISH_INTERVAL="1s")
    run = runs(site, env)
    run.wait_for_log("publish: ")
    path = site / victim
    path.unlink()
    if how == "replaced":
        path.write_bytes(b"")
    assert run.process.wait(30) == 1
    output = run.output()
    assert f"{path} was {how}" in output and "stopping the service" in output
    assert "Traceback" not in output
