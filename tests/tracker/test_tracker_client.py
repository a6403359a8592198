"""Tracker client against the real opentracker (HTTP and UDP), BEP 12 tiers, and the schedule."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bitswarm.tracker import (
    AllTrackersFailed,
    AnnounceManager,
    AnnounceParams,
    AnnounceSchedule,
    Event,
    TrackerError,
    TrackerProtocolError,
    TrackerTimeout,
    TrackerUnreachable,
    TrackerUrlError,
    TransferStats,
    UdpTrackerClient,
    normalize_tracker_url,
    open_tracker,
    tiers_from_metainfo,
)
from bitswarm.tracker.udp_codec import ConnectRequest, decode_response, encode_request
from testtools import eventually, require_tool, until

pytestmark = pytest.mark.timeout(30)

#: Whitelisted info-hashes: each test takes its own so tests do not see each other's peers.
HASHES = [hashlib.sha1(f"bitswarm-tracker-test-{i}".encode()).digest() for i in range(16)]
NOT_LISTED = hashlib.sha1(b"not whitelisted").digest()


def _pid(n: int) -> bytes:
    return f"-BS0001-{n:012d}".encode()


@dataclass
class OpenTracker:
    http: str  # announce URL
    udp: str
    proc: subprocess.Popen[bytes]


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(tcp: int, udp: int, deadline: float) -> bool:
    """Both listeners answer (by ``deadline``): a TCP connect and a BEP 15 connect round trip."""

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", tcp), timeout=0.2):
                pass
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.2)
                s.sendto(encode_request(ConnectRequest(1)), ("127.0.0.1", udp))
                decode_response(s.recv(64))
        except OSError:
            return False
        return True

    try:
        return bool(eventually(answers, timeout=deadline - time.monotonic(), interval=0.05))
    except AssertionError:
        return False


@pytest.fixture(scope="module")
def opentracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenTracker]:
    binary = require_tool("opentracker")
    root: Path = tmp_path_factory.mktemp("opentracker")
    root.chmod(0o755)
    (root / "whitelist").write_text("".join(h.hex() + "\n" for h in HASHES))
    (root / "whitelist").chmod(0o644)
    for _ in range(5):  # another process may grab a port between our probe and opentracker's bind
        tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
        args = [binary, "-i", "127.0.0.1", "-p", str(tcp), "-P", str(udp), "-d", str(root), "-w", "whitelist"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if _ready(tcp, udp, time.monotonic() + 5) and proc.poll() is None:
            break
        proc.kill()
        proc.wait(5)
    else:
        pytest.fail("opentracker did not start on a free port")
    try:
        yield OpenTracker(f"http://127.0.0.1:{tcp}/announce", f"udp://127.0.0.1:{udp}", proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


def _fast(url: str) -> object:
    return open_tracker(url, timeout=3.0, udp_retry_base=0.2, udp_max_retries=2)


@pytest.mark.interop
@pytest.mark.parametrize("kind", ["http", "udp", "bare"])
async def test_two_peers_see_each_other_then_stopped_removes(opentracker: OpenTracker, kind: str) -> None:
    info_hash = HASHES[{"http": 0, "udp": 1, "bare": 2}[kind]]
    url = {"http": opentracker.http, "udp": opentracker.udp, "bare": opentracker.http[7:-9]}[kind]
    client = open_tracker(url, timeout=3.0, udp_retry_base=0.2, udp_max_retries=2)
    try:
        a = AnnounceParams(info_hash, _pid(1), 41001, left=100, event=Event.STARTED, key=1)
        b = AnnounceParams(info_hash, _pid(2), 41002, left=100, event=Event.STARTED, key=2)
        first = await client.announce(a)
        assert first.interval > 0 and first.leechers == 1
        second = await client.announce(b)
        assert ("127.0.0.1", 41001) in second.peers
        assert second.leechers == 2 and second.seeders == 0
        await client.announce(AnnounceParams(info_hash, _pid(1), 41001, left=100, event=Event.STOPPED, key=1))
        again = await client.announce(AnnounceParams(info_hash, _pid(2), 41002, left=0, key=2))
        assert ("127.0.0.1", 41001) not in again.peers
        assert again.seeders == 1 and again.leechers == 0
        scraped = await client.scrape([info_hash, HASHES[15]])
        assert scraped[info_hash].complete == 1 and scraped[info_hash].incomplete == 0
        # a torrent nobody announced: UDP reports zeros, opentracker's HTTP scrape leaves it out
        assert HASHES[15] not in scraped or scraped[HASHES[15]].complete == 0
    finally:
        await client.aclose()


@pytest.mark.interop
async def test_not_whitelisted(opentracker: OpenTracker) -> None:
    http = open_tracker(opentracker.http, timeout=3.0)
    udp = open_tracker(opentracker.udp, udp_retry_base=0.2, udp_max_retries=1)
    params = AnnounceParams(NOT_LISTED, _pid(3), 41003, left=1)
    try:
        with pytest.raises(TrackerError) as info:
            await http.announce(params)
        assert "not authorized" in info.value.reason
        # opentracker answers a refused UDP announce with a bare 8-byte header: not valid BEP 15
        with pytest.raises(TrackerProtocolError):
            await udp.announce(params)
    finally:
        await http.aclose()
        await udp.aclose()


@pytest.mark.interop
@pytest.mark.parametrize("kind", ["http", "udp"])
async def test_tier_fallback_to_working_tracker(opentracker: OpenTracker, kind: str) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        if kind == "http":
            dead, good = f"http://127.0.0.1:{_free_port(socket.SOCK_STREAM)}/announce", opentracker.http
        else:
            dead, good = f"udp://127.0.0.1:{silent.getsockname()[1]}", opentracker.udp
        factory = functools.partial(open_tracker, timeout=2.0, udp_retry_base=0.1, udp_max_retries=1)
        info_hash = HASHES[3 if kind == "http" else 4]
        mgr = AnnounceManager(
            [[dead, good], [opentracker.http]],
            info_hash=info_hash,
            peer_id=_pid(4),
            port=41004,
            stats=lambda: TransferStats(0, 0, 50),
            client_factory=factory,
            tracker_timeout=3.0,
        )
        mgr.tiers[0] = [dead, good]  # undo the shuffle so the dead one is tried first
        started = time.monotonic()
        result = await mgr.start()
        assert time.monotonic() - started < 3.0
        assert result.url == good
        assert mgr.tiers[0] == [good, dead]  # BEP 12: the one that answered moves to the front
        # the next announce goes straight to it, and it already saw ``started``
        result2 = await mgr.announce()
        assert result2.url == good
        acked = await mgr.stop(timeout=2.0)
        assert acked == [good]
        probe = open_tracker(good, udp_retry_base=0.2, udp_max_retries=1)
        try:
            after = await probe.announce(AnnounceParams(info_hash, _pid(5), 41005, left=1))
        finally:
            await probe.aclose()
        assert ("127.0.0.1", 41004) not in after.peers
    finally:
        silent.close()


@pytest.mark.interop
async def test_next_tier_when_whole_tier_fails(opentracker: OpenTracker) -> None:
    dead = f"http://127.0.0.1:{_free_port(socket.SOCK_STREAM)}/announce"
    mgr = AnnounceManager(
        [[dead], ["udp://127.0.0.1:1/announce", "wss://tracker.example/ws"], [opentracker.udp]],
        info_hash=HASHES[5],
        peer_id=_pid(6),
        port=41006,
        client_factory=functools.partial(open_tracker, timeout=2.0, udp_retry_base=0.1, udp_max_retries=1),
        tracker_timeout=2.0,
    )
    try:
        result = await mgr.start()
        assert result.url == opentracker.udp
        assert (await mgr.scrape())[HASHES[5]].complete == 1  # default stats: left=0, a seeder
    finally:
        await mgr.stop(timeout=2.0)


async def test_all_trackers_failed_and_retry_backoff() -> None:
    now = [1000.0]
    dead = f"http://127.0.0.1:{_free_port(socket.SOCK_STREAM)}/announce"
    mgr = AnnounceManager(
        [[dead]],
        info_hash=HASHES[6],
        peer_id=_pid(7),
        port=1,
        clock=lambda: now[0],
        schedule=AnnounceSchedule(retry_base=10, retry_max=25),
    )
    try:
        with pytest.raises(AllTrackersFailed) as info:
            await mgr.start()
        assert isinstance(info.value.errors[dead], TrackerUnreachable)
        assert mgr.seconds_until_next() == 10
        with pytest.raises(AllTrackersFailed):
            await mgr.announce()
        assert mgr.seconds_until_next() == 20
        with pytest.raises(AllTrackersFailed):
            await mgr.announce()
        assert mgr.seconds_until_next() == 25  # capped
    finally:
        await mgr.stop(timeout=1.0)


@pytest.mark.interop
async def test_manager_obeys_interval_and_min_interval(opentracker: OpenTracker) -> None:
    now = [5000.0]
    mgr = AnnounceManager(
        [[opentracker.http]],
        info_hash=HASHES[7],
        peer_id=_pid(8),
        port=41008,
        clock=lambda: now[0],
        schedule=AnnounceSchedule(floor=0),
    )
    try:
        first = await mgr.start()
        assert (
            first.min_interval is not None and first.min_interval < first.interval
        )  # opentracker sends both
        assert await mgr.reannounce() is None
        assert await mgr.reannounce(more_peers=True) is None  # min interval not yet over
        now[0] += first.min_interval
        assert await mgr.reannounce() is None  # regular interval not yet over
        extra = await mgr.reannounce(more_peers=True)
        assert extra is not None
        assert mgr.seconds_until_next() == extra.interval
        now[0] += extra.interval
        assert await mgr.reannounce() is not None
        assert await mgr.complete() is not None
        assert await mgr.complete() is None  # once per session
    finally:
        await mgr.stop(timeout=2.0)


def test_schedule_with_injected_clock() -> None:
    s = AnnounceSchedule(floor=30, retry_base=5, retry_max=60)
    assert s.due(0.0) and s.may_announce(0.0)
    s.on_success(100.0, interval=1800, min_interval=900)
    assert not s.due(1899.9) and s.due(1900.0)
    assert not s.may_announce(999.0) and s.may_announce(1000.0)
    assert s.delay(400.0) == 1500.0
    s.on_success(2000.0, interval=5, min_interval=None)  # absurd interval: floored
    assert s.next_at == 2030.0 and s.may_announce(2000.0)
    s.on_success(0.0, interval=60, min_interval=120)  # min interval wins over a smaller interval
    assert s.next_at == 120.0
    for expected in (5, 10, 20, 40, 60, 60):
        s.on_failure(0.0)
        assert s.delay(0.0) == expected
    s.on_success(0.0, interval=100)
    assert s.failures == 0


def test_url_rules() -> None:
    assert normalize_tracker_url("tracker.example.org:6969") == "http://tracker.example.org:6969/announce"
    assert normalize_tracker_url("127.0.0.1:80") == "http://127.0.0.1:80/announce"
    assert normalize_tracker_url("[::1]:6969") == "http://[::1]:6969/announce"
    assert normalize_tracker_url("udp://t.example:6969/announce") == "udp://t.example:6969/announce"
    for bad in (
        "wss://t.example/ws",
        "udp://t.example/announce",
        "just-a-name",
        "http://:80/x",
        "udp://h:99999",
    ):
        with pytest.raises(TrackerUrlError):
            normalize_tracker_url(bad)
    assert tiers_from_metainfo("http://a/announce", [["http://b/announce"], []]) == [["http://b/announce"]]
    assert tiers_from_metainfo("http://a/announce", None) == [["http://a/announce"]]
    mgr = AnnounceManager(
        [["a:1", "b:1", "c:1", "d:1"], ["e:1"]],
        info_hash=b"x" * 20,
        peer_id=b"p" * 20,
        port=1,
        rng=random.Random(7),
    )
    assert sorted(mgr.tiers[0]) == ["a:1", "b:1", "c:1", "d:1"] and mgr.tiers[1] == ["e:1"]
    assert 0 <= mgr.key < 2**32


# ----------------------------------------------------- UDP client details against a scripted tracker


class ScriptedUdpTracker(asyncio.DatagramProtocol):
    """A real UDP socket answering with our own codec, scripted to drop datagrams or send a reply
    with a wrong transaction id first: exercises BEP 15 retransmission and transaction-id checks."""

    def __init__(self, drop: int = 0, wrong_tid_first: bool = False) -> None:
        self.drop = drop
        self.wrong_tid_first = wrong_tid_first
        self.received: list[object] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.conn_ids = iter(range(100, 200))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        from bitswarm.tracker import udp_codec as u

        req = u.decode_request(data)
        self.received.append(req)
        if self.drop > 0:
            self.drop -= 1
            return
        assert self.transport is not None
        if isinstance(req, u.ConnectRequest):
            resp: u.Response = u.ConnectResponse(req.transaction_id, next(self.conn_ids))
        elif isinstance(req, u.AnnounceRequest):
            resp = u.AnnounceResponse(req.transaction_id, 900, 1, 2, (("10.0.0.1", 6881),))
        else:
            assert isinstance(req, u.ScrapeRequest)
            resp = u.ScrapeResponse(
                req.transaction_id, tuple(u.ScrapeStats(1, 2, 3) for _ in req.info_hashes)
            )
        if self.wrong_tid_first:
            self.wrong_tid_first = False
            bogus = u.ErrorResponse((req.transaction_id + 1) % 2**32, "spoofed")
            self.transport.sendto(u.encode_response(bogus), addr)
        self.transport.sendto(u.encode_response(resp), addr)


async def _scripted(**kw: object) -> tuple[ScriptedUdpTracker, asyncio.DatagramTransport, str]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: ScriptedUdpTracker(**kw),  # type: ignore[arg-type]
        local_addr=("127.0.0.1", 0),
    )
    return proto, transport, f"udp://127.0.0.1:{transport.get_extra_info('sockname')[1]}"


async def test_udp_retransmits_checks_tids_and_caches_connection_id() -> None:
    from bitswarm.tracker import udp_codec as u

    server, transport, url = await _scripted(drop=2, wrong_tid_first=True)
    now = [0.0]
    client = UdpTrackerClient(url, retry_base=0.05, max_retries=4, clock=lambda: now[0])
    try:
        params = AnnounceParams(HASHES[8], _pid(9), 41009, left=5, key=0xABCDEF01)
        result = await client.announce(params)
        assert result.peers == (("10.0.0.1", 6881),) and result.interval == 900
        assert (result.seeders, result.leechers) == (2, 1)
        kinds = [type(r).__name__ for r in server.received]
        # two connects dropped, then connect answered (after a spoofed-tid error that must be ignored)
        assert kinds == ["ConnectRequest"] * 3 + ["AnnounceRequest"]
        tids = {r.transaction_id for r in server.received if isinstance(r, u.ConnectRequest)}
        assert len(tids) == 1  # retransmissions keep the transaction id
        ann = server.received[-1]
        assert isinstance(ann, u.AnnounceRequest)
        assert ann.connection_id == 100 and ann.key == 0xABCDEF01 and ann.num_want == -1
        # within 60 s the connection id is reused; after it, a new connect is made
        now[0] = 59.0
        await client.scrape([HASHES[8], HASHES[9]])
        assert [type(r).__name__ for r in server.received[4:]] == ["ScrapeRequest"]
        now[0] = 61.0
        scraped = await client.scrape([HASHES[8]])
        assert scraped[HASHES[8]].complete == 1 and scraped[HASHES[8]].incomplete == 3
        assert [type(r).__name__ for r in server.received[5:]] == ["ConnectRequest", "ScrapeRequest"]
        last = server.received[-1]
        assert isinstance(last, u.ScrapeRequest) and last.connection_id == 101
    finally:
        await client.aclose()
        transport.close()


async def test_udp_gives_up_after_max_retries() -> None:
    server, transport, url = await _scripted(drop=10**6)
    client = UdpTrackerClient(url, retry_base=0.05, max_retries=2)
    started = time.monotonic()
    try:
        with pytest.raises(TrackerTimeout):
            await client.announce(AnnounceParams(HASHES[9], _pid(10), 1))
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 2.0  # 0.05 + 0.1 + 0.2
        assert len(server.received) == 3
    finally:
        await client.aclose()
        transport.close()


async def test_udp_cancellation_leaves_client_usable() -> None:
    server, transport, url = await _scripted(drop=1)
    client = UdpTrackerClient(url, retry_base=5.0, max_retries=1)
    try:
        task = asyncio.create_task(client.announce(AnnounceParams(HASHES[10], _pid(11), 1)))
        await until(lambda: server.received, what="the announce sent")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert client.endpoint.in_flight == 0  # the cancel left no waiter (issue 24)
        client.retry_base = 0.2
        result = await client.announce(AnnounceParams(HASHES[10], _pid(11), 1))
        assert result.interval == 900
        assert client.endpoint.in_flight == 0 and client.endpoint.sockets == 1
    finally:
        await client.aclose()
        transport.close()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1")
async def test_udp_over_ipv6_reads_18_byte_peers() -> None:
    from bitswarm.tracker import udp_codec as u

    class V6Tracker(ScriptedUdpTracker):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            req = u.decode_request(data)
            assert self.transport is not None
            if isinstance(req, u.ConnectRequest):
                self.transport.sendto(u.encode_response(u.ConnectResponse(req.transaction_id, 5)), addr)
            else:
                assert isinstance(req, u.AnnounceRequest)
                resp = u.AnnounceResponse(req.transaction_id, 60, 0, 1, (("2001:db8::1", 6881),))
                self.transport.sendto(u.encode_response(resp, ipv6=True), addr)  # BEP 15: socket family

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(V6Tracker, local_addr=("::1", 0))
    client = UdpTrackerClient(f"udp://[::1]:{transport.get_extra_info('sockname')[1]}", retry_base=0.2)
    try:
        result = await client.announce(AnnounceParams(HASHES[11], _pid(12), 1))
        assert result.peers == (("2001:db8::1", 6881),)
    finally:
        await client.aclose()
        transport.close()


async def test_http_tracker_that_never_answers_times_out() -> None:
    accepted = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = open_tracker(f"127.0.0.1:{port}", timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(TrackerTimeout):
            await client.announce(AnnounceParams(HASHES[12], _pid(13), 1))
        assert accepted.is_set() and time.monotonic() - started < 2.0
    finally:
        await client.aclose()
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


async def test_http_error_status_and_oversized_body() -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if b"big" in request.split(b"\r\n")[0]:
            body = b"d8:intervali1e5:peers" + b"600000:" + b"\0" * 600000 + b"e"
            head = b"HTTP/1.1 200 OK\r\n"
        elif b"fail" in request.split(b"\r\n")[0]:
            body, head = b"d14:failure reason6:bannede", b"HTTP/1.1 403 Forbidden\r\n"
        else:
            body, head = b"<html>oops</html>", b"HTTP/1.1 502 Bad Gateway\r\n"
        with contextlib.suppress(ConnectionError):  # the client hangs up on the oversized body
            writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    params = AnnounceParams(HASHES[13], _pid(14), 1)
    clients = []
    try:
        for path, error in (("fail/announce", TrackerError), ("x/announce", TrackerUnreachable)):
            client = open_tracker(f"http://127.0.0.1:{port}/{path}", timeout=2.0)
            clients.append(client)
            with pytest.raises(error):
                await client.announce(params)
        from bitswarm.tracker import HttpTrackerClient

        small = HttpTrackerClient(f"http://127.0.0.1:{port}/big/announce", timeout=2.0, max_body=1000)
        clients.append(small)
        with pytest.raises(TrackerProtocolError):
            await small.announce(params)
    finally:
        for client in clients:
            await client.aclose()  # type: ignore[attr-defined]
        server.close()
        await server.wait_closed()
