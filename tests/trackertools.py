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


class StaticTracker:
    """An HTTP tracker that answers every announce with the same compact IPv4 peer list and records
    the source address of each request (``requests``): the announces a proxy relays come from it."""

    def __init__(self, peers: list[tuple[str, int]], host: str = "127.0.0.1") -> None:
        self.peers = peers
        self.host = host
        self.requests: list[tuple[str, bytes]] = []  #: (source IP, request line)
        self.url = ""

    def body(self) -> bytes:
        compact = b"".join(socket.inet_aton(h) + p.to_bytes(2, "big") for h, p in self.peers)
        return b"d8:intervali1800e5:peers%d:%se" % (len(compact), compact)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        self.requests.append((writer.get_extra_info("peername")[0], head.split(b"\r\n", 1)[0]))
        body = self.body()
        head_out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        writer.write(head_out + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()


@asynccontextmanager
async def static_tracker(
    peers: list[tuple[str, int]], host: str = "127.0.0.1"
) -> AsyncIterator[StaticTracker]:
    """A :class:`StaticTracker` listening on ``host``; its ``url`` is the announce URL."""
    tracker = StaticTracker(peers, host)
    server = await asyncio.start_server(tracker.serve, host, 0)
    async with server:
        tracker.url = f"http://{host}:{server.sockets[0].getsockname()[1]}/announce"
        yield tracker
