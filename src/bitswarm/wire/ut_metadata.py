"""BEP 9 metadata exchange (``ut_metadata``): the messages, a download assembler and a server.

Sans-I/O. The payloads here travel inside :class:`~bitswarm.wire.Extended` messages on the extended id
the receiver put under ``"ut_metadata"`` in its BEP 10 handshake ``m`` dictionary; the handshake's
``metadata_size`` says how large the info dictionary ("the metadata") is.

* :func:`encode_metadata_message` / :func:`decode_metadata_message` turn :class:`MetadataRequest`,
  :class:`MetadataData` and :class:`MetadataReject` into payload bytes and back. A ``data`` message is
  a bencoded dictionary followed by the raw piece bytes (BEP 9). An unknown ``msg_type`` decodes to
  :class:`MetadataUnknown`, which the receiver ignores (BEP 9: "an unrecognized message ID MUST be
  ignored"). Anything else malformed raises :class:`ExtensionProtocolError` and nothing else.
* :class:`MetadataAssembler` downloads the metadata of a magnet link from several peers: it hands out
  pieces to request (tracking who has which piece outstanding, with timeouts measured against a clock
  value the caller passes in), collects the pieces, and when all are in checks the SHA-1 (v1, BEP 3)
  and/or SHA-256 (v2, BEP 52) info-hash. On a mismatch it starts over and names every peer that
  supplied a piece, so the session can drop them.
* :class:`MetadataServer` slices our own raw info dictionary into 16 KiB pieces to answer requests,
  with the flood protection BEP 9 allows (reject after a number of requests per peer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Final

from bitswarm.bencode import BencodeError, decode_prefix, encode
from bitswarm.wire._errors import LocalWireError, WireProtocolError

__all__ = [
    "EXTENSION_NAME",
    "MAX_METADATA_SIZE",
    "METADATA_PIECE_SIZE",
    "MSG_DATA",
    "MSG_REJECT",
    "MSG_REQUEST",
    "ExtensionProtocolError",
    "MetadataAssembler",
    "MetadataComplete",
    "MetadataData",
    "MetadataFailed",
    "MetadataMessage",
    "MetadataReject",
    "MetadataRequest",
    "MetadataServer",
    "MetadataUnknown",
    "decode_metadata_message",
    "encode_metadata_message",
    "metadata_piece_count",
    "metadata_piece_length",
]

#: The name in the BEP 10 handshake ``m`` dictionary.
EXTENSION_NAME: Final = "ut_metadata"
#: BEP 9: the metadata travels in 16 KiB pieces; only the last may be shorter.
METADATA_PIECE_SIZE: Final = 16384
#: Largest info dictionary we accept from a peer (libtorrent's default limit is 30 MiB).
MAX_METADATA_SIZE: Final = 64 * 1024 * 1024
#: BEP 9 ``msg_type`` values.
MSG_REQUEST: Final = 0
MSG_DATA: Final = 1
MSG_REJECT: Final = 2

_MAX_PIECES: Final = MAX_METADATA_SIZE // METADATA_PIECE_SIZE
#: The dictionary in front of a ``data`` payload is small; anything longer is not BEP 9.
_MAX_HEADER: Final = 1024


class ExtensionProtocolError(WireProtocolError):
    """A peer sent a malformed BEP 9 / BEP 11 extension message (a :class:`WireProtocolError`).

    Being a :class:`~bitswarm.wire.WireProtocolError` (and so a
    :class:`~bitswarm.errors.RemoteProtocolError`), it closes the connection wherever the session
    already handles wire errors.
    """


def metadata_piece_count(metadata_size: int) -> int:
    """How many 16 KiB pieces an info dictionary of ``metadata_size`` bytes has (BEP 9)."""
    return -(-metadata_size // METADATA_PIECE_SIZE)


def metadata_piece_length(metadata_size: int, piece: int) -> int:
    """The exact length of metadata piece ``piece`` (16 KiB except the last)."""
    if piece < metadata_piece_count(metadata_size) - 1:
        return METADATA_PIECE_SIZE
    return metadata_size - piece * METADATA_PIECE_SIZE


@dataclass(frozen=True, slots=True)
class MetadataRequest:
    """BEP 9 ``request`` (msg_type 0): send me metadata piece ``piece``."""

    piece: int


@dataclass(frozen=True, slots=True)
class MetadataData:
    """BEP 9 ``data`` (msg_type 1): piece ``piece`` of a ``total_size``-byte info dict, raw bytes."""

    piece: int
    total_size: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MetadataReject:
    """BEP 9 ``reject`` (msg_type 2): the peer will not send piece ``piece``."""

    piece: int


@dataclass(frozen=True, slots=True)
class MetadataUnknown:
    """A well-formed message with a ``msg_type`` BEP 9 does not define: ignore it (BEP 9)."""

    msg_type: int


MetadataMessage = MetadataRequest | MetadataData | MetadataReject


def encode_metadata_message(msg: MetadataMessage) -> bytes:
    """The :class:`~bitswarm.wire.Extended` payload for ``msg``; :class:`LocalWireError` if invalid."""
    if type(msg.piece) is not int or not 0 <= msg.piece < _MAX_PIECES:
        raise LocalWireError(f"metadata piece index out of range: {msg.piece!r}")
    if isinstance(msg, MetadataRequest):
        return encode({b"msg_type": MSG_REQUEST, b"piece": msg.piece})
    if isinstance(msg, MetadataReject):
        return encode({b"msg_type": MSG_REJECT, b"piece": msg.piece})
    if isinstance(msg, MetadataData):
        _check_data(msg.piece, msg.total_size, len(msg.data), LocalWireError)
        head = encode({b"msg_type": MSG_DATA, b"piece": msg.piece, b"total_size": msg.total_size})
        return head + bytes(msg.data)
    raise LocalWireError(f"not a ut_metadata message: {type(msg).__name__}")


def decode_metadata_message(payload: bytes) -> MetadataMessage | MetadataUnknown:
    """Decode a ``ut_metadata`` payload (BEP 9). Malformed input raises :class:`ExtensionProtocolError`.

    Rules: the payload starts with a strict bencoded dictionary with integer ``msg_type`` and (for the
    three defined types) integer ``piece`` in ``0 .. 64 MiB / 16 KiB``; ``request`` and ``reject``
    carry nothing after the dictionary; ``data`` has ``total_size`` in ``1 .. MAX_METADATA_SIZE``, a
    piece index inside it and exactly the piece's length of raw bytes after the dictionary (16 KiB,
    the last piece its remainder). Unknown keys are ignored.
    """
    payload = bytes(payload)
    if payload[:1] != b"d":
        raise ExtensionProtocolError("ut_metadata payload is not a bencoded dictionary")
    try:
        value, end = decode_prefix(payload[:_MAX_HEADER])
    except BencodeError as exc:
        raise ExtensionProtocolError(f"ut_metadata payload: {exc}") from None
    assert isinstance(value, dict)  # payload starts with b"d"
    msg_type = _int_field(value, b"msg_type")
    if msg_type not in (MSG_REQUEST, MSG_DATA, MSG_REJECT):
        return MetadataUnknown(msg_type)
    piece = _int_field(value, b"piece")
    if not 0 <= piece < _MAX_PIECES:
        raise ExtensionProtocolError(f"ut_metadata piece index out of range: {piece}")
    rest = payload[end:]
    if msg_type == MSG_DATA:
        total_size = _int_field(value, b"total_size")
        _check_data(piece, total_size, len(rest), ExtensionProtocolError)
        return MetadataData(piece, total_size, rest)
    if rest:
        raise ExtensionProtocolError(f"{len(rest)} bytes after a ut_metadata request/reject")
    return MetadataRequest(piece) if msg_type == MSG_REQUEST else MetadataReject(piece)


def _int_field(d: dict[bytes, Any], key: bytes) -> int:
    v = d.get(key)
    if type(v) is not int:
        raise ExtensionProtocolError(f"ut_metadata {key.decode()!r} missing or not an integer")
    return v


def _check_data(piece: int, total_size: int, length: int, err: type[Exception]) -> None:
    if type(total_size) is not int or not 0 < total_size <= MAX_METADATA_SIZE:
        raise err(f"ut_metadata total_size out of range: {total_size!r}")
    if piece >= metadata_piece_count(total_size):
        raise err(f"ut_metadata piece {piece} beyond a {total_size}-byte info dictionary")
    want = metadata_piece_length(total_size, piece)
    if length != want:
        raise err(f"ut_metadata piece {piece} has {length} bytes, expected {want}")


# --------------------------------------------------------------------------------------------------
# Downloading the metadata (magnet links)


@dataclass(frozen=True, slots=True)
class MetadataComplete:
    """All pieces arrived and the info-hash(es) matched: ``raw_info`` is the info dictionary."""

    raw_info: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MetadataFailed:
    """All pieces arrived but the hash did not match; the assembler has started over.

    ``peers`` supplied at least one piece of the bad metadata (drop them; one of them lied).
    """

    peers: frozenset[Hashable]


@dataclass(slots=True)
class _Outstanding:
    """A metadata piece requested from ``peer``, due by ``deadline``."""

    peer: Hashable
    deadline: float


class MetadataAssembler:
    """Collects BEP 9 metadata pieces from several peers and verifies them against the info-hash.

    ``info_hash_v1`` (SHA-1, 20 bytes) and/or ``info_hash_v2`` (SHA-256, 32 bytes) come from the
    magnet link; every given hash must match. ``metadata_size`` is the ``metadata_size`` of a peer's
    extended handshake (a remote value: out of range raises :class:`ExtensionProtocolError`). Peers
    are any hashable key the session chooses. ``now`` is a monotonic clock value in seconds.

    Driving it: for each peer that offers ``ut_metadata`` with the same ``metadata_size``, call
    :meth:`next_request` (up to a few outstanding per peer) and send :class:`MetadataRequest` for each
    index; feed :class:`MetadataData` to :meth:`receive`, :class:`MetadataReject` to :meth:`reject`,
    and call :meth:`drop_peer` on disconnect. A request unanswered after ``timeout`` seconds is handed
    to the next asker.
    """

    def __init__(
        self,
        info_hash_v1: bytes | None,
        info_hash_v2: bytes | None,
        metadata_size: int,
        *,
        timeout: float = 10.0,
    ) -> None:
        if info_hash_v1 is None and info_hash_v2 is None:
            raise ValueError("MetadataAssembler needs a v1 or v2 info-hash")
        if info_hash_v1 is not None and len(info_hash_v1) != 20:
            raise ValueError("a v1 info-hash is 20 bytes")
        if info_hash_v2 is not None and len(info_hash_v2) != 32:
            raise ValueError("a v2 info-hash is 32 bytes")
        if type(metadata_size) is not int or not 0 < metadata_size <= MAX_METADATA_SIZE:
            raise ExtensionProtocolError(f"metadata_size out of range: {metadata_size!r}")
        self.info_hash_v1 = info_hash_v1
        self.info_hash_v2 = info_hash_v2
        self.metadata_size = metadata_size
        self.num_pieces = metadata_piece_count(metadata_size)
        self.timeout = timeout
        self._pieces: list[bytes | None] = [None] * self.num_pieces
        self._suppliers: dict[int, Hashable] = {}
        self._outstanding: dict[int, _Outstanding] = {}
        self._rejected: dict[int, set[Hashable]] = {}
        self._have = 0

    @property
    def have_count(self) -> int:
        """Pieces received so far (since the last reset)."""
        return self._have

    def outstanding(self, peer: Hashable) -> list[int]:
        """Piece indices currently requested from ``peer``."""
        return [i for i, o in self._outstanding.items() if o.peer == peer]

    def next_request(self, peer: Hashable, now: float) -> int | None:
        """The next piece index to request from ``peer`` (now marked outstanding), or None.

        Prefers pieces nobody is fetching; then pieces whose request timed out. Never a piece this
        peer rejected (since the last reset) or one it already has outstanding.
        """
        expired: int | None = None
        for i in range(self.num_pieces):
            if self._pieces[i] is not None or peer in self._rejected.get(i, ()):
                continue
            o = self._outstanding.get(i)
            if o is None:
                self._outstanding[i] = _Outstanding(peer, now + self.timeout)
                return i
            if expired is None and o.deadline <= now and o.peer != peer:
                expired = i
        if expired is not None:
            self._outstanding[expired] = _Outstanding(peer, now + self.timeout)
        return expired

    def receive(self, peer: Hashable, piece: int, data: bytes) -> MetadataComplete | MetadataFailed | None:
        """Store piece ``piece`` from ``peer``; verify once all are in.

        Accepts a piece we lack from any peer, also unrequested or late (the hash check at the end
        covers it); a piece we already have is ignored. Wrong index or length for this metadata size
        raises :class:`ExtensionProtocolError` (drop that peer).
        """
        if not 0 <= piece < self.num_pieces:
            raise ExtensionProtocolError(f"metadata piece {piece} beyond {self.num_pieces} pieces")
        want = metadata_piece_length(self.metadata_size, piece)
        if len(data) != want:
            raise ExtensionProtocolError(f"metadata piece {piece} has {len(data)} bytes, expected {want}")
        if self._pieces[piece] is not None:
            return None
        self._outstanding.pop(piece, None)
        self._pieces[piece] = bytes(data)
        self._suppliers[piece] = peer
        self._have += 1
        if self._have < self.num_pieces:
            return None
        raw = b"".join(p for p in self._pieces if p is not None)
        ok = (self.info_hash_v1 is None or hashlib.sha1(raw).digest() == self.info_hash_v1) and (
            self.info_hash_v2 is None or hashlib.sha256(raw).digest() == self.info_hash_v2
        )
        if ok:
            return MetadataComplete(raw)
        suppliers = frozenset(self._suppliers.values())
        self.reset()
        return MetadataFailed(suppliers)

    def reject(self, peer: Hashable, piece: int) -> None:
        """``peer`` rejected ``piece``: free it for others and do not ask this peer again for it."""
        o = self._outstanding.get(piece)
        if o is not None and o.peer == peer:
            del self._outstanding[piece]
        if 0 <= piece < self.num_pieces:
            self._rejected.setdefault(piece, set()).add(peer)

    def drop_peer(self, peer: Hashable) -> None:
        """``peer`` went away: its outstanding requests go back to the pool."""
        for i in self.outstanding(peer):
            del self._outstanding[i]
        for rejected in self._rejected.values():
            rejected.discard(peer)

    def reset(self) -> None:
        """Forget every piece, request and rejection (after a hash mismatch)."""
        self._pieces = [None] * self.num_pieces
        self._suppliers.clear()
        self._outstanding.clear()
        self._rejected.clear()
        self._have = 0


# --------------------------------------------------------------------------------------------------
# Serving our metadata


class MetadataServer:
    """Answers BEP 9 requests from our verified raw info dictionary, 16 KiB at a time.

    ``max_requests_per_peer`` (default: 3 x the piece count, at least 8) is BEP 9's optional flood
    protection: beyond it a peer's requests are rejected until :meth:`forget` is called for it.
    """

    def __init__(self, raw_info: bytes, *, max_requests_per_peer: int | None = None) -> None:
        raw_info = bytes(raw_info)
        if not 0 < len(raw_info) <= MAX_METADATA_SIZE:
            raise ValueError(f"info dictionary size out of range: {len(raw_info)}")
        self.raw_info = raw_info
        self.metadata_size = len(raw_info)
        self.num_pieces = metadata_piece_count(self.metadata_size)
        self.max_requests_per_peer = (
            max(8, 3 * self.num_pieces) if max_requests_per_peer is None else max_requests_per_peer
        )
        self._served: dict[Hashable, int] = {}

    def piece(self, index: int) -> bytes | None:
        """Metadata piece ``index``, or None if there is no such piece."""
        if not 0 <= index < self.num_pieces:
            return None
        start = index * METADATA_PIECE_SIZE
        return self.raw_info[start : start + METADATA_PIECE_SIZE]

    def respond(self, request: MetadataRequest, peer: Hashable = None) -> MetadataData | MetadataReject:
        """The answer to ``request``: the piece, or a reject (no such piece, or ``peer`` over quota)."""
        data = self.piece(request.piece)
        if data is None:
            return MetadataReject(request.piece)
        if peer is not None:
            n = self._served.get(peer, 0)
            if n >= self.max_requests_per_peer:
                return MetadataReject(request.piece)
            self._served[peer] = n + 1
        return MetadataData(request.piece, self.metadata_size, data)

    def forget(self, peer: Hashable) -> None:
        """Drop the request count kept for ``peer`` (on disconnect)."""
        self._served.pop(peer, None)
