"""Limits: bitfield shape, index and block ranges, over-long messages, oversize requests."""

from __future__ import annotations

import struct

import pytest
from wire_link import LAYOUT, connected_pair, feed

from bitswarm.wire import (
    MAX_BLOCK,
    MAX_EXTENDED_MESSAGE,
    MAX_UNKNOWN_MESSAGE,
    AllowedFast,
    Bitfield,
    Cancel,
    Extended,
    Have,
    HaveNone,
    LocalWireError,
    PeerConnection,
    Piece,
    PieceLayout,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    UnknownMessage,
    WireProtocolError,
)

BIG = PieceLayout.uniform(1024 * 1024, 4 * 1024 * 1024)  # 4 pieces of 1 MiB


def frame(mid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(payload), mid) + payload


def triple(mid: int, index: int, begin: int, length: int) -> bytes:
    return frame(mid, struct.pack(">III", index, begin, length))


def ready(layout: PieceLayout | None = LAYOUT) -> tuple[PeerConnection, PeerConnection]:
    a, b = connected_pair(layout=layout)
    feed(b, a.send(HaveNone()))
    feed(a, b.send(HaveNone()))
    return a, b


def rejects(conn: PeerConnection, wire: bytes, match: str | None = None) -> None:
    with pytest.raises(WireProtocolError, match=match):
        feed(conn, wire)


@pytest.mark.parametrize("bits", [b"\xff", b"\xff\xc0\x00", b"", b"\xff\xe0", b"\xff\xc1"])
def test_bitfield_wrong_length_or_spare_bits(bits: bytes) -> None:
    a, b = connected_pair()  # 10 pieces: 2 bytes, 6 spare bits
    rejects(b, frame(5, bits), "bitfield")
    with pytest.raises(LocalWireError):
        a.send(Bitfield(bits))


def test_bitfield_exact_fit_and_unknown_layout() -> None:
    _a, b = connected_pair(layout=PieceLayout.uniform(1024, 16 * 1024))  # 16 pieces, no spare bits
    assert feed(b, frame(5, b"\xff\xff")) == [Bitfield(b"\xff\xff")]
    assert Bitfield(b"\xff\xff").has(15) and not Bitfield(b"\xff\xfe").has(15)
    _a, b = connected_pair(layout=None)
    assert feed(b, frame(5, b"\xff" * 1000)) == [Bitfield(b"\xff" * 1000)]


@pytest.mark.parametrize("mid", [4, 13, 17])
def test_index_out_of_range(mid: int) -> None:
    a, b = ready()
    assert feed(b, frame(mid, (9).to_bytes(4, "big")))  # last piece is fine
    rejects(b, frame(mid, (10).to_bytes(4, "big")), "out of range")
    cls = {4: Have, 13: SuggestPiece, 17: AllowedFast}[mid]
    with pytest.raises(LocalWireError):
        a.send(cls(10))


@pytest.mark.parametrize("mid", [6, 8, 16])
@pytest.mark.parametrize(
    ("index", "begin", "length", "ok"),
    [
        (0, 0, 16384, True),
        (0, 16384, 16384, True),
        (0, 16385, 16384, False),  # past the 32 KiB piece
        (9, 0, 5000, True),  # the short last piece
        (9, 0, 5001, False),
        (9, 4999, 1, True),
        (10, 0, 1, False),  # no such piece
        (0, 0, 0, False),  # empty block
        (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, False),
    ],
)
def test_block_ranges(mid: int, index: int, begin: int, length: int, ok: bool) -> None:
    a, b = ready()
    wire = triple(mid, index, begin, length)
    cls = {6: Request, 8: Cancel, 16: RejectRequest}[mid]
    if ok:
        assert feed(b, wire) == [cls(index, begin, length)]
        assert a.send(cls(index, begin, length)) == wire
    else:
        rejects(b, wire)
        with pytest.raises(LocalWireError):
            a.send(cls(index, begin, length))


def test_request_sizes_tolerated_flagged_and_rejected() -> None:
    a, b = ready(BIG)
    (std,) = feed(b, triple(6, 0, 0, 16384))
    assert isinstance(std, Request) and not std.oversized
    (big,) = feed(b, triple(6, 0, 0, MAX_BLOCK))
    assert isinstance(big, Request) and big.oversized  # tolerated; the session rejects it
    rejects(b, triple(6, 0, 0, MAX_BLOCK + 1), "block length")
    with pytest.raises(LocalWireError):
        a.send(Request(0, 0, MAX_BLOCK + 1))


def test_piece_block_limits_checked_from_the_header() -> None:
    a, b = ready(BIG)
    ok = a.send(Piece(0, 0, bytes(MAX_BLOCK)))
    assert feed(b, ok) == [Piece(0, 0, bytes(MAX_BLOCK))]
    header = struct.pack(">IBII", 9 + MAX_BLOCK + 1, 7, 0, 0)
    rejects(b, header, "piece block")  # refused before the body arrives
    a, b = ready(BIG)
    rejects(b, struct.pack(">IBII", 9, 7, 0, 0), "piece block")  # empty block
    a, b = ready()
    rejects(b, struct.pack(">IBII", 9 + 100, 7, 9, 4950) + b"x" * 100, "past the end")
    with pytest.raises(LocalWireError):
        ready(BIG)[0].send(Piece(0, 0, bytes(MAX_BLOCK + 1)))
    with pytest.raises(LocalWireError):
        ready()[0].send_piece_header(9, 4990, 11)


def test_extended_and_unknown_length_caps() -> None:
    a, b = ready()
    rejects(b, struct.pack(">IBB", MAX_EXTENDED_MESSAGE + 1, 20, 1), "extended")
    a, b = ready()
    rejects(b, struct.pack(">IB", 1, 20), "extended")  # no extended id byte
    a, b = ready()
    rejects(b, struct.pack(">IB", MAX_UNKNOWN_MESSAGE + 1, 24), "too long")
    a, b = ready()
    big = Extended(1, bytes(MAX_EXTENDED_MESSAGE - 2))
    assert feed(b, a.send(big)) == [big]
    with pytest.raises(LocalWireError):
        a.send(Extended(1, bytes(MAX_EXTENDED_MESSAGE - 1)))
    with pytest.raises(LocalWireError):
        ready()[0].send(Extended(0, b"de"))
    with pytest.raises(LocalWireError):
        ready()[0].send(UnknownMessage(7, b""))


@pytest.mark.parametrize(
    ("mid", "size"), [(0, 1), (1, 2), (4, 3), (4, 5), (6, 11), (6, 13), (9, 1), (9, 3), (15, 1)]
)
def test_fixed_length_messages_must_be_exact(mid: int, size: int) -> None:
    _a, b = ready()
    rejects(b, frame(mid, bytes(size)), "length")


def test_huge_length_fails_early() -> None:
    _a, b = ready()
    rejects(b, b"\xff\xff\xff\xff\x07")  # 4 GiB piece: refused after 5 bytes
    _a, b = ready()
    rejects(b, b"\x00\x10\x00\x00\x00")  # 1 MiB choke


def test_no_layout_means_only_size_limits() -> None:
    _a, b = ready(layout=None)
    assert feed(b, frame(4, (10**6).to_bytes(4, "big"))) == [Have(10**6)]
    assert feed(b, triple(6, 5, 10**6, 16384)) == [Request(5, 10**6, 16384)]
    rejects(b, triple(6, 5, 0, MAX_BLOCK + 1))


def test_port_range() -> None:
    a, b = ready()
    assert feed(b, frame(9, b"\xff\xff")) == [Port(65535)]
    with pytest.raises(LocalWireError):
        a.send(Port(65536))
