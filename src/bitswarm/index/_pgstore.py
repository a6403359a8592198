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
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import asyncpg

from bitswarm.index import _scripts as scripts
from bitswarm.index._errors import Conflict, NotFound, ValidationError
from bitswarm.index._model import (
    HASH_ALGOS,
    REGISTRATION_TTL,
    FileSpec,
    SearchResult,
    public_peer_id,
)
from bitswarm.index._rules import (
    file_names,
    record_from,
)
from bitswarm.index._scripts import Script

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

_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _q(sql: str, **params: Any) -> tuple[str, list[Any]]:
    """``:name`` placeholders to asyncpg's ``$n`` (each name bound once, reused by number)."""
    order: dict[str, int] = {}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in order:
            order[name] = len(order) + 1
        return f"${order[name]}"

    text = _PARAM.sub(sub, sql)
    return text, [params[name] for name in order]


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


def tsquery_literal(text: str) -> str | None:
    """A user query as a ``tsquery`` literal: words are ANDed prefix terms (``'ubu':*``), a part in
    double quotes is an exact phrase (``'big' <-> 'buck'``). None when nothing is searchable."""
    parts: list[str] = []
    for i, piece in enumerate(text.split('"')):
        words = search_words(piece)
        if not words:
            continue
        if i % 2 == 1:
            parts.append("(" + " <-> ".join(_lexeme(w) for w in words) + ")")
        else:
            parts.extend(f"{_lexeme(w)}:*" for w in words)
    return " & ".join(parts) if parts else None


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

    @staticmethod
    async def _run(c: asyncpg.Connection, script: Script[T]) -> T:
        """Run a transaction script (:mod:`bitswarm.index._scripts`) on connection ``c``."""
        try:
            query = next(script)
            while True:
                params = {k: _clean(v) if isinstance(v, str) else v for k, v in query.params.items()}
                sql, args = _q(query.sql, **params)
                result: Any
                if query.fetch == "one":
                    result = await c.fetchrow(sql, *args)
                elif query.fetch == "all":
                    result = await c.fetch(sql, *args)
                else:
                    status = await c.execute(sql, *args)
                    result = int(status.rsplit(" ", 1)[-1])
                query = script.send(result)
        except StopIteration as stop:
            value: T = stop.value
            return value

    @classmethod
    async def _delete_peer(cls, c: asyncpg.Connection, guid: str) -> None:
        file_ids = [r[0] for r in await c.fetch("SELECT file_id FROM hosts WHERE guid = $1", guid)]
        await c.execute("DELETE FROM peers WHERE guid = $1", guid)
        await cls._drop_orphans(c, file_ids)

    @classmethod
    async def _drop_orphans(cls, c: asyncpg.Connection, file_ids: Iterable[int]) -> None:
        """Remove files left without hosts; recompute the names of a kept file that had other names."""
        ids = list(file_ids)
        if ids:
            await c.execute(
                "DELETE FROM files f WHERE f.id = ANY($1::bigint[]) "
                "AND NOT EXISTS (SELECT 1 FROM hosts h WHERE h.file_id = f.id)",
                ids,
            )
            for r in await c.fetch(
                "SELECT id FROM files WHERE id = ANY($1::bigint[]) AND aliases <> ''", ids
            ):
                await cls._refresh_names(c, r[0])

    @staticmethod
    async def _refresh_names(c: asyncpg.Connection, file_id: int) -> None:
        """Apply :func:`~bitswarm.index._rules.file_names` (names per peer) to file ``file_id``."""
        row = await c.fetchrow("SELECT name, aliases FROM files WHERE id = $1", file_id)
        hosts = await c.fetch("SELECT name FROM hosts WHERE file_id = $1 ORDER BY added_at, guid", file_id)
        name, aliases = file_names(row[0], [h[0] for h in hosts])
        if (name, aliases) != (row[0], row[1]):
            await c.execute(
                "UPDATE files SET name = $1, aliases = $2, search = $3::tsvector WHERE id = $4",
                name,
                aliases,
                tsvector_literal(f"{name}\n{aliases}"),
                file_id,
            )

    async def purge_expired(self, now: float) -> int:
        async with self._tx_() as c:
            await c.execute("DELETE FROM sessions WHERE expires_at <= $1", now)
            await c.execute("DELETE FROM seen_events WHERE seen_at <= $1", now - REGISTRATION_TTL)
            expired = [r[0] for r in await c.fetch("SELECT guid FROM peers WHERE expires_at <= $1", now)]
            for guid in expired:
                await self._delete_peer(c, guid)
            return len(expired)

    async def delete_user_peers(self, user_id: int) -> int:
        async with self._tx_() as c:
            guids = [r[0] for r in await c.fetch("SELECT guid FROM peers WHERE user_id = $1", user_id)]
            for guid in guids:
                await self._delete_peer(c, guid)
            return len(guids)

    # -- files ---------------------------------------------------------------------------------

    @staticmethod
    async def _find_file(c: asyncpg.Connection, hashes: dict[str, str]) -> asyncpg.Record | None:
        for algo, value in hashes.items():
            row = await c.fetchrow(f"SELECT id, name, aliases FROM files WHERE {algo} = $1", value)
            if row is not None:
                return row
        return None

    @classmethod
    async def _host_file(
        cls,
        c: asyncpg.Connection,
        spec: FileSpec,
        guid: str,
        path: str | None,
        now: float,
        name: str | None = None,
    ) -> int:
        """Add ``spec`` (or find it by any hash) and record ``guid`` hosting it under ``name`` (default:
        the spec's name; names are per peer). Returns the file id. A host name equal to
        the file's is stored as NULL ("the file's name", no index entry): a file's name changes
        only when no host uses it."""
        name = spec.name if name is None else name
        file_id, (current, aliases) = await cls._upsert_file(c, spec, now)
        await c.execute(
            "INSERT INTO hosts(file_id, guid, path, added_at, name) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT(file_id, guid) DO UPDATE SET path = coalesce(excluded.path, hosts.path), "
            "name = excluded.name",
            file_id,
            guid,
            path,
            now,
            None if name == current else name,
        )
        if name != current or aliases:
            await cls._refresh_names(c, file_id)
        return file_id

    @classmethod
    async def _upsert_file(
        cls, c: asyncpg.Connection, spec: FileSpec, now: float
    ) -> tuple[int, tuple[str, str]]:
        """The file's id and its (name, other names) as they were (a new file: ``spec.name``, none)."""
        hashes = spec.hashes()
        if not hashes:
            raise ValidationError("a file needs at least one hash")
        found = await cls._find_file(c, hashes)
        names = (spec.name, "") if found is None else (str(found["name"]), str(found["aliases"]))
        if found is None:
            file_id = int(
                await c.fetchval(
                    "INSERT INTO files(name, size, sha1, sha256, md5, btih_v1, btih_v2, magnet, torrent, "
                    "created_at, search) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::tsvector) "
                    "RETURNING id",
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
                    tsvector_literal(spec.name),
                )
            )
        else:
            file_id = int(found["id"])
            cols = (*HASH_ALGOS, "size", "magnet", "torrent")
            sets = ", ".join(f"{col} = coalesce({col}, :{col})" for col in cols)
            sql, args = _q(
                f"UPDATE files SET {sets} WHERE id = :id",
                id=file_id,
                **{col: getattr(spec, col) for col in cols},
            )
            try:
                async with c.transaction():
                    await c.execute(sql, *args)
            except asyncpg.UniqueViolationError:
                raise Conflict("the hashes given belong to two different files") from None
        if (
            spec.chunks
            and await c.fetchval("SELECT 1 FROM chunks WHERE file_id = $1 LIMIT 1", file_id) is None
        ):
            await c.executemany(
                "INSERT INTO chunks(file_id, chunk_id, name, hash) VALUES ($1, $2, $3, $4)",
                [(file_id, ch.id, ch.name, ch.hash) for ch in spec.chunks],
            )
        return file_id, names

    async def add_file(
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
        async with self._tx_() as c:
            script = scripts.file_host(
                now,
                guid=guid,
                ip=ip,
                port=port,
                seq_number=seq_number,
                create_guid=create_guid,
                touch=touch,
                upsert_peer=upsert_peer,
            )
            guid = await self._run(c, script)
            file_id = await self._host_file(c, spec, guid, path, now)
            return file_id, guid

    async def replace_files(self, guid: str, specs: Sequence[FileSpec], now: float) -> list[int]:
        async with self._tx_() as c:
            await self._run(c, scripts.peer_row(guid, now))
            old = [r[0] for r in await c.fetch("SELECT file_id FROM hosts WHERE guid = $1", guid)]
            await c.execute("DELETE FROM hosts WHERE guid = $1", guid)
            ids = []
            for spec in specs:
                ids.append(await self._host_file(c, spec, guid, None, now))
            await self._drop_orphans(c, old)
            return ids

    async def register_with_files(
        self, user_id: int, specs: Sequence[FileSpec], now: float, *, ip: str | None, replace: bool = True
    ) -> str:
        async with self._tx_() as c:
            if replace:
                for r in await c.fetch("SELECT guid FROM peers WHERE user_id = $1", user_id):
                    await self._delete_peer(c, r[0])
            guid = await self._run(c, scripts.create_peer(now, user_id=user_id, ip=ip))
            for spec in specs:
                await self._host_file(c, spec, guid, None, now)
            return guid

    async def remove_host(
        self,
        guid: str,
        now: float,
        *,
        file_id: int | None = None,
        file_hash: str | None = None,
        seq_number: int | None = None,
    ) -> int:
        async with self._tx_() as c:
            row = await self._run(c, scripts.peer_row(guid, now))
            if file_id is None:
                if file_hash is None:
                    raise ValidationError("file id or hash required")
                file_id = await self._run(c, scripts.file_id_by_hash(file_hash))
            await self._run(c, scripts.check_seq(row, "seq_expected", seq_number))
            status = await c.execute("DELETE FROM hosts WHERE file_id = $1 AND guid = $2", file_id, guid)
            if status.endswith(" 0"):
                raise NotFound(f"peer {guid} does not host file {file_id}")
            await self._drop_orphans(c, [file_id])
            return file_id

    async def search(self, query: str, now: float, limit: int = 50, offset: int = 0) -> SearchResult:
        """Prefix words and quoted phrases over names (tsvector), ranked by online peers then
        ``ts_rank``; at most :data:`SEARCH_CANDIDATES` matches are ranked."""
        expr = tsquery_literal(query)
        if expr is None:
            return SearchResult(0, ())
        sql, args = _q(
            f"""
            WITH m AS (SELECT f.id, ts_rank(f.search, q) AS rank
                       FROM files f, CAST(:q AS tsquery) q WHERE f.search @@ q LIMIT :cand)
            SELECT {scripts.FILE_COLS}, {scripts.COUNTS_SQL}, m.rank AS rank, count(*) OVER () AS n
            FROM m JOIN files f ON f.id = m.id
            ORDER BY online DESC, rank DESC, f.id LIMIT :limit OFFSET :offset
            """,
            q=expr,
            cand=SEARCH_CANDIDATES,
            **scripts.counts(now),
            limit=limit,
            offset=offset,
        )
        try:
            rows = await self._pool.fetch(sql, *args)
        except asyncpg.DataError as exc:  # a tsquery corner we did not sanitise
            raise ValidationError(f"bad search query: {exc}") from None
        total = int(rows[0]["n"]) if rows else 0
        if not rows and offset:
            total = int(
                await self._pool.fetchval(
                    "SELECT count(*) FROM "
                    "(SELECT 1 FROM files WHERE search @@ CAST($1 AS tsquery) LIMIT $2) s",
                    expr,
                    SEARCH_CANDIDATES,
                )
            )
        return SearchResult(total, tuple(record_from(r) for r in rows))

    async def bulk_add(self, rows: Sequence[tuple[FileSpec, str]], now: float) -> int:
        async with self._tx_() as c:
            for spec, guid in rows:
                await self._host_file(c, spec, guid, None, now)
        return len(rows)

    # -- federation ----------------------------------------------------------------------------

    async def dump(self, now: float) -> dict[str, Any]:
        """The same JSON shape as the SQLite store's dump (``logged_in`` as 0/1, torrent base64)."""
        from bitswarm.index._store import b64

        async with self._tx_(write=False) as c:
            peers = []
            for r in await c.fetch(
                "SELECT guid, ip, port, created_at, last_login, last_seen, logged_in, expires_at, "
                "seq_expected, ka_seq_expected FROM peers WHERE expires_at > $1",
                now,
            ):
                p = dict(r)
                p["logged_in"] = int(p["logged_in"])
                peers.append(p)
            chunks: dict[int, list[dict[str, Any]]] = {}
            for ch in await c.fetch(
                "SELECT file_id, chunk_id, name, hash FROM chunks ORDER BY file_id, chunk_id"
            ):
                chunks.setdefault(ch[0], []).append({"id": ch[1], "name": ch[2], "chunk_hash": ch[3]})
            hosts: dict[int, list[dict[str, Any]]] = {}
            for h in await c.fetch("SELECT file_id, guid, path, name FROM hosts ORDER BY file_id, guid"):
                hosts.setdefault(h[0], []).append({"guid": h[1], "path": h[2], "name": h[3]})
            files = []
            for r in await c.fetch("SELECT * FROM files ORDER BY id"):
                f = {k: r[k] for k in ("id", "name", "size", *HASH_ALGOS, "magnet")}
                f["torrent"] = b64(r["torrent"])
                f["chunks"] = chunks.get(r["id"], [])
                f["hosts"] = hosts.get(r["id"], [])
                files.append(f)
            trackers = [
                {"name": t[1], "ip": t[0]}
                for t in await c.fetch("SELECT ip, name FROM trackers ORDER BY added_at, ip")
            ]
        return {"version": 1, "peers": peers, "files": files, "trackers": trackers}

    async def load_dump(self, data: dict[str, Any], now: float) -> int:
        from bitswarm.index._store import spec_from_dump

        async with self._tx_() as c:
            for p in data.get("peers", []):
                await c.execute(
                    "INSERT INTO peers(guid, ip, port, created_at, last_login, last_seen, logged_in, "
                    "expires_at, seq_expected, ka_seq_expected, public_id) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
                    "ON CONFLICT(guid) DO UPDATE SET "
                    "last_seen = greatest(coalesce(peers.last_seen, 0), coalesce(excluded.last_seen, 0)), "
                    "expires_at = greatest(peers.expires_at, excluded.expires_at), "
                    "seq_expected = greatest(peers.seq_expected, excluded.seq_expected), "
                    "ka_seq_expected = greatest(peers.ka_seq_expected, excluded.ka_seq_expected)",
                    p["guid"],
                    p.get("ip"),
                    p.get("port"),
                    float(p["created_at"]),
                    _opt_float(p.get("last_login")),
                    _opt_float(p.get("last_seen")),
                    bool(p.get("logged_in")),
                    float(p["expires_at"]),
                    int(p.get("seq_expected", 0)),
                    int(p.get("ka_seq_expected", 0)),
                    public_peer_id(p["guid"]),
                )
            n = 0
            for f in data.get("files", []):
                spec = spec_from_dump(f)
                hosted = False
                for h in f.get("hosts", []):
                    if await c.fetchval("SELECT 1 FROM peers WHERE guid = $1", h["guid"]):
                        await self._host_file(c, spec, h["guid"], h.get("path"), now, h.get("name"))
                        hosted = True
                if not hosted:
                    await self._upsert_file(c, spec, now)
                n += 1
            for t in data.get("trackers", []):
                await c.execute(
                    "INSERT INTO trackers(ip, name, added_at) VALUES ($1, $2, $3) ON CONFLICT(ip) DO NOTHING",
                    t["ip"],
                    t["name"],
                    now,
                )
            return n


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def is_postgres_dsn(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))
