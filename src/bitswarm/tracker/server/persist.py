"""SQLite persistence of the tracker (stdlib ``sqlite3``, WAL), always off the event loop.

One worker thread owns the connection; every call is an ``await`` on that thread, so the loop never
blocks on disk. Stored: the whitelist, passkeys, per-torrent completed counters, the UDP
connection-id secret (ids survive a restart) and the live peers (restored with their remaining
lifetime): a batch of the store's journal (peers that joined, moved or left) every second in one
transaction (:meth:`Persistence.save_batch`), and a full snapshot every ``snapshot_every`` seconds
and on stop (:meth:`Persistence.save_peers`) that also refreshes the last-seen times and drops
expired rows. A committed WAL transaction survives the process being killed.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bitswarm.tracker.server.state import JournalEntry, PeerRecord

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS whitelist (info_hash BLOB PRIMARY KEY, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS passkeys (passkey TEXT PRIMARY KEY, user TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS completed (info_hash BLOB PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS peers (
    info_hash BLOB NOT NULL, addr BLOB NOT NULL, peer_id BLOB NOT NULL, seeder INTEGER NOT NULL,
    seen REAL NOT NULL, PRIMARY KEY (info_hash, addr));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


class Persistence:
    """The tracker database at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tracker-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()

        def call() -> T:
            assert self._db is not None
            with self._db:  # one transaction per call
                return fn(self._db)

        return await loop.run_in_executor(self._pool, call)

    async def open(self) -> None:
        def connect() -> None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.isolation_level = "DEFERRED"  # back to implicit transactions for `with db:`
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    async def close(self) -> None:
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def secret(self) -> bytes:
        """The UDP connection-id secret, created on first use."""

        def get(db: sqlite3.Connection) -> bytes:
            row = db.execute("SELECT value FROM meta WHERE key='udp_secret'").fetchone()
            if row is not None:
                return bytes(row[0])
            value = os.urandom(32)
            db.execute("INSERT INTO meta (key, value) VALUES ('udp_secret', ?)", (value,))
            return value

        return await self._run(get)

    async def load(self) -> tuple[set[bytes], dict[str, str], dict[bytes, int], list[PeerRecord]]:
        """Whitelist, passkeys, completed counters and the peer snapshot."""

        def get(db: sqlite3.Connection) -> Any:
            now = time.time()
            whitelist = {bytes(r[0]) for r in db.execute("SELECT info_hash FROM whitelist")}
            passkeys = dict(db.execute("SELECT passkey, user FROM passkeys").fetchall())
            completed = {bytes(h): c for h, c in db.execute("SELECT info_hash, count FROM completed")}
            peers = [
                PeerRecord(bytes(h), bytes(a), bytes(p), bool(s), max(0, int(now - seen)))
                for h, a, p, s, seen in db.execute("SELECT info_hash, addr, peer_id, seeder, seen FROM peers")
            ]
            return whitelist, passkeys, completed, peers

        return await self._run(get)  # type: ignore[no-any-return, unused-ignore]

    async def whitelist_add(self, hashes: Iterable[bytes]) -> None:
        rows = [(h, time.time()) for h in hashes]
        await self._run(lambda db: db.executemany("INSERT OR IGNORE INTO whitelist VALUES (?, ?)", rows))

    async def whitelist_remove(self, hashes: Iterable[bytes]) -> None:
        rows = [(h,) for h in hashes]
        await self._run(lambda db: db.executemany("DELETE FROM whitelist WHERE info_hash = ?", rows))

    async def passkey_add(self, passkey: str, user: str) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO passkeys VALUES (?, ?, ?)", (passkey, user, time.time())
            )
        )

    async def passkey_remove(self, passkey: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM passkeys WHERE passkey = ?", (passkey,)))

    async def save_completed(self, counts: dict[bytes, int]) -> None:
        if counts:
            rows = list(counts.items())
            await self._run(lambda db: db.executemany("INSERT OR REPLACE INTO completed VALUES (?, ?)", rows))

    async def save_peers(self, records: Iterable[PeerRecord]) -> int:
        """Replace the peer snapshot with ``records`` (built on the loop, written in the thread)."""
        now = time.time()
        rows = [(r.info_hash, r.addr, r.peer_id, int(r.seeder), now - r.age) for r in records]

        def put(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM peers")
            db.executemany("INSERT OR REPLACE INTO peers VALUES (?, ?, ?, ?, ?)", rows)
            return len(rows)

        return await self._run(put)

    async def save_batch(self, journal: list[JournalEntry], counts: dict[bytes, int]) -> None:
        """Apply one journal batch and the changed completed counters in one transaction.

        Entries are applied last-wins per ``(info_hash, addr)``; a joined peer is stored as seen now.
        """
        if not journal and not counts:
            return

        def put(db: sqlite3.Connection) -> None:
            now = time.time()
            latest: dict[tuple[bytes, bytes], JournalEntry] = {}
            for entry in journal:
                latest[entry[0], entry[1]] = entry
            gone = [(h, a) for (h, a), e in latest.items() if e[2] is None]
            rows = [(h, a, p, int(s), now) for h, a, p, s in latest.values() if p is not None]
            if gone:
                db.executemany("DELETE FROM peers WHERE info_hash = ? AND addr = ?", gone)
            if rows:
                db.executemany("INSERT OR REPLACE INTO peers VALUES (?, ?, ?, ?, ?)", rows)
            if counts:
                db.executemany("INSERT OR REPLACE INTO completed VALUES (?, ?)", list(counts.items()))

        await self._run(put)
