"""Peer wire events: the handshake, the reserved bits and every message, as frozen dataclasses.

The same classes flow in both directions: :meth:`PeerConnection.next_event` returns them and
:meth:`PeerConnection.send` takes them. Message ids and layouts follow BEP 3 (core), BEP 5 (``port``),
BEP 6 (fast extension), BEP 10 (extension protocol) and BEP 52 (hash request, hashes, hash reject).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from bitswarm.bencode import BencodeEncodeError, BencodeError, decode, encode
from bitswarm.wire._errors import LocalWireError, WireProtocolError

#: BEP 3 protocol string, preceded on the wire by its length byte (19).
PROTOCOL: Final = b"BitTorrent protocol"
#: The first 20 bytes of every handshake.
HANDSHAKE_PREFIX: Final = bytes([len(PROTOCOL)]) + PROTOCOL
#: Total handshake length: 1 + 19 + 8 reserved + 20 info_hash + 20 peer_id.
HANDSHAKE_LENGTH: Final = 68

# Message ids (BEP 3 unless noted).
MSG_CHOKE: Final = 0
MSG_UNCHOKE: Final = 1
MSG_INTERESTED: Final = 2
MSG_NOT_INTERESTED: Final = 3
MSG_HAVE: Final = 4
MSG_BITFIELD: Final = 5
MSG_REQUEST: Final = 6
MSG_PIECE: Final = 7
MSG_CANCEL: Final = 8
MSG_PORT: Final = 9  # BEP 5
MSG_SUGGEST_PIECE: Final = 13  # BEP 6
MSG_HAVE_ALL: Final = 14  # BEP 6
MSG_HAVE_NONE: Final = 15  # BEP 6
MSG_REJECT_REQUEST: Final = 16  # BEP 6
MSG_ALLOWED_FAST: Final = 17  # BEP 6
MSG_EXTENDED: Final = 20  # BEP 10
MSG_HASH_REQUEST: Final = 21  # BEP 52
MSG_HASHES: Final = 22  # BEP 52
MSG_HASH_REJECT: Final = 23  # BEP 52

#: The block size every client requests (BEP 3 convention; libtorrent rejects larger requests).
BLOCK_SIZE: Final = 16 * 1024


class Event:
    """Base class of everything :meth:`PeerConnection.next_event` returns and ``send`` takes."""

    __slots__ = ()


class Message(Event):
    """A length-prefixed peer wire message (everything after the handshake)."""

    __slots__ = ()
    #: Message id on the wire; ``None`` for :class:`KeepAlive` (which has no id byte).
    MESSAGE_ID: ClassVar[int | None] = None


# --------------------------------------------------------------------------------------------------
# Handshake (BEP 3) and reserved bits


@dataclass(frozen=True, slots=True)
class Reserved:
    """The 8 reserved handshake bytes with the extension bits bitswarm knows by name."""

    raw: bytes = bytes(8)

    def __post_init__(self) -> None:
        if len(self.raw) != 8:
            raise LocalWireError(f"reserved bytes must be 8 long, got {len(self.raw)}")

    @classmethod
    def make(
        cls, *, fast: bool = False, extension_protocol: bool = False, dht: bool = False, v2: bool = False
    ) -> Reserved:
        """Reserved bytes with the named bits set."""
        b = bytearray(8)
        if extension_protocol:
            b[5] |= 0x10
        if fast:
            b[7] |= 0x04
        if dht:
            b[7] |= 0x01
        if v2:
            b[7] |= 0x10
        return cls(bytes(b))

    @property
    def fast(self) -> bool:
        """BEP 6 fast extension: ``reserved[7] & 0x04``."""
        return bool(self.raw[7] & 0x04)

    @property
    def extension_protocol(self) -> bool:
        """BEP 10 extension protocol: ``reserved[5] & 0x10``."""
        return bool(self.raw[5] & 0x10)

    @property
    def dht(self) -> bool:
        """BEP 5 DHT (the peer may send ``port``): ``reserved[7] & 0x01``."""
        return bool(self.raw[7] & 0x01)

    @property
    def v2(self) -> bool:
        """BEP 52 upgrade to v2 for hybrid torrents: ``reserved[7] & 0x10``."""
        return bool(self.raw[7] & 0x10)


@dataclass(frozen=True, slots=True)
class HandshakeHeader(Event):
    """Receive-only: the first 48 handshake bytes arrived (BEP 3).

    Emitted before :class:`Handshake` so that a listening side can pick the torrent from
    ``info_hash`` (and call :meth:`PeerConnection.set_layout`) and send its own handshake without
    waiting for the peer id, as BEP 3 allows the initiator to wait for the reply before sending it.
    """

    reserved: Reserved
    info_hash: bytes


@dataclass(frozen=True, slots=True)
class Handshake(Event):
    """The BEP 3 handshake: ``\\x13BitTorrent protocol`` + reserved + info_hash + peer_id."""

    info_hash: bytes
    peer_id: bytes
    reserved: Reserved = field(default_factory=Reserved)

    def __post_init__(self) -> None:
        if len(self.info_hash) != 20 or len(self.peer_id) != 20:
            raise LocalWireError("info_hash and peer_id must be 20 bytes each")


# --------------------------------------------------------------------------------------------------
# BEP 3 messages


@dataclass(frozen=True, slots=True)
class KeepAlive(Message):
    """Zero-length message (BEP 3)."""


@dataclass(frozen=True, slots=True)
class Choke(Message):
    """BEP 3 ``choke`` (id 0)."""

    MESSAGE_ID: ClassVar[int | None] = MSG_CHOKE


@dataclass(frozen=True, slots=True)
class Unchoke(Message):
    """BEP 3 ``unchoke`` (id 1)."""

    MESSAGE_ID: ClassVar[int | None] = MSG_UNCHOKE


@dataclass(frozen=True, slots=True)
class Interested(Message):
    """BEP 3 ``interested`` (id 2)."""

    MESSAGE_ID: ClassVar[int | None] = MSG_INTERESTED


@dataclass(frozen=True, slots=True)
class NotInterested(Message):
    """BEP 3 ``not interested`` (id 3)."""

    MESSAGE_ID: ClassVar[int | None] = MSG_NOT_INTERESTED


@dataclass(frozen=True, slots=True)
class Have(Message):
    """BEP 3 ``have`` (id 4): the sender completed and verified piece ``index``."""

    MESSAGE_ID: ClassVar[int | None] = MSG_HAVE
    index: int


@dataclass(frozen=True, slots=True)
class Bitfield(Message):
    """BEP 3 ``bitfield`` (id 5): piece 0 is the high bit of the first byte; spare bits are zero."""

    MESSAGE_ID: ClassVar[int | None] = MSG_BITFIELD
    bits: bytes

    def has(self, index: int) -> bool:
        """Whether the bit of piece ``index`` is set."""
        return bool(self.bits[index >> 3] & (0x80 >> (index & 7)))


@dataclass(frozen=True, slots=True)
class Request(Message):
    """BEP 3 ``request`` (id 6) for ``length`` bytes at ``begin`` in piece ``index``."""

    MESSAGE_ID: ClassVar[int | None] = MSG_REQUEST
    index: int
    begin: int
    length: int

    @property
    def oversized(self) -> bool:
        """Longer than the 16 KiB block everyone uses: tolerated by the codec, the session rejects it."""
        return self.length > BLOCK_SIZE


@dataclass(frozen=True, slots=True)
class Piece(Message):
    """BEP 3 ``piece`` (id 7): a block of data.

    Received blocks are a read-only ``memoryview`` into the bytes given to ``receive_data`` (no copy)
    or into the buffer a block sink provided; sent blocks may be any bytes-like object.
    """

    MESSAGE_ID: ClassVar[int | None] = MSG_PIECE
    index: int
    begin: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class Cancel(Message):
    """BEP 3 ``cancel`` (id 8) of an earlier request."""

    MESSAGE_ID: ClassVar[int | None] = MSG_CANCEL
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class Port(Message):
    """BEP 5 ``port`` (id 9): the sender's DHT node listens on UDP ``port``."""

    MESSAGE_ID: ClassVar[int | None] = MSG_PORT
    port: int


