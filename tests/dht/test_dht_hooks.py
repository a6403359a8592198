"""Public hooks of DHTNode used by the tinybt facade: query_hook, router, external_address and
Lookup.add_reply_callback — driven on the simulated network (no sockets, injected clock)."""

from __future__ import annotations

from typing import Any

from bitswarm.dht.krpc import ERROR_GENERIC, Addr, Error, NodeInfo, Query, Response, decode, encode
from bitswarm.dht.lookup import LookupResult
from bitswarm.dht.node import DHTConfig, DHTNode, NodeRouter
from bitswarm.dht.sim import SimNetwork, sim_address


def _net(n: int) -> tuple[SimNetwork, list[DHTNode]]:
    net = SimNetwork(7)
    nodes = [net.add_node(sim_address(i)) for i in range(n)]
    for node in nodes[1:]:
        node.bootstrap([sim_address(0)])
        net.deliver()
    net.run_until(lambda: not any(x.active_lookups for x in nodes))
    return net, nodes


def _collect(node: DHTNode, addr: Addr) -> list[Response | Error | Query]:
    out: list[Response | Error | Query] = []
    node.send = lambda data, dst: out.append(decode(data)) if dst == addr else None
    return out


def test_query_hook_answers_custom_methods_and_passes_the_rest() -> None:
    net, nodes = _net(3)
    seen: list[bytes] = []

    def hook(q: Query, src: Addr) -> bool:
        seen.append(q.method)
        if q.method == b"echo":
            nodes[0].respond(q, src, {b"echo": q.args[b"msg"]})
            return True
        if q.method == b"deny":
            nodes[0].respond_error(q, src, ERROR_GENERIC, "denied")
            return True
        return False

    nodes[0].query_hook = hook
    got: list[Any] = []
    nodes[1].query(sim_address(0), b"echo", {b"msg": b"hi"}, got.append)
    nodes[1].query(sim_address(0), b"deny", {}, got.append)
    nodes[1].ping(sim_address(0), got.append)
    net.deliver()
    assert seen == [b"echo", b"deny", b"ping"]
    assert got[1].code == ERROR_GENERIC and got[1].message == "denied"
    assert got[0].id == nodes[0].node_id  # respond() fills in our id; the body is a normal response
    assert got[2].id == nodes[0].node_id  # ping fell through to the built-in handler
    raw = _collect(nodes[0], sim_address(2))
    nodes[0].datagram_received(
        encode(Query(b"t1", b"echo", {b"id": nodes[2].node_id, b"msg": b"x"})), sim_address(2)
    )
    assert isinstance(raw[0], Response) and raw[0].values[b"echo"] == b"x"


class FixedRouter:
    """Hands out one fixed contact list and records what the node reports."""

    def __init__(self, contacts: list[NodeInfo]) -> None:
        self.contacts = contacts
        self.seen: list[tuple[NodeInfo, bool]] = []
        self.failed: list[Addr] = []

    def node_seen(self, node: NodeInfo, responded: bool) -> None:
        self.seen.append((node, responded))

    def node_failed(self, addr: Addr) -> None:
        self.failed.append(addr)

    def closest_nodes(self, target: bytes, count: int) -> list[NodeInfo]:
        return self.contacts[:count]


def test_router_decides_the_contacts_handed_out_and_lookup_seeds() -> None:
    net, nodes = _net(6)
    fake = NodeInfo(b"\x42" * 20, ("9.9.9.9", 9999))
    router = FixedRouter([fake, NodeInfo(nodes[3].node_id, sim_address(3))])
    r: NodeRouter = router
    nodes[0].router = r
    got: list[Any] = []
    nodes[1].query(sim_address(0), b"find_node", {b"target": nodes[5].node_id}, got.append)
    net.deliver()
    assert got[0].nodes == router.contacts  # exactly the router's list, in its order
    assert (NodeInfo(nodes[1].node_id, sim_address(1)), False) in router.seen  # the querier
    # a lookup from node 0 starts from the router's contacts; 9.9.9.9 never answers
    done: list[LookupResult] = []
    nodes[0].find_node(nodes[5].node_id).add_done_callback(done.append)
    assert net.run_until(lambda: bool(done))
    assert fake.addr in router.failed
    assert (NodeInfo(nodes[3].node_id, sim_address(3)), True) in router.seen
    assert done[0].nodes[0].id == nodes[5].node_id


def test_external_address_at_first_report_then_majority() -> None:
    net = SimNetwork(7)
    n = net.add_node(("50.0.0.1", 7000), config=DHTConfig(ip_vote_threshold=3))
    assert n.external_address is None

    def answer(voter: Addr, seen_as: Addr) -> None:
        t: list[Any] = []
        n.query(voter, b"ping", {}, t.append)
        query = decode(net.queue.pop()[0])
        assert isinstance(query, Query)
        n.datagram_received(encode(Response(query.t, {b"id": b"\x01" * 20}, None, seen_as)), voter)
        assert t and not isinstance(t[0], Error)

    answer(("60.0.0.1", 1), ("1.2.3.4", 7000))
    assert n.external_address == ("1.2.3.4", 7000)  # at once, from one node
    answer(("60.0.0.2", 1), ("5.6.7.8", 7001))
    assert n.external_address == ("1.2.3.4", 7000)  # a tie keeps what was handed out
    answer(("60.0.0.3", 1), ("5.6.7.8", 7001))
    assert n.external_address == ("5.6.7.8", 7001)  # refined by the majority
    answer(("60.0.0.4", 1), ("5.6.7.8", 7002))
    assert n.external_ip == "5.6.7.8"  # the BEP 42 vote settled (threshold 3)
    assert n.external_address == ("5.6.7.8", 7001)


def test_reply_callback_sees_each_response_with_its_token() -> None:
    net, nodes = _net(8)
    ih = b"\x11" * 20
    done: list[LookupResult] = []
    nodes[2].announce(ih, 4000).add_done_callback(done.append)
    assert net.run_until(lambda: bool(done))
    replies: list[tuple[Addr, Any]] = []
    done.clear()
    lk = nodes[6].get_peers(ih)
    lk.add_reply_callback(lambda a, r: replies.append((a, r)))
    lk.add_done_callback(done.append)
    assert net.run_until(lambda: bool(done))
    assert len(replies) == done[0].responses > 0
    assert all(r.token for _, r in replies)
    assert (sim_address(2)[0], 4000) in {p for _, r in replies for p in r.values}
