"""A publish killed with SIGKILL at any moment leaves the previous output complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from digest.settings import ENV_NAMES
from tests.conftest import REPO, digest_cli, write


def snapshot(out: Path) -> dict[str, bytes]:
    root = out.resolve()
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_sigkill_mid_publish_keeps_previous_output(site: Path) -> None:
    count = 800
    for n in range(count):
        write(site / "articles" / f"a{n:04d}.txt", f"date 2024-01-01 Version one of {n}. Body.\n")
    assert digest_cli("publish", cwd=site).returncode == 0
    before = snapshot(site / "public")
    for n in range(count):
        write(site / "articles" / f"a{n:04d}.txt", f"date 2024-01-01 Version two of {n}. Body.\n")
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONPATH"] = str(REPO)
    killed_mid_way = 0
    for delay in (0.3, 0.6, 0.9, 1.2):
        process = subprocess.Popen([sys.executable, "-m", "digest", "publish"], cwd=site, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        finished = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        now = snapshot(site / "public")
        if finished:
            break
        killed_mid_way += 1
        # Either untouched, or (if it got as far as the swap) completely new: never a mix.
        assert now == before or all(b"Version two" in data for name, data in now.items()
                                    if name.startswith("articles/")), delay
    assert killed_mid_way >= 1
    result = digest_cli("publish", cwd=site)
    assert result.returncode == 0, result.stderr
    after = snapshot(site / "public")
    assert len(after) == len(before)
    assert all(b"Version two" in data for name, data in after.items() if name.startswith("articles/"))
    leftovers = [p.name for p in (site / ".public.generations").iterdir() if p.name.endswith(".partial")]
    assert leftovers == []
