"""Transaction scripts: the index's peer rules written once for both storage backends (sans-I/O).

A script is a generator that yields :class:`Query` objects — SQL with ``:name`` parameters, which
SQLite takes as they are and :class:`~bitswarm.index._pgstore.PgStore` rewrites to ``$n`` — and
receives each one's result (a row or None, a list of rows, or the number of rows changed); what it
returns is the operation's result. :class:`~bitswarm.index._store.Store` runs scripts synchronously
in its worker thread, ``PgStore`` awaits each query on one connection; both inside the transaction
they opened for the operation, so a script never sees half of another write.

Peer creation, presence (LOGIN, keep-alive, LOGOUT, CentralizedP2P's implicit peers), ownership,
sequence numbers, users and sessions, the federation's bookkeeping, the peer and file listings and
lookups live here, on top of the pure rules of :mod:`bitswarm.index._rules`; the stores keep file
registration and removal (the PostgreSQL search vector), search (FTS5 / tsvector) and dumps.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from bitswarm.index._errors import Conflict, NotFound
from bitswarm.index._model import (
    HASH_ALGOS,
    OFFLINE_AFTER,
    Chunk,
    FileDetail,
    FileRecord,
    Host,
    Peer,
    PeerStatus,
    Tracker,
    User,
    public_peer_id,
)
from bitswarm.index._rules import (
    Row,
    accept_seq,
    check_owner,
    peer_from,
    record_from,
    registration_expiry,
    token_hash,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Query:
    """One statement of a script. ``fetch``: ``"one"`` (a row or None), ``"all"`` (a list of rows)
    or ``"count"`` (how many rows it inserted, updated or deleted)."""

    sql: str
    params: dict[str, Any]
    fetch: Literal["one", "all", "count"] = "count"


#: A transaction script returning ``T``: yields queries, is sent their results.
Script = Generator[Query, Any, T]

PEER_SQL = (
    "SELECT p.guid, u.username, p.ip, p.port, p.logged_in, p.created_at, p.last_login, p.last_seen, "
    "p.expires_at, p.seq_expected, p.ka_seq_expected FROM peers p LEFT JOIN users u ON u.id = p.user_id"
)


def peer(guid: str, now: float) -> Script[Peer]:
    """The live peer ``guid`` (NotFound when unknown or expired)."""
    row = yield Query(
        f"{PEER_SQL} WHERE p.guid = :guid AND p.expires_at > :now", {"guid": guid, "now": now}, "one"
    )
    if row is None:
        raise NotFound(f"unknown peer {guid}")
    return peer_from(row, now)


def peer_row(guid: str, now: float) -> Script[Row]:
    """The live peer's whole row (``user_id``, ``logged_in``, the sequence expectations …)."""
    row = yield Query(
        "SELECT * FROM peers WHERE guid = :guid AND expires_at > :now", {"guid": guid, "now": now}, "one"
    )
    if row is None:
        raise NotFound(f"unknown peer {guid}")
    result: Row = row
    return result


def create_peer(
    now: float,
    *,
    guid: str | None = None,
    user_id: int | None = None,
    ip: str | None = None,
    port: int | None = None,
    online: bool = False,
) -> Script[str]:
    """A new peer (a fresh UUID4 unless ``guid`` is given; Conflict when it exists), online or not,
    registered for 30 days. Returns its guid."""
    guid = guid or str(uuid.uuid4())
    seen = now if online else None
    inserted = yield Query(
        "INSERT INTO peers(guid, user_id, ip, port, created_at, last_login, last_seen, logged_in, "
        "expires_at, public_id) VALUES (:guid, :user_id, :ip, :port, :now, :seen, :seen, :online, "
        ":expires, :public_id) ON CONFLICT(guid) DO NOTHING",
        {
            "guid": guid,
            "user_id": user_id,
            "ip": ip,
            "port": port,
            "now": now,
            "seen": seen,
            "online": online,
            "expires": registration_expiry(now),
            "public_id": public_peer_id(guid),
        },
    )
    if inserted != 1:
        raise Conflict(f"peer {guid} exists")
    return guid


