"""Round trips through a fake link, handshakes and reserved bits (BEP 3, 5, 6, 10)."""

from __future__ import annotations

import ipaddress

import pytest
from wire_link import ALL_BITS, INFO_HASH, LAYOUT, PEER_A, PEER_B, connected_pair, drain, feed

from bitswarm.wire import (
    NEED_DATA,
    PAUSED,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    ConnectionClosed,
    Extended,
    ExtendedHandshake,
    Handshake,
    HandshakeHeader,
    Hashes,
    HashReject,
    HashRequest,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    LocalWireError,
    NotInterested,
    PeerConnection,
    Piece,
    PieceLayout,
    Port,
    RejectRequest,
    Request,
    Reserved,
    State,
    SuggestPiece,
    Unchoke,
    UnknownMessage,
    WireProtocolError,
)

MESSAGES = [
    KeepAlive(),
    Choke(),
    Unchoke(),
    Interested(),
    NotInterested(),
    Have(9),
    Request(0, 0, 16384),
    Request(9, 4096, 904),
    Piece(9, 0, b"\x01" * 5000),
    Piece(2, 16384, bytes(range(256)) * 64),
    Cancel(1, 16384, 16384),
    Port(6881),
    SuggestPiece(3),
    RejectRequest(4, 0, 16384),
    AllowedFast(5),
    Extended(3, b"d8:msg_typei0e5:piecei0ee"),
    ExtendedHandshake(
        m={"ut_metadata": 2, "ut_pex": 1},
        client="bitswarm 0.1",
        port=51413,
        reqq=500,
        yourip=ipaddress.ip_address("127.0.0.1"),
        ipv4=ipaddress.IPv4Address("10.0.0.1"),
        ipv6=ipaddress.IPv6Address("::1"),
        metadata_size=12345,
        extra={b"upload_only": 1, b"e": 0},
    ),
    UnknownMessage(24, b"some future message"),
    HashRequest(b"R" * 32, 3, 512, 512, 9),
    Hashes(b"R" * 32, 3, 0, 4, 5, bytes(range(32)) * 8),
    HashReject(b"R" * 32, 0, 2, 2, 0),
    KeepAlive(),
]


@pytest.mark.parametrize("first", [Bitfield(b"\xff\xc0"), HaveAll(), HaveNone()])
@pytest.mark.parametrize("step", [None, 1, 7, 16 * 1024 + 13])
def test_every_message_round_trips_both_ways(first: object, step: int | None) -> None:
    a, b = connected_pair()
    for sender, receiver in ((a, b), (b, a)):
        wire = sender.send(first) + b"".join(sender.send(m) for m in MESSAGES)  # type: ignore[arg-type]
        got = feed(receiver, wire, step)
        assert got == [first, *MESSAGES]
        assert receiver.their_state is State.ESTABLISHED
        assert sender.our_state is State.ESTABLISHED


def test_piece_data_is_zero_copy_view_of_received_bytes() -> None:
    a, b = connected_pair()
    wire = a.send(HaveNone()) + a.send(Piece(0, 0, b"x" * 16384)) + a.send(Piece(0, 16384, b"y" * 16384))
    b.receive_data(wire)
    events = drain(b)
    pieces = [e for e in events if isinstance(e, Piece)]
    assert [bytes(p.data) for p in pieces] == [b"x" * 16384, b"y" * 16384]
    for p in pieces:
        assert isinstance(p.data, memoryview) and p.data.readonly
        assert p.data.obj is wire  # a view into the bytes we fed, not a copy


def test_reused_buffers_are_copied() -> None:
    a, b = connected_pair()
    raw = bytearray(a.send(HaveNone()) + a.send(Piece(1, 0, b"q" * 100)))
    b.receive_data(raw)
    raw[:] = bytes(len(raw))  # the driver reuses its buffer
    events = drain(b)
    assert events == [HaveNone(), Piece(1, 0, b"q" * 100)]


def test_send_piece_header_matches_send_piece() -> None:
    a, _ = connected_pair()
    a2, _ = connected_pair()
    block = b"z" * 16384
    assert a.send_piece_header(3, 16384, len(block)) + block == a2.send(Piece(3, 16384, block))


