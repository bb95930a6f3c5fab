"""End to end: `digest run` publishes a new article file within seconds and mails the
digest at the next scheduled minute, through a real SMTP server; SIGTERM ends it with 0."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from digest.store import runs as job_runs
from digest.store.database import Store
from digest.store.edition_reports import history
from tests.conftest import base_env, digest_cli, write
from tests.fixtures_mail import SMTPServer
from tests.schedule_process import DigestRun, away_from_minute_end

HEADLINE = "Scheduler test headline arrives on time"


@pytest.mark.slow  # waits for a real minute boundary: up to 70 s
def test_run_publishes_new_files_and_sends_the_digest_on_schedule(
        site: Path, smtp_servers: Callable[..., SMTPServer]) -> None:
    server = smtp_servers()
    env = base_env(site)
    env.update(server.env(), DATABASE_URL="sqlite:///state.sqlite3", PUBLISH_INTERVAL="1s",
               DIGEST_SCHEDULE="* * * * *", DIGEST_RECIPIENTS="ann@example.org,bob@example.org")
    # The article must be published before the next full minute, when the digest goes out.
    away_from_minute_end(8)
    run = DigestRun(site, env)
    try:
        run.wait_for_log("digest run started")
        write(site / "articles" / "001_new.txt",
              f"date 2024-05-01 {HEADLINE}. The lead paragraph goes on.\n\nMore text.\n")
        feed = site / "public" / "feed.atom"
        run.wait_for(lambda: feed.is_file() and HEADLINE in feed.read_text(), "the article in the feed",
                     10)
        # Normally at the next full minute; one more if a slow start made the publish late.
        run.wait_for(lambda: len(server.received) >= 2, "the digest", 130)
        run.wait_for(lambda: _send_recorded(env["DATABASE_URL"], site), "the send's record", 10)
        status = digest_cli("status", cwd=site, env=env)
        assert run.stop() == 0
    finally:
        run.close()

    assert sorted(m.rcpt_to for m in server.received) == ["ann@example.org", "bob@example.org"]
    message = server.received[0].parsed()
    assert HEADLINE in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    output = run.output()
    assert "publish: 1 article: 1 new" in output
    assert "send-digest: edition 1 (1 article, 2 recipients): 2 sent, 0 failed" in output
    assert "digest run stopped" in output and "Traceback" not in output
    assert f"service: running (pid {run.pid}" in status.stdout
    assert "last: ok at " in status.stdout and "edition 1" in status.stdout

    store = Store.open(env["DATABASE_URL"], site)
    try:
        (edition,) = history(store)
        assert (edition.status, edition.sent, edition.pending) == ("done", 2, 0)
        runs = job_runs.last_runs(store)
        assert runs["publish"].outcome == "ok"
        assert runs["send-digest"].outcome == "ok"
    finally:
        store.close()


def _send_recorded(url: str, site: Path) -> bool:
    """The scheduler records a job run after its log line: `digest status` shows it then."""
    store = Store.open(url, site)
    try:
        last = job_runs.last_run(store, "send-digest")
        return last is not None and last.outcome == "ok"
    finally:
        store.close()
