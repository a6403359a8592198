"""Redis-backed swarm state: two tracker instances on one real redis-server share a swarm."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tracker_server_testlib import (
    UdpClient,
    base_url,
    http_announce,
    http_scrape,
    req,
    running,
    tracker_process,
)

from bitswarm.tracker import udp_codec as udp
from bitswarm.tracker._common import Event
from bitswarm.tracker.http_codec import Peer, ScrapeResponse, ScrapeStats
from bitswarm.tracker.server import TrackerServer
from testtools import eventually, require_tool

pytestmark = pytest.mark.timeout(30)
IH = os.urandom(20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _redis_server(tmp_path: Path, port: int = 0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    exe = require_tool("redis-server")
    port = port or _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def pong() -> bool:
            if proc.poll() is not None:
                pytest.fail("redis-server exited")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        try:
            eventually(pong, timeout=10, interval=0.05)
        except AssertionError:
            pytest.fail("redis-server did not answer")
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with _redis_server(tmp_path) as (url, _):
        yield url


async def _udp_seeder_sees(server: TrackerServer, info_hash: bytes) -> set[int]:
    """The ports in the reply to a UDP seeder's ``started`` announce (port 30000) to ``server``."""
    client_udp = await UdpClient.open(server.udp_addresses[0])
    try:
        cid = await client_udp.connect()
        client_udp.send(
            udp.encode_request(
                udp.AnnounceRequest(cid, 5, info_hash, b"u" * 20, 0, 0, 0, Event.STARTED, 1, 30000)
            )
        )
        resp = udp.decode_response(await client_udp.recv())
        assert isinstance(resp, udp.AnnounceResponse)
        return {p for _, p in resp.peers}
    finally:
        client_udp.close()


async def test_two_instances_share_one_swarm(redis_url: str) -> None:
    """``redis_sync=0``: every announce goes to Redis, so the instances agree at once."""
    async with (
        running(redis=redis_url, redis_sync=0, udp=(("127.0.0.1", 0),), http=(("127.0.0.1", 0),)) as one,
        running(redis=redis_url, redis_sync=0, udp=(("127.0.0.1", 0),), http=(("127.0.0.1", 0),)) as two,
        httpx.AsyncClient() as client,
    ):
        await http_announce(client, base_url(one) + "/announce", req(IH, 1, left=0, event=Event.COMPLETED))
        seen = await http_announce(client, base_url(two) + "/announce", req(IH, 2))
        assert seen.peers == (Peer("127.0.0.1", 10001),) and (seen.complete, seen.incomplete) == (1, 1)
        full = await http_announce(client, base_url(two) + "/announce", req(IH, 3, compact=False))
        assert set(full.peers) == {
            Peer("127.0.0.1", 10001, b"-BS0001-" + (1).to_bytes(12, "big")),
            Peer("127.0.0.1", 10002, b"-BS0001-" + (2).to_bytes(12, "big")),
        }
        # UDP on instance one sees the HTTP peers of instance two
        assert await _udp_seeder_sees(one, IH) == {10002, 10003}  # a seeder gets no seeders
        await http_announce(client, base_url(one) + "/announce", req(IH, 3, event=Event.STOPPED))
        scraped = await http_scrape(client, base_url(one) + "/scrape", [IH])
        assert scraped == ScrapeResponse({IH: ScrapeStats(2, 1, 1)})
        stats = (await client.get(base_url(two) + "/stats")).json()
        assert (stats["torrents"], stats["seeders"], stats["leechers"]) == (1, 2, 1)


async def test_concurrent_http_announces_share_script_calls(redis_url: str) -> None:
    """Announces that arrive together ride in one Lua call each batch, and each is still recorded
    and answered as a lone announce would be."""
    ih = os.urandom(20)
    async with (
        running(redis=redis_url, redis_sync=0, udp=(), http=(("127.0.0.1", 0),)) as server,
        httpx.AsyncClient(limits=httpx.Limits(max_connections=40)) as client,
    ):
        url = base_url(server) + "/announce"
        store = server.store
        before = store.batches
        requests = [req(ih, n, left=n % 2) for n in range(40)]
        answers = await asyncio.gather(*(http_announce(client, url, r) for r in requests))
        assert store.batched >= 40
        assert store.batches - before < 40  # some announces shared a round trip
        assert all(a.complete + a.incomplete >= 1 for a in answers)
        last = await http_announce(client, url, req(ih, 99))
        assert (last.complete, last.incomplete) == (20, 21)
        assert len(last.peers) == min(40, 50)


