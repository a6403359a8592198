"""Transaction scripts: the index's peer rules written once for both storage backends (sans-I/O).

A script is a generator that yields :class:`Query` objects — SQL with ``:name`` parameters, which
SQLite takes as they are and :class:`~bitswarm.index._pgstore.PgStore` rewrites to ``$n`` — and
receives each one's result (a row or None, a list of rows, or the number of rows changed); what it
returns is the operation's result. :class:`~bitswarm.index._store.Store` runs scripts synchronously
in its worker thread, ``PgStore`` awaits each query on one connection; both inside the transaction
they opened for the operation, so a script never sees half of another write.

Peer creation, presence (LOGIN, keep-alive, LOGOUT, CentralizedP2P's implicit peers), ownership,
sequence numbers, users and sessions, the federation's bookkeeping and dumps, the peer and file
listings and lookups, file registration and removal (hosts, orphans, names per peer) live here, on top
of the pure rules of :mod:`bitswarm.index._rules`. What differs between the dialects is yielded as one
of two typed primitives (:class:`InsertFile`, :class:`SetNames`) that each store turns into its own
statement; the stores keep only that, their plumbing and full-text search (FTS5 / tsvector).

A statement that breaks a uniqueness constraint is thrown into the script as
:class:`~bitswarm.index._errors.Conflict`; the script must then end (PostgreSQL has aborted the
transaction), re-raising it or another error.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

from bitswarm.index._errors import Conflict, NotFound, ValidationError
from bitswarm.index._model import (
    HASH_ALGOS,
    OFFLINE_AFTER,
    REGISTRATION_TTL,
    Chunk,
    FileDetail,
    FileRecord,
    FileSpec,
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
    file_names,
    peer_from,
    record_from,
    registration_expiry,
    token_hash,
)

T = TypeVar("T")


class Query(NamedTuple):
    """One statement of a script. ``fetch``: ``"one"`` (a row or None), ``"all"`` (a list of rows),
    ``"count"`` (how many rows it inserted, updated or deleted) or ``"id"`` (the id of the row it
    inserted: only the stores' own statements use it, as PostgreSQL needs ``RETURNING id`` for it).
    A named tuple, not a frozen dataclass: a bulk load makes three per file, and this is cheaper."""

    sql: str
    params: dict[str, Any]
    fetch: Literal["one", "all", "count", "id"] = "count"


#: A transaction script returning ``T``: yields queries (or the two dialect primitives
#: :class:`InsertFile` and :class:`SetNames`, defined with the file writes below), is sent their results.
Script = Generator["Query | InsertFile | SetNames", Any, T]

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


# -- files (writes) ------------------------------------------------------------------------------------
#
# Registration and removal: written once here. The only dialect-specific steps are the two typed
# primitives below, which each store turns into its own statement (:meth:`Store.lower` /
# ``PgStore.lower``): SQLite gives ids that are never reused through ``file_id_high`` and keeps FTS5 in
# step with triggers; PostgreSQL has a BIGSERIAL and maintains the ``search`` tsvector in the row.

#: Columns of a new file that both dialects insert alike (in this order).
NEW_FILE_COLS = ("name", "size", *HASH_ALGOS, "magnet", "torrent", "created_at")
#: The values a known file takes from a later registration when it did not know them yet.
FILL_COLS = (*HASH_ALGOS, "size", "magnet", "torrent")
#: Most ``:name`` parameters one statement gets from a list (both SQLite and PostgreSQL take more).
BATCH = 500


@dataclass(frozen=True, slots=True)
class InsertFile:
    """Primitive: insert a new file row (:data:`NEW_FILE_COLS` from :meth:`params`); answers its id."""

    spec: FileSpec
    now: float

    def params(self) -> dict[str, Any]:
        s = self.spec
        return {
            "name": s.name,
            "size": s.size,
            "sha1": s.sha1,
            "sha256": s.sha256,
            "md5": s.md5,
            "btih_v1": s.btih_v1,
            "btih_v2": s.btih_v2,
            "magnet": s.magnet,
            "torrent": s.torrent,
            "created_at": self.now,
        }


@dataclass(frozen=True, slots=True)
class SetNames:
    """Primitive: set file ``file_id``'s listed name and other names (and whatever the dialect indexes
    them with). Answers the number of rows changed."""

    file_id: int
    name: str
    aliases: str


#: What a script may yield: a portable statement or a dialect primitive.
Step = Query | InsertFile | SetNames


def _in_list(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``(:p0, :p1, …)`` and its parameters, for ``IN`` lists (at most :data:`BATCH` values)."""
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{k}" for k in params) + ")", params


