"""In-memory rate limits: at most N events per key within a sliding window.

Used by the web sign-up to stop the subscribe form being used to mail third
parties. The state lives in one process (one `digest serve`); it is lost on
restart, which only gives a burst its allowance back.

    limiter = RateLimiter((Window(5, 3600.0), Window(2, 60.0)))
    if limiter.allow("client:203.0.113.9", now=time.monotonic()): ...

The clock is passed in on every call (any monotonic seconds). Memory is
bounded: keys whose events have all left the longest window are dropped, and
past `max_keys` the oldest key is forgotten (a flood of distinct keys costs
the flooder, not the server).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """At most `events` within any `seconds`."""

    events: int
    seconds: float


class RateLimiter:
    """Sliding-window limits per key; thread-safe."""

    def __init__(self, windows: Sequence[Window], max_keys: int = 10_000) -> None:
        if not windows:
            raise ValueError("a RateLimiter needs at least one window")
        self.windows = tuple(windows)
        self.max_keys = max_keys
        self._span = max(w.seconds for w in self.windows)
        self._depth = max(w.events for w in self.windows)
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> bool:
        """Record an event for `key` and return True, or return False if a limit is reached.

        A refused attempt is not recorded: it does not extend the wait.
        """
        with self._lock:
            events = self._events.get(key)
            if events is None:
                self._prune(now)
                events = deque(maxlen=self._depth)
                self._events[key] = events
            else:
                self._events.move_to_end(key)
            while events and events[0] <= now - self._span:
                events.popleft()
            for window in self.windows:
                recent = sum(1 for moment in events if moment > now - window.seconds)
                if recent >= window.events:
                    return False
            events.append(now)
            return True

    def __len__(self) -> int:
        return len(self._events)

    def _prune(self, now: float) -> None:
        while len(self._events) >= self.max_keys:
            self._events.popitem(last=False)
        # Drop idle keys from the old end; stop at the first one still in use.
        for key in list(self._events)[:64]:
            events = self._events[key]
            if events and events[-1] > now - self._span:
                break
            del self._events[key]
