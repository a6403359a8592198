"""BEP 52 hash exchange messages on the wire: hash request (21), hashes (22), hash reject (23)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire_link import connected_pair, feed

from bitswarm.wire import (
    MAX_HASH_COUNT,
    Handshake,
    HandshakeHeader,
    Hashes,
    HashReject,
    HashRequest,
    HaveNone,
    LocalWireError,
    PeerConnection,
    Reserved,
    State,
    WireProtocolError,
    uncle_count,
)

ROOT = bytes(range(32))


def frame(mid: int, payload: bytes) -> bytes:
    return struct.pack(">IB", 1 + len(payload), mid) + payload


def fields(root: bytes = ROOT, base: int = 0, index: int = 0, length: int = 2, proofs: int = 0) -> bytes:
    return root + struct.pack(">IIII", base, index, length, proofs)


def test_byte_layout_matches_bep52() -> None:
    a, _ = connected_pair()
    a.send(HaveNone())
    wire = a.send(HashRequest(ROOT, 1, 512, 512, 10))
    assert wire == struct.pack(">IB", 49, 21) + ROOT + struct.pack(">IIII", 1, 512, 512, 10)
    assert a.send(HashReject(ROOT, 1, 512, 512, 10))[4] == 23
    hashes = b"h" * 32 * (4 + 2)  # 4 base hashes; 3 proof layers, the first log2(4)-1 = 1 omitted
    wire = a.send(Hashes(ROOT, 0, 4, 4, 3, hashes))
    assert wire == struct.pack(">IB", 49 + len(hashes), 22) + fields(ROOT, 0, 4, 4, 3) + hashes


@pytest.mark.parametrize(
    ("length", "proofs", "uncles"),
    [
        (2, 0, 0),
        (2, 1, 1),
        (512, 8, 0),
        (512, 9, 1),
        (512, 15, 7),
        (4, 1, 0),
        (4, 2, 1),
        (1, 0, 1),
        (3, 2, 1),
    ],
)
def test_uncle_count(length: int, proofs: int, uncles: int) -> None:
    assert uncle_count(length, proofs) == uncles


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(1, 64),
    st.integers(0, 20),
    st.integers(1, 60),
)
def test_round_trip_split_anywhere(
    root: bytes, base: int, index: int, length: int, proofs: int, step: int
) -> None:
    a, b = connected_pair()
    n = length + uncle_count(length, proofs)
    msgs = [
        HashRequest(root, base, index, length, proofs),
        Hashes(root, base, index, length, proofs, bytes(i % 256 for i in range(32 * n))),
        HashReject(root, base, index, length, proofs),
    ]
    wire = a.send(HaveNone()) + b"".join(a.send(m) for m in msgs)
    assert feed(b, wire, step) == [HaveNone(), *msgs]
    got = msgs[1]
    assert isinstance(got, Hashes) and len(got.hash_list()) == n and got.request == msgs[0]


@pytest.mark.parametrize(
    ("mid", "payload", "match"),
    [
        (21, fields()[:-1], "length 48"),  # one byte short
        (21, fields() + b"x", "length 50"),
        (23, b"", "length 1"),
        (21, fields(length=0), "hash count 0"),
        (23, fields(length=MAX_HASH_COUNT + 1), "hash count"),
        (21, fields(proofs=64), "proof layers"),
        (22, fields(), "hashes message of length 49"),  # no hashes at all
        (22, fields() + b"x" * 33, "hashes message"),  # not whole hashes
        (22, fields(length=2, proofs=0) + b"x" * 32, "carries 1 hashes"),
        (22, fields(length=2, proofs=3) + b"x" * 64, "header says 2 \\+ 3 uncles"),
        (22, fields(length=0) + b"x" * 64, "hash count 0"),
    ],
)
def test_garbage_is_a_typed_error(mid: int, payload: bytes, match: str) -> None:
    _, b = connected_pair()
    feed(b, frame(15, b""))  # have none (fast extension is on)
    with pytest.raises(WireProtocolError, match=match):
        feed(b, frame(mid, payload))
    assert b.their_state is State.ERROR


def test_huge_hashes_length_fails_before_the_body_arrives() -> None:
    _, b = connected_pair()
    with pytest.raises(WireProtocolError, match="hashes message"):
        feed(b, struct.pack(">IB", 50_000_000, 22))


@pytest.mark.parametrize(
    "bad",
    [
        HashRequest(b"short", 0, 0, 2, 0),
        HashRequest(ROOT, -1, 0, 2, 0),
        HashRequest(ROOT, 0, 0, 0, 0),
        HashReject(ROOT, 0, 0, 2, 99),
        Hashes(ROOT, 0, 0, 2, 0, b"x" * 32),
        Hashes(ROOT, 0, 0, 2, 2, b"x" * 64),
    ],
)
def test_illegal_sends_are_local_errors(bad: HashRequest | HashReject | Hashes) -> None:
    a, _ = connected_pair()
    a.send(HaveNone())
    with pytest.raises(LocalWireError):
        a.send(bad)


def test_hash_messages_end_the_bitfield_window() -> None:
    # like any regular message: a bitfield after a hash request is allowed only by the aria2 rule
    a, b = connected_pair()
    feed(b, a.send(HashRequest(ROOT, 0, 0, 2, 0)))
    assert b.their_state is State.ESTABLISHED
    with pytest.raises(WireProtocolError):
        feed(b, frame(14, b""))  # have all after a regular message


def test_upgrade_path_lets_the_responder_answer_with_the_v2_hash() -> None:
    """BEP 52: an initiator that sends a hybrid torrent's v1 hash with the v2 bit may get the
    (truncated) v2 hash back; only that hash, and only when the codec was told it."""
    v1, v2 = b"1" * 20, b"2" * 20
    bits = Reserved.make(fast=True, extension_protocol=True, v2=True)
    for upgrade, ok in ((v2, True), (None, False)):
        a, b = PeerConnection(), PeerConnection()
        a.upgrade_info_hash = upgrade
        b.upgrade_info_hash = v2
        feed(b, a.send(Handshake(v1, b"A" * 20, bits)))
        reply = b.send(Handshake(v2, b"B" * 20, bits))  # the responder upgrades
        if ok:
            assert [type(e) for e in feed(a, reply)] == [HandshakeHeader, Handshake]
        else:
            with pytest.raises(WireProtocolError, match="different info_hash"):
                feed(a, reply)
    c, d = PeerConnection(), PeerConnection()
    feed(d, c.send(Handshake(v1, b"C" * 20, bits)))
    with pytest.raises(LocalWireError):
        d.send(Handshake(b"3" * 20, b"D" * 20, bits))  # neither their hash nor the upgrade
