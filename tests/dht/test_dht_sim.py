"""Whole-network simulations: hundreds of DHTNodes in one process on a fake transport and clock."""

from __future__ import annotations

import random
import statistics
from typing import Any

from bitswarm.dht.bep42 import is_valid_node_id
from bitswarm.dht.krpc import Addr
from bitswarm.dht.node import DHTConfig, DHTNode
from bitswarm.dht.routing import distance
from bitswarm.dht.sim import SimNetwork, sim_address


def build(
    n: int, seed: int, *, config: DHTConfig | None = None, drop_rate: float = 0.0
) -> tuple[SimNetwork, list[DHTNode]]:
    net = SimNetwork(seed, drop_rate=drop_rate)
    nodes = [
        net.add_node(sim_address(i), config=DHTConfig() if config is None else _copy(config))
        for i in range(n)
    ]
    boot = sim_address(0)
    for node in nodes[1:]:
        node.bootstrap([boot])
        net.deliver()
    net.advance(10.0)  # let timeouts fire and confirmation pings settle
    return net, nodes


def _copy(c: DHTConfig) -> DHTConfig:
    return DHTConfig(**{f: getattr(c, f) for f in c.__slots__})  # type: ignore[attr-defined]


def run(net: SimNetwork, lookup: Any) -> Any:
    out: list[Any] = []
    lookup.add_done_callback(out.append)
    assert net.run_until(lambda: bool(out), 120.0), "lookup did not finish"
    return out[0]


def test_500_nodes_announce_and_find() -> None:
    net, nodes = build(500, seed=1)
    sizes = [n.routing_table_size() for n in nodes]
    assert min(sizes) >= 8 and statistics.mean(sizes) >= 15
    rng = random.Random(99)
    info_hash = rng.randbytes(20)
    announcer = nodes[123]
    res = run(net, announcer.announce(info_hash, 51413))
    assert res.stored >= 6
    # the nodes that stored it are (nearly) the globally closest ones
    stored_on = [n for n in nodes if n.stored_peers(info_hash)]
    true_closest = sorted(nodes, key=lambda n: distance(n.node_id, info_hash))[:8]
    assert len(set(stored_on) & set(true_closest)) >= 6
    want: Addr = (sim_address(123)[0], 51413)
    messages = []
    for searcher in rng.sample(nodes, 40):
        if searcher is announcer:
            continue
        r = run(net, searcher.get_peers(info_hash))
        assert want in r.peers
        messages.append(r.messages)
    # convergence: a lookup needs few queries (log-ish in network size)
    assert statistics.mean(messages) <= 25 and max(messages) <= 60
    # find_node converges on the true closest nodes
    target = rng.randbytes(20)
    r = run(net, nodes[7].find_node(target))
    truth = sorted((n for n in nodes if n is not nodes[7]), key=lambda n: distance(n.node_id, target))[:8]
    assert len({x.id for x in r.nodes} & {n.node_id for n in truth}) >= 6


def test_lookups_survive_packet_loss_and_dead_nodes() -> None:
    net, nodes = build(200, seed=2)
    info_hash = random.Random(5).randbytes(20)
    run(net, nodes[10].announce(info_hash, 6000))
    # kill 20 % of the nodes and drop 10 % of datagrams
    for i in range(150, 200):
        del net.nodes[sim_address(i)]
    net.drop_rate = 0.1
    found = 0
    for i in range(20, 40):
        r = run(net, nodes[i].get_peers(info_hash))
        found += (sim_address(10)[0], 6000) in r.peers
    assert found >= 18


def test_bep42_enforcement_in_a_network() -> None:
    cfg = DHTConfig(enforce_node_id=True)
    net, nodes = build(120, seed=3, config=cfg)
    # a node with a non-compliant id can still use the DHT, but nobody adds it to a routing table
    rogue_cfg = _copy(cfg)
    rogue_cfg.regenerate_id = False  # otherwise the IP vote would promptly fix its id (tested below)
    rogue = net.add_node(sim_address(5000), node_id=bytes(20), config=rogue_cfg)
    assert not is_valid_node_id(rogue.node_id, sim_address(5000)[0])
    run(net, rogue.bootstrap([sim_address(0)]))
    info_hash = random.Random(6).randbytes(20)
    res = run(net, nodes[1].announce(info_hash, 7777))
    assert res.stored >= 6
    r = run(net, rogue.get_peers(info_hash))
    assert (sim_address(1)[0], 7777) in r.peers
    assert all(n.tables[4].get(rogue.node_id) is None for n in nodes)
    # with re-generation on, the external-IP vote gives a misconfigured node a compliant id
    fixed = net.add_node(sim_address(6000), node_id=bytes(20), config=_copy(cfg))
    run(net, fixed.bootstrap([sim_address(0)]))
    run(net, fixed.find_node(random.Random(7).randbytes(20)))
    assert fixed.external_ip == sim_address(6000)[0]
    assert is_valid_node_id(fixed.node_id, sim_address(6000)[0])


def test_bucket_refresh_runs_on_stale_buckets() -> None:
    net, nodes = build(100, seed=4)
    before = net.delivered
    node = nodes[50]
    sent_before = node.stats.sent
    net.advance(901.0)  # 15 minutes: every bucket is stale and gets a random-id find_node
    assert node.stats.sent > sent_before
    assert net.delivered > before
    assert all(n.routing_table_size() >= 8 for n in nodes)