# --------------------------------------------------------------------------------------------------
# BEP 6 fast extension


@dataclass(frozen=True, slots=True)
class SuggestPiece(Message):
    """BEP 6 ``suggest piece`` (id 13)."""

    MESSAGE_ID: ClassVar[int | None] = MSG_SUGGEST_PIECE
    index: int


@dataclass(frozen=True, slots=True)
class HaveAll(Message):
    """BEP 6 ``have all`` (id 14): replaces the bitfield of a seed."""

    MESSAGE_ID: ClassVar[int | None] = MSG_HAVE_ALL


@dataclass(frozen=True, slots=True)
class HaveNone(Message):
    """BEP 6 ``have none`` (id 15): replaces an empty bitfield."""

    MESSAGE_ID: ClassVar[int | None] = MSG_HAVE_NONE


@dataclass(frozen=True, slots=True)
class RejectRequest(Message):
    """BEP 6 ``reject request`` (id 16)."""

    MESSAGE_ID: ClassVar[int | None] = MSG_REJECT_REQUEST
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class AllowedFast(Message):
    """BEP 6 ``allowed fast`` (id 17)."""

    MESSAGE_ID: ClassVar[int | None] = MSG_ALLOWED_FAST
    index: int


# --------------------------------------------------------------------------------------------------
# BEP 10 extension protocol


