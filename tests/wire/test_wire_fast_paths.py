"""The per-block fast paths of the codec (issue 24): batch-encoded requests, HAVEs without an event,
and the receive side's shortcuts in ESTABLISHED — each must give exactly what the general path
gives, in every state, and the same typed errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_link import ALL_BITS, INFO_HASH, LAYOUT, PEER_A, PEER_B, connected_pair, feed

from bitswarm.wire import (
    NEED_DATA,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    LocalWireError,
    PeerConnection,
    Piece,
    Request,
    Reserved,
    WireProtocolError,
)


def requests_of(conn: PeerConnection, blocks: list[tuple[int, int, int]]) -> bytes:
    return b"".join(conn.send(Request(*b)) for b in blocks)


@pytest.mark.parametrize("first", [None, HaveAll()])
def test_send_requests_equals_one_send_per_request_and_moves_the_state_alike(first: object) -> None:
    blocks = [(0, 0, 16384), (0, 16384, 16384), (9, 0, 5000), (3, 16384, 100)]
    a, _ = connected_pair()
    a2, _ = connected_pair()
    if first is not None:
        a.send(HaveAll())
        a2.send(HaveAll())
    assert a.send_requests([]) == b""
    assert a.send_requests(blocks) == requests_of(a2, blocks)
    assert a.our_state is a2.our_state
    # the first message went out: have_none may not follow any more, on either
    for conn in (a, a2):
        with pytest.raises(LocalWireError, match="cannot send HaveNone"):
            conn.send(HaveNone())


@pytest.mark.parametrize(
    "bad",
    [
        (10, 0, 16384),  # no such piece
        (9, 0, 5001),  # past the end of the last piece
        (0, 16384 + 1, 16384),  # past the end of a piece
        (0, 0, 0),  # empty
        (0, 0, 128 * 1024 + 1),  # too long
        (-1, 0, 16384),
    ],
)
def test_send_requests_refuses_a_bad_block_with_the_send_error_and_sends_nothing(
    bad: tuple[int, int, int],
) -> None:
    a, _ = connected_pair()
    a2, _ = connected_pair()
    with pytest.raises(LocalWireError) as single:
        a2.send(Request(*bad))
    with pytest.raises(LocalWireError) as batch:
        a.send_requests([(0, 0, 16384), bad])
    assert str(batch.value) == str(single.value)
    assert a.our_state is a2.our_state  # ERROR, as after the refused send


def test_send_requests_before_the_handshake_is_refused() -> None:
    assert PeerConnection(LAYOUT).send_requests([]) == b""  # nothing to send, nothing to refuse
    conn = PeerConnection(LAYOUT)
    with pytest.raises(LocalWireError, match="cannot send Request"):
        conn.send_requests([(0, 0, 16384)])


def test_send_requests_without_a_layout_checks_the_sizes_only() -> None:
    a, _ = connected_pair(layout=None)
    a2, _ = connected_pair(layout=None)
    blocks = [(500, 0, 16384), (7, 1 << 20, 1)]
    assert a.send_requests(blocks) == requests_of(a2, blocks)


@pytest.mark.parametrize("first", [None, HaveNone()])
def test_send_have_equals_send_of_the_event(first: object) -> None:
    a, _ = connected_pair()
    a2, _ = connected_pair()
    if first is not None:
        a.send(HaveNone())
        a2.send(HaveNone())
    for index in (0, 5, 9):
        assert a.send_have(index) == a2.send(Have(index))
    assert a.our_state is a2.our_state
    for bad in (10, -1):
        refused, _ = connected_pair()
        with pytest.raises(LocalWireError, match="out of range"):
            refused.send_have(bad)
    unknown, _ = connected_pair(layout=None)
    unknown2, _ = connected_pair(layout=None)
    assert unknown.send_have(123456) == unknown2.send(Have(123456))  # only the 32-bit limit applies
    with pytest.raises(LocalWireError, match="out of range"):
        unknown.send_have(1 << 32)
    with pytest.raises(LocalWireError):
        PeerConnection(LAYOUT).send_have(0)  # before the handshake


def test_a_have_or_a_piece_as_first_message_ends_the_have_all_window() -> None:
    # the ESTABLISHED shortcuts must not skip the state change out of AWAIT_FIRST_MESSAGE
    for first in (Have(3), Piece(0, 0, b"x" * 16384)):
        a, b = connected_pair()
        assert feed(b, a.send(first)) == [first]
        a2, _ = connected_pair()  # a sender that may still send have_all
        with pytest.raises(WireProtocolError, match="HaveAll not allowed"):
            feed(b, a2.send(HaveAll()))


def test_a_piece_received_in_place_as_first_message_ends_the_have_all_window() -> None:
    a, b = connected_pair()
    dest = bytearray(16384)
    b.set_block_sink(lambda index, begin, length: memoryview(dest))
    wire = a.send(Piece(0, 0, b"y" * 16384))
    head = b.get_buffer(-1)
    head[:100] = wire[:100]
    b.buffer_updated(100)
    assert b.next_event() is NEED_DATA
    rest = b.get_buffer(-1)  # the rest of the block goes straight into ``dest``
    assert len(rest) == len(wire) - 100
    rest[:] = wire[100:]
    b.buffer_updated(len(rest))
    assert b.next_event() == Piece(0, 0, b"y" * 16384) and dest == b"y" * 16384
    a2, _ = connected_pair()
    with pytest.raises(WireProtocolError, match="HaveAll not allowed"):
        feed(b, a2.send(HaveAll()))


def test_have_and_piece_out_of_range_in_established_are_typed_errors() -> None:
    a, b = connected_pair()
    feed(b, a.send(Interested()))
    with pytest.raises(WireProtocolError, match="out of range"):
        feed(b, (5).to_bytes(4, "big") + b"\x04" + (10).to_bytes(4, "big"))
    a, b = connected_pair()
    feed(b, a.send(Interested()))
    with pytest.raises(WireProtocolError, match="past the end"):
        feed(b, (9 + 5001).to_bytes(4, "big") + b"\x07" + (9).to_bytes(4, "big") + bytes(4 + 5001))


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(1, 20000), min_size=1, max_size=12), garbage=st.binary(max_size=40))
def test_split_haves_and_pieces_then_garbage_give_the_events_then_a_typed_error(
    cuts: list[int], garbage: bytes
) -> None:
    """The ESTABLISHED shortcuts, fed in arbitrary reads through get_buffer/buffer_updated with a
    block sink: every event comes out as sent, and garbage after them is a WireProtocolError (or
    incomplete), never another exception."""
    a, b = connected_pair()
    dests: list[bytearray] = []

    def sink(index: int, begin: int, length: int) -> memoryview:
        dests.append(bytearray(length))
        return memoryview(dests[-1])

    b.set_block_sink(sink)
    sent = [HaveAll(), Have(1), Piece(0, 0, b"p" * 16384), Have(2), Piece(9, 0, b"q" * 5000), Have(9)]
    wire = b"".join(a.send(ev) for ev in sent) + garbage
    events: list[object] = []
    pos = i = 0
    try:
        while pos < len(wire):
            buf = b.get_buffer(-1)
            n = min(len(buf), cuts[i % len(cuts)], len(wire) - pos)
            i += 1
            buf[:n] = wire[pos : pos + n]
            pos += n
            b.buffer_updated(n)
            for _ in range(100):
                ev = b.next_event()
                if ev is NEED_DATA:
                    break
                events.append(ev)
    except WireProtocolError:
        assert garbage and events == sent
        return
    assert events[: len(sent)] == sent


def test_handshake_then_have_in_one_read() -> None:
    a, b = PeerConnection(LAYOUT), PeerConnection(LAYOUT)
    wire = a.send(Handshake(INFO_HASH, PEER_A, ALL_BITS)) + a.send(Have(4))
    b.send(Handshake(INFO_HASH, PEER_B, ALL_BITS))
    assert [type(e).__name__ for e in feed(b, wire)] == ["HandshakeHeader", "Handshake", "Have"]
    assert b.their_state.value == "ESTABLISHED"


@pytest.mark.parametrize("bad", [(10, 0, 16384), (9, 0, 5001), (0, 32768, 1), (0, 0, 0), (-1, 0, 1)])
def test_send_piece_header_refuses_a_bad_block_as_send_does(bad: tuple[int, int, int]) -> None:
    a, _ = connected_pair()
    a2, _ = connected_pair()
    with pytest.raises(LocalWireError) as single:
        a2.send(Piece(bad[0], bad[1], b"x" * bad[2]))
    with pytest.raises(LocalWireError) as header:
        a.send_piece_header(*bad)
    assert str(header.value) == str(single.value)


def test_fast_extension_messages_in_established_still_need_bep6() -> None:
    # the ESTABLISHED shortcut of the state check covers only messages without a BEP 6/10 condition
    plain = Reserved.make(extension_protocol=True)
    a, b = connected_pair(a_bits=plain, b_bits=plain)
    feed(b, a.send(Interested()))
    assert b.their_state.value == "ESTABLISHED"
    reject = (13).to_bytes(4, "big") + b"\x10" + (0).to_bytes(4, "big") * 2 + (16384).to_bytes(4, "big")
    with pytest.raises(WireProtocolError, match="fast extension"):
        feed(b, reject)
