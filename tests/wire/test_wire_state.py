"""The state table: illegal orders, fast/extension guards, errors are sticky (BEP 3, 6, 10)."""

from __future__ import annotations

import pytest
from wire_link import ALL_BITS, INFO_HASH, LAYOUT, PEER_A, connected_pair, drain, feed

from bitswarm.wire import (
    TRANSITIONS,
    AllowedFast,
    Bitfield,
    Choke,
    ConnectionClosed,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    LocalWireError,
    PeerConnection,
    Piece,
    Port,
    RejectRequest,
    Request,
    Reserved,
    State,
    SuggestPiece,
    UnknownMessage,
    WireProtocolError,
)
from bitswarm.wire._state import REQUIRES_EXTENSION_PROTOCOL, REQUIRES_FAST

BITS = Bitfield(b"\x00\x00")
FAST_MESSAGES: list[Event] = [
    HaveAll(),
    HaveNone(),
    SuggestPiece(1),
    RejectRequest(1, 0, 16384),
    AllowedFast(1),
]
EXT_MESSAGES: list[Event] = [Extended(1, b"x"), ExtendedHandshake(m={"ut_pex": 1})]
SAMPLES: list[Event] = [
    KeepAlive(),
    Choke(),
    Interested(),
    Have(1),
    BITS,
    Request(1, 0, 16384),
    Piece(1, 0, b"abc"),
    Port(1),
    UnknownMessage(24, b""),
    *FAST_MESSAGES,
    *EXT_MESSAGES,
]


def raw(conn: PeerConnection, ev: Event) -> bytes:
    """Bytes of ``ev`` from a throw-away sender with every extension negotiated."""
    sender, _ = connected_pair()
    if type(ev) in (Bitfield, HaveAll, HaveNone):
        return sender.send(ev)
    sender.send(HaveNone())
    return sender.send(ev)


@pytest.mark.parametrize("first", [Have(1), BITS, HaveAll(), Interested(), Piece(0, 0, b"x")])
def test_a_later_bitfield_is_tolerated(first: Event) -> None:
    """aria2 sends bitfields mid-connection; BEP 3 says first only, real clients say otherwise."""
    a, b = connected_pair()
    feed(b, raw(a, first))
    events = feed(b, raw(a, BITS))
    assert [type(e) for e in events] == [Bitfield]
    assert b.their_state is State.ESTABLISHED


@pytest.mark.parametrize("later", [HaveAll(), HaveNone()])
@pytest.mark.parametrize("first", [Have(1), BITS, HaveAll(), Interested(), Piece(0, 0, b"x")])
def test_piece_set_only_as_first_message(first: Event, later: Event) -> None:
    a, b = connected_pair()
    feed(b, raw(a, first))
    assert b.their_state is State.ESTABLISHED
    with pytest.raises(WireProtocolError, match="not allowed in state ESTABLISHED"):
        feed(b, raw(a, later))
    assert b.their_state is State.ERROR
    # the same rule on our side
    a.send(first)
    with pytest.raises(LocalWireError):
        a.send(later)
    assert a.our_state is State.ERROR
    with pytest.raises(LocalWireError):
        a.send(Interested())


def test_extension_messages_keep_the_bitfield_window_open() -> None:
    a, b = connected_pair()
    wire = a.send(ExtendedHandshake(m={"ut_metadata": 1})) + a.send(KeepAlive()) + a.send(Extended(2, b"hi"))
    wire += a.send(BITS) + a.send(Have(3))
    events = feed(b, wire)
    assert [type(e) for e in events] == [ExtendedHandshake, KeepAlive, Extended, Bitfield, Have]