@dataclass(frozen=True, slots=True)
class Extended(Message):
    """BEP 10 extended message (id 20) with a non-zero extended id and a raw payload.

    ``ext_id`` is the id the *receiver* assigned in its extended handshake ``m`` dictionary.
    Extended id 0 (the handshake) is always :class:`ExtendedHandshake`.
    """

    MESSAGE_ID: ClassVar[int | None] = MSG_EXTENDED
    ext_id: int
    payload: bytes


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class ExtendedHandshake(Message):
    """BEP 10 extended handshake (id 20, extended id 0), with the well-known keys typed.

    A well-known key whose value has the wrong type or range is not dropped: it stays, untyped, in
    ``extra`` with every unknown key, so :meth:`encode_payload` gives the dictionary back.
    """

    MESSAGE_ID: ClassVar[int | None] = MSG_EXTENDED
    #: Extension name -> the extended id the sender wants to receive it on (0 = disabled).
    m: dict[str, int] = field(default_factory=dict)
    #: Client name and version (``v``).
    client: str | None = None
    #: The sender's TCP listen port (``p``).
    port: int | None = None
    #: How many outstanding requests the sender queues (``reqq``).
    reqq: int | None = None
    #: The address the sender sees us as (``yourip``, 4 or 16 bytes).
    yourip: IPAddress | None = None
    #: The sender's own IPv4 / IPv6 addresses (``ipv4``, ``ipv6``).
    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None
    #: BEP 9 size of the info dictionary (``metadata_size``).
    metadata_size: int | None = None
    #: Every other key, raw as decoded.
    extra: dict[bytes, Any] = field(default_factory=dict)

    def encode_payload(self) -> bytes:
        """The bencoded dictionary (the message payload after the extended id byte)."""
        d: dict[bytes, Any] = dict(self.extra)
        m: dict[bytes, int] = {}
        for name, ext_id in self.m.items():
            if not isinstance(ext_id, int) or not 0 <= ext_id <= 255:
                raise LocalWireError(f"extended id for {name!r} must be 0..255")
            m[name.encode("utf-8", "surrogateescape")] = ext_id
        d[b"m"] = m
        for key, (name, _parse, unparse) in _HANDSHAKE_KEYS.items():
            value = getattr(self, name)
            if value is not None:
                d[key] = unparse(value)
        try:
            return encode(d)
        except BencodeEncodeError as exc:
            raise LocalWireError(f"extended handshake cannot be encoded: {exc}") from exc

    @classmethod
    def decode_payload(cls, payload: bytes) -> ExtendedHandshake:
        """Parse the bencoded dictionary; raises :class:`WireProtocolError` on garbage."""
        try:
            d = decode(payload, strict=False, max_depth=32)
        except BencodeError as exc:
            raise WireProtocolError(f"extended handshake is not valid bencode: {exc}") from exc
        if not isinstance(d, dict):
            raise WireProtocolError("extended handshake is not a dictionary")
        raw_m = d.get(b"m", {})
        if not isinstance(raw_m, dict):
            raise WireProtocolError("extended handshake 'm' is not a dictionary")
        m: dict[str, int] = {}
        for key, value in raw_m.items():
            if not (isinstance(value, int) and 0 <= value <= 255):
                raise WireProtocolError(f"extended id for {key!r} is not an integer 0..255")
            m[key.decode("utf-8", "surrogateescape")] = value
        typed: dict[str, Any] = {}
        extra: dict[bytes, Any] = {}
        for key, value in d.items():
            if key == b"m":
                continue
            known = _HANDSHAKE_KEYS.get(key)
            parsed = None if known is None else known[1](value)
            if known is None or parsed is None:
                extra[key] = value  # unknown, or a known key with the wrong type or range
            else:
                typed[known[0]] = parsed
        return cls(m, extra=extra, **typed)


def _text(value: object) -> str | None:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else None


