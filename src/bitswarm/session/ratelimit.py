"""Token-bucket rate limiting for upload and download, global and per torrent.

A :class:`RateLimiter` holds a bucket refilled at ``rate`` bytes per second up to ``burst`` bytes.
``take(n)`` returns how long to wait before ``n`` bytes may go (0.0 when they may go now), so the
caller — an asyncio protocol — can pause reading or delay a write. Limiters chain: a per-torrent
limiter with a ``parent`` (the session's global one) charges both. ``rate=0`` means unlimited. The
clock is injected for tests.

A :class:`ReadPause` is one peer's paused reading with its reasons (the download limit, the disk).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bitswarm.session.clock import Clock, Timer


class RateLimiter:
    """A token bucket. Not thread-safe: it lives on the event loop."""

    def __init__(
        self,
        rate: float = 0.0,
        *,
        burst: float | None = None,
        parent: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.parent = parent
        self._rate = 0.0
        self._burst = 0.0
        self._tokens = 0.0
        self._stamp = clock()
        self.set_rate(rate, burst=burst)

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float, *, burst: float | None = None) -> None:
        """Change the limit (bytes/s, 0 = unlimited); ``burst`` defaults to a quarter second's worth."""
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self._refill()
        self._rate = float(rate)
        self._burst = float(burst) if burst is not None else max(16384.0 * 4, rate / 4)
        self._tokens = min(self._tokens, self._burst) if rate else 0.0

    def _refill(self) -> None:
        now = self._clock()
        if self._rate:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def delay(self, n: int) -> float:
        """Seconds until ``n`` bytes fit (without taking them)."""
        own = 0.0
        if self._rate:
            self._refill()
            if self._tokens < n:
                own = (n - self._tokens) / self._rate
        parent = self.parent.delay(n) if self.parent is not None else 0.0
        return max(own, parent)

    def take(self, n: int) -> float:
        """Charge ``n`` bytes now; returns the seconds the caller should wait before the next send.

        The bucket may go negative (a whole block is sent at once); the debt is the returned wait.
        """
        wait = 0.0
        if self._rate:
            self._refill()
            self._tokens -= n
            if self._tokens < 0:
                wait = -self._tokens / self._rate
        if self.parent is not None:
            wait = max(wait, self.parent.take(n))
        return wait


class ReadPause:
    """Why one peer's reading is paused — the download limit (while its limiter is in debt) and/or
    the disk being behind — with one timer at most. Reading resumes only when no reason holds.

    Over TCP one read brings many blocks (up to 256 KiB, parsed in place), each charging the
    limiter: reading stays paused until the whole debt is paid. One timer per peer asks ``debt``
    (the limiter's :meth:`RateLimiter.delay` of 0 bytes) when it fires and re-arms for the rest, in
    steps of at most :attr:`STEP` seconds so a raised or removed limit takes effect within one. A
    timer per block resumed at the first, shortest wait — the limit held over uTP (a packet per
    delivery) and ran 6x over over TCP — and the disk catching up resumed peers the limit had
    paused (and the other way round).
    """

    STEP = 1.0

    __slots__ = ("_clock", "_debt", "_disk", "_pause", "_paused", "_resume", "_timer")

    def __init__(
        self,
        clock: Clock,
        pause: Callable[[], None],
        resume: Callable[[], None],
        debt: Callable[[], float],
    ) -> None:
        self._clock = clock
        self._pause = pause
        self._resume = resume
        self._debt = debt
        self._timer: Timer | None = None  # pending while the rate limit holds
        self._disk = False
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def rate_wait(self, wait: float) -> None:
        """The limiter is ``wait`` seconds in debt: reading stays paused until it is paid."""
        if self._timer is None:
            self._timer = self._clock.call_later(min(wait, self.STEP), self._expire)
        if not self._paused:
            self._paused = True
            self._pause()

    def set_disk(self, behind: bool) -> None:
        """The disk is behind (pause) or has caught up (resume, unless the rate limit holds)."""
        self._disk = behind
        self._apply()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        left = self._debt()
        if left > 0.001:  # more debt came in meanwhile (or the step was shorter): wait for the rest
            self._timer = self._clock.call_later(min(left, self.STEP), self._expire)
            return
        self._apply()

    def _apply(self) -> None:
        want = self._disk or self._timer is not None
        if want != self._paused:
            self._paused = want
            if want:
                self._pause()
            else:
                self._resume()


class RateMeter:
    """Exponentially smoothed transfer rate (bytes/s) over roughly ``window`` seconds."""

    __slots__ = ("_acc", "_clock", "_rate", "_stamp", "total", "window")

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._stamp = clock()
        self._acc = 0
        self._rate = 0.0
        self.total = 0

    def add(self, n: int) -> None:
        self._acc += n
        self.total += n

    @property
    def rate(self) -> float:
        now = self._clock()
        dt = now - self._stamp
        if dt >= 0.5:
            inst = self._acc / dt
            alpha = min(1.0, dt / self.window)
            self._rate += alpha * (inst - self._rate)
            self._acc = 0
            self._stamp = now
        return self._rate


class WindowMeter:
    """Bytes/s over the last ``window`` seconds, exact from the first byte on (no warm-up lag).

    Buckets of ``window / 8`` seconds in a ring; the rate divides what the ring holds by the time it
    covers (at most ``window``, at least one bucket), so a fresh connection's rate is right at once —
    what request pipelining needs to size its queue to the peer.
    """

    __slots__ = ("_buckets", "_clock", "_first", "_slot", "_step", "window")

    def __init__(self, window: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._step = window / 8
        self._buckets = [0] * 8
        self._slot = int(clock() / self._step)
        self._first: float | None = None

    def _advance(self, now: float) -> None:
        slot = int(now / self._step)
        gap = slot - self._slot
        if gap > 0:
            buckets = self._buckets
            for k in range(1, min(gap, 8) + 1):
                buckets[(self._slot + k) % 8] = 0
            self._slot = slot

    def add(self, n: int) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
        self._advance(now)
        self._buckets[self._slot % 8] += n

    @property
    def rate(self) -> float:
        if self._first is None:
            return 0.0
        now = self._clock()
        self._advance(now)
        covered = min(self.window, max(self._step, now - self._first))
        return sum(self._buckets) / covered
