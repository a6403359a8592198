"""Frozen value types the index core returns (no I/O, no SQLite)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

#: Keep-alive period a client promises (seed 001: "every 5 minutes").
KEEPALIVE_INTERVAL = 300.0
#: A peer is offline after two missed keep-alives.
OFFLINE_AFTER = 2 * KEEPALIVE_INTERVAL
#: Registration TTL, refreshed by every login (seed 001: 30 days).
REGISTRATION_TTL = 30 * 24 * 3600.0
#: Lifetime of a native API session token.
SESSION_TTL = 7 * 24 * 3600.0

PeerStatus = Literal["online", "offline", "all"]
HashAlgo = Literal["sha1", "sha256", "md5", "btih_v1", "btih_v2"]
HASH_ALGOS: tuple[HashAlgo, ...] = ("sha1", "sha256", "md5", "btih_v1", "btih_v2")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str


@dataclass(frozen=True, slots=True)
class Session:
    """A native API login: ``token`` is shown once; only its SHA-256 is stored."""

    token: str
    username: str
    expires_at: float


#: Length (hex digits) of a peer's public id.
PUBLIC_ID_LEN = 16


def public_peer_id(guid: str) -> str:
    """The public name of the peer whose secret is ``guid``: the first 64 bits of SHA-256 over
    ``"bitswarm-peer:" + guid``, as hex. The guid is the peer's only credential in the P2PFlix and
    CentralizedP2P APIs, so public views show this id instead; it is the same on every index (guids
    are random UUIDs, so the hash cannot be turned back into one)."""
    return hashlib.sha256(b"bitswarm-peer:" + guid.encode("utf-8")).hexdigest()[:PUBLIC_ID_LEN]


@dataclass(frozen=True, slots=True)
class Peer:
    """A registered peer. ``guid`` is its secret (shown only to whoever registered it), ``public_id``
    the name public views use. ``port`` is its BitTorrent (BEP 3) listen port when known."""

    guid: str
    username: str | None
    ip: str | None
    port: int | None
    online: bool
    created_at: float
    last_login: float | None
    last_seen: float | None
    expires_at: float
    seq_expected: int
    ka_seq_expected: int

    @property
    def public_id(self) -> str:
        return public_peer_id(self.guid)


@dataclass(frozen=True, slots=True)
class Chunk:
    id: int
    name: str
    hash: str


@dataclass(frozen=True, slots=True)
class FileSpec:
    """What a client says about a file it hosts. Hashes are lower-case hex except ``sha256``, which
    P2PFlix (seed 000) treats as an opaque string (hex or base64); it is stored as given.

    ``btih_v1`` is the BEP 3 info-hash (40 hex), ``btih_v2`` the BEP 52 one (64 hex).
    """

    name: str
    size: int | None = None
    sha1: str | None = None
    sha256: str | None = None
    md5: str | None = None
    btih_v1: str | None = None
    btih_v2: str | None = None
    magnet: str | None = None
    chunks: tuple[Chunk, ...] = ()
    #: The bencoded .torrent (BEP 3 / BEP 52 metainfo) when the registrant gave it.
    torrent: bytes | None = field(default=None, repr=False)

    def hashes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for algo in HASH_ALGOS:
            value = getattr(self, algo)
            if value is not None:
                out[algo] = value
        return out


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A file of the catalogue with its host counts at query time."""

    id: int
    name: str
    size: int | None
    sha1: str | None
    sha256: str | None
    md5: str | None
    btih_v1: str | None
    btih_v2: str | None
    magnet: str | None
    online_peers: int
    total_peers: int
    has_torrent: bool = False


@dataclass(frozen=True, slots=True)
class Host:
    peer: Peer
    path: str | None
    #: what this peer calls the file (names are per peer; None: the file's own name)
    name: str | None = None


@dataclass(frozen=True, slots=True)
class FileDetail:
    file: FileRecord
    chunks: tuple[Chunk, ...]
    hosts: tuple[Host, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class SearchResult:
    total: int
    items: tuple[FileRecord, ...]


@dataclass(frozen=True, slots=True)
class Tracker:
    """Another P2PFlix tracker (seed 000 ``tracker_list``); ``ip`` is ``host`` or ``host:port``."""

    name: str
    ip: str