def refresh_names(file_id: int) -> Script[None]:
    """Apply :func:`~bitswarm.index._rules.file_names` (names per peer) to file ``file_id``."""
    row = yield Query("SELECT name, aliases FROM files WHERE id = :id", {"id": file_id}, "one")
    hosts = yield Query(
        "SELECT name FROM hosts WHERE file_id = :id ORDER BY added_at, guid", {"id": file_id}, "all"
    )
    name, aliases = file_names(row[0], [h[0] for h in hosts])
    if (name, aliases) != (row[0], row[1]):
        yield SetNames(file_id, name, aliases)


def drop_orphans(file_ids: Iterable[int]) -> Script[None]:
    """Remove files that no longer have any host (seed 000 ``deregister_file``); a kept file that had
    other names gets them recomputed (a host that left took its name)."""
    ids = list(dict.fromkeys(file_ids))
    for start in range(0, len(ids), BATCH):
        in_sql, params = _in_list("f", ids[start : start + BATCH])
        yield Query(
            f"DELETE FROM files WHERE id IN {in_sql} "
            "AND NOT EXISTS (SELECT 1 FROM hosts WHERE hosts.file_id = files.id)",
            params,
        )
        named = yield Query(f"SELECT id FROM files WHERE id IN {in_sql} AND aliases <> ''", params, "all")
        for r in named:
            yield from refresh_names(int(r[0]))


def delete_peer(guid: str) -> Script[None]:
    """Delete peer ``guid`` with its hosts and the files only it hosted."""
    rows = yield Query("SELECT file_id FROM hosts WHERE guid = :guid", {"guid": guid}, "all")
    yield Query("DELETE FROM peers WHERE guid = :guid", {"guid": guid})
    yield from drop_orphans(int(r[0]) for r in rows)


def _delete_peers(where: str, params: dict[str, Any]) -> Script[int]:
    rows = yield Query(f"SELECT guid FROM peers WHERE {where}", params, "all")
    for r in rows:
        yield from delete_peer(str(r[0]))
    return len(rows)


def purge_expired(now: float) -> Script[int]:
    """Delete expired sessions and events, and peers whose registration TTL ran out (with their hosts
    and orphaned files). Returns how many peers went."""
    yield Query("DELETE FROM sessions WHERE expires_at <= :now", {"now": now})
    yield Query("DELETE FROM seen_events WHERE seen_at <= :old", {"old": now - REGISTRATION_TTL})
    return (yield from _delete_peers("expires_at <= :now", {"now": now}))


def delete_user_peers(user_id: int) -> Script[int]:
    return (yield from _delete_peers("user_id = :uid", {"uid": user_id}))


_FIND_FILE: dict[str, str] = {
    algo: f"SELECT id, name, aliases FROM files WHERE {algo} = :v" for algo in HASH_ALGOS
}
_FILL = (
    "UPDATE files SET "
    + ", ".join(f"{col} = coalesce({col}, :{col})" for col in FILL_COLS)
    + " WHERE id = :id"
)
_HOST = (
    "INSERT INTO hosts(file_id, guid, path, added_at, name) VALUES (:fid, :guid, :path, :now, :name) "
    "ON CONFLICT(file_id, guid) DO UPDATE SET path = coalesce(excluded.path, hosts.path), "
    "name = excluded.name"
)


def find_file(hashes: dict[str, str]) -> Script[Row | None]:
    """The file (id, name, aliases) having any of ``hashes``, or None."""
    for algo, value in hashes.items():
        row = yield Query(_FIND_FILE[algo], {"v": value}, "one")
        if row is not None:
            found: Row = row
            return found
    return None


