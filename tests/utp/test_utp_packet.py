"""The uTP packet codec (BEP 29 header v1): layout, round trips, selective ACK bits, garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.errors import RemoteProtocolError
from bitswarm.utp import (
    Packet,
    PacketType,
    UtpPacketError,
    decode,
    encode,
    is_utp_datagram,
    sack_bitmask,
    sack_seqs,
    seq_diff,
)


def test_header_layout_matches_bep29() -> None:
    p = Packet(PacketType.SYN, 0x1234, 0xA1B2C3D4, 7, 1 << 20, 0xFFFE, 0x0102)
    raw = encode(p)
    assert raw == bytes([0x41, 0]) + struct.pack(">HIIIHH", 0x1234, 0xA1B2C3D4, 7, 1 << 20, 0xFFFE, 0x0102)
    assert decode(raw) == p


def test_extension_chain_with_sack_and_unknown_extension() -> None:
    raw = (
        bytes([0x21, 1])
        + struct.pack(">HIIIHH", 9, 1, 2, 3, 4, 5)
        + bytes([77, 4])  # sack, next is extension 77
        + b"\x01\x00\x00\x80"
        + bytes([0, 2])  # extension 77, last
        + b"zz"
        + b"payload"
    )
    p = decode(raw)
    assert p.type is PacketType.STATE
    assert p.extensions == ((1, b"\x01\x00\x00\x80"), (77, b"zz"))
    assert p.sack == b"\x01\x00\x00\x80"
    assert p.payload == b"payload"
    assert encode(p) == raw
    assert list(sack_seqs(p.ack_nr, p.sack)) == [7, 38]  # bit 0 -> ack_nr + 2, bit 31 -> ack_nr + 33


def test_sack_bit_order_is_bep29s() -> None:
    # the first byte covers ack_nr + 2 .. ack_nr + 9, least significant bit first
    assert sack_bitmask(100, [102]) == b"\x01\x00\x00\x00"
    assert sack_bitmask(100, [109]) == b"\x80\x00\x00\x00"
    assert sack_bitmask(100, [110]) == b"\x00\x01\x00\x00"
    assert sack_bitmask(100, [134]) == b"\x00\x00\x00\x00\x01\x00\x00\x00"  # grows by 4 bytes
    assert list(sack_seqs(0xFFFF, sack_bitmask(0xFFFF, [1, 3]))) == [1, 3]  # wraps through 0


def test_sack_bitmask_respects_its_size_limit() -> None:
    mask = sack_bitmask(0, [2, 5000], max_bytes=4)
    assert list(sack_seqs(0, mask)) == [2]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "shorter"),
        (b"\x41" + b"\x00" * 18, "shorter"),
        (b"\x42" + b"\x00" * 19, "version 2"),
        (b"\x51" + b"\x00" * 19, "unknown uTP packet type 5"),
        (b"\x21\x01" + b"\x00" * 18, "extension header runs past"),
        (b"\x21\x01" + b"\x00" * 18 + b"\x00\x08abcd", "runs past the end"),
    ],
)
def test_garbage_raises_typed_errors(raw: bytes, message: str) -> None:
    with pytest.raises(UtpPacketError, match=message):
        decode(raw)
    assert issubclass(UtpPacketError, RemoteProtocolError)


def test_sack_of_any_length_is_accepted_as_libtorrent_sends_it() -> None:
    # libtorrent sizes its mask (span + 7) // 8 bytes, not a multiple of 4 as BEP 29 says
    raw = (
        bytes([0x21, 1])
        + struct.pack(">HIIIHH", 9, 1, 2, 3, 4, 100)
        + bytes([0, 6])
        + b"\x01\x00\x00\x00\x00\x80"
    )
    p = decode(raw)
    assert list(sack_seqs(p.ack_nr, p.sack or b"")) == [102, 149]
    assert encode(p) == raw


def test_demultiplexing_tells_utp_from_krpc() -> None:
    assert is_utp_datagram(encode(Packet(PacketType.DATA, 1, 0, 0, 0, 0, 0, b"x")))
    assert is_utp_datagram(encode(Packet(PacketType.SYN, 1, 0, 0, 0, 0, 0)))
    krpc = b"d1:ad2:id20:" + b"a" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe"
    assert not is_utp_datagram(krpc)
    assert not is_utp_datagram(b"\x41\x00")  # too short for a header


def test_seq_diff_wraps() -> None:
    assert seq_diff(1, 0xFFFF) == 2
    assert seq_diff(0xFFFF, 1) == -2
    assert seq_diff(5, 5) == 0


packets = st.builds(
    Packet,
    st.sampled_from(list(PacketType)),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(max_size=64),
    st.lists(
        st.one_of(
            st.tuples(st.just(1), st.binary(max_size=40)),
            st.tuples(st.integers(2, 255), st.binary(max_size=40)),
        ),
        max_size=3,
    ).map(tuple),
)


@given(packets)
def test_round_trip(p: Packet) -> None:
    raw = encode(p)
    assert decode(raw) == p
    assert encode(decode(raw)) == raw


@given(st.binary(max_size=80))
def test_fuzz_decode_only_raises_typed_errors(raw: bytes) -> None:
    try:
        p = decode(raw)
    except UtpPacketError:
        return
    assert encode(p) == raw  # whatever parses gives back its exact bytes
