"""PostgreSQL storage of the index (asyncpg), the same operations as the SQLite
:class:`~bitswarm.index._store.Store` with the same results, for ``--db postgresql://…``.

* Every public method is one transaction; methods that write also hold one process-wide
  :class:`asyncio.Lock`, so writes are applied one after the other exactly as SQLite's single writer
  does (sequence-number checks and hash de-duplication need no row locks or retries). Reads run
  concurrently on the pool.
* Full-text search uses a ``tsvector`` column with a GIN index. The vector and the query are built
  here as *literals* (``'word':1 'other':2`` / ``'ubu':* & 'desk':*`` / ``'big' <-> 'buck'``) from
  the same word splitting and normalisation as the SQLite FTS5 path (casefold, diacritics removed),
  so both backends match the same names; ranking is online peers, then ``ts_rank``.
* Versioned migrations in ``schema_migrations``, applied under a transaction-scoped advisory lock
  so two servers starting on one database do not race.
"""

from __future__ import annotations

import asyncio
import functools
import re
import unicodedata
from typing import Any, TypeVar

import asyncpg

from bitswarm.index import _scripts as scripts
from bitswarm.index._errors import Conflict, ValidationError
from bitswarm.index._model import (
    SearchResult,
)
from bitswarm.index._rules import (
    record_from,
)
from bitswarm.index._scripts import Query, Script

T = TypeVar("T")

#: Most full-text matches ranked per query (same cap as the SQLite path).
SEARCH_CANDIDATES = 2000
_MIGRATION_LOCK = 0x62697473  # "bits": advisory lock key held while migrating

PG_MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema (mirrors SQLite migration 1; FTS5 becomes a tsvector column)
    """
    CREATE TABLE users(
        id BIGSERIAL PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE sessions(
        token_hash TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE peers(
        guid TEXT PRIMARY KEY,
        user_id BIGINT REFERENCES users(id) ON DELETE SET NULL,
        ip TEXT,
        port INTEGER,
        created_at DOUBLE PRECISION NOT NULL,
        last_login DOUBLE PRECISION,
        last_seen DOUBLE PRECISION,
        logged_in BOOLEAN NOT NULL DEFAULT false,
        expires_at DOUBLE PRECISION NOT NULL,
        seq_expected BIGINT NOT NULL DEFAULT 0,
        ka_seq_expected BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX peers_user ON peers(user_id);
    CREATE INDEX peers_expires ON peers(expires_at);
    CREATE TABLE files(
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL,
        size BIGINT,
        sha1 TEXT, sha256 TEXT, md5 TEXT, btih_v1 TEXT, btih_v2 TEXT,
        magnet TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        search TSVECTOR NOT NULL
    );
    CREATE UNIQUE INDEX files_sha1 ON files(sha1) WHERE sha1 IS NOT NULL;
    CREATE UNIQUE INDEX files_sha256 ON files(sha256) WHERE sha256 IS NOT NULL;
    CREATE UNIQUE INDEX files_md5 ON files(md5) WHERE md5 IS NOT NULL;
    CREATE UNIQUE INDEX files_btih_v1 ON files(btih_v1) WHERE btih_v1 IS NOT NULL;
    CREATE UNIQUE INDEX files_btih_v2 ON files(btih_v2) WHERE btih_v2 IS NOT NULL;
    CREATE INDEX files_name ON files(name);
    CREATE INDEX files_search ON files USING GIN(search);
    CREATE TABLE chunks(
        file_id BIGINT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        chunk_id BIGINT NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY(file_id, chunk_id)
    );
    CREATE TABLE hosts(
        file_id BIGINT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        guid TEXT NOT NULL REFERENCES peers(guid) ON DELETE CASCADE,
        path TEXT,
        added_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY(file_id, guid)
    );
    CREATE INDEX hosts_guid ON hosts(guid, file_id);
    CREATE TABLE trackers(
        ip TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        added_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE seen_events(
        id TEXT PRIMARY KEY,
        seen_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 2: the .torrent metainfo (BEP 3 / BEP 52) a seeder registered, so `bitswarm get` can rebuild it
    """
    ALTER TABLE files ADD COLUMN torrent BYTEA;
    """,
    # 3: the public id of each peer (public views never show the guid, which is its credential)
    """
    ALTER TABLE peers ADD COLUMN public_id TEXT;
    UPDATE peers SET public_id =
        substr(encode(sha256(convert_to('bitswarm-peer:' || guid, 'UTF8')), 'hex'), 1, 16);
    CREATE INDEX peers_public_id ON peers(public_id);
    """,
    # 4: (SQLite: file ids never reused) a BIGSERIAL never gives an id out twice; nothing to do
    """
    SELECT 1;
    """,
    # 5: names per peer: each host's own name for a file, and the file's other names (in ``search``)
    """
    ALTER TABLE hosts ADD COLUMN name TEXT;
    CREATE INDEX hosts_name ON hosts(name) WHERE name IS NOT NULL;
    ALTER TABLE files ADD COLUMN aliases TEXT NOT NULL DEFAULT '';
    """,
)

_INSERT_FILE = (
    f"INSERT INTO files({', '.join(scripts.NEW_FILE_COLS)}, search) "
    f"VALUES ({', '.join(':' + c for c in scripts.NEW_FILE_COLS)}, CAST(:search AS tsvector)) RETURNING id"
)
_SET_NAMES = (
    "UPDATE files SET name = :name, aliases = :aliases, search = CAST(:search AS tsvector) WHERE id = :id"
)
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _q(sql: str, **params: Any) -> tuple[str, list[Any]]:
    """``:name`` placeholders to asyncpg's ``$n`` (each name bound once, reused by number)."""
    text, names = _translate(sql)
    return text, [params[name] for name in names]


