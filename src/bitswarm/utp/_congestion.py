"""Delay and round-trip estimators for uTP (BEP 29 "congestion control" and "timeouts").

Both are pure arithmetic on values the connection hands in; time is always the caller's.
"""

from __future__ import annotations

from collections import deque

__all__ = ["DelayHistory", "RttEstimator", "wrap32_less"]

MASK32 = 0xFFFFFFFF


def wrap32_less(a: int, b: int) -> bool:
    """``a < b`` for 32-bit microsecond stamps that wrap (every ~71.6 minutes)."""
    d = (b - a) & MASK32
    return 0 < d < 0x80000000


class DelayHistory:
    """The sliding minimum of one-way delay samples over ``minutes`` whole minutes (``base_delay``).

    ``add`` returns ``our_delay``: the sample minus the base delay, in microseconds. Samples are
    ``timestamp_difference_microseconds`` values (clock offset included), compared with wraparound.
    """

    __slots__ = ("_bucket_min", "_bucket_seconds", "_bucket_start", "_history", "_recent", "base")

    def __init__(self, minutes: int = 2, bucket_seconds: float = 60.0) -> None:
        self.base: int | None = None
        self._bucket_min = 0
        self._bucket_start = 0.0
        self._bucket_seconds = bucket_seconds
        self._history: deque[int] = deque(maxlen=max(1, minutes - 1))
        self._recent: deque[int] = deque(maxlen=3)

    def add(self, sample: int, now: float) -> int:
        base = self.base
        if base is None:
            self.base = base = self._bucket_min = sample
            self._bucket_start = now
        else:
            if wrap32_less(sample, self._bucket_min):
                self._bucket_min = sample
            if wrap32_less(sample, base):
                self.base = base = sample
            if now - self._bucket_start >= self._bucket_seconds:
                self._history.append(self._bucket_min)
                self._bucket_min = sample
                self._bucket_start = now
                base = sample
                for m in self._history:
                    if wrap32_less(m, base):
                        base = m
                self.base = base
        delay = (sample - base) & MASK32
        if delay >= 0x80000000:
            delay = 0
        self._recent.append(delay)
        return min(self._recent)  # the minimum of the last few samples: less noise (libtorrent does too)


class RttEstimator:
    """``rtt``/``rtt_var`` smoothing and the retransmission timeout, in seconds (BEP 29 "timeouts")."""

    __slots__ = ("max_rto", "min_rto", "rto", "rtt", "rtt_var")

    def __init__(self, initial_rto: float = 1.0, min_rto: float = 0.5, max_rto: float = 60.0) -> None:
        self.rtt: float | None = None
        self.rtt_var = 0.0
        self.rto = initial_rto
        self.min_rto = min_rto
        self.max_rto = max_rto

    def sample(self, rtt: float) -> None:
        if self.rtt is None:
            self.rtt = rtt
            self.rtt_var = rtt / 2
        else:
            delta = self.rtt - rtt
            self.rtt_var += (abs(delta) - self.rtt_var) / 4
            self.rtt += (rtt - self.rtt) / 8
        self.rto = min(max(self.rtt + 4 * self.rtt_var, self.min_rto), self.max_rto)

    def backed_off(self, timeouts: int) -> float:
        """The timeout after ``timeouts`` consecutive expiries: doubled each time, capped."""
        return min(self.rto * (1 << min(timeouts, 16)), self.max_rto)
