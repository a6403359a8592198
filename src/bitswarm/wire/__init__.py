"""The BitTorrent peer wire protocol as a sans-I/O codec (BEP 3, 5, 6, 10).

One :class:`PeerConnection` per TCP connection: feed it bytes with ``receive_data`` (or the
``get_buffer``/``buffer_updated`` pair of an asyncio ``BufferedProtocol``), pull events with
``next_event`` until :data:`NEED_DATA`, and write what ``send(event)`` returns. Events are frozen
dataclasses, the same in both directions. The peer's violations raise :class:`WireProtocolError`
(a :class:`~bitswarm.errors.RemoteProtocolError`); our own illegal sends raise
:class:`LocalWireError`. See ``docs/protocols/wire.md``.
"""

from bitswarm.wire._connection import (
    MAX_BITFIELD_UNKNOWN_LAYOUT,
    MAX_BLOCK,
    MAX_EXTENDED_MESSAGE,
    MAX_UNKNOWN_MESSAGE,
    BlockSink,
    PeerConnection,
)
from bitswarm.wire._errors import LocalWireError, WireProtocolError
from bitswarm.wire._events import (
    BLOCK_SIZE,
    HANDSHAKE_LENGTH,
    NEED_DATA,
    PAUSED,
    PROTOCOL,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    ConnectionClosed,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    HandshakeHeader,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    Message,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    Reserved,
    SuggestPiece,
    Unchoke,
    UnknownMessage,
)
from bitswarm.wire._layout import PieceLayout
from bitswarm.wire._state import TRANSITIONS, State

__all__ = [
    "BLOCK_SIZE",
    "HANDSHAKE_LENGTH",
    "MAX_BITFIELD_UNKNOWN_LAYOUT",
    "MAX_BLOCK",
    "MAX_EXTENDED_MESSAGE",
    "MAX_UNKNOWN_MESSAGE",
    "NEED_DATA",
    "PAUSED",
    "PROTOCOL",
    "TRANSITIONS",
    "AllowedFast",
    "Bitfield",
    "BlockSink",
    "Cancel",
    "Choke",
    "ConnectionClosed",
    "Event",
    "Extended",
    "ExtendedHandshake",
    "Handshake",
    "HandshakeHeader",
    "Have",
    "HaveAll",
    "HaveNone",
    "Interested",
    "KeepAlive",
    "LocalWireError",
    "Message",
    "NotInterested",
    "PeerConnection",
    "Piece",
    "PieceLayout",
    "Port",
    "RejectRequest",
    "Request",
    "Reserved",
    "State",
    "SuggestPiece",
    "Unchoke",
    "UnknownMessage",
    "WireProtocolError",
]