@functools.lru_cache(maxsize=1024)
def _translate(sql: str) -> tuple[str, tuple[str, ...]]:
    order: dict[str, int] = {}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in order:
            order[name] = len(order) + 1
        return f"${order[name]}"

    return _PARAM.sub(sub, sql), tuple(order)


def search_words(text: str) -> list[str]:
    """Words of ``text`` as both backends index them: casefolded, diacritics removed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _WORD.findall(plain)


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(name: str) -> str:
    """``'word':position …`` for a file name (positions keep phrase search exact)."""
    return " ".join(f"{_lexeme(w)}:{i}" for i, w in enumerate(search_words(name)[:16000], start=1))


#: The files a search finds (``m``: id, ``ts_rank``, ``every`` 1 when all the query's parts match).
_TS_MATCHES = """
    WITH e AS (SELECT f.id, ts_rank(f.search, q) AS rank
               FROM files f, CAST(:every AS tsquery) q WHERE f.search @@ q LIMIT :cand),
    s AS (SELECT f.id, ts_rank(f.search, q) AS rank
          FROM files f, CAST(:some AS tsquery) q WHERE f.search @@ q AND f.id NOT IN (SELECT id FROM e)
          LIMIT :cand),
    m AS (SELECT id, rank, 1 AS every FROM e UNION ALL SELECT id, rank, 0 AS every FROM s)
"""
_TS_MATCHES_ONE_PART = """
    WITH m AS (SELECT f.id, ts_rank(f.search, q) AS rank, 1 AS every
               FROM files f, CAST(:every AS tsquery) q WHERE f.search @@ q LIMIT :cand)
"""


def tsquery_literal(text: str, *, any_part: bool = False) -> str | None:
    """A user query as a ``tsquery`` literal: words are prefix terms (``'ubu':*``), a part in double
    quotes is an exact phrase (``'big' <-> 'buck'``); all of them ANDed, or ORed with ``any_part``.
    None when nothing is searchable."""
    parts: list[str] = []
    for i, piece in enumerate(text.split('"')):
        words = search_words(piece)
        if not words:
            continue
        if i % 2 == 1:
            parts.append("(" + " <-> ".join(_lexeme(w) for w in words) + ")")
        else:
            parts.extend(f"{_lexeme(w)}:*" for w in words)
    return (" | " if any_part else " & ").join(parts) if parts else None


def _clean(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; such a value can match nothing stored."""
    return value if value is None or "\x00" not in value else None


