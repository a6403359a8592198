"""BEP 33 DHT scrapes: the bloom filter (the BEP's test vectors), the wire fields, answering from the
announces a node stores, and asking over a simulated network and real UDP on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_dht_sim import build, run
from tests.testtools import require_module, until

from bitswarm.dht.bep33 import ScrapeBloom, estimate
from bitswarm.dht.krpc import (
    GetPeersArgs,
    KRPCError,
    Query,
    Response,
    ResponseBody,
    decode,
    encode,
    parse_query,
    parse_response,
)
from bitswarm.dht.node import DHTConfig
from bitswarm.dht.server import DHTServer
from bitswarm.dht.sim import SimNetwork, sim_address

pytestmark = pytest.mark.timeout(60)

# BEP 33 "Test Vectors": 192.0.2.0-255 and 2001:DB8::-2001:DB8::3E7 give this filter, estimate 1224.9308
BEP33_VECTOR = bytes.fromhex(
    "F6C3F5EA A07FFD91 BDE89F77 7F26FB2B FF37BDB8 FB2BBAA2 FD3DDDE7 BACFFF75 EE7CCBAE"
    "FE5EEDB1 FBFAFF67 F6ABFF5E 43DDBCA3 FD9B9FFD F4FFD3E9 DFF12D1B DF59DB53 DBE9FA5B"
    "7FF3B8FD FCDE1AFB 8BEDD7BE 2F3EE71E BBBFE93B CDEEFE14 8246C2BC 5DBFF7E7 EFDCF24F"
    "D8DC7ADF FD8FFFDF DDFFF7A4 BBEEDF5C B95CE81F C7FCFF1F F4FFFFDF E5F7FDCB B7FD79B3"
    "FA1FC77B FE07FFF9 05B7B7FF C7FEFEFF E0B8370B B0CD3F5B 7F2BD93F EB4386CF DD6F7FD5"
    "BFAF2E9E BFFFFEEC D67ADBF7 C67F17EF D5D75EBA 6FFEBA7F FF47A91E B1BFBB53 E8ABFB57"
    "62ABE8FF 237279BF EFBFEEF5 FFC5FEBF DFE5ADFF ADFEE1FB 737FFFFB FD9F6AEF FEEE76B6"
    "FD8F72EF".replace(" ", "")
)


def vector_ips() -> list[str]:
    base = int(ipaddress.IPv6Address("2001:db8::"))
    return [f"192.0.2.{i}" for i in range(256)] + [str(ipaddress.IPv6Address(base + i)) for i in range(0x3E8)]


def test_bep33_test_vector() -> None:
    bloom = ScrapeBloom.of(vector_ips())
    assert len(BEP33_VECTOR) == 256
    assert bytes(bloom) == BEP33_VECTOR
    assert bloom.estimate() == pytest.approx(1224.9308, abs=1e-4)  # the BEP gives 4 decimals
    assert all(ip in bloom for ip in ("192.0.2.7", "2001:db8::3e7"))


def test_bloom_union_and_bounds() -> None:
    ips = vector_ips()
    a, b = ScrapeBloom.of(ips[:600]), ScrapeBloom.of(ips[600:])
    a.update(b)
    assert bytes(a) == BEP33_VECTOR  # the union of two filters is the filter of the union
    assert round(estimate(bytes(256))) == 0  # empty
    assert estimate(b"\xff" * 256) > 7000  # full: saturated, not an error
    assert "::ffff:192.0.2.1" in ScrapeBloom.of(["192.0.2.1"])  # a mapped address counts as IPv4
    with pytest.raises(KRPCError):
        ScrapeBloom(b"\x00" * 255)


@given(st.sets(st.ip_addresses(v=4).map(str), min_size=1, max_size=300))
def test_estimate_is_close_for_small_sets(ips: set[str]) -> None:
    est = ScrapeBloom.of(ips).estimate()
    assert abs(est - len(ips)) <= max(3, 0.15 * len(ips))


def test_wire_fields_round_trip_and_bad_filters() -> None:
    q = Query(b"aa", b"get_peers", GetPeersArgs(b"i" * 20, b"h" * 20, scrape=True, noseed=True).to_args())
    args = parse_query(decode(encode(q)))  # type: ignore[arg-type]
    assert isinstance(args, GetPeersArgs) and args.scrape and args.noseed
    body = ResponseBody(b"n" * 20, bf_seeds=bytes(range(256)), bf_peers=b"\x01" * 256)
    back = parse_response(decode(encode(Response(b"aa", body.to_values()))))  # type: ignore[arg-type]
    assert back.bf_seeds == bytes(range(256)) and back.bf_peers == b"\x01" * 256
    with pytest.raises(KRPCError, match="BFsd"):
        parse_response(Response(b"aa", {b"id": b"n" * 20, b"BFsd": b"short", b"BFpe": b"\x00" * 256}))


def test_sim_network_scrape_counts_seeds_and_peers() -> None:
    """40 announcers (15 seeds, 25 downloaders) on a 60-node network; another node's scrape
    estimates both counts from the union of the closest nodes' filters."""
    net, nodes = build(60, seed=3)
    info_hash = random.Random(7).randbytes(20)
    for i, node in enumerate(nodes[10:50]):
        res = run(net, node.announce(info_hash, 6000 + i, seed=i < 15))
        assert res.stored >= 1
    res = run(net, nodes[55].scrape(info_hash))
    assert res.scrapes >= 1
    assert abs(res.seeds_estimate - 15) <= 2 and abs(res.peers_estimate - 25) <= 3
    plain = run(net, nodes[56].get_peers(info_hash))
    assert plain.bf_seeds is None and plain.scrapes == 0  # no scrape=1, no filters


