"""The guarded uvicorn protocol on its own, behind a bare ASGI app on a loopback port: the caps
(503 at once), a body that never completes (408: the index's behaviour, now the daemon's too), an
oversized head (431), and a client that stops reading a large response is cut off within the idle
timeout (the daemon's behaviour, now the index's too). Short timeouts keep the test quick."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn

from bitswarm.httpguard import HttpLimits, server_config
from testtools import bytes_after_stalling, read_until_closed, until

pytestmark = pytest.mark.timeout(60)

LIMITS = HttpLimits(header_timeout=2.0, body_timeout=2.0, idle_timeout=2.0, max_per_ip=4, max_head_bytes=4096)
BIG = 8_000_000


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/big``: 8 MB in 64 KiB chunks; anything else reads the whole body and answers ``ok``."""
    if scope["path"] == "/big":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % BIG)]}
        )
        chunk = b"x" * 65536
        for sent in range(0, BIG, len(chunk)):
            await send({"type": "http.response.body", "body": chunk[: BIG - sent], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def port() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    server = _QuietServer(server_config(_app, limits=LIMITS))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started, what="the server started")
    yield int(sock.getsockname()[1])
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 10)
    sock.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_body_deadline_head_cap_and_connection_caps(port: int) -> None:
    # a body that never completes: 408 one body timeout after the headers, not before
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    t0 = time.monotonic()
    got = await read_until_closed(reader, LIMITS.body_timeout + 1.5)
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert time.monotonic() - t0 > LIMITS.body_timeout - 0.3
    await _close(writer)
    # a head over max_head_bytes: 431
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n")
    assert (await read_until_closed(reader, 2.0)).startswith(b"HTTP/1.1 431 ")
    await _close(writer)
    # over the cap of 4 per address: 503 at once; another address is still served
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
    for reader, _ in conns[4:]:
        assert (await read_until_closed(reader, 1.5)).startswith(b"HTTP/1.1 503 ")
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await read_until_closed(reader, 1.5)).startswith(b"HTTP/1.1 200 ")
    for _, w in [*conns, (reader, writer)]:
        await _close(w)


async def test_a_client_that_stops_reading_is_cut_off(port: int) -> None:
    got = await bytes_after_stalling(port, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n", LIMITS.idle_timeout + 1.5)
    assert got < BIG  # cut off, not kept waiting for us
