"""SQLite storage of the index (each operation a coroutine whose synchronous body runs in one worker
thread, so the event loop never blocks).

Every public method is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error),
so a rejected request never leaves half of itself behind. Time is passed in (``now``) by the caller,
which owns the injected clock. WAL journal, FTS5 over file names, and a ``schema_migrations`` table
that records which numbered migrations ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sqlite3
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from bitswarm.index import _scripts as scripts
from bitswarm.index._errors import Conflict, ValidationError
from bitswarm.index._model import (
    SearchResult,
    public_peer_id,
)
from bitswarm.index._rules import (
    record_from,
)
from bitswarm.index._scripts import Query, Script

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

_INSERT_FILE = (
    f"INSERT INTO files(id, {', '.join(scripts.NEW_FILE_COLS)}) VALUES ((SELECT max(coalesce((SELECT max(id) "
    f"FROM files), 0), last) + 1 FROM file_id_high), {', '.join(':' + c for c in scripts.NEW_FILE_COLS)})"
)
_SET_NAMES = "UPDATE files SET name = :name, aliases = :aliases WHERE id = :id"


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


#: The files a search finds (``m``: id, BM25 rank, ``every`` 1 when all the query's parts match).
_FTS_MATCHES = """
    WITH e AS (SELECT rowid AS id, rank FROM files_fts WHERE files_fts MATCH :every LIMIT :cand),
    s AS (SELECT rowid AS id, rank FROM files_fts WHERE files_fts MATCH :some
          AND rowid NOT IN (SELECT id FROM e) LIMIT :cand),
    m AS (SELECT id, rank, 1 AS every FROM e UNION ALL SELECT id, rank, 0 AS every FROM s)
"""
_FTS_MATCHES_ONE_PART = """
    WITH m AS (SELECT rowid AS id, rank, 1 AS every FROM files_fts WHERE files_fts MATCH :every LIMIT :cand)
"""


def fts_query(text: str, *, any_part: bool = False) -> str | None:
    """Turn a user query into an FTS5 expression: words are prefix terms (``ubu*``), a part in double
    quotes is a phrase; all of them ANDed, or ORed with ``any_part``. Returns None when the text has
    no searchable word."""
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
    return (" OR " if any_part else " AND ").join(parts) if parts else None


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
            step = next(script)
            while True:
                query = step if isinstance(step, Query) else self.lower(step)
                try:
                    cur = self._db.execute(query.sql, query.params)
                except sqlite3.IntegrityError as exc:
                    step = script.throw(Conflict(str(exc)))
                    continue
                fetch = query.fetch
                result: Any = (
                    cur.rowcount
                    if fetch == "count"
                    else cur.fetchone()
                    if fetch == "one"
                    else cur.fetchall()
                    if fetch == "all"
                    else cur.lastrowid
                )
                step = script.send(result)
        except StopIteration as stop:
            value: T = stop.value
            return value

    @staticmethod
    def lower(step: scripts.InsertFile | scripts.SetNames) -> Query:
        """A dialect primitive of a script as SQLite's statement: a new file takes the next id that was
        never given (``file_id_high`` remembers deleted ones); FTS5 follows through triggers."""
        if isinstance(step, scripts.InsertFile):
            return Query(_INSERT_FILE, step.params(), "id")
        return Query(_SET_NAMES, {"name": step.name, "aliases": step.aliases, "id": step.file_id})

    @_in_thread
    def search(self, query: str, now: float, limit: int = 50, offset: int = 0) -> SearchResult:
        """Full-text search on names (prefix words, quoted phrases): a file matching any of them is
        found; ranked by relevance — the files matching all of them first, then by online peers, then
        BM25.

        At most :data:`SEARCH_CANDIDATES` files matching all, and as many matching only some, are
        ranked (documented cap)."""
        every, some = fts_query(query), fts_query(query, any_part=True)
        if every is None or some is None:
            return SearchResult(0, ())
        params = {
            "every": every,
            "some": some,
            "cand": SEARCH_CANDIDATES,
            **scripts.counts(now),
            "limit": limit,
            "offset": offset,
        }
        # one part: "some" finds what "every" does, nothing more
        matches = _FTS_MATCHES if some != every else _FTS_MATCHES_ONE_PART
        try:
            rows = self._db.execute(
                f"""
                {matches}
                SELECT {scripts.FILE_COLS}, {scripts.COUNTS_SQL}, m.rank AS rank, count(*) OVER () AS n
                FROM m JOIN files f ON f.id = m.id
                ORDER BY m.every DESC, online DESC, rank, f.id LIMIT :limit OFFSET :offset
                """,
                params,
            ).fetchall()
            total = int(rows[0]["n"]) if rows else 0
            if not rows and offset:
                total = int(self._db.execute(f"{matches} SELECT count(*) FROM m", params).fetchone()[0])
        except sqlite3.OperationalError as exc:  # an FTS syntax corner we did not sanitise
            raise ValidationError(f"bad search query: {exc}") from None
        return SearchResult(total, tuple(record_from(r) for r in rows))


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