def test_node_answers_from_its_storage_noseed_and_only_when_asked() -> None:
    net = SimNetwork(1)
    server = net.add_node(sim_address(0), config=DHTConfig())
    asker = net.add_node(sim_address(1))
    info_hash = b"\x11" * 20
    now = net.now
    server._store_peer(info_hash, ("30.0.0.1", 1), ("30.0.0.1", 1), now, seed=True)
    server._store_peer(info_hash, ("30.0.0.2", 2), ("30.0.0.2", 2), now)
    server._store_peer(info_hash, ("30.0.0.2", 3), ("30.0.0.2", 3), now)
    replies: list[Any] = []
    for args in ({b"scrape": 1}, {b"scrape": 1, b"noseed": 1}, {}):
        asker.query(sim_address(0), b"get_peers", {b"info_hash": info_hash, **args}, replies.append)
        net.deliver()
    full, noseed, plain = replies
    assert ScrapeBloom(full.bf_seeds).estimate() == pytest.approx(1, abs=0.1)
    assert "30.0.0.1" in ScrapeBloom(full.bf_seeds) and "30.0.0.2" in ScrapeBloom(full.bf_peers)
    assert round(ScrapeBloom(full.bf_peers).estimate()) == 1  # one IP, two ports
    assert len(full.values) == 3
    assert {h for h, _ in noseed.values} == {"30.0.0.2"}
    assert plain.bf_seeds is None and plain.bf_peers is None
    replies.clear()
    asker.query(sim_address(0), b"get_peers", {b"info_hash": b"\x22" * 20, b"scrape": 1}, replies.append)
    net.deliver()
    assert replies[0].bf_seeds is None  # nothing stored: no filters