@pytest.mark.parametrize("msg", FAST_MESSAGES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize(
    "bits", [(Reserved(), ALL_BITS), (ALL_BITS, Reserved.make(extension_protocol=True))], ids=["a", "b"]
)
def test_fast_messages_need_both_bits(msg: Event, bits: tuple[Reserved, Reserved]) -> None:
    a, b = connected_pair(*bits)
    assert not a.fast and not b.fast
    wire = raw(a, msg)
    with pytest.raises(WireProtocolError, match="BEP 6"):
        feed(b, wire)
    with pytest.raises(LocalWireError, match="BEP 6"):
        a.send(msg)


@pytest.mark.parametrize("msg", EXT_MESSAGES, ids=lambda m: type(m).__name__)
def test_extended_messages_need_both_bits(msg: Event) -> None:
    a, b = connected_pair(Reserved.make(fast=True), ALL_BITS)
    with pytest.raises(WireProtocolError, match="BEP 10"):
        feed(b, raw(a, msg))
    with pytest.raises(LocalWireError, match="BEP 10"):
        a.send(msg)


def test_fast_messages_need_the_remote_handshake_before_we_send() -> None:
    a = PeerConnection(LAYOUT)
    a.send(Handshake(INFO_HASH, PEER_A, ALL_BITS))
    a.send(BITS)  # a bitfield needs no negotiation
    with pytest.raises(LocalWireError):
        a.send(AllowedFast(1))


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_messages_before_handshake_are_rejected(msg: Event) -> None:
    conn = PeerConnection(LAYOUT)
    with pytest.raises(WireProtocolError, match="handshake"):
        feed(conn, raw(conn, msg) + bytes(68))
    with pytest.raises(LocalWireError, match="AWAIT_HANDSHAKE"):
        PeerConnection(LAYOUT).send(msg)


def test_second_handshake_is_rejected() -> None:
    a, b = connected_pair()
    with pytest.raises(LocalWireError):
        a.send(Handshake(INFO_HASH, PEER_A, ALL_BITS))
    # A second handshake from the peer reads as a message with an absurd length.
    with pytest.raises(WireProtocolError):
        feed(b, PeerConnection().send(Handshake(INFO_HASH, PEER_A, ALL_BITS)))


def test_error_state_is_sticky() -> None:
    _a, b = connected_pair()
    with pytest.raises(WireProtocolError):
        feed(b, b"\x00\x00\x00\x05\x04\xff\xff\xff\xff")  # have, index out of range
    with pytest.raises(WireProtocolError, match="ERROR"):
        b.next_event()
    assert b.their_state is State.ERROR


@pytest.mark.parametrize("state", [State.AWAIT_FIRST_MESSAGE, State.ESTABLISHED, State.CLOSED])
@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_send_side_follows_the_table(state: State, msg: Event) -> None:
    a, _ = connected_pair()
    if state is State.ESTABLISHED:
        a.send(Interested())
    elif state is State.CLOSED:
        a.send(ConnectionClosed())
    assert a.our_state is state
    expected = TRANSITIONS.get((state, type(msg)))
    if expected is None:
        with pytest.raises(LocalWireError):
            a.send(msg)
        assert a.our_state is State.ERROR
    else:
        a.send(msg)
        assert a.our_state is expected


@pytest.mark.parametrize("state", [State.AWAIT_FIRST_MESSAGE, State.ESTABLISHED])
@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_receive_side_follows_the_table(state: State, msg: Event) -> None:
    a, b = connected_pair()
    if state is State.ESTABLISHED:
        feed(b, raw(a, Interested()))
    assert b.their_state is state
    expected = TRANSITIONS.get((state, type(msg)))
    wire = raw(a, msg)
    if expected is None:
        with pytest.raises(WireProtocolError):
            feed(b, wire)
    else:
        assert feed(b, wire) == [msg]
        assert b.their_state is expected


def test_guard_sets_are_consistent_with_the_table() -> None:
    table_events = {ev for (_, ev) in TRANSITIONS}
    assert table_events >= REQUIRES_FAST
    assert table_events >= REQUIRES_EXTENSION_PROTOCOL
    assert drain(PeerConnection()) == []
