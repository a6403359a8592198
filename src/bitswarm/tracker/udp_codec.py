"""BEP 15 UDP tracker protocol, sans-I/O, in both directions (client and server).

Every datagram is a fixed big-endian layout::

    connect request   i64 protocol_id=0x41727101980, i32 action=0, i32 transaction_id       (16 B)
    connect response  i32 action=0, i32 transaction_id, i64 connection_id                    (16 B)
    announce request  i64 connection_id, i32 action=1, i32 transaction_id, 20s info_hash,
                      20s peer_id, i64 downloaded, i64 left, i64 uploaded, i32 event, u32 ip,
                      u32 key, i32 num_want, u16 port                                         (98 B)
    announce response i32 action=1, i32 transaction_id, i32 interval, i32 leechers,
                      i32 seeders, then peers: 6 B (IPv4) or 18 B (IPv6) each                 (20+ B)
    scrape request    i64 connection_id, i32 action=2, i32 transaction_id, 20s info_hash * n  (16+20n B)
    scrape response   i32 action=2, i32 transaction_id, (i32 seeders, i32 completed,
                      i32 leechers) * n                                                       (8+12n B)
    error response    i32 action=3, i32 transaction_id, message                               (8+ B)

BEP 15's IPv6 rule: the peer-entry size of an announce response is chosen by the address family of
the socket the announce travelled over, not by anything in the packet, so both
:func:`encode_response` and :func:`decode_response` take ``ipv6``.

Tolerance: bytes after a fixed layout (BEP 41 options after an announce request, padding after a
connect response) are ignored. Everything else that does not fit raises
:class:`TrackerProtocolError` only.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from bitswarm.tracker._common import Event, TrackerEncodeError, TrackerProtocolError

__all__ = [
    "MAX_SCRAPE_HASHES",
    "PROTOCOL_ID",
    "Action",
    "AnnounceRequest",
    "AnnounceResponse",
    "ConnectRequest",
    "ConnectResponse",
    "ErrorResponse",
    "Event",
    "Request",
    "Response",
    "ScrapeRequest",
    "ScrapeResponse",
    "ScrapeStats",
    "TrackerEncodeError",
    "TrackerProtocolError",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "peek_transaction_id",
]

#: BEP 15 magic constant that opens every connect request.
PROTOCOL_ID: Final = 0x41727101980
#: BEP 15: "up to about 74 torrents can be scraped at once" (keeps the datagrams small). Enforced
#: both when encoding and when a server decodes a request.
MAX_SCRAPE_HASHES: Final = 74

_CONNECT_REQ = struct.Struct(">QII")
_HEADER_RESP = struct.Struct(">II")
_CONNECT_RESP = struct.Struct(">IIQ")
_REQ_HEADER = struct.Struct(">QII")
_ANNOUNCE_REQ = struct.Struct(">QII20s20sQQQIIIiH")
_ANNOUNCE_RESP = struct.Struct(">IIIII")
_SCRAPE_ENTRY = struct.Struct(">III")
_PEER4 = struct.Struct(">4sH")
_PEER6 = struct.Struct(">16sH")

_U32: Final = 0xFFFFFFFF
_U64: Final = 0xFFFFFFFFFFFFFFFF
_I32_MAX: Final = 0x7FFFFFFF
_I64_MAX: Final = 0x7FFFFFFFFFFFFFFF


class Action(IntEnum):
    """BEP 15 ``action`` field."""

    CONNECT = 0
    ANNOUNCE = 1
    SCRAPE = 2
    ERROR = 3


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """BEP 15 connect request (client → tracker)."""

    transaction_id: int


@dataclass(frozen=True, slots=True)
class ConnectResponse:
    """BEP 15 connect response; ``connection_id`` is valid for 60 s (tracker → client)."""

    transaction_id: int
    connection_id: int


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    """BEP 15 announce request. ``ip`` None means "use the sender's address" (wire value 0; IPv4
    only, BEP 15 notes the field is unusable over IPv6). ``num_want`` -1 means "tracker default"."""

    connection_id: int
    transaction_id: int
    info_hash: bytes
    peer_id: bytes
    downloaded: int
    left: int
    uploaded: int
    event: Event
    key: int
    port: int
    ip: str | None = None
    num_want: int = -1


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    """BEP 15 announce response. ``peers`` are (address, port) pairs, IPv4 or IPv6 per the socket."""

    transaction_id: int
    interval: int
    leechers: int
    seeders: int
    peers: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ScrapeRequest:
    """BEP 15 scrape request: 1..74 info-hashes."""

    connection_id: int
    transaction_id: int
    info_hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ScrapeStats:
    """One torrent's scrape counters (BEP 15 order: seeders, completed, leechers)."""

    seeders: int
    completed: int
    leechers: int


