"""SQLite storage of the index (each operation a coroutine whose synchronous body runs in one worker
thread, so the event loop never blocks).

Every public method is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error),
so a rejected request never leaves half of itself behind. Time is passed in (``now``) by the caller,
which owns the injected clock. WAL journal, FTS5 over file names, and a ``schema_migrations`` table
that records which numbered migrations ran.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import re
import sqlite3
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from bitswarm.index import _scripts as scripts
from bitswarm.index._errors import Conflict, NotFound, ValidationError
from bitswarm.index._model import (
    HASH_ALGOS,
    REGISTRATION_TTL,
    Chunk,
    FileSpec,
    SearchResult,
    public_peer_id,
)
from bitswarm.index._rules import (
    file_names,
    record_from,
)
from bitswarm.index._scripts import Script

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: Most FTS matches considered before ranking by online peers (keeps p99 bounded on huge catalogues).
SEARCH_CANDIDATES = 2000

_MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
    CREATE TABLE users(
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions(
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE peers(
        guid TEXT PRIMARY KEY,
        user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
        ip TEXT,
        port INTEGER,
        created_at REAL NOT NULL,
        last_login REAL,
        last_seen REAL,
        logged_in INTEGER NOT NULL DEFAULT 0,
        expires_at REAL NOT NULL,
        seq_expected INTEGER NOT NULL DEFAULT 0,
        ka_seq_expected INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX peers_user ON peers(user_id);
    CREATE INDEX peers_expires ON peers(expires_at);
    CREATE TABLE files(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        size INTEGER,
        sha1 TEXT, sha256 TEXT, md5 TEXT, btih_v1 TEXT, btih_v2 TEXT,
        magnet TEXT,
        created_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX files_sha1 ON files(sha1) WHERE sha1 IS NOT NULL;
    CREATE UNIQUE INDEX files_sha256 ON files(sha256) WHERE sha256 IS NOT NULL;
    CREATE UNIQUE INDEX files_md5 ON files(md5) WHERE md5 IS NOT NULL;
    CREATE UNIQUE INDEX files_btih_v1 ON files(btih_v1) WHERE btih_v1 IS NOT NULL;
    CREATE UNIQUE INDEX files_btih_v2 ON files(btih_v2) WHERE btih_v2 IS NOT NULL;
    CREATE INDEX files_name ON files(name);
    CREATE TABLE chunks(
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        chunk_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY(file_id, chunk_id)
    ) WITHOUT ROWID;
    CREATE TABLE hosts(
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        guid TEXT NOT NULL REFERENCES peers(guid) ON DELETE CASCADE,
        path TEXT,
        added_at REAL NOT NULL,
        PRIMARY KEY(file_id, guid)
    ) WITHOUT ROWID;
    CREATE INDEX hosts_guid ON hosts(guid, file_id);
    CREATE VIRTUAL TABLE files_fts USING fts5(
        name, content='files', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER files_ai AFTER INSERT ON files BEGIN
        INSERT INTO files_fts(rowid, name) VALUES (new.id, new.name);
    END;
    CREATE TRIGGER files_ad AFTER DELETE ON files BEGIN
        INSERT INTO files_fts(files_fts, rowid, name) VALUES ('delete', old.id, old.name);
    END;
    CREATE TRIGGER files_au AFTER UPDATE OF name ON files BEGIN
        INSERT INTO files_fts(files_fts, rowid, name) VALUES ('delete', old.id, old.name);
        INSERT INTO files_fts(rowid, name) VALUES (new.id, new.name);
    END;
    CREATE TABLE trackers(
        ip TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        added_at REAL NOT NULL
    );
    CREATE TABLE seen_events(
        id TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    );
    """,
    # 2: the .torrent metainfo (BEP 3 / BEP 52) a seeder registered, so `bitswarm get` can rebuild it
    """
    ALTER TABLE files ADD COLUMN torrent BLOB;
    """,
    # 3: the public id of each peer (public views never show the guid, which is its credential)
    """
    ALTER TABLE peers ADD COLUMN public_id TEXT;
    UPDATE peers SET public_id = bitswarm_public_id(guid);
    CREATE INDEX peers_public_id ON peers(public_id);
    """,
    # 4: file ids are never reused (seed 000 clients hold on to ids): the highest id deleted so far;
    # a new file gets max(that, highest id in use) + 1
    """
    CREATE TABLE file_id_high(one INTEGER PRIMARY KEY CHECK (one = 1), last INTEGER NOT NULL);
    INSERT INTO file_id_high(one, last) SELECT 1, coalesce(max(id), 0) FROM files;
    CREATE TRIGGER files_id_high AFTER DELETE ON files BEGIN
        UPDATE file_id_high SET last = old.id WHERE one = 1 AND last < old.id;
    END;
    """,
    # 5: names per peer: each host's own name for a file, and the file's other names, searchable
    """
    ALTER TABLE hosts ADD COLUMN name TEXT;
    CREATE INDEX hosts_name ON hosts(name) WHERE name IS NOT NULL;
    ALTER TABLE files ADD COLUMN aliases TEXT NOT NULL DEFAULT '';
    DROP TRIGGER files_ai;
    DROP TRIGGER files_ad;
    DROP TRIGGER files_au;
    DROP TABLE files_fts;
    CREATE VIRTUAL TABLE files_fts USING fts5(
        name, aliases, content='files', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    INSERT INTO files_fts(files_fts) VALUES ('rebuild');
    CREATE TRIGGER files_ai AFTER INSERT ON files BEGIN
        INSERT INTO files_fts(rowid, name, aliases) VALUES (new.id, new.name, new.aliases);
    END;
    CREATE TRIGGER files_ad AFTER DELETE ON files BEGIN
        INSERT INTO files_fts(files_fts, rowid, name, aliases)
            VALUES ('delete', old.id, old.name, old.aliases);
    END;
    CREATE TRIGGER files_au AFTER UPDATE OF name, aliases ON files BEGIN
        INSERT INTO files_fts(files_fts, rowid, name, aliases)
            VALUES ('delete', old.id, old.name, old.aliases);
        INSERT INTO files_fts(rowid, name, aliases) VALUES (new.id, new.name, new.aliases);
    END;
    """,
)