class PgStore:
    """The index tables in one PostgreSQL database, an :class:`~bitswarm.index._storeapi.IndexStore`.
    Create with :meth:`connect`."""

    kind = "postgresql"

    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self.path = dsn
        self._pool = pool
        self._write = asyncio.Lock()

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 8) -> PgStore:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=60)
        store = cls(dsn, pool)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def _migrate(self) -> None:
        async with self._pool.acquire() as c, c.transaction():
            await c.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await c.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations("
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in await c.fetch("SELECT version FROM schema_migrations")}
            for version, script in enumerate(PG_MIGRATIONS, start=1):
                if version in done:
                    continue
                async with c.transaction():  # a savepoint per migration
                    await c.execute(script)
                    await c.execute("INSERT INTO schema_migrations(version) VALUES ($1)", version)

    async def schema_version(self) -> int:
        return int(await self._pool.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))

    async def close(self) -> None:
        await self._pool.close()

    # -- plumbing ------------------------------------------------------------------------------

    class _Tx:
        def __init__(self, store: PgStore, write: bool) -> None:
            self.store = store
            self.write = write

        async def __aenter__(self) -> asyncpg.Connection:
            if self.write:
                await self.store._write.acquire()
            try:
                self._cm = self.store._pool.acquire()
                self.conn: asyncpg.Connection = await self._cm.__aenter__()
                self._tx = self.conn.transaction()
                await self._tx.__aenter__()
            except BaseException:
                if self.write:
                    self.store._write.release()
                raise
            return self.conn

        async def __aexit__(self, *exc: Any) -> None:
            try:
                await self._tx.__aexit__(*exc)
            finally:
                try:
                    await self._cm.__aexit__(*exc)
                finally:
                    if self.write:
                        self.store._write.release()

    def _tx_(self, write: bool = True) -> PgStore._Tx:
        return PgStore._Tx(self, write)

    # -- users and sessions --------------------------------------------------------------------

    # -- peers ---------------------------------------------------------------------------------

    async def run(self, script: Script[T], *, write: bool = True) -> T:
        """Run a transaction script on one connection (``write``: in a transaction under the write
        lock; a read runs on a pooled connection without it)."""
        if write:
            async with self._tx_() as c:
                return await self._run(c, script)
        async with self._pool.acquire() as c:
            return await self._run(c, script)

    @classmethod
    async def _run(cls, c: asyncpg.Connection, script: Script[T]) -> T:
        """Run a transaction script (:mod:`bitswarm.index._scripts`) on connection ``c``; a broken
        uniqueness constraint is thrown into the script as Conflict (the transaction is then aborted)."""
        try:
            step = next(script)
            while True:
                query = step if isinstance(step, Query) else cls.lower(step)
                params = {k: _clean(v) if isinstance(v, str) else v for k, v in query.params.items()}
                sql, args = _q(query.sql, **params)
                result: Any
                try:
                    if query.fetch == "one":
                        result = await c.fetchrow(sql, *args)
                    elif query.fetch == "all":
                        result = await c.fetch(sql, *args)
                    elif query.fetch == "id":
                        result = await c.fetchval(sql, *args)
                    else:
                        status = await c.execute(sql, *args)
                        result = int(status.rsplit(" ", 1)[-1])
                except asyncpg.UniqueViolationError as exc:
                    step = script.throw(Conflict(str(exc)))
                    continue
                step = script.send(result)
        except StopIteration as stop:
            value: T = stop.value
            return value

    @staticmethod
    def lower(step: scripts.InsertFile | scripts.SetNames) -> Query:
        """A dialect primitive of a script as PostgreSQL's statement: the BIGSERIAL gives the id (never
        reused), and the row's ``search`` tsvector is written with the names it indexes."""
        if isinstance(step, scripts.InsertFile):
            return Query(_INSERT_FILE, {**step.params(), "search": tsvector_literal(step.spec.name)}, "id")
        return Query(
            _SET_NAMES,
            {
                "name": step.name,
                "aliases": step.aliases,
                "search": tsvector_literal(f"{step.name}\n{step.aliases}"),
                "id": step.file_id,
            },
        )

    async def search(self, query: str, now: float, limit: int = 50, offset: int = 0) -> SearchResult:
        """Prefix words and quoted phrases over names (tsvector): a file matching any of them is
        found; ranked by relevance — the files matching all of them first, then by online peers, then
        ``ts_rank``. At most :data:`SEARCH_CANDIDATES` files matching all, and as many matching only
        some, are ranked."""
        every, some = tsquery_literal(query), tsquery_literal(query, any_part=True)
        if every is None or some is None:
            return SearchResult(0, ())
        matches = _TS_MATCHES if some != every else _TS_MATCHES_ONE_PART
        params = {"every": every, "cand": SEARCH_CANDIDATES}
        if some != every:
            params["some"] = some
        sql, args = _q(
            f"""
            {matches}
            SELECT {scripts.FILE_COLS}, {scripts.COUNTS_SQL}, m.rank AS rank, count(*) OVER () AS n
            FROM m JOIN files f ON f.id = m.id
            ORDER BY m.every DESC, online DESC, rank DESC, f.id LIMIT :limit OFFSET :offset
            """,
            **params,
            **scripts.counts(now),
            limit=limit,
            offset=offset,
        )
        try:
            rows = await self._pool.fetch(sql, *args)
            total = int(rows[0]["n"]) if rows else 0
            if not rows and offset:
                count_sql, count_args = _q(f"{matches} SELECT count(*) FROM m", **params)
                total = int(await self._pool.fetchval(count_sql, *count_args))
        except asyncpg.DataError as exc:  # a tsquery corner we did not sanitise
            raise ValidationError(f"bad search query: {exc}") from None
        return SearchResult(total, tuple(record_from(r) for r in rows))


def is_postgres_dsn(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))
