"""Token bucket and rate meter with an injected clock."""

from __future__ import annotations

import pytest

from bitswarm.session.ratelimit import RateLimiter, RateMeter, WindowMeter


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_unlimited_never_waits() -> None:
    r = RateLimiter(0)
    assert r.take(10**9) == 0.0
    assert r.delay(10**9) == 0.0


def test_limit_enforces_average_rate() -> None:
    clock = Clock()
    r = RateLimiter(100_000, burst=16_384, clock=clock)
    sent = 0
    for _ in range(200):
        wait = r.take(16_384)
        sent += 16_384
        clock.t += wait
    elapsed = clock.t - 100.0
    assert sent / elapsed == pytest.approx(100_000, rel=0.1)


def test_parent_limit_applies_to_child() -> None:
    clock = Clock()
    glob = RateLimiter(50_000, burst=1, clock=clock)
    child = RateLimiter(0, parent=glob, clock=clock)
    assert child.take(50_000) == pytest.approx(1.0, rel=0.01)


def test_negative_rate_rejected() -> None:
    with pytest.raises(ValueError):
        RateLimiter(-1)


def test_meter_converges() -> None:
    clock = Clock()
    m = RateMeter(window=2.0, clock=clock)
    for _ in range(40):
        m.add(1000)
        clock.t += 0.5
        _ = m.rate
    assert m.rate == pytest.approx(2000, rel=0.05)
    assert m.total == 40_000


def test_window_meter_is_right_from_the_start_and_forgets() -> None:
    clock = Clock()
    m = WindowMeter(2.0, clock=clock)
    assert m.rate == 0.0
    for _ in range(10):  # 1 MB/s for 0.5 s
        m.add(50_000)
        clock.t += 0.05
    assert m.rate == pytest.approx(1_000_000, rel=0.15)
    for _ in range(40):  # then 4 MB/s for 2 s: the old rate leaves the window
        m.add(200_000)
        clock.t += 0.05
    assert m.rate == pytest.approx(4_000_000, rel=0.15)
    clock.t += 10  # silence: nothing in the window
    assert m.rate == 0.0