@pytest.mark.parametrize("mmsg", [True, False], ids=["worker", "asyncio"])
async def test_udp_worker_batches_over_redis(redis_url: str, mmsg: bool) -> None:
    """Over Redis the UDP socket is served by a recvmmsg worker thread: a burst of announces is
    answered with one script call per received batch; a scrape is answered from the thread too.
    Without recvmmsg the asyncio protocol answers the same."""
    ih = os.urandom(20)
    extra = {"udp_mmsg": mmsg}
    udp_only = {"udp": (("127.0.0.1", 0),), "http": (), "extra": extra}
    async with running(redis=redis_url, redis_sync=0, **udp_only) as server:
        store = server.store
        client = await UdpClient.open(server.udp_addresses[0])
        try:
            cid = await client.connect()
            before = store.batches
            for n in range(60):
                ann = udp.AnnounceRequest(
                    cid, 100 + n, ih, b"p" * 20, 0, n % 3, 0, Event.NONE, 0, 20000 + n, num_want=10
                )
                client.send(udp.encode_request(ann))
            replies = [udp.decode_response(await client.recv()) for _ in range(60)]
            assert all(isinstance(r, udp.AnnounceResponse) for r in replies)
            assert {r.transaction_id for r in replies} == set(range(100, 160))
            assert store.batches - before < 60 or not mmsg
            assert all(len(r.peers) == 10 for r in replies[20:])  # numwant 10 of the swarm so far
            client.send(udp.encode_request(udp.ScrapeRequest(cid, 5, (ih,))))
            scraped = udp.decode_response(await client.recv(), expecting=udp.Action.SCRAPE)
            assert isinstance(scraped, udp.ScrapeResponse)
            assert [(s.seeders, s.completed, s.leechers) for s in scraped.files] == [(20, 0, 40)]
        finally:
            client.close()


async def test_batch_sweeps_like_lone_announces(redis_url: str) -> None:
    """Each announce of a batch expires up to 64 old members per key, as alone: two announces of one
    swarm in one batch clear 100 expired leechers (64 + 36); a swept-clean key is not swept twice."""
    import redis as redis_sync

    from bitswarm.tracker.server.redis_state import RedisStore

    ih = os.urandom(20)
    store = RedisStore(redis_url, ttl=600)
    await store.connect()
    direct = redis_sync.Redis.from_url(redis_url)
    try:
        key = f"bs:{ih.hex()}:l4"
        direct.zadd(key, {(0x0A000000 + i).to_bytes(4, "big") + b"\x1a\xe1": 1.0 for i in range(100)})
        me, you = b"\x7f\0\0\1\x27\x10", b"\x7f\0\0\2\x27\x10"
        out = await asyncio.to_thread(
            store.announce_batch,
            [(ih, me, b"a" * 20, False, 2, 0, False), (ih, you, b"b" * 20, False, 2, 5, False)],
        )
        assert direct.zcard(key) == 2
        assert out[1][:2] == (0, 2) and out[1][2] == me
    finally:
        direct.close()
        await store.close()


async def test_counts_span_both_address_families(redis_url: str) -> None:
    """BEP 7: an IPv4 announce counts the swarm's IPv6 peers too (and the other way round), whether
    or not the other family's sets exist; peers come only from the announcer's own family."""
    from bitswarm.tracker.server.redis_state import RedisStore

    ih = os.urandom(20)
    store = RedisStore(redis_url, ttl=600)
    await store.connect()
    try:
        v4, v6 = b"\x7f\0\0\1\x27\x10", b"\0" * 15 + b"\1\x27\x11"
        first = await asyncio.to_thread(store.announce_batch, [(ih, v4, b"a" * 20, False, 2, 5, False)])
        assert first == [(0, 1, b"")]
        both = await asyncio.to_thread(
            store.announce_batch,
            [(ih, v6, b"b" * 20, True, 2, 5, False), (ih, v4, b"a" * 20, False, 2, 5, False)],
        )
        assert both == [(1, 1, b""), (1, 1, b"")]
    finally:
        await store.close()


# ------------------------------------------------------------------------------------ cluster mode
# (the default, ``redis_sync`` > 0): each instance answers from memory and syncs in the background

