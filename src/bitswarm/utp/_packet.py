"""The uTP packet codec (BEP 29, header version 1): bytes in, :class:`Packet` out, and back.

Layout (big endian)::

    type<<4 | version : u8    first extension : u8    connection_id : u16
    timestamp_microseconds : u32
    timestamp_difference_microseconds : u32
    wnd_size : u32
    seq_nr : u16    ack_nr : u16
    [extension chain: next_type : u8, len : u8, len bytes] ...
    payload

Extensions are kept in wire order as ``(type, bytes)`` pairs so ``encode(decode(b)) == b`` for every
valid datagram; extension 1 is the selective ACK bitmask (:func:`sack_bitmask`, :func:`sack_seqs`),
of any length (libtorrent does not pad it to 4 bytes); others (libtorrent's close reason, 3) are
kept and ignored.
Garbage raises only :class:`UtpPacketError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from bitswarm.errors import RemoteProtocolError

__all__ = [
    "EXT_SACK",
    "HEADER_SIZE",
    "SEQ_MASK",
    "VERSION",
    "Packet",
    "PacketType",
    "UtpPacketError",
    "decode",
    "encode",
    "is_utp_datagram",
    "parse",
    "sack_bitmask",
    "sack_seqs",
    "seq_diff",
]

VERSION = 1
HEADER_SIZE = 20
SEQ_MASK = 0xFFFF
EXT_SACK = 1
HEADER = struct.Struct(">BBHIIIHH")


class PacketType(IntEnum):
    """``type`` nibble of the first header byte (BEP 29 "type")."""

    DATA = 0
    FIN = 1
    STATE = 2
    RESET = 3
    SYN = 4


class UtpPacketError(RemoteProtocolError):
    """A datagram that is not a valid uTP version-1 packet."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One uTP packet. ``extensions`` is the chain in wire order, ``(type, body)`` each."""

    type: PacketType
    connection_id: int
    timestamp_us: int
    timestamp_diff_us: int
    wnd_size: int
    seq_nr: int
    ack_nr: int
    payload: bytes = b""
    extensions: tuple[tuple[int, bytes], ...] = ()

    @property
    def sack(self) -> bytes | None:
        """The selective ACK bitmask (extension 1), if the packet carries one."""
        for ext, body in self.extensions:
            if ext == EXT_SACK:
                return body
        return None


def seq_diff(a: int, b: int) -> int:
    """``a - b`` on the 16-bit sequence circle, in [-32768, 32767]."""
    d = (a - b) & SEQ_MASK
    return d - 0x10000 if d >= 0x8000 else d


def is_utp_datagram(data: bytes) -> bool:
    """Cheap demultiplexing test: a version-1 header of a known type (KRPC starts with ``b"d"``)."""
    return len(data) >= HEADER_SIZE and (data[0] & 0x0F) == VERSION and (data[0] >> 4) <= PacketType.SYN


def _walk(data: bytes, ext: int, extensions: list[tuple[int, bytes]] | None) -> tuple[int, bytes | None]:
    """Check the extension chain; return the payload offset and the last selective ACK body."""
    n = len(data)
    pos = HEADER_SIZE
    sack: bytes | None = None
    while ext:
        if pos + 2 > n:
            raise UtpPacketError("uTP extension header runs past the end of the datagram")
        nxt, length = data[pos], data[pos + 1]
        pos += 2
        if pos + length > n:
            raise UtpPacketError(f"uTP extension {ext} of {length} bytes runs past the end of the datagram")
        body = bytes(data[pos : pos + length])
        if ext == EXT_SACK:
            # BEP 29 asks for a multiple of 4 bytes; libtorrent sends (span + 7) // 8 bytes, so any
            # length is taken (bits past the end are "not received")
            sack = body
        if extensions is not None:
            extensions.append((ext, body))
        pos += length
        ext = nxt
    return pos, sack


def _header(data: bytes) -> tuple[int, int, int, int, int, int, int, int]:
    n = len(data)
    if n < HEADER_SIZE:
        raise UtpPacketError(f"uTP datagram of {n} bytes is shorter than the {HEADER_SIZE}-byte header")
    fields: tuple[int, int, int, int, int, int, int, int] = HEADER.unpack_from(data)
    type_ver = fields[0]
    if type_ver & 0x0F != VERSION:
        raise UtpPacketError(f"uTP version {type_ver & 0x0F} is not supported (only version 1)")
    if type_ver >> 4 > PacketType.SYN:
        raise UtpPacketError(f"unknown uTP packet type {type_ver >> 4}")
    return fields


def parse(data: bytes) -> tuple[int, int, int, int, int, int, int, bytes | None, int]:
    """The connection's fast path: ``(type, connection_id, timestamp_us, timestamp_diff_us, wnd_size,
    seq_nr, ack_nr, sack, payload_offset)`` without building a :class:`Packet`. Same checks as
    :func:`decode`."""
    type_ver, ext, conn_id, ts, ts_diff, wnd, seq, ack = _header(data)
    pos, sack = _walk(data, ext, None) if ext else (HEADER_SIZE, None)
    return type_ver >> 4, conn_id, ts, ts_diff, wnd, seq, ack, sack, pos


def decode(data: bytes) -> Packet:
    """Parse one datagram. Raises :class:`UtpPacketError` on anything that is not a v1 packet."""
    type_ver, ext, conn_id, ts, ts_diff, wnd, seq, ack = _header(data)
    extensions: list[tuple[int, bytes]] = []
    pos, _ = _walk(data, ext, extensions)
    kind = PacketType(type_ver >> 4)
    return Packet(kind, conn_id, ts, ts_diff, wnd, seq, ack, bytes(data[pos:]), tuple(extensions))


def encode(p: Packet) -> bytes:
    """Serialize ``p`` (the inverse of :func:`decode`)."""
    exts = p.extensions
    head = HEADER.pack(
        (int(p.type) << 4) | VERSION,
        exts[0][0] if exts else 0,
        p.connection_id,
        p.timestamp_us,
        p.timestamp_diff_us,
        p.wnd_size,
        p.seq_nr,
        p.ack_nr,
    )
    if not exts:
        return head + p.payload
    parts = [head]
    for i, (_, body) in enumerate(exts):
        parts.append(bytes((exts[i + 1][0] if i + 1 < len(exts) else 0, len(body))))
        parts.append(body)
    parts.append(p.payload)
    return b"".join(parts)


def sack_bitmask(ack_nr: int, received: Iterable[int], max_bytes: int = 32) -> bytes:
    """The selective ACK body for packets ``received`` beyond ``ack_nr`` (bit 0 = ``ack_nr + 2``).

    The mask is as long as the farthest received packet needs, a multiple of 4 bytes, at most
    ``max_bytes``; packets beyond it are left out (the peer learns of them from a later ACK).
    """
    limit = max_bytes * 8
    bits = 0
    top = -1
    for seq in received:
        i = ((seq - ack_nr) & SEQ_MASK) - 2
        if 0 <= i < limit:
            bits |= 1 << i
            top = max(top, i)
    size = max(4, (top // 32 + 1) * 4)
    return bits.to_bytes(size, "little")


def sack_seqs(ack_nr: int, mask: bytes) -> Iterator[int]:
    """The sequence numbers a selective ACK body marks as received, in increasing order."""
    bits = int.from_bytes(mask, "little")
    i = 0
    while bits:
        if bits & 1:
            yield (ack_nr + 2 + i) & SEQ_MASK
        bits >>= 1
        i += 1