def _port(value: object) -> int | None:
    return value if isinstance(value, int) and 0 < value < 65536 else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _address(value: object) -> IPAddress | None:
    return ipaddress.ip_address(value) if isinstance(value, bytes) and len(value) in (4, 16) else None


def _ipv4(value: object) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(value) if isinstance(value, bytes) and len(value) == 4 else None


def _ipv6(value: object) -> ipaddress.IPv6Address | None:
    return ipaddress.IPv6Address(value) if isinstance(value, bytes) and len(value) == 16 else None


def _same(value: Any) -> Any:
    return value


def _packed(value: Any) -> Any:
    return value.packed


def _utf8(value: Any) -> Any:
    return value.encode("utf-8", "surrogateescape")


#: BEP 10 (and BEP 9 ``metadata_size``) well-known handshake keys: key -> (field of
#: :class:`ExtendedHandshake`, parse the decoded value (None: wrong type or range), encode the field).
_HANDSHAKE_KEYS: Final[dict[bytes, tuple[str, Callable[[object], Any], Callable[[Any], Any]]]] = {
    b"v": ("client", _text, _utf8),
    b"p": ("port", _port, _same),
    b"reqq": ("reqq", _count, _same),
    b"yourip": ("yourip", _address, _packed),
    b"ipv4": ("ipv4", _ipv4, _packed),
    b"ipv6": ("ipv6", _ipv6, _packed),
    b"metadata_size": ("metadata_size", _count, _same),
}


# --------------------------------------------------------------------------------------------------
# BEP 52 hash exchange

#: Bytes of a SHA-256 hash in the BEP 52 messages.
HASH_SIZE: Final = 32


@dataclass(frozen=True, slots=True)
class HashRequest(Message):
    """BEP 52 ``hash request`` (id 21): ``length`` hashes of layer ``base_layer`` (0 = the 16 KiB
    block leaves) of the tree of ``pieces_root``, from ``index`` on, plus the uncle hashes of
    ``proof_layers`` ancestor layers. The codec checks only the layout; whether the range makes sense
    for the file is the session's question (it answers with :class:`HashReject`)."""

    MESSAGE_ID: ClassVar[int | None] = MSG_HASH_REQUEST
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int


@dataclass(frozen=True, slots=True)
class Hashes(Message):
    """BEP 52 ``hashes`` (id 22): the answer to a :class:`HashRequest` with the same five fields,
    then ``hashes``: the ``length`` base-layer hashes followed by the uncle hashes, lowest first
    (32 bytes each, concatenated)."""

    MESSAGE_ID: ClassVar[int | None] = MSG_HASHES
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int
    hashes: bytes

    @property
    def request(self) -> HashRequest:
        """The request this message answers."""
        return HashRequest(self.pieces_root, self.base_layer, self.index, self.length, self.proof_layers)

    def hash_list(self) -> list[bytes]:
        """``hashes`` cut into 32-byte hashes: the base layer first, then the uncles."""
        h = self.hashes
        return [bytes(h[i : i + HASH_SIZE]) for i in range(0, len(h), HASH_SIZE)]


@dataclass(frozen=True, slots=True)
class HashReject(Message):
    """BEP 52 ``hash reject`` (id 23): the sender will not answer the :class:`HashRequest` with
    these fields."""

    MESSAGE_ID: ClassVar[int | None] = MSG_HASH_REJECT
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int


def uncle_count(length: int, proof_layers: int) -> int:
    """How many uncle hashes follow the ``length`` base hashes of a BEP 52 ``hashes`` message.

    The first ``log2(length) - 1`` proof layers are computed from the base hashes themselves and
    are omitted (BEP 52); a ``length`` that is not a power of two counts as the next one (libtorrent
    does the same)."""
    width = 1 if length <= 1 else 1 << (length - 1).bit_length()
    return max(0, proof_layers - (width.bit_length() - 2))


@dataclass(frozen=True, slots=True)
class UnknownMessage(Message):
    """A message id bitswarm does not interpret, passed through."""

    message_id: int
    payload: bytes


# --------------------------------------------------------------------------------------------------
# Connection-level events and sentinels


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed its side cleanly (``receive_data(b"")`` at a message boundary), or we did."""


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Returned by ``next_event`` when a whole event needs more bytes.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: Returned by ``next_event`` after the peer's handshake until we have sent ours: what is legal next
#: depends on both sides' reserved bits (BEP 6, BEP 10).
PAUSED: Final = _Sentinel("PAUSED")
