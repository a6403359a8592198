"""Real UDP on loopback: DHTServer networks in one asyncio loop (port 0, 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

import pytest

from bitswarm.dht.node import DHTConfig
from bitswarm.dht.server import DHTServer
from testtools import until


async def _network(n: int, tick: float = 0.1) -> list[DHTServer]:
    first = DHTServer("127.0.0.1", 0, tick_interval=tick)
    await first.start()
    servers = [first]
    for _ in range(n - 1):
        s = DHTServer("127.0.0.1", 0, bootstrap=[first.address], tick_interval=tick)
        await s.start(wait_bootstrap=10)
        servers.append(s)
    # wait (bounded) for the post-bootstrap bucket refreshes
    with contextlib.suppress(AssertionError):
        await until(lambda: not any(s.node.active_lookups for s in servers), timeout=15, interval=0.05)
    return servers


async def test_small_network_announce_lookup_and_items(tmp_path: Path) -> None:
    servers = await _network(12)
    try:
        ih = random.Random(1).randbytes(20)
        res = await servers[3].announce(ih, 4242)
        assert res.stored >= 6
        assert ("127.0.0.1", 4242) in await servers[9].lookup(ih, timeout=10)
        # implied_port: the announcer's UDP port is stored
        ih2 = random.Random(2).randbytes(20)
        await servers[4].announce(ih2, 1, implied_port=True)
        assert servers[4].address in await servers[8].lookup(ih2, timeout=10)
        nodes = await servers[5].find_node(servers[7].node_id)
        assert nodes[0].id == servers[7].node_id and nodes[0].addr == servers[7].address
    finally:
        for s in servers:
            await s.stop()


async def test_state_file_gives_a_fast_restart(tmp_path: Path) -> None:
    servers = await _network(10)
    state = tmp_path / "dht.state"
    try:
        s = DHTServer("127.0.0.1", 0, bootstrap=[servers[0].address], state_file=state)
        await s.start(wait_bootstrap=10)
        old_id = s.node_id
        size = s.node.routing_table_size()
        assert size >= 5
        await s.stop()
        assert state.exists()
        # restart with no bootstrap address at all: the saved contacts are enough
        s2 = DHTServer("127.0.0.1", 0, state_file=state, config=DHTConfig(lan=True))
        await s2.start(wait_bootstrap=10)
        assert s2.node_id == old_id
        assert s2.node.routing_table_size() >= 5
        await s2.stop()
    finally:
        for x in servers:
            await x.stop()


async def test_garbage_datagrams_get_no_reply() -> None:
    async with DHTServer("127.0.0.1", 0) as s:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []

        class P(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                got.append(data)

        transport, _ = await loop.create_datagram_endpoint(P, remote_addr=s.address)
        try:
            for junk in (b"x" * 100, b"d1:t2:aae", b"l" * 1000):
                transport.sendto(junk)
            transport.sendto(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe")
            with contextlib.suppress(AssertionError):  # asserted below
                await until(lambda: got, timeout=2)
            replies = [g for g in got if b"1:y1:q" not in g]  # (it may ping us back to confirm us)
            assert len(replies) == 1 and b"1:t2:aa" in replies[0]  # only the ping was answered
            assert s.node.stats.dropped_malformed == 3
        finally:
            transport.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_100_node_loopback_network() -> None:
    t0 = time.monotonic()
    servers = await _network(100, tick=0.2)
    try:
        assert time.monotonic() - t0 < 30
        assert sum(s.node.routing_table_size() for s in servers) / len(servers) >= 10
        rng = random.Random(3)
        ih = rng.randbytes(20)
        res = await servers[17].announce(ih, 5555)
        assert res.stored >= 6
        t1 = time.monotonic()
        for s in rng.sample(servers[20:], 20):
            assert ("127.0.0.1", 5555) in await s.lookup(ih, timeout=10)
        assert time.monotonic() - t1 < 10
    finally:
        for s in servers:
            await s.stop()
