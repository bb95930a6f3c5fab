"""The in-memory sliding-window rate limiter (the clock is passed in)."""

from __future__ import annotations

import pytest

from digest.web.rate_limit import RateLimiter, Window


def test_at_most_n_events_per_window_then_free_again() -> None:
    limiter = RateLimiter((Window(3, 60.0),))
    assert [limiter.allow("a", t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert limiter.allow("b", 3.0)  # keys are independent
    assert not limiter.allow("a", 59.9)
    assert limiter.allow("a", 60.5)  # the event at 0.0 left the window


def test_every_window_applies_and_refusals_are_not_counted() -> None:
    limiter = RateLimiter((Window(1, 10.0), Window(2, 100.0)))
    assert limiter.allow("a", 0.0)
    assert not limiter.allow("a", 5.0)  # 1 per 10 s
    assert limiter.allow("a", 10.5)
    for moment in (21.0, 50.0, 99.0):
        assert not limiter.allow("a", moment)  # 2 per 100 s
    assert limiter.allow("a", 100.5)  # refusals did not extend the wait


def test_memory_is_bounded() -> None:
    limiter = RateLimiter((Window(1, 10.0),), max_keys=100)
    for i in range(1000):
        assert limiter.allow(f"client-{i}", float(i) / 1000)
    assert len(limiter) <= 100
    for i in range(50):
        limiter.allow(f"late-{i}", 100.0)  # everything before is idle: pruned
    assert len(limiter) <= 100


def test_needs_a_window() -> None:
    with pytest.raises(ValueError, match="window"):
        RateLimiter(())
