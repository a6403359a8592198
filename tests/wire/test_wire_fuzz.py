"""Hypothesis: garbage only ever raises WireProtocolError; generated messages survive encode -> decode."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import example, given
from hypothesis import strategies as st
from wire_link import ALL_BITS, INFO_HASH, LAYOUT, PEER_A, connected_pair

from bitswarm.wire import (
    NEED_DATA,
    PAUSED,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    ConnectionClosed,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    Hashes,
    HashReject,
    HashRequest,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    NotInterested,
    PeerConnection,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
    UnknownMessage,
    WireProtocolError,
    uncle_count,
)

N = LAYOUT.num_pieces


def run(conn: PeerConnection, chunks: list[bytes]) -> list[Event]:
    """Feed chunks then EOF; return the events up to the first error. Only WireProtocolError may escape."""
    events: list[Event] = []
    try:
        for chunk in [*(c for c in chunks if c), b""]:
            conn.receive_data(chunk)
            for _ in range(10_000):
                ev = conn.next_event()
                if ev is NEED_DATA or ev is PAUSED:
                    break
                assert isinstance(ev, Event)
                events.append(ev)
                if isinstance(ev, ConnectionClosed):
                    return events
    except WireProtocolError:
        return events
    return events


def fresh(handshaken: bool) -> PeerConnection:
    if not handshaken:
        return PeerConnection(LAYOUT)
    _, b = connected_pair()
    return b


#: an extended handshake whose integer has 5,000 digits (issue 16: a ValueError escaped the decoder)
_HUGE_INT_EXT = b"d1:pi" + b"7" * 5000 + b"ee"
_HUGE_INT_FRAME = struct.pack(">IBB", 2 + len(_HUGE_INT_EXT), 20, 0) + _HUGE_INT_EXT


@given(st.binary(max_size=600), st.booleans())
@example(_HUGE_INT_FRAME, True)
@example(_HUGE_INT_FRAME.replace(b"7" * 5000, b"7" * 21), True)
def test_garbage_whole_and_bytewise(data: bytes, handshaken: bool) -> None:
    whole = run(fresh(handshaken), [data])
    bytewise = run(fresh(handshaken), [data[i : i + 1] for i in range(len(data))])
    assert whole == bytewise


# Frames that look like messages: a plausible length prefix and id, random payload.
frames = st.builds(
    lambda mid, payload, fudge: struct.pack(">IB", max(0, 1 + len(payload) + fudge), mid) + payload,
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 20, 21, 22, 23, 200]),
    st.binary(max_size=40),
    st.sampled_from([0, 0, 0, 0, 1, -1]),
)


@given(st.lists(frames, max_size=12), st.integers(1, 17))
def test_plausible_frames_only_raise_remote_errors(parts: list[bytes], step: int) -> None:
    data = b"".join(parts)
    whole = run(fresh(True), [data])
    split = run(fresh(True), [data[i : i + step] for i in range(0, len(data), step)])
    assert whole == split


u32 = st.integers(0, 2**32 - 1)
index = st.integers(0, N - 1)


@st.composite
def block(draw: st.DrawFn) -> tuple[int, int, int]:
    i = draw(index)
    size = LAYOUT.piece_size(i)
    begin = draw(st.integers(0, size - 1))
    length = draw(st.integers(1, min(size - begin, 128 * 1024)))
    return i, begin, length


hash_fields = st.tuples(st.binary(min_size=32, max_size=32), u32, u32, st.integers(1, 20), st.integers(0, 12))

ext_handshakes = st.builds(
    ExtendedHandshake,
    m=st.dictionaries(st.text(min_size=1, max_size=12), st.integers(0, 255), max_size=4),
    client=st.none() | st.text(max_size=20),
    port=st.none() | st.integers(1, 65535),
    reqq=st.none() | st.integers(0, 10**6),
    yourip=st.none() | st.ip_addresses(),
    ipv4=st.none() | st.ip_addresses(v=4).map(ipaddress.IPv4Address),
    ipv6=st.none() | st.ip_addresses(v=6).map(ipaddress.IPv6Address),
    metadata_size=st.none() | st.integers(0, 10**9),
    extra=st.dictionaries(
        st.sampled_from([b"upload_only", b"e", b"complete_ago", b"zz"]),
        st.integers(-5, 5) | st.binary(max_size=8),
        max_size=3,
    ),
)

messages = st.one_of(
    st.sampled_from([KeepAlive(), Choke(), Unchoke(), Interested(), NotInterested()]),
    st.builds(Have, index),
    block().map(lambda t: Request(*t)),
    block().map(lambda t: Cancel(*t)),
    block().map(lambda t: RejectRequest(*t)),
    block().flatmap(lambda t: st.binary(min_size=t[2], max_size=t[2]).map(lambda d: Piece(t[0], t[1], d))),
    st.builds(Port, st.integers(0, 65535)),
    st.builds(SuggestPiece, index),
    st.builds(AllowedFast, index),
    st.builds(Extended, st.integers(1, 255), st.binary(max_size=64)),
    ext_handshakes,
    st.builds(UnknownMessage, st.sampled_from([10, 11, 12, 24, 255]), st.binary(max_size=64)),
    hash_fields.map(lambda f: HashRequest(*f)),
    hash_fields.map(lambda f: HashReject(*f)),
    hash_fields.flatmap(
        lambda f: st.binary(
            min_size=32 * (f[3] + uncle_count(f[3], f[4])), max_size=32 * (f[3] + uncle_count(f[3], f[4]))
        ).map(lambda h: Hashes(*f, h))
    ),
)
firsts = st.one_of(
    st.just(HaveAll()),
    st.just(HaveNone()),
    st.binary(min_size=2, max_size=2).map(lambda b: Bitfield(bytes([b[0], b[1] & 0xC0]))),
)


@given(firsts, st.lists(messages, max_size=20), st.integers(1, 70000))
def test_encode_decode_identity(first: Event, msgs: list[Event], step: int) -> None:
    a, b = connected_pair()
    wire = a.send(first) + b"".join(a.send(m) for m in msgs)
    assert run(b, [wire[i : i + step] for i in range(0, len(wire), step)]) == [
        first,
        *msgs,
        ConnectionClosed(),
    ]


@given(st.binary(min_size=20, max_size=20), st.binary(min_size=8, max_size=8))
def test_handshake_identity(peer_id: bytes, reserved: bytes) -> None:
    from bitswarm.wire import Reserved

    hs = Handshake(INFO_HASH, peer_id, Reserved(reserved))
    conn = PeerConnection()
    events = run(conn, [PeerConnection().send(hs)])
    assert events[1] == hs and events[0].reserved == hs.reserved  # type: ignore[attr-defined]
    assert hs != Handshake(INFO_HASH, PEER_A, ALL_BITS) or peer_id == PEER_A


@given(st.binary(max_size=68), st.binary(max_size=200), st.integers(0, 68))
def test_garbage_inside_and_after_a_handshake(junk: bytes, tail: bytes, cut: int) -> None:
    """A real handshake truncated or corrupted at ``cut``, then garbage, from a peer we answered."""
    hs = PeerConnection().send(Handshake(INFO_HASH, PEER_A, ALL_BITS))
    data = hs[:cut] + junk + tail

    def answered() -> PeerConnection:
        conn = PeerConnection(LAYOUT)
        conn.send(Handshake(INFO_HASH, PEER_A, ALL_BITS))
        return conn

    whole = run(answered(), [data])
    bytewise = run(answered(), [data[i : i + 1] for i in range(len(data))])
    assert whole == bytewise
