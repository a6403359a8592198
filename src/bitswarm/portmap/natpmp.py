"""NAT-PMP (RFC 6886) and PCP (RFC 6887) messages, sans I/O: requests to bytes, bytes to responses.

Both protocols share the gateway's UDP port 5351. A client asks with PCP (version 2) first; a gateway
that speaks only NAT-PMP answers any version-2 packet with a NAT-PMP "unsupported version" response
(RFC 6887 section 9), and the client falls back to NAT-PMP (version 0). Only the MAP opcode of PCP is
used (no PEER, no options); a request with lifetime 0 deletes a mapping in both protocols.

:func:`decode_response` turns bytes into one of the frozen response dataclasses below, or raises
:class:`~bitswarm.portmap.errors.MalformedResponse` (only that) for anything else: a wrong length,
a request instead of a response, an unknown version or opcode.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from bitswarm.portmap.errors import MalformedResponse

__all__ = [
    "NATPMP_PORT",
    "PCP_MAP_REQUEST_SIZE",
    "NatPmpAddressResponse",
    "NatPmpErrorResponse",
    "NatPmpMapResponse",
    "NatPmpResult",
    "PcpErrorResponse",
    "PcpMapResponse",
    "PcpResult",
    "Protocol",
    "Response",
    "decode_response",
    "encode_natpmp_address_request",
    "encode_natpmp_map_request",
    "encode_pcp_map_request",
]

NATPMP_PORT = 5351
Protocol = Literal["tcp", "udp"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NATPMP_VERSION = 0
PCP_VERSION = 2
_RESPONSE_BIT = 0x80
_OP_ADDRESS = 0
_OP_MAP_UDP = 1
_OP_MAP_TCP = 2
_PCP_OP_MAP = 1
_IPPROTO = {"tcp": 6, "udp": 17}
_IPPROTO_NAME: dict[int, Protocol] = {6: "tcp", 17: "udp"}
_NATPMP_OP: dict[Protocol, int] = {"udp": _OP_MAP_UDP, "tcp": _OP_MAP_TCP}
_NATPMP_PROTO: dict[int, Protocol] = {_OP_MAP_UDP: "udp", _OP_MAP_TCP: "tcp"}
_PCP_HEADER = struct.Struct("!BBxBII12x")  # version, R|opcode, reserved, result, lifetime, epoch
_PCP_MAP = struct.Struct("!12sB3xHH16s")  # nonce, protocol, reserved, internal port, ext port, ext IP
PCP_MAP_REQUEST_SIZE = 24 + _PCP_MAP.size
_PCP_MAX = 1100  # RFC 6887 section 7: a PCP message is at most 1100 bytes, a multiple of 4
_U32 = 0xFFFFFFFF


class NatPmpResult(IntEnum):
    """RFC 6886 section 3.5 result codes."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


