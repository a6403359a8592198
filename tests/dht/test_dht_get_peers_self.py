"""get_peers never hands the requester its own endpoint (issue 18).

A libtorrent seeder that gets its own address back dials itself, detects the self-connection and bans
the peer entry; with its default one-connection-per-IP policy that bans the whole IP (on a LAN or on
loopback: every bitswarm peer). Other peers on the same IP (other ports) are still returned.
"""

from __future__ import annotations

import random

from bitswarm.dht import krpc
from bitswarm.dht.bep42 import generate_node_id
from bitswarm.dht.krpc import Addr, Query, Response, decode_compact_addr
from bitswarm.dht.node import DHTConfig, DHTNode

IH = bytes(range(20))
SEEDER = ("127.0.0.1", 6881)  # a libtorrent seeder: DHT on UDP 6881, BitTorrent on TCP 6881
OTHER = ("127.0.0.1", 7000)  # another peer on the same IP


class _Node:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Addr]] = []
        self.node = DHTNode(
            generate_node_id("127.0.0.1", random.Random(1)),
            lambda d, a: self.sent.append((d, a)),
            lambda: 100.0,
            random.Random(2),
            DHTConfig(lan=True),
        )

    def ask(self, src: Addr, method: bytes, args: dict[bytes, object], cid: bytes) -> Response:
        self.sent.clear()
        self.node.datagram_received(krpc.encode(Query(b"tx", method, {b"id": cid, **args})), src)
        replies = [krpc.decode(d) for d, a in self.sent if a == src]
        resp = [m for m in replies if isinstance(m, Response)]
        assert len(resp) == 1, replies
        return resp[0]

    def values(self, src: Addr, cid: bytes) -> set[Addr]:
        r = self.ask(src, b"get_peers", {b"info_hash": IH}, cid)
        return {decode_compact_addr(v) for v in r.values.get(b"values", [])}

    def announce(self, src: Addr, cid: bytes, port: int, implied: bool = False) -> None:
        token = self.ask(src, b"get_peers", {b"info_hash": IH}, cid).values[b"token"]
        args: dict[bytes, object] = {b"info_hash": IH, b"port": port, b"token": token}
        if implied:
            args[b"implied_port"] = 1
        self.ask(src, b"announce_peer", args, cid)


def test_requester_is_not_told_its_own_endpoint() -> None:
    n = _Node()
    n.announce(SEEDER, b"\x01" * 20, 1, implied=True)  # stores 127.0.0.1:6881
    n.announce(OTHER, b"\x02" * 20, 7000)
    assert set(n.node.stored_peers(IH)) == {SEEDER, OTHER}
    # the seeder asks: it gets the other peer on its IP, never itself
    assert n.values(SEEDER, b"\x01" * 20) == {OTHER}
    assert n.values(OTHER, b"\x02" * 20) == {SEEDER}
    # a third querier gets both
    assert n.values(("127.0.0.1", 9999), b"\x03" * 20) == {SEEDER, OTHER}


def test_announcer_with_another_tcp_port_is_not_told_its_own_announce() -> None:
    """DHT on UDP 6881, BitTorrent on TCP 51413: the stored peer is the one this requester announced."""
    n = _Node()
    n.announce(SEEDER, b"\x01" * 20, 51413)
    n.announce(OTHER, b"\x02" * 20, 7000)
    assert n.values(SEEDER, b"\x01" * 20) == {OTHER}
    assert ("127.0.0.1", 51413) in n.values(OTHER, b"\x02" * 20)