def test_reserved_bits_are_named() -> None:
    r = Reserved.make(fast=True, extension_protocol=True, dht=True, v2=True)
    assert r.raw == bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04 | 0x01 | 0x10])
    assert (r.fast, r.extension_protocol, r.dht, r.v2) == (True, True, True, True)
    plain = Reserved()
    assert (plain.fast, plain.extension_protocol, plain.dht, plain.v2) == (False, False, False, False)
    assert Reserved.make(v2=True).raw[7] == 0x10 and not Reserved.make(v2=True).fast


def test_handshake_bytes_are_bep3() -> None:
    conn = PeerConnection()
    wire = conn.send(Handshake(INFO_HASH, PEER_A, Reserved.make(fast=True)))
    assert wire == b"\x13BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0, 0, 4]) + INFO_HASH + PEER_A
    assert len(wire) == 68


def test_receiver_learns_info_hash_before_replying() -> None:
    """The listening side sees the info-hash (HandshakeHeader) before the peer id and before replying."""
    initiator, receiver = PeerConnection(), PeerConnection()
    wire = initiator.send(Handshake(INFO_HASH, PEER_A, ALL_BITS))
    assert feed(receiver, wire[:48]) == [HandshakeHeader(ALL_BITS, INFO_HASH)]
    assert receiver.their_state is State.AWAIT_PEER_ID
    # A peer that waits for our handshake before its peer id is served: we can reply now.
    reply = receiver.send(Handshake(INFO_HASH, PEER_B, Reserved()))
    assert feed(receiver, wire[48:]) == [Handshake(INFO_HASH, PEER_A, ALL_BITS)]
    assert feed(initiator, reply) == [HandshakeHeader(Reserved(), INFO_HASH), Handshake(INFO_HASH, PEER_B)]
    # Negotiation needs both bits.
    assert not initiator.fast and not receiver.fast
    assert not initiator.extension_protocol and not receiver.extension_protocol


def test_paused_until_our_handshake_is_sent() -> None:
    initiator, receiver = PeerConnection(LAYOUT), PeerConnection()
    wire = initiator.send(Handshake(INFO_HASH, PEER_A, ALL_BITS))
    receiver.receive_data(wire + b"\x00\x00\x00\x01\x0e")  # handshake + have_all, sent eagerly
    assert isinstance(receiver.next_event(), HandshakeHeader)
    assert isinstance(receiver.next_event(), Handshake)
    assert receiver.next_event() is PAUSED
    assert receiver.next_event() is PAUSED
    receiver.send(Handshake(INFO_HASH, PEER_B, ALL_BITS))
    assert receiver.next_event() == HaveAll()
    assert receiver.next_event() is NEED_DATA


def test_info_hash_mismatch() -> None:
    initiator, receiver = PeerConnection(), PeerConnection()
    feed(receiver, initiator.send(Handshake(INFO_HASH, PEER_A)))
    with pytest.raises(LocalWireError):
        receiver.send(Handshake(b"\xff" * 20, PEER_B))
    other = PeerConnection()
    with pytest.raises(WireProtocolError):
        feed(initiator, other.send(Handshake(b"\xee" * 20, PEER_B)))
    assert initiator.their_state is State.ERROR


@pytest.mark.parametrize(
    ("a_bits", "b_bits", "fast", "ext"),
    [
        (Reserved.make(fast=True), Reserved.make(fast=True), True, False),
        (Reserved.make(fast=True), Reserved(), False, False),
        (Reserved.make(extension_protocol=True), Reserved.make(extension_protocol=True), False, True),
        (ALL_BITS, Reserved.make(extension_protocol=True), False, True),
    ],
)
def test_negotiation_needs_both_sides(a_bits: Reserved, b_bits: Reserved, fast: bool, ext: bool) -> None:
    a, b = connected_pair(a_bits, b_bits)
    assert (a.fast, a.extension_protocol) == (fast, ext)
    assert (b.fast, b.extension_protocol) == (fast, ext)