def check_seq(row: Row, column: Literal["seq_expected", "ka_seq_expected"], seq: int | None) -> Script[None]:
    """Apply :func:`~bitswarm.index._rules.accept_seq` to the peer's ``column``."""
    expected = accept_seq(int(row[column]), seq)
    if expected is not None:
        yield Query(
            f"UPDATE peers SET {column} = :expected WHERE guid = :guid",
            {"expected": expected, "guid": row["guid"]},
        )


def _expect(guid: str, column: Literal["seq_expected", "ka_seq_expected"], seq: int | None) -> Script[None]:
    """A new peer's first message sets the expectation from its own number."""
    if seq is not None:
        yield Query(
            f"UPDATE peers SET {column} = :expected WHERE guid = :guid", {"expected": seq + 1, "guid": guid}
        )


def _drop_expired(guid: str, now: float) -> Script[None]:
    """A guid whose registration expired may be registered afresh."""
    yield Query("DELETE FROM peers WHERE guid = :guid AND expires_at <= :now", {"guid": guid, "now": now})


def register_peer(
    now: float,
    *,
    guid: str | None = None,
    user_id: int | None = None,
    ip: str | None = None,
    port: int | None = None,
    online: bool = False,
    seq_number: int | None = None,
    ka_seq_number: int | None = None,
) -> Script[Peer]:
    """Create a peer (a fresh UUID4 guid unless ``guid`` is given; an expired one is replaced)."""
    if guid is not None:
        yield from _drop_expired(guid, now)
    guid = yield from create_peer(now, guid=guid, user_id=user_id, ip=ip, port=port, online=online)
    yield from _expect(guid, "seq_expected", seq_number)
    yield from _expect(guid, "ka_seq_expected", ka_seq_number)
    return (yield from peer(guid, now))


def ensure_peer(guid: str, now: float, *, ip: str | None, port: int | None) -> Script[None]:
    """CentralizedP2P: clients pick their own UUID; create the peer on first use (online), else
    refresh it (online, address, 30-day TTL)."""
    yield from _drop_expired(guid, now)
    if (yield Query("SELECT 1 FROM peers WHERE guid = :guid", {"guid": guid}, "one")) is None:
        yield from create_peer(now, guid=guid, ip=ip, port=port, online=True)
        return
    yield Query(
        "UPDATE peers SET ip = coalesce(:ip, ip), port = coalesce(:port, port), logged_in = :on, "
        "last_seen = :now, last_login = coalesce(last_login, :now), expires_at = :expires WHERE guid = :guid",
        {"ip": ip, "port": port, "on": True, "now": now, "expires": registration_expiry(now), "guid": guid},
    )


def upsert_peer(guid: str, now: float, *, ip: str | None, port: int | None) -> Script[Peer]:
    """:func:`ensure_peer`, then the peer."""
    yield from ensure_peer(guid, now, ip=ip, port=port)
    return (yield from peer(guid, now))


def login_peer(
    guid: str, now: float, *, user_id: int | None = None, ip: str | None = None, port: int | None = None
) -> Script[Peer]:
    """Seed 001 LOGIN: the user's own peer goes online, its 30-day TTL starts again, the address and
    listening port it gives are kept (a port not given keeps the known one)."""
    row = yield from peer_row(guid, now)
    check_owner(guid, row["user_id"], user_id)
    yield Query(
        "UPDATE peers SET logged_in = :on, last_login = :now, last_seen = :now, expires_at = :expires, "
        "ip = coalesce(:ip, ip), port = coalesce(:port, port) WHERE guid = :guid",
        {"on": True, "now": now, "expires": registration_expiry(now), "ip": ip, "port": port, "guid": guid},
    )
    return (yield from peer(guid, now))


def keep_alive(
    guid: str,
    now: float,
    *,
    ka_seq_number: int | None = None,
    require_login: bool = False,
    ip: str | None = None,
) -> Script[Peer]:
    """A keep-alive. P2PFlix peers never log in, so for them a keep-alive also sets them online
    (``require_login=False``); the binary protocol requires a prior LOGIN."""
    row = yield from peer_row(guid, now)
    if require_login and not row["logged_in"]:
        raise NotFound(f"peer {guid} is not logged in")
    yield from check_seq(row, "ka_seq_expected", ka_seq_number)
    yield Query(
        "UPDATE peers SET logged_in = :on, last_seen = :now, ip = coalesce(:ip, ip) WHERE guid = :guid",
        {"on": True, "now": now, "ip": ip, "guid": guid},
    )
    return (yield from peer(guid, now))


