"""The daemon API's HTTP limits (issue 16, item 6): one address holding many idle connections gets
503 past its cap at once, a legitimate request from another address is answered at once, and the
idle connections are closed (408) within the header timeout; slow heads, slow bodies, silent
keep-alive connections and oversized heads are cut off too. Short timeouts keep the test quick."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest
from daemon_testlib import TOKEN, running_daemon, torrent_of, wait_for

from bitswarm.daemon import HttpLimits
from testtools import bytes_after_stalling, read_until_closed

pytestmark = pytest.mark.timeout(60)

LIMITS = HttpLimits(header_timeout=2.0, body_timeout=2.5, idle_timeout=2.0, max_per_ip=16)
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_idle_connections_from_one_address(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "d", limits=LIMITS) as r:
        port = _port(r.url)
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
        opened = time.monotonic()
        # the 24 over the cap are refused at once
        refused = [await read_until_closed(reader, 1.5) for reader, _ in conns[16:]]
        assert all(x.startswith(b"HTTP/1.1 503 ") for x in refused), refused[:2]
        # a legitimate request from another address is answered at once
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(transport=transport, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            t0 = time.monotonic()
            reply = await c.get(f"http://127.0.0.1:{port}/api/v1/stats", timeout=5)
            assert reply.status_code == 200 and time.monotonic() - t0 < 1.0
        # the 16 idle ones are closed within the header timeout, with a 408
        for reader, _ in conns[:16]:
            assert (await read_until_closed(reader, LIMITS.header_timeout + 1.5)).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - opened < LIMITS.header_timeout + 1.5
        for _, writer in conns:
            writer.close()
        # the address has its connections back
        async with r.client() as c:
            assert (await c.get("/api/v1/stats")).status_code == 200


async def test_slow_head_slow_body_idle_keepalive_and_large_head(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "d", limits=LIMITS) as r:
        port = _port(r.url)
        # a head sent a byte at a time: cut off one header timeout after its first byte
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        head = f"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n{AUTH}X-Slow: {'a' * 100}\r\n\r\n".encode()

        async def trickle() -> None:
            for i in range(len(head)):
                writer.write(head[i : i + 1])
                await asyncio.sleep(0.1)

        task = asyncio.create_task(trickle())
        got = await read_until_closed(reader, LIMITS.header_timeout + 1.5)
        task.cancel()
        assert got.startswith(b"HTTP/1.1 408 ") and time.monotonic() - t0 < LIMITS.header_timeout + 1.0
        writer.close()

        # a body that never completes: cut off one body timeout after the headers
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"PUT /api/v1/limits HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        t0 = time.monotonic()
        await read_until_closed(reader, LIMITS.body_timeout + 1.5)
        assert time.monotonic() - t0 > LIMITS.body_timeout - 0.3
        writer.close()

        # a keep-alive connection that stays silent after its reply is closed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n".encode())
        got = await read_until_closed(reader, LIMITS.idle_timeout + 2.0)
        assert got.startswith(b"HTTP/1.1 200 ")
        writer.close()

        # a head over max_head_bytes: 431
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 20000}\r\n\r\n".encode())
        assert (await read_until_closed(reader, 2.0)).startswith(b"HTTP/1.1 431 ")
        writer.close()


async def test_a_client_that_stops_reading_a_stream_is_cut_off(tmp_path: Path) -> None:
    """A file stream the client stops reading holds its connection for at most the idle timeout."""
    content = tmp_path / "seed" / "big"
    content.mkdir(parents=True)
    (content / "movie.mp4").write_bytes(random.Random(9).randbytes(8_000_000))
    raw, _t = torrent_of(content, piece_length=262144)
    async with running_daemon(tmp_path / "d", limits=LIMITS) as r, r.client() as c:
        reply = await c.post(
            "/api/v1/torrents",
            content=raw,
            params={"save_path": str(content.parent)},
            headers={"Content-Type": "application/x-bittorrent"},
        )
        tid = reply.json()["id"]

        async def seeding() -> dict | None:
            d = (await c.get(f"/api/v1/torrents/{tid}")).json()
            return d if d["state"] == "seeding" else None

        url = (await wait_for(seeding, 30))["files"][0]["stream_url"]
        request = f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        got = await bytes_after_stalling(_port(r.url), request, LIMITS.idle_timeout + 1.5)
        assert got < 8_000_000  # cut off, not kept waiting for us
        assert (await c.get("/api/v1/stats")).status_code == 200