_WORD = re.compile(r"\w+", re.UNICODE)


def _in_thread(
    fn: Callable[Concatenate[Store, P], R],
) -> Callable[Concatenate[Store, P], Coroutine[Any, Any, R]]:
    """Make a synchronous :class:`Store` method a coroutine run in the store's single worker thread
    (so the event loop never blocks and SQLite sees one thread)."""

    @functools.wraps(fn)
    async def wrapper(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        call = functools.partial(fn, self, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    return wrapper


def _transaction(
    fn: Callable[Concatenate[Store, P], R],
) -> Callable[Concatenate[Store, P], Coroutine[Any, Any, R]]:
    """Like :func:`_in_thread`, as one ``BEGIN IMMEDIATE`` transaction (rolled back on any error)."""

    @functools.wraps(fn)
    def body(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._in_transaction(fn, self, *args, **kwargs)

    return _in_thread(body)


def fts_query(text: str) -> str | None:
    """Turn a user query into an FTS5 expression: words are ANDed prefix terms (``ubu*``); a part in
    double quotes is a phrase. Returns None when the text has no searchable word."""
    parts: list[str] = []
    pieces = text.split('"')
    for i, piece in enumerate(pieces):
        words = _WORD.findall(piece)
        if not words:
            continue
        if i % 2 == 1:  # inside quotes: an exact phrase
            parts.append('"' + " ".join(words) + '"')
        else:
            parts.extend(f'"{w}"*' for w in words)
    return " AND ".join(parts) if parts else None


class Store:
    """The index tables in one SQLite file (``":memory:"`` for a throw-away store), an
    :class:`~bitswarm.index._storeapi.IndexStore`: every public method is a coroutine whose body runs
    in the store's single worker thread. Create with :meth:`open`."""

    kind = "sqlite"

    def __init__(self, path: str | Path, executor: ThreadPoolExecutor) -> None:
        self.path = str(path)
        self._executor = executor
        if self.path != ":memory:":
            _private_file(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.create_function("bitswarm_public_id", 1, public_peer_id, deterministic=True)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA busy_timeout = 5000")
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        db = self._db
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations(version INTEGER PRIMARY KEY, applied_at REAL)"
        )
        done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        for version, script in enumerate(_MIGRATIONS, start=1):
            if version in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(script):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations(version, applied_at) VALUES (?, julianday('now'))",
                    (version,),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @_in_thread
    def schema_version(self) -> int:
        row = self._db.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bitswarm-index-db")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, cls, path, executor)
        except BaseException:
            executor.shutdown(wait=False)
            raise

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)

    # -- users and sessions --------------------------------------------------------------------

    # -- peers ---------------------------------------------------------------------------------

    async def run(self, script: Script[T], *, write: bool = True) -> T:
        """Run a transaction script in the worker thread (``write``: inside ``BEGIN IMMEDIATE``)."""
        call = (
            functools.partial(self._in_transaction, self._run, script)
            if write
            else functools.partial(self._run, script)
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _in_transaction(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` as one ``BEGIN IMMEDIATE`` transaction, rolled back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return result

    def _run(self, script: Script[T]) -> T:
        """Run a transaction script (:mod:`bitswarm.index._scripts`) here, in the worker thread."""
        try:
            query = next(script)
            while True:
                try:
                    cur = self._db.execute(query.sql, query.params)
                except sqlite3.IntegrityError as exc:
                    query = script.throw(Conflict(str(exc)))
                    continue
                result: Any = (
                    cur.fetchone()
                    if query.fetch == "one"
                    else cur.fetchall()
                    if query.fetch == "all"
                    else cur.rowcount
                )
                query = script.send(result)
        except StopIteration as stop:
            value: T = stop.value
            return value

    def _purge_expired_peers(self, now: float) -> int:
        expired = [r[0] for r in self._db.execute("SELECT guid FROM peers WHERE expires_at <= ?", (now,))]
        for guid in expired:
            self._delete_peer(guid)
        return len(expired)

    def _delete_peer(self, guid: str) -> None:
        file_ids = [r[0] for r in self._db.execute("SELECT file_id FROM hosts WHERE guid = ?", (guid,))]
        self._db.execute("DELETE FROM peers WHERE guid = ?", (guid,))
        self._drop_orphans(file_ids)

    def _drop_orphans(self, file_ids: Iterable[int]) -> None:
        """Remove files that no longer have any host (seed 000 ``deregister_file``); a file that keeps
        hosts gets its names recomputed when it had other names (a host that left took its name)."""
        ids = list(file_ids)
        self._db.executemany(
            "DELETE FROM files WHERE id = ? AND NOT EXISTS (SELECT 1 FROM hosts WHERE file_id = ?)",
            [(fid, fid) for fid in ids],
        )
        for fid in ids:
            row = self._db.execute("SELECT aliases FROM files WHERE id = ?", (fid,)).fetchone()
            if row is not None and row[0]:
                self._refresh_names(fid)

    def _refresh_names(self, file_id: int) -> None:
        """Apply :func:`~bitswarm.index._rules.file_names` (names per peer) to file ``file_id``."""
        row = self._db.execute("SELECT name, aliases FROM files WHERE id = ?", (file_id,)).fetchone()
        hosts = self._db.execute(
            "SELECT name FROM hosts WHERE file_id = ? ORDER BY added_at, guid", (file_id,)
        ).fetchall()
        name, aliases = file_names(row[0], [h[0] for h in hosts])
        if (name, aliases) != (row[0], row[1]):
            self._db.execute("UPDATE files SET name = ?, aliases = ? WHERE id = ?", (name, aliases, file_id))

    @_transaction
    def purge_expired(self, now: float) -> int:
        """Delete peers whose registration TTL ran out, with their hosts and orphaned files."""
        self._db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
        self._db.execute("DELETE FROM seen_events WHERE seen_at <= ?", (now - REGISTRATION_TTL,))
        return self._purge_expired_peers(now)

    @_transaction
    def delete_user_peers(self, user_id: int) -> int:
        guids = [r[0] for r in self._db.execute("SELECT guid FROM peers WHERE user_id = ?", (user_id,))]
        for guid in guids:
            self._delete_peer(guid)
        return len(guids)

    # -- files ---------------------------------------------------------------------------------

    def _find_file(self, hashes: dict[str, str]) -> sqlite3.Row | None:
        for algo, value in hashes.items():
            row = self._db.execute(
                f"SELECT id, name, aliases FROM files WHERE {algo} = ?", (value,)
            ).fetchone()
            if row is not None:
                assert isinstance(row, sqlite3.Row)
                return row
        return None

    def _host_file(
        self, spec: FileSpec, guid: str, path: str | None, now: float, name: str | None = None
    ) -> int:
        """Add ``spec`` (or find it by any of its hashes) and record ``guid`` hosting it under ``name``
        (default: the spec's name; names are per peer). Returns the file id. A host name equal to the
        file's is stored as NULL ("the file's name", no index entry): a file's name changes
        only when no host uses it."""
        name = spec.name if name is None else name
        file_id, (current, aliases) = self._upsert_file(spec, now)
        self._db.execute(
            "INSERT INTO hosts(file_id, guid, path, added_at, name) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(file_id, guid) DO UPDATE SET path = coalesce(excluded.path, hosts.path), "
            "name = excluded.name",
            (file_id, guid, path, now, None if name == current else name),
        )
        if name != current or aliases:
            self._refresh_names(file_id)
        return file_id

    def _upsert_file(self, spec: FileSpec, now: float) -> tuple[int, tuple[str, str]]:
        """The file's id and its (name, other names) as they were (a new file: ``spec.name``, none)."""
        hashes = spec.hashes()
        if not hashes:
            raise ValidationError("a file needs at least one hash")
        found = self._find_file(hashes)
        names = (spec.name, "") if found is None else (str(found["name"]), str(found["aliases"]))
        if found is None:
            cur = self._db.execute(
                "INSERT INTO files(id, name, size, sha1, sha256, md5, btih_v1, btih_v2, magnet, torrent, "
                "created_at) VALUES ((SELECT max(coalesce((SELECT max(id) FROM files), 0), last) + 1 "
                "FROM file_id_high), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.name,
                    spec.size,
                    spec.sha1,
                    spec.sha256,
                    spec.md5,
                    spec.btih_v1,
                    spec.btih_v2,
                    spec.magnet,
                    spec.torrent,
                    now,
                ),
            )
            file_id = int(cur.lastrowid or 0)
        else:
            file_id = int(found["id"])
            # Fill in what the first registration did not know; never overwrite a known value.
            cols = (*HASH_ALGOS, "size", "magnet", "torrent")
            sets = [f"{col} = coalesce({col}, :{col})" for col in cols]
            params: dict[str, Any] = {col: getattr(spec, col) for col in cols}
            params["id"] = file_id
            try:
                self._db.execute(f"UPDATE files SET {', '.join(sets)} WHERE id = :id", params)
            except sqlite3.IntegrityError:
                raise Conflict("the hashes given belong to two different files") from None
        if spec.chunks:
            have = self._db.execute("SELECT 1 FROM chunks WHERE file_id = ? LIMIT 1", (file_id,)).fetchone()
            if have is None:
                self._db.executemany(
                    "INSERT INTO chunks(file_id, chunk_id, name, hash) VALUES (?, ?, ?, ?)",
                    [(file_id, c.id, c.name, c.hash) for c in spec.chunks],
                )
        return file_id, names

    @_transaction
    def add_file(
        self,
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
    ) -> tuple[int, str]:
        """Add ``spec`` (or find it by any of its hashes) and record peer ``guid`` as a host.

        ``guid=None`` registers a new peer first (seed 000: "they can provide null and will be given a
        guid"); ``create_guid`` chooses that new guid (federation replays a peer's own guid).
        ``upsert_peer`` creates or refreshes peer ``guid`` in the same transaction (CentralizedP2P).
        Returns ``(file_id, guid)``.
        """
        guid = self._run(
            scripts.file_host(
                now,
                guid=guid,
                ip=ip,
                port=port,
                seq_number=seq_number,
                create_guid=create_guid,
                touch=touch,
                upsert_peer=upsert_peer,
            )
        )
        file_id = self._host_file(spec, guid, path, now)
        return file_id, guid

    @_transaction
    def replace_files(self, guid: str, specs: Sequence[FileSpec], now: float) -> list[int]:
        """Make ``specs`` the whole list of files peer ``guid`` hosts (seed 001 ``REGISTER_UPDATE``)."""
        self._run(scripts.peer_row(guid, now))
        old = [r[0] for r in self._db.execute("SELECT file_id FROM hosts WHERE guid = ?", (guid,))]
        self._db.execute("DELETE FROM hosts WHERE guid = ?", (guid,))
        ids = []
        for spec in specs:
            ids.append(self._host_file(spec, guid, None, now))
        self._drop_orphans(old)
        return ids

    @_transaction
    def register_with_files(
        self, user_id: int, specs: Sequence[FileSpec], now: float, *, ip: str | None, replace: bool = True
    ) -> str:
        """Seed 001 REGISTER in one transaction: (with ``replace``) drop the user's old peers and their
        indexes, create a fresh peer id (offline until LOGIN) and index its files."""
        if replace:
            for (guid,) in self._db.execute(
                "SELECT guid FROM peers WHERE user_id = ?", (user_id,)
            ).fetchall():
                self._delete_peer(guid)
        guid = self._run(scripts.create_peer(now, user_id=user_id, ip=ip))
        for spec in specs:
            self._host_file(spec, guid, None, now)
        return guid

    @_transaction
    def remove_host(
        self,
        guid: str,
        now: float,
        *,
        file_id: int | None = None,
        file_hash: str | None = None,
        seq_number: int | None = None,
    ) -> int:
        """Remove ``guid`` as a host of a file (by id or by any hash); a file left without hosts is
        deleted. Returns the file id."""
        row = self._run(scripts.peer_row(guid, now))
        if file_id is None:
            if file_hash is None:
                raise ValidationError("file id or hash required")
            file_id = self._run(scripts.file_id_by_hash(file_hash))
        self._run(scripts.check_seq(row, "seq_expected", seq_number))
        cur = self._db.execute("DELETE FROM hosts WHERE file_id = ? AND guid = ?", (file_id, guid))
        if cur.rowcount == 0:
            raise NotFound(f"peer {guid} does not host file {file_id}")
        self._drop_orphans([file_id])
        return file_id

    @_in_thread
    def search(self, query: str, now: float, limit: int = 50, offset: int = 0) -> SearchResult:
        """Full-text search on names (prefix words, quoted phrases), ranked by online peers then BM25.

        At most :data:`SEARCH_CANDIDATES` FTS matches are ranked (documented cap)."""
        expr = fts_query(query)
        if expr is None:
            return SearchResult(0, ())
        params = {
            "q": expr,
            "cand": SEARCH_CANDIDATES,
            **scripts.counts(now),
            "limit": limit,
            "offset": offset,
        }
        try:
            rows = self._db.execute(
                f"""
                WITH m AS (SELECT rowid AS id, rank FROM files_fts WHERE files_fts MATCH :q LIMIT :cand)
                SELECT {scripts.FILE_COLS}, {scripts.COUNTS_SQL}, m.rank AS rank, count(*) OVER () AS n
                FROM m JOIN files f ON f.id = m.id
                ORDER BY online DESC, rank, f.id LIMIT :limit OFFSET :offset
                """,
                params,
            ).fetchall()
        except sqlite3.OperationalError as exc:  # an FTS syntax corner we did not sanitise
            raise ValidationError(f"bad search query: {exc}") from None
        total = int(rows[0]["n"]) if rows else 0
        if not rows and offset:
            total = len(
                self._db.execute(
                    "SELECT rowid FROM files_fts WHERE files_fts MATCH :q LIMIT :cand", params
                ).fetchall()
            )
        return SearchResult(total, tuple(record_from(r) for r in rows))

    @_transaction
    def bulk_add(self, rows: Sequence[tuple[FileSpec, str]], now: float) -> int:
        """Insert many (file, host guid) pairs in one transaction (bench and dump loading)."""
        for spec, guid in rows:
            self._host_file(spec, guid, None, now)
        return len(rows)

    # -- federation (seed 000 tracker_sync / new_tracker) ----------------------------------------

    @_in_thread
    def dump(self, now: float) -> dict[str, Any]:
        """Everything a new tracker needs (seed 000 ``new_tracker``), JSON-serialisable."""
        peers = [
            dict(r)
            for r in self._db.execute(
                "SELECT guid, ip, port, created_at, last_login, last_seen, logged_in, expires_at, "
                "seq_expected, ka_seq_expected FROM peers WHERE expires_at > ?",
                (now,),
            )
        ]
        files = []
        for r in self._db.execute("SELECT * FROM files ORDER BY id"):
            f = {k: r[k] for k in ("id", "name", "size", *HASH_ALGOS, "magnet")}
            f["torrent"] = b64(r["torrent"])
            f["chunks"] = [
                {"id": c[0], "name": c[1], "chunk_hash": c[2]}
                for c in self._db.execute(
                    "SELECT chunk_id, name, hash FROM chunks WHERE file_id = ? ORDER BY chunk_id", (r["id"],)
                )
            ]
            f["hosts"] = [
                {"guid": h[0], "path": h[1], "name": h[2]}
                for h in self._db.execute("SELECT guid, path, name FROM hosts WHERE file_id = ?", (r["id"],))
            ]
            files.append(f)
        trackers = [{"name": t.name, "ip": t.ip} for t in self._run(scripts.trackers())]
        return {"version": 1, "peers": peers, "files": files, "trackers": trackers}

    @_transaction
    def load_dump(self, data: dict[str, Any], now: float) -> int:
        """Merge a :meth:`dump` of another tracker (peers by guid, files by hash). Returns files merged."""
        for p in data.get("peers", []):
            self._db.execute(
                "INSERT INTO peers(guid, ip, port, created_at, last_login, last_seen, logged_in, expires_at, "
                "seq_expected, ka_seq_expected, public_id) VALUES (:guid, :ip, :port, :created_at, "
                ":last_login, :last_seen, :logged_in, :expires_at, :seq_expected, :ka_seq_expected, "
                ":public_id) "
                "ON CONFLICT(guid) DO UPDATE SET last_seen = max(coalesce(peers.last_seen, 0), "
                "coalesce(excluded.last_seen, 0)), expires_at = max(peers.expires_at, excluded.expires_at), "
                "seq_expected = max(peers.seq_expected, excluded.seq_expected), "
                "ka_seq_expected = max(peers.ka_seq_expected, excluded.ka_seq_expected)",
                {**p, "public_id": public_peer_id(p["guid"])},
            )
        n = 0
        for f in data.get("files", []):
            spec = spec_from_dump(f)
            hosted = False
            for h in f.get("hosts", []):
                if self._db.execute("SELECT 1 FROM peers WHERE guid = ?", (h["guid"],)).fetchone():
                    self._host_file(spec, h["guid"], h.get("path"), now, h.get("name"))
                    hosted = True
            if not hosted:
                self._upsert_file(spec, now)
            n += 1
        for t in data.get("trackers", []):
            self._db.execute(
                "INSERT INTO trackers(ip, name, added_at) VALUES (?, ?, ?) ON CONFLICT(ip) DO NOTHING",
                (t["ip"], t["name"], now),
            )
        return n


def _private_file(path: str) -> None:
    """Create the database file owner-only (0600: it holds password hashes) before SQLite opens it, and
    tighten an existing one; SQLite gives its ``-wal`` and ``-shm`` files the database file's mode."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            with contextlib.suppress(PermissionError):  # not ours to change: use it as it is
                os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _split_sql(script: str) -> list[str]:
    """Split a migration script on ``;`` at line ends, keeping trigger bodies (``BEGIN … END;``) whole."""
    statements: list[str] = []
    current: list[str] = []
    depth = 0
    for line in script.strip().splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        current.append(line)
        upper = stripped.upper()
        if upper.endswith("BEGIN"):
            depth += 1
        if upper == "END;":
            depth -= 1
        if stripped.endswith(";") and depth == 0:
            statements.append("\n".join(current))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(bytes(data)).decode("ascii")


def spec_from_dump(f: dict[str, Any]) -> FileSpec:
    """A file entry of a :meth:`Store.dump` (either backend) back to a :class:`FileSpec`."""
    torrent = f.get("torrent")
    return FileSpec(
        name=f["name"],
        size=f.get("size"),
        magnet=f.get("magnet"),
        torrent=None if torrent is None else base64.b64decode(torrent),
        chunks=tuple(Chunk(c["id"], c["name"], c["chunk_hash"]) for c in f.get("chunks", [])),
        **{algo: f.get(algo) for algo in HASH_ALGOS},
    )


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)
