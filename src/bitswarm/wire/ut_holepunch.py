"""BEP 55 hole punching (``ut_holepunch``): the message codec.

Sans-I/O. The payload travels inside :class:`~bitswarm.wire.Extended` on the extended id the receiver
put under ``"ut_holepunch"`` in its BEP 10 handshake ``m`` dictionary. It is binary, not bencoded::

    msg_type  1 byte   0x00 rendezvous, 0x01 connect, 0x02 error
    addr_type 1 byte   0x00 IPv4, 0x01 IPv6
    addr      4 or 16 bytes, big-endian
    port      2 bytes, big-endian
    err_code  4 bytes, big-endian (0 in rendezvous and connect)

so a message is 12 (IPv4) or 24 (IPv6) bytes. libtorrent (which BEP 55 was written from) leaves
``err_code`` out of ``rendezvous`` and ``connect`` (8 or 20 bytes): the decoder accepts both forms,
the encoder always writes the BEP's full one (libtorrent ignores the trailing zeros).

* ``rendezvous`` (initiator -> relay): "connect me to this endpoint, which you are connected to".
* ``connect`` (relay -> both sides): "open a uTP connection to this endpoint now" (each side gets the
  other's endpoint; both dial at once, so each NAT sees an outgoing flow before the other's SYN).
* ``error`` (relay -> initiator): the rendezvous cannot be done, with the rendezvous's own endpoint
  and one of :class:`HolepunchErrorCode`.

:func:`encode_holepunch_message` / :func:`decode_holepunch_message` convert :class:`HolepunchMessage`
to payload bytes and back. Malformed payloads (wrong length, unknown message or address type, a
non-zero error code outside an ``error`` message) raise
:class:`~bitswarm.wire.ut_metadata.ExtensionProtocolError` and nothing else; an error code we do not
know is kept as its number (BEP 55 may add codes).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from bitswarm.wire._errors import LocalWireError
from bitswarm.wire.ut_metadata import ExtensionProtocolError

__all__ = [
    "EXTENSION_NAME",
    "ExtensionProtocolError",
    "HolepunchErrorCode",
    "HolepunchMessage",
    "HolepunchType",
    "decode_holepunch_message",
    "encode_holepunch_message",
]

#: The name in the BEP 10 handshake ``m`` dictionary.
EXTENSION_NAME: Final = "ut_holepunch"

_ADDR_V4, _ADDR_V6 = 0x00, 0x01
_TAIL = struct.Struct(">HI")  # port, err_code
_LEN_V4 = 2 + 4 + _TAIL.size  # 12
_LEN_V6 = 2 + 16 + _TAIL.size  # 24
_CODE = 4  # err_code's size: absent from libtorrent's rendezvous and connect


class HolepunchType(enum.IntEnum):
    """BEP 55 ``msg_type``."""

    RENDEZVOUS = 0x00
    CONNECT = 0x01
    ERROR = 0x02


class HolepunchErrorCode(enum.IntEnum):
    """BEP 55 ``err_code`` of an ``error`` message."""

    NO_SUCH_PEER = 0x01  #: the target endpoint is invalid
    NOT_CONNECTED = 0x02  #: the relay is not connected to the target
    NO_SUPPORT = 0x03  #: the target does not support ``ut_holepunch``
    NO_SELF = 0x04  #: the target endpoint is the relay itself


@dataclass(frozen=True, slots=True)
class HolepunchMessage:
    """One BEP 55 message: its type, the endpoint (``ip`` normalized text, ``port``) and, for an
    ``error``, the code (a :class:`HolepunchErrorCode`, or the bare number of an unknown one)."""

    type: HolepunchType
    ip: str
    port: int
    error: int = 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.ip, self.port)

    @classmethod
    def rendezvous(cls, address: tuple[str, int]) -> HolepunchMessage:
        return cls(HolepunchType.RENDEZVOUS, *address)

    @classmethod
    def connect(cls, address: tuple[str, int]) -> HolepunchMessage:
        return cls(HolepunchType.CONNECT, *address)

    @classmethod
    def failure(cls, address: tuple[str, int], code: HolepunchErrorCode) -> HolepunchMessage:
        """The ``error`` answering a rendezvous for ``address`` (BEP 55: the same endpoint)."""
        return cls(HolepunchType.ERROR, *address, error=code)


def encode_holepunch_message(msg: HolepunchMessage) -> bytes:
    """The :class:`~bitswarm.wire.Extended` payload for ``msg`` (BEP 55).

    Raises :class:`~bitswarm.wire.LocalWireError` for an address that is not an IP literal, a port
    outside 0..65535, an error code outside 0..2**32-1, or an error code on a message that is not an
    ``error``."""
    try:
        kind = HolepunchType(msg.type)
    except ValueError:
        raise LocalWireError(f"unknown ut_holepunch message type {msg.type!r}") from None
    try:
        addr = ipaddress.ip_address(msg.ip)
    except ValueError:
        raise LocalWireError(f"not an IP address: {msg.ip!r}") from None
    if type(msg.port) is not int or not 0 <= msg.port < 65536:
        raise LocalWireError(f"bad port: {msg.port!r}")
    if not isinstance(msg.error, int) or not 0 <= msg.error < 2**32:
        raise LocalWireError(f"bad ut_holepunch error code: {msg.error!r}")
    if msg.error and kind is not HolepunchType.ERROR:
        raise LocalWireError("only an error message carries an error code (BEP 55)")
    addr_type = _ADDR_V4 if addr.version == 4 else _ADDR_V6
    return bytes((kind, addr_type)) + addr.packed + _TAIL.pack(msg.port, msg.error)


def decode_holepunch_message(payload: bytes) -> HolepunchMessage:
    """Decode a ``ut_holepunch`` payload (BEP 55); :class:`ExtensionProtocolError` for malformed input."""
    data = bytes(payload)
    if len(data) < 2:
        raise ExtensionProtocolError(f"ut_holepunch message of {len(data)} bytes")
    try:
        kind = HolepunchType(data[0])
    except ValueError:
        raise ExtensionProtocolError(f"unknown ut_holepunch message type {data[0]:#04x}") from None
    if data[1] == _ADDR_V4:
        size, alen = _LEN_V4, 4
    elif data[1] == _ADDR_V6:
        size, alen = _LEN_V6, 16
    else:
        raise ExtensionProtocolError(f"unknown ut_holepunch address type {data[1]:#04x}")
    if len(data) == size - _CODE and kind is not HolepunchType.ERROR:
        data += bytes(_CODE)  # libtorrent's form
    if len(data) != size:
        name = kind.name.lower()
        raise ExtensionProtocolError(f"ut_holepunch {name} of {len(data)} bytes (expected {size})")
    raw = data[2 : 2 + alen]
    ip = ipaddress.IPv4Address(raw) if alen == 4 else ipaddress.IPv6Address(raw)
    port, code = _TAIL.unpack_from(data, 2 + alen)
    if code and kind is not HolepunchType.ERROR:
        raise ExtensionProtocolError(f"ut_holepunch {kind.name.lower()} with error code {code}")
    error: int = code
    if kind is HolepunchType.ERROR and code in HolepunchErrorCode._value2member_map_:
        error = HolepunchErrorCode(code)
    return HolepunchMessage(kind, ip.compressed, port, error)