def logout_peer(guid: str, now: float, *, user_id: int | None = None) -> Script[Peer]:
    row = yield from peer_row(guid, now)
    check_owner(guid, row["user_id"], user_id)
    yield Query("UPDATE peers SET logged_in = :off WHERE guid = :guid", {"off": False, "guid": guid})
    return (yield from peer(guid, now))


def peer_owner(guid: str, now: float) -> Script[int | None]:
    row = yield from peer_row(guid, now)
    return None if row["user_id"] is None else int(row["user_id"])


def file_host(
    now: float,
    *,
    guid: str | None,
    ip: str | None,
    port: int | None,
    seq_number: int | None,
    create_guid: str | None,
    touch: bool,
    upsert_peer: bool,
) -> Script[str]:
    """The peer side of adding a file: ``guid=None`` registers a new peer (seed 000: "they can
    provide null and will be given a guid"; ``create_guid`` chooses it), ``upsert_peer`` creates or
    refreshes ``guid`` (CentralizedP2P); a known peer's ``seq_number`` is checked and, with
    ``touch``, the peer is marked seen. Returns the host's guid."""
    if guid is not None and upsert_peer:
        yield from ensure_peer(guid, now, ip=ip, port=port)
    if guid is None:
        guid = yield from create_peer(now, guid=create_guid, ip=ip, port=port, online=touch)
        yield from _expect(guid, "seq_expected", seq_number)
        return guid
    row = yield from peer_row(guid, now)
    yield from check_seq(row, "seq_expected", seq_number)
    if touch:
        yield Query(
            "UPDATE peers SET logged_in = :on, last_seen = :now, "
            "expires_at = CASE WHEN expires_at > :expires THEN expires_at ELSE :expires END, "
            "ip = coalesce(:ip, ip), port = coalesce(:port, port) WHERE guid = :guid",
            {
                "on": True,
                "now": now,
                "expires": registration_expiry(now),
                "ip": ip,
                "port": port,
                "guid": guid,
            },
        )
    return guid


def peer_by_public_id(public_id: str, now: float) -> Script[Peer]:
    """The oldest live peer with that public id (what public views show)."""
    row = yield Query(
        f"{PEER_SQL} WHERE p.public_id = :pid AND p.expires_at > :now ORDER BY p.created_at LIMIT 1",
        {"pid": public_id, "now": now},
        "one",
    )
    if row is None:
        raise NotFound(f"unknown peer {public_id}")
    return peer_from(row, now)


# -- users and sessions (passwords are hashed by IndexService; a token is stored as its SHA-256) -------


def create_user(username: str, password_hash: str, now: float) -> Script[User]:
    row = yield Query(
        "INSERT INTO users(username, password_hash, created_at) VALUES (:name, :hash, :now) "
        "ON CONFLICT(username) DO NOTHING RETURNING id",
        {"name": username, "hash": password_hash, "now": now},
        "one",
    )
    if row is None:
        raise Conflict(f"username {username!r} is taken")
    return User(int(row[0]), username)


def password_hash(username: str) -> Script[tuple[User, str]]:
    row = yield Query(
        "SELECT id, username, password_hash FROM users WHERE username = :name", {"name": username}, "one"
    )
    if row is None:
        raise NotFound(f"no user {username!r}")
    return User(row[0], row[1]), str(row[2])


def set_password_hash(user_id: int, password_hash: str) -> Script[None]:
    yield Query(
        "UPDATE users SET password_hash = :hash WHERE id = :id", {"hash": password_hash, "id": user_id}
    )


def create_session(user_id: int, token: str, now: float, expires_at: float) -> Script[None]:
    yield Query("DELETE FROM sessions WHERE expires_at <= :now", {"now": now})
    yield Query(
        "INSERT INTO sessions(token_hash, user_id, created_at, expires_at) VALUES (:t, :uid, :now, :exp)",
        {"t": token_hash(token), "uid": user_id, "now": now, "exp": expires_at},
    )


def session_user(token: str, now: float) -> Script[User]:
    row = yield Query(
        "SELECT u.id, u.username FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.token_hash = :t AND s.expires_at > :now",
        {"t": token_hash(token), "now": now},
        "one",
    )
    if row is None:
        raise NotFound("unknown or expired token")
    return User(row[0], row[1])


