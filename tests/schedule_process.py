"""`digest run` in a subprocess, as systemd would run it: start, read its log, signal it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import cli_env, wait_for


class DigestRun:
    """One `python -m digest run ...` process; its stderr goes to a file."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.log_path = cwd / f"digest-run-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "digest", "run", *args], cwd=cwd,
                                        env=cli_env(env), stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        """:func:`tests.conftest.wait_for`, failing at once (with the log) if the process ends."""
        def holds() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"digest run exited ({self.process.returncode}) while waiting for "
                            f"{what}:\n{self.output()}")
            return condition()

        try:
            wait_for(holds, what, timeout)
        except pytest.fail.Exception as failed:
            if "timed out" not in str(failed):
                raise
            pytest.fail(f"{failed}:\n{self.output()}")

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        self.wait_for(lambda: text in self.output(), repr(text), timeout)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


def away_from_minute_end(margin: int = 12) -> None:
    """Sleep past the next full minute if fewer than `margin` seconds are left in this one."""
    now = datetime.now(UTC)
    if now.second >= 60 - margin:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.5)