@dataclass(frozen=True, slots=True)
class ScrapeResponse:
    """BEP 15 scrape response: one :class:`ScrapeStats` per requested hash, in request order."""

    transaction_id: int
    files: tuple[ScrapeStats, ...]


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """BEP 15 error response (action 3): a human-readable message."""

    transaction_id: int
    message: str


Request = ConnectRequest | AnnounceRequest | ScrapeRequest
Response = ConnectResponse | AnnounceResponse | ScrapeResponse | ErrorResponse


# --------------------------------------------------------------------------------------------- encode


def _check(value: int, lo: int, hi: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise TrackerEncodeError(f"{name}={value!r} out of range [{lo}, {hi}]")
    return value


def _check_hash(value: bytes, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 20:
        raise TrackerEncodeError(f"{name} must be 20 bytes")
    return value


def _ipv4_bytes(ip: str | None) -> int:
    if ip is None:
        return 0
    try:
        return int(ipaddress.IPv4Address(ip))
    except ValueError:
        raise TrackerEncodeError(f"ip {ip!r} is not an IPv4 address (BEP 15)") from None


def encode_request(request: Request) -> bytes:
    """Bytes of a client → tracker datagram. Raises :class:`TrackerEncodeError` on bad fields."""
    if isinstance(request, ConnectRequest):
        return _CONNECT_REQ.pack(PROTOCOL_ID, Action.CONNECT, _check(request.transaction_id, 0, _U32, "tid"))
    if isinstance(request, AnnounceRequest):
        return _ANNOUNCE_REQ.pack(
            _check(request.connection_id, 0, _U64, "connection_id"),
            Action.ANNOUNCE,
            _check(request.transaction_id, 0, _U32, "transaction_id"),
            _check_hash(request.info_hash, "info_hash"),
            _check_hash(request.peer_id, "peer_id"),
            _check(request.downloaded, 0, _I64_MAX, "downloaded"),
            _check(request.left, 0, _I64_MAX, "left"),
            _check(request.uploaded, 0, _I64_MAX, "uploaded"),
            _check(int(request.event), 0, int(Event.STOPPED), "event"),
            _ipv4_bytes(request.ip),
            _check(request.key, 0, _U32, "key"),
            _check(request.num_want, -1, _I32_MAX, "num_want"),
            _check(request.port, 0, 0xFFFF, "port"),
        )
    if isinstance(request, ScrapeRequest):
        if not 1 <= len(request.info_hashes) <= MAX_SCRAPE_HASHES:
            raise TrackerEncodeError(f"a scrape carries 1..{MAX_SCRAPE_HASHES} info-hashes")
        return _REQ_HEADER.pack(
            _check(request.connection_id, 0, _U64, "connection_id"),
            Action.SCRAPE,
            _check(request.transaction_id, 0, _U32, "transaction_id"),
        ) + b"".join(_check_hash(h, "info_hash") for h in request.info_hashes)
    raise TrackerEncodeError(f"not a UDP tracker request: {type(request).__name__}")


def _pack_peer(ip: str, port: int, ipv6: bool) -> bytes:
    if not ipv6:
        quad = ip.split(".") if isinstance(ip, str) else []
        if len(quad) == 4 and all(q.isdigit() and len(q) <= 3 and (q == "0" or q[0] != "0") for q in quad):
            octets = [int(q) for q in quad]
            if max(octets) <= 255 and isinstance(port, int) and 0 <= port <= 0xFFFF:
                return bytes(octets) + port.to_bytes(2, "big")
    try:
        addr = ipaddress.IPv6Address(ip) if ipv6 else ipaddress.IPv4Address(ip)
    except ValueError:
        fam = "IPv6" if ipv6 else "IPv4"
        raise TrackerEncodeError(f"peer address {ip!r} is not {fam} (BEP 15 IPv6 rule)") from None
    return addr.packed + _check(port, 0, 0xFFFF, "peer port").to_bytes(2, "big")


def encode_response(response: Response, *, ipv6: bool = False) -> bytes:
    """Bytes of a tracker → client datagram. ``ipv6``: the reply travels over an IPv6 socket, so
    announce peers are 18-byte entries (BEP 15); otherwise 6-byte IPv4 entries."""
    tid = _check(response.transaction_id, 0, _U32, "transaction_id")
    if isinstance(response, ConnectResponse):
        return _CONNECT_RESP.pack(Action.CONNECT, tid, _check(response.connection_id, 0, _U64, "conn id"))
    if isinstance(response, AnnounceResponse):
        head = _ANNOUNCE_RESP.pack(
            Action.ANNOUNCE,
            tid,
            _check(response.interval, 0, _U32, "interval"),
            _check(response.leechers, 0, _U32, "leechers"),
            _check(response.seeders, 0, _U32, "seeders"),
        )
        return head + b"".join(_pack_peer(ip, port, ipv6) for ip, port in response.peers)
    if isinstance(response, ScrapeResponse):
        return _HEADER_RESP.pack(Action.SCRAPE, tid) + b"".join(
            _SCRAPE_ENTRY.pack(
                _check(s.seeders, 0, _U32, "seeders"),
                _check(s.completed, 0, _U32, "completed"),
                _check(s.leechers, 0, _U32, "leechers"),
            )
            for s in response.files
        )
    if isinstance(response, ErrorResponse):
        return _HEADER_RESP.pack(Action.ERROR, tid) + response.message.encode("utf-8")
    raise TrackerEncodeError(f"not a UDP tracker response: {type(response).__name__}")


# --------------------------------------------------------------------------------------------- decode


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TrackerProtocolError(f"datagram must be bytes, not {type(data).__name__}")


def decode_request(data: bytes | bytearray | memoryview) -> Request:
    """Parse a client → tracker datagram (the server side). Raises only :class:`TrackerProtocolError`."""
    data = _as_bytes(data)
    if len(data) < 16:
        raise TrackerProtocolError(f"request of {len(data)} bytes is shorter than 16")
    conn_id, action, tid = _REQ_HEADER.unpack_from(data)
    if action == Action.CONNECT:
        if conn_id != PROTOCOL_ID:
            raise TrackerProtocolError("connect request without the BEP 15 protocol id")
        return ConnectRequest(tid)
    if action == Action.ANNOUNCE:
        if len(data) < _ANNOUNCE_REQ.size:
            raise TrackerProtocolError(f"announce request of {len(data)} bytes, need 98")
        (_, _, _, info_hash, peer_id, downloaded, left, uploaded, event, ip, key, num_want, port) = (
            _ANNOUNCE_REQ.unpack_from(data)
        )
        if event > Event.STOPPED:
            raise TrackerProtocolError(f"unknown announce event {event}")
        if max(downloaded, left, uploaded) > _I64_MAX:
            raise TrackerProtocolError("negative byte counter in announce")
        if num_want < -1:
            num_want = -1  # BEP 15 only defines -1 for "default"; treat other negatives the same
        return AnnounceRequest(
            connection_id=conn_id,
            transaction_id=tid,
            info_hash=info_hash,
            peer_id=peer_id,
            downloaded=downloaded,
            left=left,
            uploaded=uploaded,
            event=Event(event),
            key=key,
            port=port,
            ip=str(ipaddress.IPv4Address(ip)) if ip else None,
            num_want=num_want,
        )
    if action == Action.SCRAPE:
        body = len(data) - 16
        if body == 0 or body % 20:
            raise TrackerProtocolError(f"scrape request body of {body} bytes is not n*20, n >= 1")
        if body // 20 > MAX_SCRAPE_HASHES:
            raise TrackerProtocolError(f"scrape request of {body // 20} hashes (max {MAX_SCRAPE_HASHES})")
        hashes = tuple(data[i : i + 20] for i in range(16, len(data), 20))
        return ScrapeRequest(conn_id, tid, hashes)
    raise TrackerProtocolError(f"unknown request action {action}")


def peek_transaction_id(data: bytes | bytearray | memoryview) -> int | None:
    """The transaction id of a tracker → client datagram, or None if it is too short to have one."""
    if len(data) < 8:
        return None
    return int.from_bytes(bytes(data[4:8]), "big")


def _peers(data: bytes, start: int, ipv6: bool) -> tuple[tuple[str, int], ...]:
    entry = _PEER6 if ipv6 else _PEER4
    if (len(data) - start) % entry.size:
        kind = "18-byte IPv6" if ipv6 else "6-byte IPv4"
        raise TrackerProtocolError(f"announce response peers are not a whole number of {kind} entries")
    if ipv6:
        return tuple((str(ipaddress.IPv6Address(a)), p) for a, p in entry.iter_unpack(data[start:]))
    d = data  # IPv4 by hand: several times faster than ipaddress for a 200-peer reply
    return tuple(
        (f"{d[i]}.{d[i + 1]}.{d[i + 2]}.{d[i + 3]}", (d[i + 4] << 8) | d[i + 5])
        for i in range(start, len(d), 6)
    )


def decode_response(
    data: bytes | bytearray | memoryview,
    *,
    ipv6: bool = False,
    expecting: Action | None = None,
) -> Response:
    """Parse a tracker → client datagram. Raises only :class:`TrackerProtocolError`.

    ``expecting``: the action the client asked for; any other action except ERROR is an error.
    ``ipv6``: the socket is IPv6, so announce peers are 18-byte entries (BEP 15).
    """
    data = _as_bytes(data)
    if len(data) < 8:
        raise TrackerProtocolError(f"response of {len(data)} bytes is shorter than 8")
    action, tid = _HEADER_RESP.unpack_from(data)
    if action > Action.ERROR:
        raise TrackerProtocolError(f"unknown response action {action}")
    if expecting is not None and action not in (expecting, Action.ERROR):
        raise TrackerProtocolError(f"expected a {Action(expecting).name} response, got {Action(action).name}")
    if action == Action.CONNECT:
        if len(data) < _CONNECT_RESP.size:
            raise TrackerProtocolError(f"connect response of {len(data)} bytes, need 16")
        return ConnectResponse(tid, _CONNECT_RESP.unpack_from(data)[2])
    if action == Action.ANNOUNCE:
        if len(data) < _ANNOUNCE_RESP.size:
            raise TrackerProtocolError(f"announce response of {len(data)} bytes, need 20")
        _, _, interval, leechers, seeders = _ANNOUNCE_RESP.unpack_from(data)
        return AnnounceResponse(tid, interval, leechers, seeders, _peers(data, 20, ipv6))
    if action == Action.SCRAPE:
        if (len(data) - 8) % 12:
            raise TrackerProtocolError("scrape response body is not a whole number of 12-byte entries")
        return ScrapeResponse(tid, tuple(ScrapeStats(*e) for e in _SCRAPE_ENTRY.iter_unpack(data[8:])))
    return ErrorResponse(tid, data[8:].decode("utf-8", errors="replace"))
