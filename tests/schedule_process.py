"""`digest run` in a subprocess, as systemd would run it: start, read its log, signal it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from digest.settings import ENV_NAMES
from tests.conftest import REPO


class DigestRun:
    """One `python -m digest run ...` process; its stderr goes to a file."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        full_env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update(env)
        self.log_path = cwd / f"digest-run-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "digest", "run", *args], cwd=cwd,
                                        env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"digest run exited ({self.process.returncode}) while "
                                     f"waiting for {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")
            time.sleep(0.1)

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        self.wait_for(lambda: text in self.output(), timeout, repr(text))

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
