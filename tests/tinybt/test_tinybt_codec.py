"""The facade's own data handling: KRPCDict access, argument conversion, and garbage on the socket."""

from __future__ import annotations

import socket
import time

from hypothesis import given
from hypothesis import strategies as st

from bitswarm.bencode import decode as bdecode
from bitswarm.bencode import encode as bencode
from bitswarm.tinybt import DHT, KRPCDict, KRPCPeer
from bitswarm.tinybt._loop import to_krpc_args, wrap

names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
leaves = st.integers(-(2**62), 2**62) | st.binary(max_size=20) | st.text(max_size=10)
values = st.recursive(
    leaves, lambda v: st.lists(v, max_size=3) | st.dictionaries(names, v, max_size=3), max_leaves=8
)


def _as_bytes(v: object) -> object:
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, list):
        return [_as_bytes(x) for x in v]
    if isinstance(v, dict):
        return {k.encode(): _as_bytes(x) for k, x in v.items()}
    return v


@given(st.dictionaries(names, values, max_size=5))
def test_kwargs_round_trip_and_str_keys(kwargs: dict[str, object]) -> None:
    args = to_krpc_args(kwargs)
    rec = wrap(bdecode(bencode(args)))
    assert isinstance(rec, KRPCDict)
    for k, v in kwargs.items():
        assert k in rec and k.encode() in rec
        assert rec[k] == rec[k.encode()] == rec.get(k) == _as_bytes(v)
    assert rec.get("not-there") is None and "not-there" not in rec


def test_garbage_datagrams_get_no_reply_and_break_nothing() -> None:
    got: list[bytes] = []
    peer = KRPCPeer(("127.0.0.1", 0), lambda send, rec, src: got.append(rec["q"]))
    dht = DHT(("127.0.0.1", 0), bootstrap_connection=("127.0.0.1", 0))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    probe.settimeout(0.3)
    try:
        for target in (peer.connection, dht.listen_connection):
            for junk in (b"", b"garbage", b"d1:t2:aae", b"li1ei2ee", b"d1:y1:qe", b"\xff" * 300):
                probe.sendto(junk, target)
            try:
                data = probe.recv(2048)
            except TimeoutError:
                data = b""
            assert data == b""
        client = KRPCPeer(("127.0.0.1", 0))
        try:
            assert (
                client.send_krpc_query(dht.listen_connection, "ping", id=b"c" * 20).get(5)["id"]
                == dht.node_id
            )
            client.send_krpc_query(peer.connection, "hello", id=b"c" * 20)
            end = time.monotonic() + 5
            while not got and time.monotonic() < end:
                time.sleep(0.01)
        finally:
            client.shutdown()
    finally:
        probe.close()
        peer.shutdown()
        dht.shutdown()
    assert got == [b"hello"]
