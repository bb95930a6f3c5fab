"""Crash safety: `digest send` killed with SIGKILL mid-send, then run again.

Every recipient must get the edition exactly once, except at most one message
per open SMTP connection that was in flight at the kill (accepted by the
server, not yet recorded): each such one may arrive twice, with the same
Message-ID both times.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from digest.mail.subscribers import subscribe_many
from digest.store.database import Store
from tests.conftest import base_env, wait_for
from tests.fixtures_mail import NOW, Behaviour, SMTPServer, add_articles, sample_articles

ROOT = Path(__file__).resolve().parents[2]
RECIPIENTS = 200
KILL_AFTER = 60  # messages received by the server before the SIGKILL


def send_command(env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "digest", "send"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("connections", [1, 8])
def test_sigkill_mid_send_then_resume(database_url: str, tmp_path: Path, connections: int,
                                      smtp_servers: Callable[..., SMTPServer]) -> None:
    store = Store.open(database_url, tmp_path)
    try:
        add_articles(store, *sample_articles(3))
        addresses = [f"reader{i:03d}@example.org" for i in range(RECIPIENTS)]
        subscribe_many(store, [(a, None) for a in addresses], NOW, source="cli")
    finally:
        store.close()
    server = smtp_servers(behaviour=Behaviour(delay=0.01))
    env = {key: value for key, value in os.environ.items()
           if key not in base_env(tmp_path) and not key.startswith(("SMTP_", "DIGEST_"))}
    env.update(base_env(tmp_path))
    env.update(server.env())
    env.update(DATABASE_URL=database_url, PYTHONPATH=str(ROOT),
               SMTP_CONNECTIONS=str(connections))

    first = send_command(env, tmp_path)
    try:
        def received(count: int) -> bool:
            assert first.poll() is None, "the first run ended before it could be killed"
            return len(server.received) >= count

        wait_for(lambda: received(KILL_AFTER), f"{KILL_AFTER} messages at the server", 60)
        first.send_signal(signal.SIGKILL)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    killed_at = len(server.received)
    assert KILL_AFTER <= killed_at < RECIPIENTS  # killed mid-send
    assert server.handler.peak_connections == connections  # all of them were open

    second = send_command(env, tmp_path)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    assert b"resumed" in out

    counts = Counter(r.rcpt_to for r in server.received)
    assert set(counts) == set(addresses)  # nobody missed
    twice = [address for address, n in counts.items() if n > 1]
    assert len(twice) <= connections, twice  # at most the one in flight on each connection
    for address in twice:
        ids = {r.message_id for r in server.received if r.rcpt_to == address}
        assert len(ids) == 1  # recognisable as the same message
        assert counts[address] == 2
    # Every message of the edition carries the Message-ID of (edition, recipient).
    assert len({r.message_id for r in server.received}) == RECIPIENTS
