"""HTTP tracker limits (issue 16 item 6): request and keep-alive deadlines, the per-IP connection cap
(unit tests of the sans-I/O :class:`ConnectionGuard` with an injected clock, then a real server:
500 idle connections from one address).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tracker_server_testlib import req, running, tracker_process

from bitswarm.tracker.http_codec import announce_url, decode_announce_response
from bitswarm.tracker.server import TrackerConfig, TrackerServer
from bitswarm.tracker.server.core import TrackerCore
from bitswarm.tracker.server.http import connection_guard
from bitswarm.tracker.server.limits import ConnectionGuard, client_key
from testtools import until

HASH = bytes(range(20))


class Conn:
    def __init__(self, began: float, last: float, busy: bool = False) -> None:
        self.began = began
        self.last = last
        self._busy = busy

    def busy(self) -> bool:
        return self._busy


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_guard_caps_connections_per_address_and_releases() -> None:
    guard = ConnectionGuard(header_timeout=10, idle_timeout=30, max_per_ip=3, clock=Clock())
    a, b = b"\x0a\0\0\1", b"\x0a\0\0\2"
    assert [guard.admit(a) for _ in range(4)] == [True, True, True, False]
    assert guard.admit(b)  # another address is not affected
    guard.release(a)
    assert guard.admit(a) and not guard.admit(a)
    for _ in range(3):
        guard.release(a)
    guard.release(b)
    assert guard.per_ip == {}


def test_guard_counts_an_ipv6_client_by_its_64_and_exempts_trusted_proxies() -> None:
    guard = ConnectionGuard(header_timeout=10, idle_timeout=30, max_per_ip=2, exempt=[b"\x7f\0\0\1"])
    one = bytes.fromhex("20010db8000000010000000000000001")
    other_host_same_64 = bytes.fromhex("20010db80000000100000000000000ff")
    assert client_key(one) == client_key(other_host_same_64)
    assert guard.admit(client_key(one)) and guard.admit(client_key(other_host_same_64))
    assert not guard.admit(client_key(one))
    assert all(guard.admit(b"\x7f\0\0\1") for _ in range(10))  # a trusted proxy multiplexes clients
    assert not ConnectionGuard(header_timeout=1, idle_timeout=1, max_per_ip=0).max_per_ip  # 0 = no cap
    assert all(ConnectionGuard(header_timeout=1, idle_timeout=1, max_per_ip=0).admit(b"x") for _ in range(99))


def test_guard_sweep_finds_slow_requests_and_idle_keep_alives() -> None:
    clock = Clock()
    guard = ConnectionGuard(header_timeout=10, idle_timeout=30, max_per_ip=64, clock=clock)
    now = guard.now
    slow = Conn(began=now, last=now)  # opened (or began a request) and never finished it
    idle = Conn(began=-1.0, last=now)  # finished a request, then silent
    working = Conn(began=-1.0, last=now, busy=True)  # a reply still being produced
    conns = [slow, idle, working]
    clock.t += 9.9
    assert guard.sweep(conns) == []
    clock.t += 0.2
    assert guard.sweep(conns) == [(slow, "header")]
    assert guard.now == clock.t  # connections stamp themselves with the sweep's clock
    clock.t += 20
    assert guard.sweep(conns) == [(slow, "header"), (idle, "idle")]
    assert guard.tick == 1.0
    assert ConnectionGuard(header_timeout=0.2, idle_timeout=1, max_per_ip=1).tick == 0.05
    with pytest.raises(ValueError):
        ConnectionGuard(header_timeout=0, idle_timeout=1, max_per_ip=1)


def test_config_limits_reach_the_guard() -> None:
    cfg = TrackerConfig(
        db=None,
        http_header_timeout=3,
        http_idle_timeout=7,
        http_max_per_ip=5,
        trusted_proxies=frozenset({"10.0.0.1"}),
    )
    guard = connection_guard(cfg)
    assert (guard.header_timeout, guard.idle_timeout, guard.max_per_ip) == (3, 7, 5)
    assert all(guard.admit(b"\x0a\0\0\1") for _ in range(9))


# ------------------------------------------------------------------------------------ a real server


def server_core(server: TrackerServer) -> TrackerCore:
    assert server.core is not None
    return server.core


HEADER_TIMEOUT = 0.5
IDLE_TIMEOUT = 1.0
CAP = 64


async def _get(host: str, port: int, path: str, *, local: str | None = None) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(local, 0) if local else None)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def _open_idle(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, float]:
    """An idle connection and when it was open."""
    reader, writer = await asyncio.open_connection(host, port)
    return reader, writer, time.monotonic()


async def test_500_idle_connections_from_one_address_do_not_lock_out_others() -> None:
    async with running(
        http=(("127.0.0.1", 0),),
        udp=(),
        http_header_timeout=HEADER_TIMEOUT,
        http_idle_timeout=IDLE_TIMEOUT,
        http_max_per_ip=CAP,
    ) as server:
        host, port = server.http_addresses[0]
        idle = await asyncio.gather(*(_open_idle(host, port) for _ in range(500)))
        # a legitimate client on another address is answered at once
        t0 = time.monotonic()
        status, body = await asyncio.wait_for(
            _get(host, port, announce_url("/announce", req(HASH, 1)), local="127.0.0.2"), 2
        )
        assert status == 200 and time.monotonic() - t0 < 1.0
        assert decode_announce_response(body).complete == 0  # type: ignore[union-attr]

        async def outcome(reader: asyncio.StreamReader, opened: float) -> tuple[bytes, float]:
            data = await asyncio.wait_for(reader.read(), HEADER_TIMEOUT + 3)  # EOF = closed by the server
            return data, time.monotonic() - opened

        results = await asyncio.gather(*(outcome(r, t) for r, _, t in idle))
        for _, writer, _ in idle:
            writer.close()
        refused = [d for d, _ in results if d.startswith(b"HTTP/1.1 503")]
        timed_out = [(d, t) for d, t in results if not d.startswith(b"HTTP/1.1 503")]
        assert len(refused) == 500 - CAP and len(timed_out) == CAP
        assert all(d.startswith(b"HTTP/1.1 408") for d, _ in timed_out)
        # closed within the header timeout (+ one sweep tick and scheduling slack)
        assert max(t for _, t in timed_out) < HEADER_TIMEOUT + 1.0
        stats = await server_core(server).stats()
        assert stats["errors"]["http_per_ip_cap"] == 500 - CAP
        assert stats["errors"]["http_header_timeout"] == CAP
        await until(lambda: not server.guard.per_ip, what="the server's side of the last closes")
        assert server.guard.per_ip == {}
        # the address may connect again once its connections are gone
        status, _ = await _get(host, port, "/stats")
        assert status == 200


async def test_slow_request_gets_408_and_keep_alive_idles_out() -> None:
    async with running(
        http=(("127.0.0.1", 0),), udp=(), http_header_timeout=HEADER_TIMEOUT, http_idle_timeout=IDLE_TIMEOUT
    ) as server:
        host, port = server.http_addresses[0]
        # slowloris: a header byte every 50 ms, never finishing (the server's close may come as a reset)
        reader, writer = await asyncio.open_connection(host, port)
        t0 = time.monotonic()
        writer.write(b"GET /stats HTTP/1.1\r\nX-Slow: ")
        data = b""
        with contextlib.suppress(ConnectionError):
            for _ in range(60):
                writer.write(b"X")
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(reader.read(), HEADER_TIMEOUT / 10)
                    break
        closed_after = time.monotonic() - t0
        assert not data or data.startswith(b"HTTP/1.1 408")
        assert HEADER_TIMEOUT - 0.3 < closed_after < HEADER_TIMEOUT + 1.0
        assert (await server_core(server).stats())["errors"]["http_header_timeout"] == 1
        writer.close()
        # keep-alive: one request answered, then silence → closed after the idle timeout
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        t1 = time.monotonic()
        assert await asyncio.wait_for(reader.read(), IDLE_TIMEOUT + 3) == b""
        assert IDLE_TIMEOUT - 0.3 < time.monotonic() - t1 < IDLE_TIMEOUT + 1.0
        writer.close()
        assert (await server_core(server).stats())["errors"]["http_idle_timeout"] == 1


async def test_cli_options_set_the_limits(tmp_path: Path) -> None:
    """``bitswarm tracker --http-max-per-ip 2 --http-header-timeout 0.5``: a third connection from the
    address is refused with 503; the two idle ones are closed after the header timeout."""
    with tracker_process(
        tmp_path / "t.sqlite",
        "--http-max-per-ip",
        "2",
        "--http-header-timeout",
        "0.5",
        "--http-idle-timeout",
        "1",
    ) as (_, base):
        host, port = base.removeprefix("http://").rsplit(":", 1)
        t0 = time.monotonic()
        conns = [await asyncio.open_connection(host, int(port)) for _ in range(3)]
        replies = await asyncio.gather(*(asyncio.wait_for(r.read(), 5) for r, _ in conns))
        elapsed = time.monotonic() - t0
        for _, writer in conns:
            writer.close()
        assert sorted(r.split(b"\r\n")[0] for r in replies) == [
            b"HTTP/1.1 408 Request Timeout",
            b"HTTP/1.1 408 Request Timeout",
            b"HTTP/1.1 503 Service Unavailable",
        ]
        assert elapsed < 0.5 + 1.0


def test_cli_rejects_bad_limits(tmp_path: Path) -> None:
    for args in (["--http-max-per-ip", "-1"], ["--http-header-timeout", "0"], ["--http-idle-timeout", "-5"]):
        proc = subprocess.run(
            [sys.executable, "-m", "bitswarm", "tracker", "--db", "none", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr


# ------------------------------------------------------------------------------------ UDP


class StalledStore:
    """An async store (like Redis) that never answers."""

    is_async = True

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def announce(self, *args: object, **kw: object) -> tuple[int, int, list[tuple[bytes, bytes]]]:
        await self.gate.wait()
        return 0, 0, []


async def test_udp_with_a_stalled_async_store_holds_a_bounded_number_of_requests() -> None:
    import os

    from bitswarm.tracker import udp_codec as udp
    from bitswarm.tracker.server.udp import MAX_INFLIGHT, UdpTrackerProtocol

    core = TrackerCore(TrackerConfig(db=None), StalledStore())
    proto = UdpTrackerProtocol(core, os.urandom(32))
    addr = ("127.0.0.1", 4242)
    cid = proto.connection_id(addr)
    datagram = udp.encode_request(
        udp.AnnounceRequest(
            connection_id=cid,
            transaction_id=1,
            info_hash=HASH,
            peer_id=b"P" * 20,
            downloaded=0,
            left=1,
            uploaded=0,
            event=udp.Event.NONE,
            key=0,
            port=6881,
        )
    )
    for _ in range(MAX_INFLIGHT + 500):
        assert proto.handle(datagram, addr) is None
    assert proto.inflight == MAX_INFLIGHT
    assert core.errors["udp_busy"] == 500
    core.store.gate.set()
    await until(lambda: not proto.inflight, interval=0, what="the in-flight announces answered")
    assert core.announces["udp"] == MAX_INFLIGHT


class StuckTransport:
    """A transport whose peer never reads: its buffer never drains."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = self.aborted = False

    def get_extra_info(self, name: str) -> object:
        return ("10.0.0.9", 5555) if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.written))

    def close(self) -> None:
        self.closing = True  # waits for the buffer to drain: forever

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass


def test_a_closing_connection_whose_client_does_not_read_is_aborted_at_the_deadline() -> None:
    from bitswarm.tracker.server import MemoryStore
    from bitswarm.tracker.server.http import HttpTrackerProtocol

    config = TrackerConfig(db=None)
    core = TrackerCore(config, MemoryStore(config.ttl))
    clock = Clock()
    guard = connection_guard(config, clock)
    conns: set[HttpTrackerProtocol] = set()
    proto = HttpTrackerProtocol(core, None, conns, guard)
    transport = StuckTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    path = announce_url("/announce", req(HASH, 1)).encode()
    proto.data_received(b"GET %s HTTP/1.1\r\nConnection: close\r\n\r\n" % path)
    assert transport.closing and not transport.aborted  # the last reply queued, close pending
    clock.t += config.http_idle_timeout + 1
    for conn, kind in guard.sweep(conns):
        conn.timed_out(kind)
    assert transport.aborted
    proto.connection_lost(None)
    assert guard.per_ip == {} and not conns
