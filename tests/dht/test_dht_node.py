"""DHTNode handlers and timers, driven through a fake transport and an injected clock."""

from __future__ import annotations

import random
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st

from bitswarm.bencode import encode as bencode
from bitswarm.dht import bep44, krpc
from bitswarm.dht.bep42 import generate_node_id, is_valid_node_id
from bitswarm.dht.krpc import Error, Query, Response
from bitswarm.dht.lookup import Item
from bitswarm.dht.node import DHTConfig, DHTNode, load_state
from bitswarm.dht.sim import SimNetwork, sim_address

ME = ("5.5.5.5", 6881)
CLIENT = ("7.7.7.7", 4000)
CID = bytes([0x77]) * 20
IH = bytes(range(20))


class Harness:
    def __init__(self, config: DHTConfig | None = None, node_id: bytes | None = None) -> None:
        self.now = 100.0
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.node = DHTNode(
            node_id or generate_node_id(ME[0], random.Random(1)),
            lambda d, a: self.sent.append((d, a)),
            lambda: self.now,
            random.Random(2),
            config or DHTConfig(),
        )

    def ask(self, method: bytes, args: dict[bytes, Any], src: tuple[str, int] = CLIENT, **kw: Any) -> Any:
        self.sent.clear()
        q = Query(b"tx", method, {b"id": CID, **args}, **kw)
        self.node.datagram_received(krpc.encode(q), src)
        replies = [krpc.decode(d) for d, a in self.sent if a == src]
        replies = [m for m in replies if not isinstance(m, Query)]
        if not replies:
            return None
        assert len(replies) == 1
        return replies[0]

    def token(self, target: bytes = IH, src: tuple[str, int] = CLIENT) -> bytes:
        r = self.ask(b"get_peers", {b"info_hash": target}, src)
        assert isinstance(r, Response)
        return r.values[b"token"]  # type: ignore[no-any-return]


def test_ping_reply_echoes_t_and_carries_ip() -> None:
    h = Harness()
    r = h.ask(b"ping", {})
    assert isinstance(r, Response) and r.t == b"tx"
    assert r.values == {b"id": h.node.node_id}
    assert r.ip == CLIENT  # BEP 42 top-level ip
    assert r.v == DHTConfig().version


