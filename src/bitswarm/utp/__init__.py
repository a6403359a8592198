"""uTP, the uTorrent transport protocol (BEP 29): reliable ordered streams over UDP with LEDBAT.

* :mod:`bitswarm.utp` codec - :func:`decode` / :func:`encode` of version-1 packets (:class:`Packet`).
* :class:`UtpConnection` - one connection as a sans-I/O state machine (datagrams and ``now`` in,
  datagrams and events out; the state table is in ``_state.py``).
* :class:`UtpSocketManager` - the asyncio driver: one UDP socket for every connection, shareable with
  the DHT; :class:`UtpStream` is an ``asyncio.Transport`` for a (Buffered)Protocol.

See ``docs/protocols/utp.md``.
"""

from bitswarm.utp._congestion import DelayHistory, RttEstimator
from bitswarm.utp._connection import (
    Closed,
    Connected,
    Data,
    EndOfStream,
    Event,
    Reset,
    UtpConfig,
    UtpConnection,
    UtpStats,
    WritableAgain,
)
from bitswarm.utp._manager import Addr, ManagerStats, UtpSocketManager, UtpStream
from bitswarm.utp._packet import (
    EXT_SACK,
    HEADER_SIZE,
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
from bitswarm.utp._state import TRANSITIONS, Input, State

__all__ = [
    "EXT_SACK",
    "HEADER_SIZE",
    "TRANSITIONS",
    "Addr",
    "Closed",
    "Connected",
    "Data",
    "DelayHistory",
    "EndOfStream",
    "Event",
    "Input",
    "ManagerStats",
    "Packet",
    "PacketType",
    "Reset",
    "RttEstimator",
    "State",
    "UtpConfig",
    "UtpConnection",
    "UtpPacketError",
    "UtpSocketManager",
    "UtpStats",
    "UtpStream",
    "WritableAgain",
    "decode",
    "encode",
    "is_utp_datagram",
    "sack_bitmask",
    "sack_seqs",
    "seq_diff",
]
