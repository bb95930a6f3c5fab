"""A publish killed with SIGKILL at any moment leaves the previous output complete."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env, digest_cli, wait_for, write


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
    generations = site / ".public.generations"

    def mid_write() -> bool:
        """A new generation is being written: a .partial folder that holds an article page."""
        return any(p.name.endswith(".partial") and any((p / "articles").glob("*.html"))
                   for p in generations.iterdir())

    process = subprocess.Popen([sys.executable, "-m", "digest", "publish"], cwd=site,
                               env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def writing() -> bool:
            assert process.poll() is None, "the publish ended before it wrote a partial generation"
            return mid_write()

        wait_for(writing, "a .partial generation with pages in it", timeout=60)
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert mid_write(), "the kill did not land mid-write"  # the half-built generation is left
    assert snapshot(site / "public") == before  # and the output is the previous one, untouched
    result = digest_cli("publish", cwd=site)
    assert result.returncode == 0, result.stderr
    after = snapshot(site / "public")
    assert len(after) == len(before)
    assert all(b"Version two" in data for name, data in after.items() if name.startswith("articles/"))
    leftovers = [p.name for p in generations.iterdir() if p.name.endswith(".partial")]
    assert leftovers == []