class PcpResult(IntEnum):
    """RFC 6887 section 7.4 result codes."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


def result_name(version: int, code: int) -> str:
    """``"NOT_AUTHORIZED"`` etc., or ``"result <code>"`` for a code the RFC does not define."""
    enum: type[IntEnum] = PcpResult if version == PCP_VERSION else NatPmpResult
    try:
        return enum(code).name
    except ValueError:
        return f"result {code}"


@dataclass(frozen=True)
class NatPmpAddressResponse:
    """NAT-PMP external address (opcode 128), result SUCCESS."""

    epoch: int
    external_ip: ipaddress.IPv4Address


@dataclass(frozen=True)
class NatPmpMapResponse:
    """NAT-PMP mapping (opcode 129/130), result SUCCESS; ``lifetime`` 0 confirms a deletion."""

    protocol: Protocol
    epoch: int
    internal_port: int
    external_port: int
    lifetime: int


@dataclass(frozen=True)
class NatPmpErrorResponse:
    """Any NAT-PMP response with a result other than SUCCESS (also the answer of a NAT-PMP-only
    gateway to a PCP request: version 0, UNSUPPORTED_VERSION)."""

    opcode: int
    result: int
    epoch: int


@dataclass(frozen=True)
class PcpMapResponse:
    """PCP MAP response, result SUCCESS."""

    lifetime: int
    epoch: int
    nonce: bytes
    protocol: Protocol
    internal_port: int
    external_port: int
    external_ip: IPAddress


@dataclass(frozen=True)
class PcpErrorResponse:
    """A PCP response with a result other than SUCCESS; ``lifetime`` is how long the error holds."""

    opcode: int
    result: int
    lifetime: int
    epoch: int


Response = NatPmpAddressResponse | NatPmpMapResponse | NatPmpErrorResponse | PcpMapResponse | PcpErrorResponse


# -- requests ------------------------------------------------------------------------------------
def _check_port(port: int, what: str) -> None:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} {port} is not a port number")


def _check_lifetime(lifetime: int) -> None:
    if not 0 <= lifetime <= _U32:
        raise ValueError(f"lifetime {lifetime} does not fit in 32 bits")


def encode_natpmp_address_request() -> bytes:
    """RFC 6886 section 3.2: ask for the external address."""
    return bytes((NATPMP_VERSION, _OP_ADDRESS))


def encode_natpmp_map_request(
    protocol: Protocol, internal_port: int, external_port: int, lifetime: int
) -> bytes:
    """RFC 6886 section 3.3: map (or, with ``lifetime`` 0, delete) ``internal_port``."""
    _check_port(internal_port, "internal port")
    _check_port(external_port, "external port")
    _check_lifetime(lifetime)
    return struct.pack(
        "!BBHHHI", NATPMP_VERSION, _NATPMP_OP[protocol], 0, internal_port, external_port, lifetime
    )


def _ip16(addr: IPAddress) -> bytes:
    """An address as PCP carries it: IPv6, or IPv4 mapped into ``::ffff:0:0/96``."""
    if isinstance(addr, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed).packed
    return addr.packed


def _from_ip16(raw: bytes) -> IPAddress:
    v6 = ipaddress.IPv6Address(raw)
    return v6.ipv4_mapped or v6


def encode_pcp_map_request(
    *,
    nonce: bytes,
    protocol: Protocol,
    internal_port: int,
    external_port: int,
    lifetime: int,
    client_ip: IPAddress,
    external_ip: IPAddress | None = None,
) -> bytes:
    """RFC 6887 sections 7.1 and 11.1: a MAP request (``lifetime`` 0 deletes). ``nonce`` (12 random
    bytes) identifies the mapping: renewals and the deletion reuse it. ``client_ip`` must be the
    source address the gateway sees, else it answers ADDRESS_MISMATCH."""
    if len(nonce) != 12:
        raise ValueError("a PCP mapping nonce is 12 bytes")
    _check_port(internal_port, "internal port")
    _check_port(external_port, "external port")
    _check_lifetime(lifetime)
    suggested = external_ip if external_ip is not None else ipaddress.IPv4Address(0)
    header = struct.pack("!BBHI16s", PCP_VERSION, _PCP_OP_MAP, 0, lifetime, _ip16(client_ip))
    body = _PCP_MAP.pack(nonce, _IPPROTO[protocol], internal_port, external_port, _ip16(suggested))
    return header + body


# -- responses -----------------------------------------------------------------------------------
def decode_response(data: bytes) -> Response:
    """Parse one datagram from the gateway; :class:`MalformedResponse` for anything invalid."""
    if len(data) < 2:
        raise MalformedResponse(f"{len(data)}-byte datagram is too short for NAT-PMP or PCP")
    version = data[0]
    if version == NATPMP_VERSION:
        return _decode_natpmp(data)
    if version == PCP_VERSION:
        return _decode_pcp(data)
    raise MalformedResponse(f"unknown NAT-PMP/PCP version {version}")


def _decode_natpmp(data: bytes) -> Response:
    opcode = data[1]
    if not opcode & _RESPONSE_BIT:
        raise MalformedResponse(f"NAT-PMP request (opcode {opcode}) where a response was expected")
    if len(data) < 8:
        raise MalformedResponse(f"NAT-PMP response of {len(data)} bytes (at least 8)")
    result, epoch = struct.unpack_from("!HI", data, 2)
    op = opcode & ~_RESPONSE_BIT
    if result != NatPmpResult.SUCCESS:
        return NatPmpErrorResponse(op, result, epoch)
    if op == _OP_ADDRESS:
        if len(data) != 12:
            raise MalformedResponse(f"NAT-PMP address response of {len(data)} bytes (12)")
        return NatPmpAddressResponse(epoch, ipaddress.IPv4Address(data[8:12]))
    if op in _NATPMP_PROTO:
        if len(data) != 16:
            raise MalformedResponse(f"NAT-PMP mapping response of {len(data)} bytes (16)")
        internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
        return NatPmpMapResponse(_NATPMP_PROTO[op], epoch, internal, external, lifetime)
    raise MalformedResponse(f"unknown NAT-PMP response opcode {opcode}")


def _decode_pcp(data: bytes) -> Response:
    if len(data) < _PCP_HEADER.size or len(data) > _PCP_MAX or len(data) % 4:
        raise MalformedResponse(f"PCP message of {len(data)} bytes (24..1100, a multiple of 4)")
    _, r_op, result, lifetime, epoch = _PCP_HEADER.unpack_from(data)
    if not r_op & _RESPONSE_BIT:
        raise MalformedResponse("PCP request where a response was expected")
    op = r_op & ~_RESPONSE_BIT
    if result != PcpResult.SUCCESS:
        return PcpErrorResponse(op, result, lifetime, epoch)
    if op != _PCP_OP_MAP:
        raise MalformedResponse(f"unexpected PCP response opcode {op}")
    if len(data) < PCP_MAP_REQUEST_SIZE:
        raise MalformedResponse(f"PCP MAP response of {len(data)} bytes (at least {PCP_MAP_REQUEST_SIZE})")
    nonce, proto, internal, external, ext_ip = _PCP_MAP.unpack_from(data, _PCP_HEADER.size)
    if proto not in _IPPROTO_NAME:
        raise MalformedResponse(f"PCP MAP response for IP protocol {proto}, not TCP or UDP")
    return PcpMapResponse(
        lifetime, epoch, nonce, _IPPROTO_NAME[proto], internal, external, _from_ip16(ext_ip)
    )
