"""bitswarm.index — a central file index (seed documents 000, 001, 002 of project issue 6).

One core (:class:`IndexService`: users, peers, files; SQLite in a worker thread) with front ends:
the P2PFlix tracker REST API, the CentralizedP2P REST API and the native ``/api/v1`` REST API on one
HTTP port (:func:`bitswarm.index.http.create_app`), and the binary TCP protocol
(:mod:`bitswarm.index.binary` codec, :mod:`bitswarm.index.binary_server`).
"""

from bitswarm.index._errors import (
    AuthError,
    Conflict,
    Forbidden,
    IndexCodecError,
    IndexServiceError,
    NotFound,
    StaleSequence,
    Throttled,
    ValidationError,
)
from bitswarm.index._model import (
    KEEPALIVE_INTERVAL,
    OFFLINE_AFTER,
    REGISTRATION_TTL,
    Chunk,
    FileDetail,
    FileRecord,
    FileSpec,
    Host,
    Peer,
    PeerStatus,
    SearchResult,
    Session,
    Tracker,
    User,
    public_peer_id,
)
from bitswarm.index._service import IndexService
from bitswarm.index._store import fts_query

__all__ = [
    "KEEPALIVE_INTERVAL",
    "OFFLINE_AFTER",
    "REGISTRATION_TTL",
    "AuthError",
    "Chunk",
    "Conflict",
    "FileDetail",
    "FileRecord",
    "FileSpec",
    "Forbidden",
    "Host",
    "IndexCodecError",
    "IndexService",
    "IndexServiceError",
    "NotFound",
    "Peer",
    "PeerStatus",
    "SearchResult",
    "Session",
    "StaleSequence",
    "Throttled",
    "Tracker",
    "User",
    "ValidationError",
    "fts_query",
    "public_peer_id",
]
