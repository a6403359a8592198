"""The peer engine (BEP 3): one :class:`Session` downloads and seeds many torrents on one port.

Built from pure parts — :mod:`~bitswarm.session.picker` (which blocks to ask for),
:mod:`~bitswarm.session.choker` (whom to upload to), :mod:`~bitswarm.session.ratelimit` — and the
asyncio drivers :mod:`~bitswarm.session.peer` (one connection) and :mod:`~bitswarm.session.torrent`
(one torrent's peers, storage and trackers).
"""

from bitswarm.session.config import SessionConfig, make_peer_id
from bitswarm.session.session import Session, SessionError, SessionEvent
from bitswarm.session.torrent import TorrentHandle, TorrentState, TorrentStatus

__all__ = [
    "Session",
    "SessionConfig",
    "SessionError",
    "SessionEvent",
    "TorrentHandle",
    "TorrentState",
    "TorrentStatus",
    "make_peer_id",
]