def delete_session(token: str) -> Script[None]:
    yield Query("DELETE FROM sessions WHERE token_hash = :t", {"t": token_hash(token)})


# -- federation bookkeeping (seed 000 tracker_sync / new_tracker) -------------------------------------


def mark_event(event_id: str, now: float) -> Script[bool]:
    """True the first time ``event_id`` is seen, False for a repeat."""
    added = yield Query(
        "INSERT INTO seen_events(id, seen_at) VALUES (:id, :now) ON CONFLICT(id) DO NOTHING",
        {"id": event_id, "now": now},
    )
    return bool(added == 1)


def forget_event(event_id: str) -> Script[None]:
    yield Query("DELETE FROM seen_events WHERE id = :id", {"id": event_id})


def add_tracker(name: str, ip: str, now: float) -> Script[bool]:
    added = yield Query(
        "INSERT INTO trackers(ip, name, added_at) VALUES (:ip, :name, :now) ON CONFLICT(ip) DO NOTHING",
        {"ip": ip, "name": name, "now": now},
    )
    return bool(added == 1)


def trackers() -> Script[list[Tracker]]:
    rows = yield Query("SELECT ip, name FROM trackers ORDER BY added_at, ip", {}, "all")
    return [Tracker(r[1], r[0]) for r in rows]


# -- listings ----------------------------------------------------------------------------------------

#: A peer is online: logged in, heard from since ``:stale``, registration valid (``:on`` is true).
ONLINE_SQL = (
    "(p.logged_in = :on AND p.last_seen IS NOT NULL AND p.last_seen > :stale AND p.expires_at > :now)"
)


def _peer_filter(status: PeerStatus, now: float) -> tuple[str, dict[str, Any]]:
    where = "p.expires_at > :now"
    if status == "online":
        where += f" AND {ONLINE_SQL}"
    elif status == "offline":
        where += f" AND NOT {ONLINE_SQL}"
    return where, counts(now)


def list_peers(
    now: float, status: PeerStatus = "all", limit: int = 100, offset: int = 0
) -> Script[list[Peer]]:
    where, params = _peer_filter(status, now)
    rows = yield Query(
        f"{PEER_SQL} WHERE {where} ORDER BY p.created_at, p.guid LIMIT :limit OFFSET :offset",
        {**params, "limit": limit, "offset": offset},
        "all",
    )
    return [peer_from(r, now) for r in rows]


def count_peers(now: float, status: PeerStatus = "all") -> Script[int]:
    where, params = _peer_filter(status, now)
    row = yield Query(f"SELECT count(*) FROM peers p WHERE {where}", params, "one")
    return int(row[0])


def count_files() -> Script[int]:
    row = yield Query("SELECT count(*) FROM files", {}, "one")
    return int(row[0])


def hosts_paths(guid: str) -> Script[dict[int, str | None]]:
    """The path each file of peer ``guid`` has on that peer (CentralizedP2P ``resource_path``)."""
    rows = yield Query("SELECT file_id, path FROM hosts WHERE guid = :guid", {"guid": guid}, "all")
    return {int(r[0]): r[1] for r in rows}


def torrent_of(file_id: int) -> Script[bytes]:
    """The .torrent registered with the file (NotFound for no file or no torrent)."""
    row = yield Query("SELECT torrent FROM files WHERE id = :id", {"id": file_id}, "one")
    if row is None:
        raise NotFound(f"no file {file_id}")
    if row[0] is None:
        raise NotFound(f"no torrent stored for file {file_id}")
    return bytes(row[0])


# -- files (reads) -------------------------------------------------------------------------------------

FILE_COLS = (
    "f.id, f.name, f.size, f.sha1, f.sha256, f.md5, f.btih_v1, f.btih_v2, f.magnet, "
    "(f.torrent IS NOT NULL) AS has_torrent"
)
#: A file as one host lists it (BROWSE): under that host's own name.
HOST_FILE_COLS = FILE_COLS.replace("f.name", "coalesce(hh.name, f.name) AS name", 1)
#: Online and live hosts of file ``f`` (parameters ``:now``, ``:stale``, ``:on``: see :func:`counts`).
COUNTS_SQL = f"""
    (SELECT count(*) FROM hosts h JOIN peers p ON p.guid = h.guid
        WHERE h.file_id = f.id AND {ONLINE_SQL}) AS online,
    (SELECT count(*) FROM hosts h JOIN peers p ON p.guid = h.guid
        WHERE h.file_id = f.id AND p.expires_at > :now) AS total
"""