async def test_loopback_udp_scrape() -> None:
    """Four real DHTServers on 127.0.0.1: one announces as a seed, then as a downloader (BEP 33: one
    entry per IP, its status updated); a fourth scrapes each time."""
    servers = [DHTServer("127.0.0.1", 0, config=DHTConfig(lan=True)) for _ in range(4)]
    for s in servers:
        await s.start()
    try:
        boot = servers[0].address
        for s in servers[1:]:
            await s.bootstrap([boot], timeout=10)
        info_hash = b"\x42" * 20
        assert (await servers[1].announce(info_hash, 7001, seed=True, timeout=10)).stored >= 1
        res = await servers[3].scrape(info_hash, timeout=10)
        assert res.scrapes >= 1 and (res.seeds_estimate, res.peers_estimate) == (1, 0)
        assert ("127.0.0.1", 7001) in res.peers
        assert (await servers[1].announce(info_hash, 7001, timeout=10)).stored >= 1
        res = await servers[3].scrape(info_hash, timeout=10)
        assert (res.seeds_estimate, res.peers_estimate) == (0, 1)
    finally:
        for s in servers:
            await s.stop()


async def _query(server: DHTServer, addr: tuple[str, int], method: bytes, args: dict[bytes, Any]) -> Any:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def done(reply: Any) -> None:
        if not fut.done():
            fut.set_result(reply)

    server.node.query(addr, method, args, done)
    return await asyncio.wait_for(fut, 10)


async def test_libtorrent_answers_and_asks_scrapes() -> None:
    """libtorrent's DHT (its Python binding has no scrape call, so we ask its node directly): it
    stores our ``seed=1`` announce and answers ``scrape=1`` with filters holding us as a seed; its own
    announce with the seed flag (``dht_announce`` flags=1) is counted as a seed by our scrape."""
    lt = require_module("libtorrent", "pip install libtorrent")
    ours = [DHTServer("127.0.0.1", 0, config=DHTConfig(lan=True)) for _ in range(2)]
    for s in ours:
        await s.start()
    ses = None
    try:
        await ours[1].bootstrap([ours[0].address], timeout=10)
        quiet = ("enable_lsd", "enable_upnp", "enable_natpmp", "dht_enforce_node_id")
        loopback_ok = ("dht_restrict_routing_ips", "dht_restrict_search_ips", "dht_prefer_verified_node_ids")
        settings: dict[str, Any] = dict.fromkeys(quiet + loopback_ok, False)
        settings.update(
            listen_interfaces="127.0.0.1:0",
            enable_dht=True,
            dht_bootstrap_nodes=f"127.0.0.1:{ours[0].address[1]}",
            alert_mask=lt.alert_category.dht,
        )
        ses = lt.session(settings)
        lt_addr = ("127.0.0.1", ses.listen_port())
        # ask: libtorrent stores our seed announce and answers a scrape
        ih = b"\x51" * 20
        first = await _query(ours[1], lt_addr, b"get_peers", {b"info_hash": ih})
        assert isinstance(first, ResponseBody) and first.token is not None
        args = {b"info_hash": ih, b"port": 9001, b"token": first.token, b"seed": 1}
        assert isinstance(await _query(ours[1], lt_addr, b"announce_peer", args), ResponseBody)
        scraped = await _query(ours[1], lt_addr, b"get_peers", {b"info_hash": ih, b"scrape": 1})
        assert isinstance(scraped, ResponseBody) and scraped.bf_seeds is not None
        assert scraped.bf_peers is not None
        assert "127.0.0.1" in ScrapeBloom(scraped.bf_seeds) and round(estimate(scraped.bf_seeds)) == 1
        assert round(estimate(scraped.bf_peers)) == 0
        # answer: libtorrent announces as a seed to our nodes; our scrape counts it
        ih2 = b"\x52" * 20
        ses.dht_announce(lt.sha1_hash(ih2), 9002, 1)  # 1: dht::announce::seed
        await until(lambda: any(s.node.stored_peers(ih2) for s in ours), timeout=20, interval=0.05,
                    what="libtorrent's announce arrived")  # fmt: skip
        res = await ours[1].scrape(ih2, timeout=10)
        assert (res.seeds_estimate, res.peers_estimate) == (1, 0)
    finally:
        for s in ours:
            await s.stop()
        del ses
