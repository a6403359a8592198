"""The engine's injected time: a clock, sleeps and timers (as :class:`~bitswarm.dht.node.DHTNode`).

Every engine part (:mod:`~bitswarm.session.peers`, :mod:`~bitswarm.session.scheduler`,
:mod:`~bitswarm.session.choking`, :mod:`~bitswarm.session.announce`, the housekeeping of
:mod:`~bitswarm.session.torrent`, :class:`~bitswarm.session.peer.PeerProtocol`) reads time and waits
only through a :class:`Clock`. :class:`LoopClock` is the real one (``time.monotonic`` and the event
loop); :class:`ManualClock` stands still until a test (or a simulation) advances it, so tests drive
time instead of sleeping or patching timing constants:

    clock = ManualClock()
    async with Session(config, clock=clock) as session:
        ...
        await clock.advance(60.0)  # every timer due in the next minute fires, in order
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol


class Timer(Protocol):
    """A scheduled callback (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds, sleeping, timers and waiting for an event with a timeout."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer: ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds passed; True if it is set."""
        ...


class LoopClock:
    """The real clock: ``time.monotonic`` and the running event loop."""

    #: a plain function, not a method: ``clock.now`` is ``time.monotonic`` itself (hot paths)
    now = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        return event.is_set()


class _ManualTimer:
    __slots__ = ("args", "callback", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when :meth:`advance` is awaited (tests, simulations)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.time

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        timer = _ManualTimer(callback, args)
        heapq.heappush(self._timers, (self.time + max(0.0, delay), next(self._seq), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        timer = self.call_later(seconds, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        waiter = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self.sleep(timeout))
        try:
            await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
        return event.is_set()

    @property
    def pending(self) -> int:
        """Timers scheduled and not cancelled."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing due timers in order; after each, the event loop
        runs the tasks they woke (which may schedule more timers within the window)."""
        end = self.time + seconds
        await _settle()
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.time = max(self.time, when)
            timer.callback(*timer.args)
            await _settle()
        self.time = end
        await _settle()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _settle(turns: int = 5) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)