#: A file's hosts: each peer's columns (as :data:`PEER_SQL`) with its path and its name for the file.
HOSTS_SQL = PEER_SQL.replace(
    " FROM peers p", ", h.path, h.name AS host_name FROM hosts h JOIN peers p ON p.guid = h.guid", 1
)


def counts(now: float) -> dict[str, Any]:
    """The parameters of :data:`COUNTS_SQL` and :data:`ONLINE_SQL`."""
    return {"now": now, "stale": now - OFFLINE_AFTER, "on": True}


def file_id_by_hash(value: str) -> Script[int]:
    """A file by any of its hashes, as given or lower-cased (NotFound when none matches)."""
    for algo in HASH_ALGOS:
        for candidate in dict.fromkeys((value, value.lower())):
            row = yield Query(f"SELECT id FROM files WHERE {algo} = :v", {"v": candidate}, "one")
            if row is not None:
                return int(row[0])
    raise NotFound(f"no file with hash {value}")


def record(file_id: int, now: float) -> Script[FileRecord]:
    row = yield Query(
        f"SELECT {FILE_COLS}, {COUNTS_SQL} FROM files f WHERE f.id = :id",
        {"id": file_id, **counts(now)},
        "one",
    )
    if row is None:
        raise NotFound(f"no file {file_id}")
    return record_from(row)


def detail(file_id: int, now: float) -> Script[FileDetail]:
    """A file with its chunks and its live hosts (online first, then most recently seen), each host
    with its own name for the file."""
    rec = yield from record(file_id, now)
    chunk_rows = yield Query(
        "SELECT chunk_id, name, hash FROM chunks WHERE file_id = :id ORDER BY chunk_id",
        {"id": file_id},
        "all",
    )
    host_rows = yield Query(
        f"{HOSTS_SQL} WHERE h.file_id = :id AND p.expires_at > :now "
        f"ORDER BY {ONLINE_SQL} DESC, p.last_seen DESC NULLS LAST",
        {"id": file_id, **counts(now)},
        "all",
    )
    chunks = tuple(Chunk(r[0], r[1], r[2]) for r in chunk_rows)
    hosts = tuple(Host(peer_from(r, now), r["path"], r["host_name"] or rec.name) for r in host_rows)
    return FileDetail(rec, chunks, hosts)


def file_by_hash(value: str, now: float) -> Script[FileDetail]:
    return (yield from detail((yield from file_id_by_hash(value)), now))


def list_files(now: float, limit: int = 100, offset: int = 0) -> Script[list[FileRecord]]:
    rows = yield Query(
        f"SELECT {FILE_COLS}, {COUNTS_SQL} FROM files f ORDER BY f.id LIMIT :limit OFFSET :offset",
        {"limit": limit, "offset": offset, **counts(now)},
        "all",
    )
    return [record_from(r) for r in rows]


def files_of_name(name: str, now: float) -> Script[list[FileDetail]]:
    """Every file that some peer calls exactly ``name`` (names are per peer)."""
    rows = yield Query(
        "SELECT id FROM files WHERE name = :name "
        "UNION SELECT file_id FROM hosts WHERE name = :name ORDER BY 1",
        {"name": name},
        "all",
    )
    found = []
    for r in rows:
        found.append((yield from detail(int(r[0]), now)))
    return found


def browse(guid: str, now: float) -> Script[list[FileRecord]]:
    """Seed 001 BROWSE: the peer's files, each under the peer's own name."""
    yield from peer_row(guid, now)
    rows = yield Query(
        f"SELECT {HOST_FILE_COLS}, {COUNTS_SQL} FROM hosts hh JOIN files f ON f.id = hh.file_id "
        "WHERE hh.guid = :guid ORDER BY f.id",
        {"guid": guid, **counts(now)},
        "all",
    )
    return [record_from(r) for r in rows]