def test_malformed_datagrams_get_no_reply() -> None:
    h = Harness()
    for junk in (b"", b"garbage", b"d1:t2:aae", b"li1ei2ee", b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe"[:-3]):
        h.node.datagram_received(junk, CLIENT)
    assert h.sent == []
    assert h.node.stats.dropped_malformed == 5
    # a well-formed query with bad arguments gets a short 203, an unknown method 204
    r = h.ask(b"find_node", {})
    assert isinstance(r, Error) and r.code == 203
    r = h.ask(b"frobnicate", {})
    assert isinstance(r, Error) and r.code == 204
    # ... unless it carries a target: BEP 5 forward compatibility treats it as find_node
    r = h.ask(b"frobnicate", {b"target": IH})
    assert isinstance(r, Response) and b"nodes" in r.values


def test_token_rotation_and_bad_token() -> None:
    h = Harness()
    tok = h.token()
    ok = h.ask(b"announce_peer", {b"info_hash": IH, b"port": 7000, b"token": tok})
    assert isinstance(ok, Response)
    assert h.node.stored_peers(IH) == [("7.7.7.7", 7000)]
    # a token is bound to the requester's IP and the info-hash
    bad = h.ask(b"announce_peer", {b"info_hash": IH, b"port": 7000, b"token": tok}, src=("8.8.8.8", 1))
    assert isinstance(bad, Error) and bad.code == 203
    other = bytes(20)
    bad = h.ask(b"announce_peer", {b"info_hash": other, b"port": 7000, b"token": tok})
    assert isinstance(bad, Error) and bad.code == 203
    # still valid after one rotation (5 min), invalid after two
    h.now += 301
    h.node.tick()
    assert h.node.token_valid(tok, CLIENT, IH)
    assert isinstance(h.ask(b"announce_peer", {b"info_hash": IH, b"port": 1, b"token": tok}), Response)
    h.now += 301
    h.node.tick()
    assert not h.node.token_valid(tok, CLIENT, IH)
    bad = h.ask(b"announce_peer", {b"info_hash": IH, b"port": 7000, b"token": tok})
    assert isinstance(bad, Error) and bad.code == 203 and bad.message == "Bad token"


def test_implied_port_and_get_peers_values() -> None:
    h = Harness()
    tok = h.token()
    h.ask(b"announce_peer", {b"info_hash": IH, b"port": 1, b"implied_port": 1, b"token": tok})
    assert h.node.stored_peers(IH) == [CLIENT]
    r = h.ask(b"get_peers", {b"info_hash": IH}, src=("9.9.9.9", 1))
    assert r.values[b"values"] == [krpc.encode_compact_addr(CLIENT)]
    body = krpc.parse_response(r)
    assert body.values == [CLIENT] and body.token is not None


def test_peer_storage_caps_and_expiry() -> None:
    h = Harness(DHTConfig(max_peers_per_hash=3, max_info_hashes=2, rate_limit=1e6, rate_burst=1e6))
    for i in range(5):
        src = (f"7.7.{i}.7", 4000)
        h.ask(b"announce_peer", {b"info_hash": IH, b"port": 100 + i, b"token": h.token(IH, src)}, src=src)
        h.now += 1
    assert sorted(p for _, p in h.node.stored_peers(IH)) == [102, 103, 104]  # oldest evicted
    for j in range(3):
        ih = bytes([j + 1]) * 20
        h.ask(b"announce_peer", {b"info_hash": ih, b"port": 9, b"token": h.token(ih)})
        h.now += 1
    assert len(h.node._peers) == 2
    h.now += 1801
    h.node.tick()
    assert h.node._peers == {}


def test_sample_infohashes() -> None:
    h = Harness(DHTConfig(max_samples=3))
    r = h.ask(b"sample_infohashes", {b"target": IH})
    body = krpc.parse_response(r)
    assert body.samples == [] and body.num == 0 and body.interval == 300
    hashes = [bytes([i]) * 20 for i in range(1, 6)]
    for ih in hashes:
        h.ask(b"announce_peer", {b"info_hash": ih, b"port": 9, b"token": h.token(ih)})
    body = krpc.parse_response(h.ask(b"sample_infohashes", {b"target": IH}))
    assert body.num == 5 and body.samples is not None and len(body.samples) == 3
    assert set(body.samples) <= set(hashes)


def test_read_only_node_does_not_answer_and_ro_queriers_are_not_added() -> None:
    ro = Harness(DHTConfig(read_only=True))
    assert ro.ask(b"ping", {}) is None
    # its own queries carry ro=1
    ro.node.ping(CLIENT)
    q = krpc.decode(ro.sent[-1][0])
    assert isinstance(q, Query) and q.ro and b"2:roi1e" in ro.sent[-1][0]
    h = Harness()
    r = h.ask(b"ping", {}, ro=True)
    assert isinstance(r, Response)  # serviced as usual ...
    assert h.node.tables[4].get(CID) is None  # ... but not remembered
    h.ask(b"ping", {})
    assert h.node.tables[4].get(CID) is not None  # a normal querier goes to the replacement cache
    assert not h.node.tables[4].in_main(CID)


def test_rate_limit_per_source_ip() -> None:
    h = Harness(DHTConfig(rate_limit=10.0, rate_burst=20.0))
    answered = sum(h.ask(b"ping", {}) is not None for _ in range(50))
    assert answered == 20
    assert h.node.stats.dropped_rate_limited == 30
    # another source is unaffected; time refills the bucket
    assert h.ask(b"ping", {}, src=("8.8.8.8", 1)) is not None
    h.now += 1.0
    assert sum(h.ask(b"ping", {}) is not None for _ in range(50)) == 10


def test_private_addresses_refused_outside_lan_mode() -> None:
    h = Harness(DHTConfig(lan=False))
    h.ask(b"ping", {}, src=("192.168.1.5", 4000))
    assert h.node.tables[4].get(CID) is None
    lan = Harness(DHTConfig(lan=True))
    lan.ask(b"ping", {}, src=("192.168.1.5", 4000))
    assert lan.node.tables[4].get(CID) is not None
    # auto mode: a loopback bootstrap address turns LAN mode on
    auto = Harness()
    auto.node.bootstrap([("127.0.0.1", 9)])
    assert auto.node.lan


def test_want_n6_returns_nodes6() -> None:
    h = Harness(DHTConfig(families=(4, 6)))
    rng = random.Random(4)
    for i in range(3):
        h.node.tables[4].heard(rng.randbytes(20), (f"9.{i}.1.1", 1), h.now, responded=True)
        h.node.tables[6].heard(rng.randbytes(20), (f"2001:db8:{i}::1", 1), h.now, responded=True)
    r = krpc.parse_response(h.ask(b"find_node", {b"target": IH}))
    assert len(r.nodes) == 3 and r.nodes6 == []
    r = krpc.parse_response(h.ask(b"find_node", {b"target": IH, b"want": [b"n6"]}))
    assert r.nodes == [] and len(r.nodes6) == 3
    r = krpc.parse_response(h.ask(b"get_peers", {b"info_hash": IH, b"want": [b"n4", b"n6"]}))
    assert len(r.nodes) == 3 and len(r.nodes6) == 3


def test_query_timeout_marks_node_failed_and_calls_back() -> None:
    h = Harness()
    nid = bytes([1]) * 20
    peer = ("9.9.9.9", 1)
    h.node.tables[4].heard(nid, peer, h.now, responded=True)
    got: list[object] = []
    h.node.query(peer, b"ping", {}, got.append, node_id=nid)
    h.now += 3.9
    h.node.tick()
    assert got == []
    h.now += 0.2
    h.node.tick()
    assert got == [None]
    e = h.node.tables[4].get(nid)
    assert e is not None and e.fail_count == 1
    # a response from the wrong address is ignored
    h.node.query(peer, b"ping", {}, got.append, node_id=nid)
    t = krpc.decode(h.sent[-1][0]).t
    h.node.datagram_received(krpc.encode(Response(t, {b"id": nid})), ("6.6.6.6", 1))
    assert len(got) == 1
    h.node.datagram_received(krpc.encode(Response(t, {b"id": nid})), peer)
    assert len(got) == 2 and isinstance(got[1], krpc.ResponseBody)
    assert e.fail_count == 0


def test_external_ip_vote_regenerates_bep42_id() -> None:
    h = Harness(DHTConfig(ip_vote_threshold=5), node_id=bytes(20))
    changes: list[bytes] = []
    h.node.on_node_id_change = changes.append
    my_ip = ("81.2.3.4", 6881)
    for i in range(5):
        peer = (f"9.{i}.0.1", 1)
        h.node.ping(peer)
        t = krpc.decode(h.sent[-1][0]).t
        h.node.datagram_received(krpc.encode(Response(t, {b"id": bytes([i + 1]) * 20}, ip=my_ip)), peer)
        if i < 4:
            assert changes == []
    assert h.node.external_ip == "81.2.3.4"
    assert len(changes) == 1 and h.node.node_id == changes[0]
    assert is_valid_node_id(h.node.node_id, "81.2.3.4")
    assert h.node.routing_table_size() == 5  # contacts survived the rebuild


def test_save_and_load_state() -> None:
    h = Harness()
    rng = random.Random(5)
    for i in range(10):
        h.node.tables[4].heard(rng.randbytes(20), (f"9.{i}.1.1", 1000 + i), h.now, responded=True)
    nid, contacts = load_state(h.node.save_state())
    assert nid == h.node.node_id
    assert sorted(c.addr for c in contacts) == sorted(e.addr for e in h.node.tables[4].entries())
    with pytest.raises(krpc.KRPCError):
        load_state(b"garbage")


# ----------------------------------------------------------------------------- BEP 44 storage


def _keypair() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    return key, key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_bep44_immutable_put_get() -> None:
    h = Harness()
    v = bencode(b"Hello World!")
    target = bep44.immutable_target(v)
    r = h.ask(b"get", {b"target": target})
    tok = r.values[b"token"]
    assert b"v" not in r.values
    assert isinstance(h.ask(b"put", {b"token": tok, b"v": b"Hello World!"}), Response)
    r = h.ask(b"get", {b"target": target})
    assert r.values[b"v"] == b"Hello World!"
    big = b"x" * 1000
    err = h.ask(
        b"put",
        {
            b"token": h.ask(b"get", {b"target": bep44.immutable_target(bencode(big))}).values[b"token"],
            b"v": big,
        },
    )
    assert isinstance(err, Error) and err.code == 205


def test_bep44_mutable_rules() -> None:
    h = Harness()
    key, k = _keypair()
    salt = b"salt"
    target = bep44.mutable_target(k, salt)

    def put(seq: int, value: bytes, **extra: Any) -> Any:
        tok = h.ask(b"get", {b"target": target}).values[b"token"]
        v = bencode(value)
        args = {
            b"token": tok,
            b"v": value,
            b"k": k,
            b"seq": seq,
            b"salt": salt,
            b"sig": bep44.sign(key, seq, v, salt),
            **extra,
        }
        return h.ask(b"put", args)

    assert isinstance(put(1, b"one"), Response)
    r = h.ask(b"get", {b"target": target})
    assert r.values[b"v"] == b"one" and r.values[b"seq"] == 1 and r.values[b"k"] == k
    assert bep44.verify(k, r.values[b"sig"], 1, bencode(b"one"), salt)
    # a get with seq >= stored seq omits the value but reports seq
    r = h.ask(b"get", {b"target": target, b"seq": 1})
    assert b"v" not in r.values and r.values[b"seq"] == 1
    assert isinstance(put(2, b"two"), Response)
    assert put(1, b"old").code == 302  # lower seq
    assert put(2, b"different").code == 302  # same seq, other value
    assert isinstance(put(2, b"two"), Response)  # same seq and value: refresh
    assert put(3, b"three", cas=1).code == 301  # CAS mismatch
    assert isinstance(put(3, b"three", cas=2), Response)
    # bad signature
    tok = h.ask(b"get", {b"target": target}).values[b"token"]
    bad = h.ask(b"put", {b"token": tok, b"v": b"x", b"k": k, b"seq": 9, b"salt": salt, b"sig": b"\x00" * 64})
    assert isinstance(bad, Error) and bad.code == 206
    # salt too long
    long_salt = b"s" * 65
    err = h.ask(
        b"put", {b"token": tok, b"v": b"x", b"k": k, b"seq": 9, b"salt": long_salt, b"sig": b"\x00" * 64}
    )
    assert isinstance(err, Error) and err.code == 207


def test_bep44_put_and_get_through_a_small_network() -> None:
    net = SimNetwork(11)
    nodes = [net.add_node(sim_address(i)) for i in range(60)]
    for n in nodes[1:]:
        n.bootstrap([sim_address(0)])
        net.deliver()
    key, k = _keypair()
    v = bencode({b"msg": b"hi"})
    item = Item(v, k, bep44.sign(key, 7, v, b"x"), 7, b"x")
    results: list[Any] = []
    nodes[3].put_item(item).add_done_callback(results.append)
    assert net.run_until(lambda: bool(results), 60)
    assert results[0].stored >= 6
    got: list[Any] = []
    nodes[40].get_item(item.target, salt=b"x").add_done_callback(got.append)
    assert net.run_until(lambda: bool(got), 60)
    assert got[0].item == item
    imm = Item(bencode(b"immutable data"))
    done: list[Any] = []
    nodes[5].put_item(imm).add_done_callback(done.append)
    net.run_until(lambda: bool(done), 60)
    got.clear()
    nodes[50].get_item(imm.target).add_done_callback(got.append)
    net.run_until(lambda: bool(got), 60)
    assert got[0].item == imm


_envelope = st.dictionaries(
    st.sampled_from([b"t", b"y", b"q", b"a", b"r", b"e", b"ip", b"ro", b"v"]),
    st.binary(max_size=30) | st.integers() | st.sampled_from([b"q", b"r", b"e", b"ping", b"get_peers"]),
    max_size=6,
)


@given(st.binary(max_size=200) | st.builds(bencode, _envelope))
@example(b"d1:ad2:id20:" + b"a" * 20 + b"e1:q4:ping1:t2:aa1:vi" + b"7" * 5000 + b"e1:y1:qe")  # issue 16
def test_node_survives_arbitrary_datagrams(data: bytes) -> None:
    h = Harness()
    h.node.datagram_received(data, CLIENT)  # must not raise, whatever arrives
    assert all(isinstance(krpc.decode(d), Response | Error) for d, _ in h.sent)
