"""Helpers shared by the tracker server tests: start a server on loopback port 0, talk to it."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bitswarm.tracker import udp_codec as udp
from bitswarm.tracker.http_codec import (
    AnnounceRequest,
    announce_url,
    decode_announce_response,
    decode_scrape_response,
    scrape_url,
)
from bitswarm.tracker.server import TrackerConfig, TrackerServer


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[TrackerServer]:
    v6 = has_ipv6()
    base: dict[str, Any] = {
        "http": (("127.0.0.1", 0), ("::1", 0)) if v6 else (("127.0.0.1", 0),),
        "udp": (("127.0.0.1", 0), ("::1", 0)) if v6 else (("127.0.0.1", 0),),
        "db": None,
        "admin_token": "sekrit",
    }
    base.update(overrides)
    server = TrackerServer(TrackerConfig(**base))
    await server.start()
    try:
        yield server
    finally:
        await asyncio.wait_for(server.stop(), 10)


def base_url(server: TrackerServer, index: int = 0) -> str:
    host, port = server.http_addresses[index]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def req(info_hash: bytes, n: int, *, left: int = 1, port: int | None = None, **kw: Any) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=b"-BS0001-" + n.to_bytes(12, "big"),
        port=port if port is not None else 10000 + n,
        uploaded=0,
        downloaded=0,
        left=left,
        **kw,
    )


async def http_announce(client: httpx.AsyncClient, url: str, request: AnnounceRequest) -> Any:
    resp = await client.get(announce_url(url, request))
    assert resp.status_code == 200
    return decode_announce_response(resp.content)


async def http_scrape(client: httpx.AsyncClient, url: str, hashes: list[bytes]) -> Any:
    resp = await client.get(scrape_url(url, hashes))
    assert resp.status_code == 200
    return decode_scrape_response(resp.content)


class UdpClient(asyncio.DatagramProtocol):
    """A tiny BEP 15 client over the sans-I/O codec: send bytes, await the next datagram."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    @classmethod
    async def open(cls, addr: tuple[str, int]) -> UdpClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, remote_addr=addr)
        return proto

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    async def recv(self, timeout: float = 2.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing(self, timeout: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return True
        return False

    async def connect(self) -> int:
        self.send(udp.encode_request(udp.ConnectRequest(7)))
        resp = udp.decode_response(await self.recv(), expecting=udp.Action.CONNECT)
        assert isinstance(resp, udp.ConnectResponse) and resp.transaction_id == 7
        return resp.connection_id

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@contextmanager
def tracker_process(
    db: Path, *extra: str, soft_nofile: int | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``bitswarm tracker --json [extra...]`` on loopback port 0 over ``db`` (HTTP only); yields the
    process and its base URL. ``soft_nofile``: start it with that soft open-files limit."""
    args = ["tracker", "--http", "127.0.0.1:0", "--no-udp", "--db", str(db), "--json", *extra]
    if soft_nofile is None:
        cmd = [sys.executable, "-m", "bitswarm", *args]
    else:  # lower the limit in the child itself (no preexec_fn: the test process may have threads)
        code = (
            "import resource, runpy, sys; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, "
            "(int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
            "sys.argv = ['bitswarm', *sys.argv[2:]]; runpy.run_module('bitswarm', run_name='__main__')"
        )
        cmd = [sys.executable, "-c", code, str(soft_nofile), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "bitswarm tracker did not start"
        url = json.loads(line)["http"][0]
        yield proc, url.removesuffix("/announce")
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)
