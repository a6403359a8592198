"""A sleep the test steps by hand, for the seed peers' keep-alive and heartbeat loops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class StepSleep:
    """``await sleep(seconds)`` reports ``seconds`` on :attr:`ticks` and returns only after
    :meth:`step` (which first moves ``advance``, e.g. a FakeClock, by those seconds)."""

    def __init__(self, advance: Callable[[float], None] | None = None) -> None:
        self.ticks: asyncio.Queue[float] = asyncio.Queue()
        self._go = asyncio.Event()
        self._advance = advance

    async def __call__(self, seconds: float) -> None:
        await self.ticks.put(seconds)
        await self._go.wait()
        self._go.clear()
        if self._advance is not None:
            self._advance(seconds)

    def step(self) -> None:
        self._go.set()
