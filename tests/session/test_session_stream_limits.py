"""The streaming server's HTTP limits (issue 16, item 6): a per-address connection cap (503 at
once), a header deadline (408), a keep-alive idle deadline, a cap on the request head (431), no
request bodies (413) and a bounded pipeline, while a legitimate range request is served at once."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bitswarm.httpguard import HttpLimits
from bitswarm.metainfo import create_torrent, parse_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.stream import StreamServer

pytestmark = pytest.mark.timeout(60)

LIMITS = HttpLimits(header_timeout=2.0, idle_timeout=2.0, max_per_ip=16)
#: Seconds a connection the server should close may stay open before the test fails: a bound on
#: "closed at all", loose enough for a loaded machine. How soon it closes is asserted from below
#: (not before its deadline); wall-clock upper bounds failed under load (issue 24).
CLOSED_WITHIN = 10.0


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[StreamServer, bytes]]:
    """A StreamServer over a complete (seeded) torrent of one 200 kB file."""
    data = random.Random(3).randbytes(200_000)
    path = tmp_path / "seed" / "clip.mp4"
    path.parent.mkdir()
    path.write_bytes(data)
    t = parse_torrent(create_torrent(path, version="v1", piece_length=32768))
    async with Session(SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False)) as s:
        server = StreamServer(await s.add(t, path.parent), limits=LIMITS)
        await server.start("127.0.0.1", 0)
        try:
            yield server, data
        finally:
            await server.stop()


async def _eof(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """What the server sends before it closes; fails if it keeps the connection open."""
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except TimeoutError:
        raise AssertionError(f"still open after {timeout} s") from None


async def test_many_idle_connections_from_one_address(served: tuple[StreamServer, bytes]) -> None:
    server, data = served
    opening = time.monotonic()
    conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(40)]
    over = [await _eof(reader, CLOSED_WITHIN) for reader, _ in conns[16:]]
    assert all(x.startswith(b"HTTP/1.1 503 ") for x in over)
    assert server.connections.per_ip == {"127.0.0.1": 16}
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport, timeout=5) as http:
        reply = await http.get(server.file_url(0), headers={"Range": "bytes=100-199"})
        assert reply.status_code == 206 and reply.content == data[100:200]
    for reader, _ in conns[:16]:
        assert (await _eof(reader, CLOSED_WITHIN)).startswith(b"HTTP/1.1 408 ")
    # the 16 were held until their header deadline (it runs from the accept, after ``opening``)
    assert time.monotonic() - opening >= LIMITS.header_timeout
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(0.05)
    assert server.connections.total == 0 and not server.connections.per_ip


async def test_slow_head_idle_keepalive_large_head_body_pipeline(served: tuple[StreamServer, bytes]) -> None:
    server, data = served
    port = server.port
    # a head a byte at a time: 408 one header timeout after its first byte, long before the last
    # byte would come (~14 s: a deadline each byte pushed back would end in a 206, or time out here)
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"GET /files/0/clip.mp4 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"

    async def trickle() -> None:
        for i in range(len(head)):
            writer.write(head[i : i + 1])
            await asyncio.sleep(0.1)

    task = asyncio.create_task(trickle())
    assert (await _eof(reader, CLOSED_WITHIN)).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - t0 >= LIMITS.header_timeout
    task.cancel()
    writer.close()
    # served, then silent: closed after the idle timeout
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /files/0/clip.mp4 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n")
    got = await _eof(reader, CLOSED_WITHIN)
    assert got.startswith(b"HTTP/1.1 206 ") and got.endswith(data[:10])
    writer.close()
    # an oversized head: 431; a body: 413
    for request, status in (
        (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", b"413"),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b"413"),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        assert (await _eof(reader, CLOSED_WITHIN)).startswith(b"HTTP/1.1 " + status), status
        writer.close()
    # 50 pipelined requests sent at once are all answered, in order (reading pauses in between)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HEAD /files/0/clip.mp4 HTTP/1.1\r\nHost: x\r\n\r\n" * 49 + b"GET / HTTP/1.1\r\n\r\n")
    got = await _eof(reader, CLOSED_WITHIN)
    assert got.count(b"HTTP/1.1 200 OK") == 50 and got.endswith(b"</ul>")
    writer.close()


async def test_a_client_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    """A response the client stops reading holds its connection for at most the idle timeout."""
    path = tmp_path / "seed" / "big.bin"
    path.parent.mkdir()
    path.write_bytes(random.Random(5).randbytes(8_000_000))
    t = parse_torrent(create_torrent(path, version="v1", piece_length=262144))
    async with Session(SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False)) as s:
        server = StreamServer(await s.add(t, path.parent), limits=LIMITS)
        await server.start("127.0.0.1", 0)
        try:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                loop = asyncio.get_running_loop()
                await loop.sock_connect(sock, ("127.0.0.1", server.port))
                await loop.sock_sendall(sock, b"GET /files/0/big.bin HTTP/1.1\r\n\r\n")
                t0 = time.monotonic()
                while not server.connections.total:
                    await asyncio.sleep(0.01)
                while server.connections.total:  # never read: the server gives up on us
                    assert time.monotonic() - t0 < CLOSED_WITHIN, "the stalled client was kept"
                    await asyncio.sleep(0.05)
                assert time.monotonic() - t0 > LIMITS.idle_timeout - 0.5
        finally:
            await server.stop()
