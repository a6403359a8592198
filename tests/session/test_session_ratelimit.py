"""Token bucket and rate meter with an injected clock."""

from __future__ import annotations

import pytest

from bitswarm.session.clock import ManualClock
from bitswarm.session.ratelimit import RateLimiter, RateMeter, ReadPause, WindowMeter


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


class Reading:
    """What a peer's stream is told (pause/resume), and how often."""

    def __init__(self) -> None:
        self.on = True
        self.calls = 0

    def pause(self) -> None:
        self.on = False
        self.calls += 1

    def resume(self) -> None:
        self.on = True
        self.calls += 1


def read_pause() -> tuple[ManualClock, Reading, RateLimiter, ReadPause]:
    """A pause whose debt is a limiter's of one 16 KiB block per second (starting empty)."""
    clock, reading = ManualClock(), Reading()
    limiter = RateLimiter(16384, burst=16384, clock=clock.now)
    return clock, reading, limiter, ReadPause(clock, reading.pause, reading.resume, lambda: limiter.delay(0))


async def test_read_pause_holds_until_the_whole_debt_is_paid_with_one_timer() -> None:
    """Issue 24: many blocks of one TCP read charge the limiter at once; reading resumes when the
    last one's wait is over (the whole debt), not the first's."""
    clock, reading, limiter, pause = read_pause()
    for _ in range(16):  # one 256 KiB read: sixteen seconds of debt
        pause.rate_wait(limiter.take(16384))
    assert not reading.on and pause.paused and clock.pending == 1 and reading.calls == 1
    await clock.advance(15.9)
    assert not reading.on and clock.pending == 1
    await clock.advance(0.2)
    assert reading.on and clock.pending == 0 and reading.calls == 2


async def test_read_pause_waits_for_debt_that_came_in_while_waiting() -> None:
    clock, reading, limiter, pause = read_pause()
    pause.rate_wait(limiter.take(16384))  # due at 1.0
    await clock.advance(0.5)
    pause.rate_wait(limiter.take(2 * 16384))  # due at 3.0 now
    await clock.advance(2.4)
    assert not reading.on
    await clock.advance(0.2)
    assert reading.on and clock.pending == 0


@pytest.mark.parametrize("rate", [0, 16 * 16384])
async def test_a_raised_or_removed_limit_resumes_reading_within_a_step(rate: int) -> None:
    clock, reading, limiter, pause = read_pause()
    for _ in range(16):
        pause.rate_wait(limiter.take(16384))
    await clock.advance(0.5)
    limiter.set_rate(rate)  # the daemon's alt-speed turned off, or a higher limit
    await clock.advance(ReadPause.STEP + 0.1)
    assert reading.on and clock.pending == 0


async def test_read_pause_resumes_only_when_neither_rate_nor_disk_holds() -> None:
    clock, reading, limiter, pause = read_pause()
    pause.rate_wait(limiter.take(2 * 16384))
    pause.set_disk(True)
    pause.set_disk(False)  # the disk caught up: the limit still holds
    assert not reading.on
    await clock.advance(2.1)
    assert reading.on
    pause.set_disk(True)
    pause.rate_wait(limiter.take(16384))
    await clock.advance(1.1)  # the limit's wait is over: the disk is still behind
    assert not reading.on
    pause.set_disk(False)
    assert reading.on and reading.calls == 4


async def test_read_pause_close_cancels_its_timer() -> None:
    clock, reading, limiter, pause = read_pause()
    pause.rate_wait(limiter.take(16384))
    pause.close()
    assert clock.pending == 0
    await clock.advance(2.0)
    assert not reading.on  # a peer that is gone is not resumed
