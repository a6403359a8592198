"""The facade's own data handling: KRPCDict access, argument conversion, and garbage on the socket."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.bencode import decode as bdecode
from bitswarm.bencode import encode as bencode
from bitswarm.tinybt import DHT, AsyncTimeout, KRPCDict, KRPCPeer, KRPCRemoteError, SendResponse
from bitswarm.tinybt._loop import to_krpc_args, wrap
from testtools import eventually

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
            with contextlib.suppress(AssertionError):  # checked below, once the peers are shut down
                eventually(lambda: got, timeout=5)
        finally:
            client.shutdown()
    finally:
        probe.close()
        peer.shutdown()
        dht.shutdown()
    assert got == [b"hello"]


def test_a_flood_of_queries_is_bounded_by_max_handlers() -> None:
    release = threading.Event()
    calls: list[bytes] = []

    def slow(send: SendResponse, rec: KRPCDict, src: tuple[str, int]) -> None:
        calls.append(rec["a"]["n"])
        release.wait(10)
        send(id=b"s" * 20)

    server = KRPCPeer(("127.0.0.1", 0), slow, max_handlers=2)
    client = KRPCPeer(("127.0.0.1", 0))
    try:
        results = [client.send_krpc_query(server.connection, "work", id=b"c" * 20, n=i) for i in range(5)]
        # the server's own query to the client is answered (204) after the client's 5 queries reached
        # the server's socket: once the answer is in, all 5 have been seen by the server's loop
        with pytest.raises(KRPCRemoteError):
            server.send_krpc_query(client.connection, "ping", id=b"s" * 20).get(5)
        release.set()
        assert results[0].get(5)["id"] == results[1].get(5)["id"] == b"s" * 20
        for r in results[2:]:
            with pytest.raises(AsyncTimeout):
                r.get(0.3)
        assert sorted(calls) == [0, 1]
    finally:
        release.set()
        client.shutdown()
        server.shutdown()