def test_clean_close_and_eof_mid_message() -> None:
    a, b = connected_pair()
    b.receive_data(a.send(HaveNone()))
    b.receive_data(b"")
    assert drain(b) == [HaveNone(), ConnectionClosed()]
    assert b.their_state is State.CLOSED
    assert b.next_event() == ConnectionClosed()
    with pytest.raises(LocalWireError):
        b.receive_data(b"more")

    a, b = connected_pair()
    b.receive_data(a.send(Have(1))[:3])
    b.receive_data(b"")
    with pytest.raises(WireProtocolError, match="middle"):
        b.next_event()


def test_send_connection_closed() -> None:
    a, _ = connected_pair()
    assert a.send(ConnectionClosed()) == b""
    assert a.our_state is State.CLOSED
    with pytest.raises(LocalWireError):
        a.send(Interested())


def test_extended_handshake_typed_fields_and_tolerance() -> None:
    payload = (
        b"d1:md11:ut_metadatai3e6:ut_pexi0ee1:pi6881e4:reqqi250e1:v13:\xc2\xb5Torrent 1.2"
        b"6:yourip16:" + bytes(15) + b"\x01" + b"13:metadata_sizei999e"
        b"4:ipv43:bad1:xli1eee"
    )
    # keys unsorted on purpose: tolerated (other clients do it)
    hs = ExtendedHandshake.decode_payload(payload)
    assert hs.m == {"ut_metadata": 3, "ut_pex": 0}
    assert hs.port == 6881 and hs.reqq == 250 and hs.metadata_size == 999
    assert hs.client == "µTorrent 1.2"
    assert hs.yourip == ipaddress.IPv6Address("::1")
    assert hs.ipv4 is None and hs.extra == {b"ipv4": b"bad", b"x": [1]}  # wrong type: kept untyped
    again = ExtendedHandshake.decode_payload(hs.encode_payload())
    assert again == hs
    for bad in (b"i1e", b"d1:mi1ee", b"d1:md1:xi300eee", b"d1:md1:x1:yee", b"garbage"):
        with pytest.raises(WireProtocolError):
            ExtendedHandshake.decode_payload(bad)


def test_layout_helpers() -> None:
    lay = PieceLayout.uniform(16384, 16384 * 3 + 1)
    assert (lay.num_pieces, lay.last_piece_size, lay.bitfield_length) == (4, 1, 1)
    assert [lay.piece_size(i) for i in range(4)] == [16384, 16384, 16384, 1]
    exact = PieceLayout.uniform(16384, 16384 * 2)
    assert (exact.num_pieces, exact.last_piece_size) == (2, 16384)
    assert PieceLayout.uniform(16384, 0).num_pieces == 0

    class Info:
        num_pieces = 3
        piece_length = 1024

        def piece_size(self, index: int) -> int:
            return 1024 if index < 2 else 10

    assert PieceLayout.from_info(Info()) == PieceLayout(3, 1024, 10)
    odd = PieceLayout(3, 1024, 1024, size_of=lambda i: [1024, 100, 1024][i])
    a, b = connected_pair(layout=odd)
    feed(b, a.send(HaveNone()))
    with pytest.raises(LocalWireError):
        a.send(Request(1, 0, 101))
    with pytest.raises(WireProtocolError):
        feed(
            b,
            b"\x00\x00\x00\x0d\x06"
            + (1).to_bytes(4, "big")
            + (0).to_bytes(4, "big")
            + (101).to_bytes(4, "big"),
        )


def test_views_of_bytes_are_kept_strided_views_are_copied() -> None:
    a, b = connected_pair()
    wire = a.send(HaveNone()) + a.send(Piece(1, 0, b"q" * 100))
    b.receive_data(memoryview(wire)[:5])  # split on a message boundary
    b.receive_data(memoryview(wire)[5:])
    events = drain(b)
    assert events == [HaveNone(), Piece(1, 0, b"q" * 100)]
    assert isinstance(events[1], Piece) and isinstance(events[1].data, memoryview)
    assert events[1].data.obj is wire
    doubled = bytes(x for c in wire for x in (c, 0))
    _a2, b2 = connected_pair()
    b2.receive_data(memoryview(doubled)[::2])  # non-contiguous: copied, still parsed
    assert drain(b2) == [HaveNone(), Piece(1, 0, b"q" * 100)]