SYNC = 0.05


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll ``check`` until it holds (bounded by ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_cluster_instances_see_each_others_peers_within_the_sync_bound(redis_url: str) -> None:
    ih = os.urandom(20)
    async with (
        running(redis=redis_url, redis_sync=SYNC, udp=(("127.0.0.1", 0),), http=(("127.0.0.1", 0),)) as one,
        running(redis=redis_url, redis_sync=SYNC, udp=(("127.0.0.1", 0),), http=(("127.0.0.1", 0),)) as two,
        httpx.AsyncClient() as client,
    ):
        assert one.sync is not None and two.sync is not None
        url1, url2 = base_url(one) + "/announce", base_url(two) + "/announce"
        await http_announce(client, url1, req(ih, 1, left=0, event=Event.COMPLETED))
        start = asyncio.get_running_loop().time()

        async def two_sees_one() -> bool:
            seen = await http_announce(client, url2, req(ih, 2))
            return Peer("127.0.0.1", 10001) in seen.peers

        await _until(two_sees_one)
        # documented bound: about two sync intervals plus round trips (generous for a loaded box)
        assert asyncio.get_running_loop().time() - start < 10
        full = await http_announce(client, url2, req(ih, 2, compact=False))
        assert Peer("127.0.0.1", 10001, b"-BS0001-" + (1).to_bytes(12, "big")) in full.peers

        async def counts_merged() -> bool:
            a = await http_scrape(client, base_url(one) + "/scrape", [ih])
            b = await http_scrape(client, base_url(two) + "/scrape", [ih])
            return bool(a == b == ScrapeResponse({ih: ScrapeStats(1, 1, 1)}))

        await _until(counts_merged)
        # UDP on instance one answers with instance two's HTTP leecher
        assert await _udp_seeder_sees(one, ih) == {10002}  # a seeder gets no seeders
        # a stop at instance two reaches instance one
        await http_announce(client, url2, req(ih, 2, event=Event.STOPPED))

        async def one_dropped_it() -> bool:
            stats = (await client.get(base_url(one) + "/stats")).json()
            return bool((stats["seeders"], stats["leechers"]) == (2, 0))

        await _until(one_dropped_it)


async def test_cluster_announces_are_answered_from_memory_while_redis_is_down(tmp_path: Path) -> None:
    """Redis down: announces are answered from memory, and the changes made meanwhile reach the
    other instances once Redis is back."""
    ih = os.urandom(20)
    with _redis_server(tmp_path) as (url, proc):
        async with (
            running(redis=url, redis_sync=SYNC, udp=(), http=(("127.0.0.1", 0),)) as one,
            httpx.AsyncClient() as client,
        ):
            proc.terminate()
            proc.wait(5)
            announce = base_url(one) + "/announce"
            await http_announce(client, announce, req(ih, 1))
            seen = await http_announce(client, announce, req(ih, 2))
            assert seen.peers == (Peer("127.0.0.1", 10001),) and seen.incomplete == 2
            assert one.sync is not None
            failed = one.sync.failures
            await _until(lambda: _failed_syncs(one, failed + 2))  # one sync began after the announces
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            with _redis_server(tmp_path, port) as (again, _):
                async with running(redis=again, redis_sync=SYNC, udp=(), http=(("127.0.0.1", 0),)) as two:

                    async def two_sees_them() -> bool:
                        seen = await http_announce(client, base_url(two) + "/announce", req(ih, 3))
                        return seen.incomplete == 3

                    await _until(two_sees_them)


async def _failed_syncs(server: TrackerServer, count: int) -> bool:
    await asyncio.sleep(0)
    return bool(server.sync is not None and server.sync.failures >= count)


async def test_a_new_instance_loads_the_cluster_state_and_a_stopping_one_publishes(redis_url: str) -> None:
    """Instance one syncs only on stop (a long interval): what it saw reaches Redis then; a new
    instance replays the cluster's log before it serves, so its first answer has those peers."""
    ih = os.urandom(20)
    async with httpx.AsyncClient() as client:
        async with running(redis=redis_url, redis_sync=30, udp=(), http=(("127.0.0.1", 0),)) as one:
            url = base_url(one) + "/announce"
            await http_announce(client, url, req(ih, 1, left=0, event=Event.COMPLETED))
            await http_announce(client, url, req(ih, 2))
        async with running(redis=redis_url, redis_sync=30, udp=(), http=(("127.0.0.1", 0),)) as fresh:
            seen = await http_announce(client, base_url(fresh) + "/announce", req(ih, 3))
            assert set(seen.peers) == {Peer("127.0.0.1", 10001), Peer("127.0.0.1", 10002)}
            scraped = await http_scrape(client, base_url(fresh) + "/scrape", [ih])
            assert scraped == ScrapeResponse({ih: ScrapeStats(1, 1, 2)})


async def test_cli_instance_killed_with_sigkill_leaves_its_published_peers_to_a_restarted_one(
    redis_url: str, tmp_path: Path
) -> None:
    """``bitswarm tracker --redis URL --redis-sync 0.05``: once another instance sees the 20 peers
    (published within the sync bound), a SIGKILL loses none of them: the restarted process loads
    them from Redis before it answers."""
    ih = os.urandom(20)
    flags = ("--redis", redis_url, "--redis-sync", str(SYNC))
    async with (
        running(redis=redis_url, redis_sync=SYNC, udp=(), http=(("127.0.0.1", 0),)) as watcher,
        httpx.AsyncClient() as client,
    ):
        with tracker_process(tmp_path / "a.sqlite", *flags) as (proc, base):
            for n in range(20):
                await http_announce(client, base + "/announce", req(ih, n))

            async def published() -> bool:
                return bool(watcher.store.scrape(ih) == (0, 0, 20))

            await _until(published)
            proc.kill()
            proc.wait(10)
        with tracker_process(tmp_path / "b.sqlite", *flags) as (_, base):
            seen = await http_announce(client, base + "/announce", req(ih, 99, numwant=50))
            assert (seen.complete, seen.incomplete) == (0, 21) and len(seen.peers) == 20
