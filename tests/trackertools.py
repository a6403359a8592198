"""Loopback trackers that fail, for the tracker-status tests of tests/session, tests/daemon and
tests/cli (importable by name, as ``testtools``)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then closed): a dead tracker."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def failing_tracker(reason: bytes) -> AsyncIterator[str]:
    """An HTTP tracker that answers every announce with a BEP 3 ``failure reason``; yields its URL."""
    body = b"d14:failure reason%d:%se" % (len(reason), reason)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        writer.write(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/announce"
