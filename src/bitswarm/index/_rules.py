"""The index's protocol rules, in one place for both storage backends.

Pure functions (no I/O): the SQLite :class:`~bitswarm.index._store.Store` and the PostgreSQL
:class:`~bitswarm.index._pgstore.PgStore` call them inside their transactions, so a rule —
sequence numbers, registration TTL, who is online, which name a file is listed and found under — is
written once and both backends apply it the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Protocol

from bitswarm.index._errors import NotFound, StaleSequence
from bitswarm.index._model import OFFLINE_AFTER, REGISTRATION_TTL, FileRecord, Peer


class Row(Protocol):
    """A result row of either backend (``sqlite3.Row``, ``asyncpg.Record``), read by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


#: Separator of a file's other names in its search text (never inside a word).
ALIAS_SEPARATOR = " / "


def accept_seq(expected: int, seq: int | None) -> int | None:
    """Seed 000 sequence numbers: a message whose number is below the next expected one is a replay
    or stale and is rejected (:class:`StaleSequence`); an accepted number moves the expectation to
    ``seq + 1`` (returned; gaps are allowed so that a lost message does not lock the client out).
    None: the message carried no number, nothing changes."""
    if seq is None:
        return None
    if seq < expected:
        raise StaleSequence(f"stale or replayed sequence number {seq}; expected {expected} or more")
    return seq + 1


def registration_expiry(now: float) -> float:
    """Seed 001: a registration lives 30 days, refreshed by each LOGIN (and by each file a peer adds)."""
    return now + REGISTRATION_TTL


def check_owner(guid: str, owner: int | None, user_id: int | None) -> None:
    """A peer acted on for a user (LOGIN, LOGOUT) must be one of that user's peers."""
    if user_id is not None and owner != user_id:
        raise NotFound(f"unknown peer {guid} for this user")


def is_online(logged_in: bool, last_seen: float | None, expires_at: float, now: float) -> bool:
    """Logged in, heard from within :data:`OFFLINE_AFTER` (5 minutes of keep-alive plus slack), and
    its registration still valid."""
    return logged_in and last_seen is not None and last_seen > now - OFFLINE_AFTER and expires_at > now


def file_names(current: str, host_names: Iterable[str | None]) -> tuple[str, str]:
    """Names per peer: each host calls the file by its own name (None: the file's name). Returns the
    file's listed name — kept while any host still uses it, else the first host's name — and the
    other names its hosts use (searchable too), joined by :data:`ALIAS_SEPARATOR`."""
    names = [current if n is None else n for n in host_names]
    name = current if current in names or not names else names[0]
    others = sorted(set(names) - {name})
    return name, ALIAS_SEPARATOR.join(others)


def token_hash(token: str) -> str:
    """Sessions store only the SHA-256 of their bearer token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def peer_from(row: Row, now: float) -> Peer:
    """A peer row (``guid, username, ip, port, logged_in, created_at, last_login, last_seen,
    expires_at, seq_expected, ka_seq_expected``) of either backend."""
    return Peer(
        guid=row["guid"],
        username=row["username"],
        ip=row["ip"],
        port=row["port"],
        online=is_online(bool(row["logged_in"]), row["last_seen"], row["expires_at"], now),
        created_at=row["created_at"],
        last_login=row["last_login"],
        last_seen=row["last_seen"],
        expires_at=row["expires_at"],
        seq_expected=row["seq_expected"],
        ka_seq_expected=row["ka_seq_expected"],
    )


def record_from(row: Row) -> FileRecord:
    """A file row with its ``online`` / ``total`` host counts and ``has_torrent``, either backend."""
    return FileRecord(
        id=row["id"],
        name=row["name"],
        size=row["size"],
        sha1=row["sha1"],
        sha256=row["sha256"],
        md5=row["md5"],
        btih_v1=row["btih_v1"],
        btih_v2=row["btih_v2"],
        magnet=row["magnet"],
        online_peers=row["online"],
        total_peers=row["total"],
        has_torrent=bool(row["has_torrent"]),
    )
