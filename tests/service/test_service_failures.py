"""Killing `digest publish` while its reader processes run (as cron's `timeout` does)
leaves no process behind; SIGTERM stops it with a message, not a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from digest.publish.build import PARALLEL_FROM
from digest.settings import ENV_NAMES
from tests.conftest import REPO, digest_cli, wait_for, write

ENV = {"BASE_URL": "https://example.org/news/", "SITE_TITLE": "Example News",
       "DATABASE_URL": "sqlite:///state.sqlite3"}
GONE_WITHIN = 15.0  # seconds for every process of the killed publish to end

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2,
                                reason="publish starts reader processes only with 2+ CPUs")


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, from /proc; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of root: pid -> start time (to tell a reused pid apart)."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None and info[1] != "Z":
                parents.setdefault(info[0], []).append((int(entry), info[2]))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for pid, started in parents.get(todo.pop(), []):
            found[pid] = started
            todo.append(pid)
    return found


def alive(pid: int, started: int) -> bool:
    info = _stat(pid)
    return info is not None and info[1] != "Z" and info[2] == started


def start_publish(site: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONPATH"] = str(REPO)
    env.update(ENV)
    return subprocess.Popen([sys.executable, "-m", "digest", "publish"], cwd=site, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_readers(process: subprocess.Popen[bytes], count: int = 2) -> dict[int, int]:
    """Block until `count` reader processes of the publish run; return all its descendants."""
    found: dict[int, int] = {}

    def readers_seen() -> bool:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"no reader processes seen (exit {process.returncode}): {err.decode()}")
        found.clear()
        found.update(descendants(process.pid))
        return sum("spawn_main" in _cmdline(pid) for pid in found) >= count

    wait_for(readers_seen, f"{count} reader processes", 60)
    return found


@pytest.fixture
def many_articles(site: Path) -> Path:
    for n in range(PARALLEL_FROM + 800):
        write(site / "articles" / f"a{n:05d}.txt",
              f"date 2024-01-01 Article number {n} is read in a reader process. Body.\n")
    return site


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killed_publish_leaves_no_process_behind(many_articles: Path, signum: int) -> None:
    site = many_articles
    process = start_publish(site)
    try:
        started = wait_for_readers(process)
        process.send_signal(signum)
        started.update(descendants(process.pid))  # any started since (not yet reparented)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    wait_for(lambda: not any(alive(pid, t) for pid, t in started.items()),
             "every process of the killed publish to end", GONE_WITHIN)

    if signum == signal.SIGTERM:
        assert process.returncode == 143
        stderr = err.decode()
        assert "error: publish stopped by SIGTERM" in stderr and "Traceback" not in stderr
        partial = [p.name for p in (site / ".public.generations").iterdir()
                   if p.name.endswith(".partial")]
        assert partial == []
    else:
        assert process.returncode == -signal.SIGKILL
    again = digest_cli("publish", cwd=site, env=ENV)
    assert again.returncode == 0, again.stderr
    assert f"published {PARALLEL_FROM + 800} articles" in again.stdout


def test_a_reader_killed_alone_is_reported_without_a_traceback(many_articles: Path) -> None:
    process = start_publish(many_articles)
    try:
        found = wait_for_readers(process)
        reader = next(pid for pid in found if "spawn_main" in _cmdline(pid))
        os.kill(reader, signal.SIGKILL)  # as the out-of-memory killer would
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = err.decode()
    assert process.returncode == 1, stderr
    assert "error: a reader process of the publish ended unexpectedly" in stderr
    assert "Traceback" not in stderr
    wait_for(lambda: not any(alive(pid, t) for pid, t in found.items()),
             "every process of the publish to end", GONE_WITHIN)
