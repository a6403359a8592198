"""Helpers shared by the index tests: a movable clock, a cheap argon2 hasher, ASGI clients."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from argon2 import PasswordHasher

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class FakeClock:
    """An injected clock the test moves by hand (seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: The federation key the in-process trackers of a test share, and the header that presents it.
FED_KEY = "test-federation-key-0123456789"
FED = {"Authorization": f"Bearer {FED_KEY}"}

SHA_A = "a" * 64
SHA_B = "b" * 64


@contextlib.asynccontextmanager
async def asgi_client(app: Any, base_url: str = "http://idx") -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the ASGI ``app`` in-process."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url, timeout=10) as c:
        yield c


@contextlib.asynccontextmanager
async def binary_session(host: str, port: int) -> AsyncIterator[Callable[[Any], Awaitable[Any]]]:
    """A seed 001 connection to ``host:port``; yields ``call(request) -> reply`` (5 s per read)."""
    from bitswarm.index import binary as b

    reader, writer = await asyncio.open_connection(host, port)
    conn = b.IndexConnection("client")

    async def call(event: Any) -> Any:
        writer.write(conn.send(event))
        await writer.drain()
        while True:
            ev = conn.next_event()
            if ev is not b.NEED_DATA:
                return ev
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data
            conn.receive_data(data)

    try:
        yield call
    finally:
        writer.close()


def close_pipes(proc: subprocess.Popen[Any]) -> None:
    """Close a child's pipes once it is stopped: left to the garbage collector, each is a
    ResourceWarning raised inside a finalizer (see ``conftest.py``: that fails the test)."""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
