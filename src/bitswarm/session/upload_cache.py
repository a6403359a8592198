"""The upload read cache of one torrent: whole verified pieces in a small LRU, one disk read each.

Peers ask for blocks in order; a piece read once (through the disk pool, off the event loop) serves
every block of it and every peer that asks soon after. A piece we just verified goes in straight
from its buffer (peers ask for it right after our HAVE). A read belongs to the cache, not to the
peer that asked first: a peer that goes away (its upload task cancelled) does not cancel the read
others wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable


class ReadCache:
    """At most ``max_pieces`` whole pieces, least recently used first out."""

    def __init__(self, read: Callable[[int], Awaitable[bytes]], max_pieces: int) -> None:
        self._read = read
        self.max_pieces = max(1, max_pieces)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._reading: dict[int, asyncio.Task[bytes]] = {}

    @property
    def reading(self) -> int:
        """Disk reads in flight."""
        return len(self._reading)

    def cached_piece(self, index: int) -> bytes | None:
        """The piece if it is cached (marked recently used), else None; no I/O."""
        data = self._cache.get(index)
        if data is not None:
            self._cache.move_to_end(index)
        return data

    async def read_piece(self, index: int) -> bytes:
        """A verified piece, from the cache or read once (concurrent askers share the read)."""
        data = self.cached_piece(index)
        if data is not None:
            return data
        task = self._reading.get(index)
        if task is None:
            task = self._reading[index] = asyncio.get_running_loop().create_task(self._load(index))
            task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    def put(self, index: int, data: bytes) -> None:
        cache = self._cache
        cache[index] = data
        cache.move_to_end(index)
        while len(cache) > self.max_pieces:
            cache.popitem(last=False)

    async def _load(self, index: int) -> bytes:
        try:
            data = await self._read(index)
        finally:
            self._reading.pop(index, None)
        self.put(index, data)
        return data

    async def close(self) -> None:
        """Cancel the reads in flight (the torrent stops)."""
        tasks = list(self._reading.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._cache.clear()


def _retrieve(task: asyncio.Task[bytes]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the waiters (if any) get it through their shield