def upsert_file(spec: FileSpec, now: float) -> Script[tuple[int, tuple[str, str]]]:
    """The file's id and its (name, other names) as they were (a new file: ``spec.name``, none);
    a known file gets what it did not know yet (a known value is never overwritten)."""
    hashes = spec.hashes()
    if not hashes:
        raise ValidationError("a file needs at least one hash")
    found: Row | None = None
    for algo, value in hashes.items():  # find_file, inlined: bulk loads pass here for every file
        found = yield Query(_FIND_FILE[algo], {"v": value}, "one")
        if found is not None:
            break
    if found is None:
        file_id = int((yield InsertFile(spec, now)))
        names = (spec.name, "")
    else:
        file_id, names = int(found["id"]), (str(found["name"]), str(found["aliases"]))
        try:
            yield Query(_FILL, {"id": file_id, **{col: getattr(spec, col) for col in FILL_COLS}})
        except Conflict:
            raise Conflict("the hashes given belong to two different files") from None
    if spec.chunks:
        have = yield Query("SELECT 1 FROM chunks WHERE file_id = :id LIMIT 1", {"id": file_id}, "one")
        if have is None:
            for start in range(0, len(spec.chunks), BATCH // 4):
                values: list[str] = []
                params: dict[str, Any] = {"fid": file_id}
                for i, c in enumerate(spec.chunks[start : start + BATCH // 4]):
                    values.append(f"(:fid, :c{i}, :n{i}, :h{i})")
                    params.update({f"c{i}": c.id, f"n{i}": c.name, f"h{i}": c.hash})
                yield Query(
                    f"INSERT INTO chunks(file_id, chunk_id, name, hash) VALUES {', '.join(values)}", params
                )
    return file_id, names


def host_file(
    spec: FileSpec, guid: str, path: str | None, now: float, name: str | None = None
) -> Script[int]:
    """Add ``spec`` (or find it by any of its hashes) and record ``guid`` hosting it under ``name``
    (default: the spec's name; names are per peer). Returns the file id. A host name equal to the
    file's is stored as NULL ("the file's name", no index entry): a file's name changes only when no
    host uses it."""
    name = spec.name if name is None else name
    file_id, (current, aliases) = yield from upsert_file(spec, now)
    host_name = None if name == current else name
    yield Query(_HOST, {"fid": file_id, "guid": guid, "path": path, "now": now, "name": host_name})
    if name != current or aliases:
        yield from refresh_names(file_id)
    return file_id


def add_file(
    spec: FileSpec,
    now: float,
    *,
    guid: str | None,
    ip: str | None = None,
    port: int | None = None,
    path: str | None = None,
    seq_number: int | None = None,
    create_guid: str | None = None,
    touch: bool = True,
    upsert_peer: bool = False,
) -> Script[tuple[int, str]]:
    """Add ``spec`` (or find it by any of its hashes) and record peer ``guid`` as a host (see
    :func:`file_host` for the peer side). Returns ``(file_id, guid)``."""
    guid = yield from file_host(
        now,
        guid=guid,
        ip=ip,
        port=port,
        seq_number=seq_number,
        create_guid=create_guid,
        touch=touch,
        upsert_peer=upsert_peer,
    )
    return (yield from host_file(spec, guid, path, now)), guid


def replace_files(guid: str, specs: Sequence[FileSpec], now: float) -> Script[list[int]]:
    """Make ``specs`` the whole list of files peer ``guid`` hosts (seed 001 ``REGISTER_UPDATE``)."""
    yield from peer_row(guid, now)
    old = yield Query("SELECT file_id FROM hosts WHERE guid = :guid", {"guid": guid}, "all")
    yield Query("DELETE FROM hosts WHERE guid = :guid", {"guid": guid})
    ids = []
    for spec in specs:
        ids.append((yield from host_file(spec, guid, None, now)))
    yield from drop_orphans(int(r[0]) for r in old)
    return ids


def register_with_files(
    user_id: int, specs: Sequence[FileSpec], now: float, *, ip: str | None, replace: bool = True
) -> Script[str]:
    """Seed 001 REGISTER: (with ``replace``) drop the user's old peers and their indexes, create a
    fresh peer id (offline until LOGIN) and index its files."""
    if replace:
        yield from delete_user_peers(user_id)
    guid = yield from create_peer(now, user_id=user_id, ip=ip)
    for spec in specs:
        yield from host_file(spec, guid, None, now)
    return guid


def remove_host(
    guid: str,
    now: float,
    *,
    file_id: int | None = None,
    file_hash: str | None = None,
    seq_number: int | None = None,
) -> Script[int]:
    """Remove ``guid`` as a host of a file (by id or by any hash); a file left without hosts is
    deleted. Returns the file id."""
    row = yield from peer_row(guid, now)
    if file_id is None:
        if file_hash is None:
            raise ValidationError("file id or hash required")
        file_id = yield from file_id_by_hash(file_hash)
    yield from check_seq(row, "seq_expected", seq_number)
    removed = yield Query(
        "DELETE FROM hosts WHERE file_id = :fid AND guid = :guid", {"fid": file_id, "guid": guid}
    )
    if removed == 0:
        raise NotFound(f"peer {guid} does not host file {file_id}")
    yield from drop_orphans([file_id])
    return file_id


def bulk_add(rows: Sequence[tuple[FileSpec, str]], now: float) -> Script[int]:
    """Many (file, host guid) pairs in one transaction (bench and dump loading)."""
    for spec, guid in rows:
        yield from host_file(spec, guid, None, now)
    return len(rows)


# -- dumps (seed 000 tracker_sync / new_tracker) -------------------------------------------------------

DUMP_PEER_COLS = (
    "guid",
    "ip",
    "port",
    "created_at",
    "last_login",
    "last_seen",
    "logged_in",
    "expires_at",
    "seq_expected",
    "ka_seq_expected",
)


def dump(now: float) -> Script[dict[str, Any]]:
    """Everything a new tracker needs (seed 000 ``new_tracker``), JSON-serialisable and the same on
    both backends (``logged_in`` 0/1, the .torrent base64)."""
    peer_rows = yield Query(
        f"SELECT {', '.join(DUMP_PEER_COLS)} FROM peers WHERE expires_at > :now ORDER BY guid",
        {"now": now},
        "all",
    )
    peers = [{**dict(r), "logged_in": int(r["logged_in"])} for r in peer_rows]
    chunks: dict[int, list[dict[str, Any]]] = {}
    for c in (
        yield Query("SELECT file_id, chunk_id, name, hash FROM chunks ORDER BY file_id, chunk_id", {}, "all")
    ):
        chunks.setdefault(int(c[0]), []).append({"id": c[1], "name": c[2], "chunk_hash": c[3]})
    hosts: dict[int, list[dict[str, Any]]] = {}
    for h in (yield Query("SELECT file_id, guid, path, name FROM hosts ORDER BY file_id, guid", {}, "all")):
        hosts.setdefault(int(h[0]), []).append({"guid": h[1], "path": h[2], "name": h[3]})
    files = []
    cols = ("id", "name", "size", *HASH_ALGOS, "magnet")
    for r in (yield Query(f"SELECT {', '.join(cols)}, torrent FROM files ORDER BY id", {}, "all")):
        f = {k: r[k] for k in cols}
        f["torrent"] = None if r["torrent"] is None else base64.b64encode(bytes(r["torrent"])).decode("ascii")
        f["chunks"] = chunks.get(int(r["id"]), [])
        f["hosts"] = hosts.get(int(r["id"]), [])
        files.append(f)
    tracker_list = yield from trackers()
    return {
        "version": 1,
        "peers": peers,
        "files": files,
        "trackers": [{"name": t.name, "ip": t.ip} for t in tracker_list],
    }


def spec_from_dump(f: dict[str, Any]) -> FileSpec:
    """A file entry of a :func:`dump` back to a :class:`FileSpec`."""
    torrent = f.get("torrent")
    return FileSpec(
        name=f["name"],
        size=f.get("size"),
        magnet=f.get("magnet"),
        torrent=None if torrent is None else base64.b64decode(torrent),
        chunks=tuple(Chunk(c["id"], c["name"], c["chunk_hash"]) for c in f.get("chunks", [])),
        **{algo: f.get(algo) for algo in HASH_ALGOS},
    )


def _later(column: str) -> str:
    """The larger of the stored and the incoming value (portable: no ``max(a, b)`` / ``greatest``)."""
    old, new = f"coalesce(peers.{column}, 0)", f"coalesce(excluded.{column}, 0)"
    return f"{column} = CASE WHEN {new} > {old} THEN {new} ELSE {old} END"


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def load_dump(data: dict[str, Any], now: float) -> Script[int]:
    """Merge a :func:`dump` of another tracker (peers by guid, files by hash). Returns files merged."""
    for p in data.get("peers", []):
        yield Query(
            f"INSERT INTO peers({', '.join(DUMP_PEER_COLS)}, public_id) VALUES "
            f"({', '.join(':' + c for c in DUMP_PEER_COLS)}, :public_id) ON CONFLICT(guid) DO UPDATE SET "
            + ", ".join(_later(c) for c in ("last_seen", "expires_at", "seq_expected", "ka_seq_expected")),
            {
                "guid": p["guid"],
                "ip": p.get("ip"),
                "port": p.get("port"),
                "created_at": float(p["created_at"]),
                "last_login": _opt_float(p.get("last_login")),
                "last_seen": _opt_float(p.get("last_seen")),
                "logged_in": bool(p.get("logged_in")),
                "expires_at": float(p["expires_at"]),
                "seq_expected": int(p.get("seq_expected", 0)),
                "ka_seq_expected": int(p.get("ka_seq_expected", 0)),
                "public_id": public_peer_id(p["guid"]),
            },
        )
    n = 0
    for f in data.get("files", []):
        spec = spec_from_dump(f)
        hosted = False
        for h in f.get("hosts", []):
            if (
                yield Query("SELECT 1 FROM peers WHERE guid = :guid", {"guid": h["guid"]}, "one")
            ) is not None:
                yield from host_file(spec, h["guid"], h.get("path"), now, h.get("name"))
                hosted = True
        if not hosted:
            yield from upsert_file(spec, now)
        n += 1
    for t in data.get("trackers", []):
        yield Query(
            "INSERT INTO trackers(ip, name, added_at) VALUES (:ip, :name, :now) ON CONFLICT(ip) DO NOTHING",
            {"ip": t["ip"], "name": t["name"], "now": now},
        )
    return n
