"""Wall time per phase of a publish, logged under `--debug` (durations only, not a clock
of record)."""

from __future__ import annotations

import time


class Phases:
    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._spent: list[str] = []

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self._spent.append(f"{phase} {now - self._last:.3f}s")
        self._last = now

    def __str__(self) -> str:
        return ", ".join(self._spent)
