"""Three `digest run` nodes on the PostgreSQL of this machine send one edition to many
recipients at a real aiosmtpd; the leader and another node are killed with SIGKILL mid-send.

The last node finishes the edition: every address served, duplicates at most one per
open SMTP connection of each killed node, with the same Message-ID. It becomes the
leader and fires the next scheduled digest exactly once, with another node running.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.mail.subscribers import subscribe_many
from digest.service.jobs import SEND
from digest.store import nodes as node_rows
from digest.store import runs as job_runs
from digest.store.database import Store
from digest.store.edition_reports import history, progress
from tests.conftest import base_env, copy_sample, digest_cli, write
from tests.fixtures_mail import SMTPServer
from tests.schedule_process import DigestRun

# 20,000 as the issue asks; DIGEST_TEST_NODES_RECIPIENTS=2000 for a quicker look.
RECIPIENTS = int(os.environ.get("DIGEST_TEST_NODES_RECIPIENTS", "20000"))
CONNECTIONS = 4  # SMTP_CONNECTIONS of each node
KEPT = ["keep-0@example.org", "keep-1@example.org", "keep-2@example.org"]


@pytest.fixture
def runs() -> Iterator[Callable[..., DigestRun]]:
    started: list[DigestRun] = []

    def start(cwd: Path, env: dict[str, str]) -> DigestRun:
        run = DigestRun(cwd, env)
        started.append(run)
        return run

    yield start
    for run in started:
        run.close()


def _holders(store: Store) -> set[int]:
    """PIDs of the nodes holding claims on the open edition."""
    found = set()
    for edition in progress(store):
        for holder, _count in edition.claimed:
            match = re.match(r"pid (\d+) on ", holder)
            if match:
                found.add(int(match.group(1)))
    return found


@pytest.mark.slow  # minutes: a large edition, and a real minute boundary for the next digest
def test_three_nodes_share_an_edition_survive_two_kills_and_fire_the_next_digest_once(
        site: Path, database_url: str, smtp_servers: Callable[..., SMTPServer],
        runs: Callable[..., DigestRun]) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("nodes share a PostgreSQL store; SQLite runs one `digest run`")
    server = smtp_servers()
    env = base_env(site)
    env.update(server.env(), DATABASE_URL=database_url, LEADER_LEASE="3s",
               PUBLISH_INTERVAL="2s", DIGEST_SCHEDULE="* * * * *",
               SMTP_CONNECTIONS=str(CONNECTIONS))
    copy_sample(site)
    assert digest_cli("publish", cwd=site, env=env).returncode == 0
    recipients = [f"reader{n:05d}@example.org" for n in range(RECIPIENTS - len(KEPT))] + KEPT
    due = datetime.now(UTC).replace(second=0, microsecond=0)
    store = Store.open(database_url, site)
    try:
        subscribe_many(store, [(a, None) for a in recipients], due, source="import")
        # The last leader ran before `due`: the first leader sends it at start.
        job_runs.cover(store, SEND, due - timedelta(minutes=1))

        leader = runs(site, env)
        leader.wait_for_log("is the leader")
        others = [runs(site, env), runs(site, env)]
        for node in others:
            node.wait_for_log("registered")
        everyone = {leader.pid, *(node.pid for node in others)}
        leader.wait_for(lambda: _holders(store) >= everyone, "all three nodes sending", 60)
        assert len(server.received) < RECIPIENTS * 0.8, "killed too late to mean anything"
        killed_at = len(server.received)
        assert leader.stop(signal.SIGKILL) == -signal.SIGKILL
        assert others[0].stop(signal.SIGKILL) == -signal.SIGKILL
        last = others[1]
        last.wait_for_log("is the leader", 15)
        last.wait_for(lambda: history(store)[0].status == "done", "the edition to finish", 600)

        received = Counter(m.rcpt_to for m in server.received)
        assert set(received) == set(recipients)  # nobody missing
        duplicates = {a: n for a, n in received.items() if n > 1}
        assert sum(n - 1 for n in duplicates.values()) <= 2 * CONNECTIONS, duplicates
        for address in duplicates:
            ids = {m.message_id for m in server.received if m.rcpt_to == address}
            assert len(ids) == 1, (address, ids)
        (edition,) = history(store)
        assert (edition.sent, edition.pending, edition.failed) == (len(recipients), 0, 0)

        # The next digest: to a few readers, fired by the new leader once while two run.
        with store.transaction() as conn:
            conn.execute(sa.text("UPDATE subscribers SET status = 'unsubscribed' "
                                 "WHERE address NOT LIKE 'keep-%'"))
        newcomer = runs(site, env)
        newcomer.wait_for_log("registered")
        before = len(server.received)
        write(site / "articles" / "002_next.txt",
              "date 2024-05-02 The next headline. A paragraph.\n\nMore.\n")
        last.wait_for(lambda: len(history(store)) == 2 and history(store)[0].status == "done",
                      "the next digest (at the next full minute)", 150)
        time.sleep(3)  # a second fire, were there one, would show by now
        later = Counter(m.rcpt_to for m in server.received[before:])
        assert later == Counter(KEPT)
        # The first leader's fire: `due`, or a later minute if the start crossed one
        # (missed fires are coalesced into the latest).
        fires = node_rows.fires(store, SEND)
        assert fires[0][0] >= due and fires[0][1].split("|")[1] == str(leader.pid)
        assert {node.split("|")[1] for _at, node in fires[1:]} <= {str(last.pid)}
        assert "is the leader" not in newcomer.output()
        logs = last.output() + newcomer.output()
        assert logs.count("send-digest: edition 2 ") == 1
        # Whether the new leader looked at the first leader's fire (and found it taken)
        # depends on whether a minute passed before it took over; that guard has its own
        # test in test_nodes.py (a_new_leader_sends_a_digest_missed_while_nobody_led_once).
    finally:
        store.close()
    print(f"\n{RECIPIENTS} recipients; killed two of three nodes after {killed_at} messages; "
          f"{sum(n - 1 for n in duplicates.values())} duplicates")
