"""The asyncio-facing index core every front end shares.

:class:`IndexService` talks to one :class:`~bitswarm.index._storeapi.IndexStore`:
:class:`~bitswarm.index._store.Store` (SQLite; its operations run in a single worker thread, so the
event loop never blocks and SQLite sees one thread) or :class:`~bitswarm.index._pgstore.PgStore`
(asyncpg, chosen by a ``postgresql://`` location). Both implement the same typed operations with the
same results (mypy checks each against the protocol); the tests run the core and the API suites
against both. Argon2 password hashing runs in the default thread pool. Time comes from an injected
``clock`` (``time.time`` by default) so tests can move it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bitswarm.index import _scripts as scripts
from bitswarm.index import _validate as v
from bitswarm.index._errors import AuthError, NotFound
from bitswarm.index._model import (
    PUBLIC_ID_LEN,
    SESSION_TTL,
    FileDetail,
    FileRecord,
    FileSpec,
    Peer,
    PeerStatus,
    SearchResult,
    Session,
    Tracker,
    User,
)
from bitswarm.index._pgstore import is_postgres_dsn
from bitswarm.index._store import Store
from bitswarm.index._storeapi import IndexStore
from bitswarm.index._throttle import LoginThrottle, ThrottlePolicy

Clock = Callable[[], float]
_PUBLIC_ID = re.compile(f"[0-9a-fA-F]{{{PUBLIC_ID_LEN}}}")


async def open_store(location: str | Path) -> IndexStore:
    """``postgresql://…`` / ``postgres://…`` opens PostgreSQL, anything else is a SQLite path."""
    if isinstance(location, str) and is_postgres_dsn(location):
        from bitswarm.index._pgstore import PgStore

        return await PgStore.connect(location)
    return await Store.open(location)


class IndexService:
    """Users, peers and files of the index (see the module docstring). Create with :meth:`open`."""

    def __init__(
        self,
        store: IndexStore,
        *,
        clock: Clock = time.time,
        hasher: PasswordHasher | None = None,
        throttle: ThrottlePolicy | None = None,
    ) -> None:
        self._store = store
        self.clock = clock
        self._hasher = hasher or PasswordHasher()
        self.throttle = LoginThrottle(clock, throttle)
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | Path = ":memory:",
        *,
        clock: Clock = time.time,
        hasher: PasswordHasher | None = None,
        throttle: ThrottlePolicy | None = None,
    ) -> IndexService:
        """Open (creating and migrating if needed) the index at ``path``: a SQLite file (``":memory:"``
        for a throw-away one) or a ``postgresql://user@host:port/db`` DSN. ``throttle``: the login
        throttling policy (:mod:`bitswarm.index._throttle`)."""
        return cls(await open_store(path), clock=clock, hasher=hasher, throttle=throttle)

    @property
    def path(self) -> str:
        return self._store.path

    @property
    def backend_kind(self) -> str:
        return self._store.kind

    @property
    def _db(self) -> IndexStore:
        if self._closed:
            raise RuntimeError("index service is closed")
        return self._store

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._store.close()

    async def schema_version(self) -> int:
        return await self._db.schema_version()

    # -- users ---------------------------------------------------------------------------------

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def create_user(self, username: str, password: str) -> User:
        return await self._db.run(scripts.create_user(username, await self._hash(password), self.clock()))

    async def authenticate(self, username: str, password: str, *, ip: str | None = None) -> User:
        """Check a password (argon2); raises :class:`AuthError` for an unknown user or a wrong password,
        :class:`Throttled` (without checking) after too many failures for the account or from ``ip``."""
        self.throttle.begin(username, ip)
        ok = False
        try:
            user = await self._verify(username, password)
            ok = True
        finally:
            self.throttle.end(username, ip, ok=ok)
        return user

    async def _verify(self, username: str, password: str) -> User:
        try:
            user, stored = await self._db.run(scripts.password_hash(username), write=False)
        except NotFound:
            raise AuthError("bad username or password") from None
        try:
            await asyncio.to_thread(self._hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            raise AuthError("bad username or password") from None
        if self._hasher.check_needs_rehash(stored):
            await self._db.run(scripts.set_password_hash(user.id, await self._hash(password)))
        return user

    async def register_or_authenticate(self, username: str, password: str, *, ip: str | None = None) -> User:
        """Seed 001 REGISTER: a new username is created, a known one must give its password."""
        try:
            await self._db.run(scripts.password_hash(username), write=False)
        except NotFound:
            try:
                return await self.create_user(username, password)
            except Exception:  # lost a race with another registration of the same name
                pass
        return await self.authenticate(username, password, ip=ip)

    async def login(self, username: str, password: str, *, ip: str | None = None) -> Session:
        """Native API login: an opaque bearer token (only its SHA-256 is stored)."""
        user = await self.authenticate(username, password, ip=ip)
        token = secrets.token_urlsafe(32)
        now = self.clock()
        await self._db.run(scripts.create_session(user.id, token, now, now + SESSION_TTL))
        return Session(token, user.username, now + SESSION_TTL)

    async def user_for_token(self, token: str) -> User:
        try:
            return await self._db.run(scripts.session_user(token, self.clock()), write=False)
        except NotFound:
            raise AuthError("unknown or expired token") from None

    async def logout(self, token: str) -> None:
        await self._db.run(scripts.delete_session(token))

    # -- peers ---------------------------------------------------------------------------------

    async def register_peer(
        self,
        *,
        user: User | None = None,
        guid: str | None = None,
        ip: str | None = None,
        port: int | None = None,
        online: bool = False,
        seq_number: int | None = None,
        ka_seq_number: int | None = None,
    ) -> Peer:
        return await self._db.run(
            scripts.register_peer(
                self.clock(),
                guid=guid,
                user_id=None if user is None else user.id,
                ip=ip,
                port=port,
                online=online,
                seq_number=seq_number,
                ka_seq_number=ka_seq_number,
            )
        )

    async def ensure_peer(self, guid: str, *, ip: str | None = None, port: int | None = None) -> Peer:
        return await self._db.run(scripts.upsert_peer(guid, self.clock(), ip=ip, port=port))

    async def login_peer(
        self, guid: str, *, user: User | None = None, ip: str | None = None, port: int | None = None
    ) -> Peer:
        return await self._db.run(
            scripts.login_peer(
                guid,
                self.clock(),
                user_id=None if user is None else user.id,
                ip=ip,
                port=port,
            )
        )

    async def keep_alive(
        self,
        guid: str,
        *,
        ka_seq_number: int | None = None,
        require_login: bool = False,
        ip: str | None = None,
    ) -> Peer:
        return await self._db.run(
            scripts.keep_alive(
                guid,
                self.clock(),
                ka_seq_number=ka_seq_number,
                require_login=require_login,
                ip=ip,
            )
        )

    async def logout_peer(self, guid: str, *, user: User | None = None) -> Peer:
        return await self._db.run(
            scripts.logout_peer(guid, self.clock(), user_id=None if user is None else user.id)
        )

    async def delete_user_peers(self, user: User) -> int:
        return await self._db.run(scripts.delete_user_peers(user.id))

    async def check_owner(self, guid: str, user: User) -> None:
        owner = await self._db.run(scripts.peer_owner(guid, self.clock()), write=False)
        if owner != user.id:
            raise AuthError(f"peer {guid} belongs to another user")

    async def get_peer(self, guid: str) -> Peer:
        return await self._db.run(scripts.peer(guid, self.clock()), write=False)

    async def find_peer(self, ref: str) -> Peer:
        """A peer by its public id (what public views show) or by its guid (a secret: whoever gives
        it already holds it). Raises NotFound or ValidationError."""
        if _PUBLIC_ID.fullmatch(ref):
            return await self._db.run(scripts.peer_by_public_id(ref.lower(), self.clock()), write=False)
        return await self.get_peer(v.guid(ref, "peer id"))

    async def list_peers(
        self, status: PeerStatus = "all", *, limit: int = 100, offset: int = 0
    ) -> list[Peer]:
        return await self._db.run(scripts.list_peers(self.clock(), status, limit, offset), write=False)

    async def count_peers(self, status: PeerStatus = "all") -> int:
        return await self._db.run(scripts.count_peers(self.clock(), status), write=False)

    async def browse(self, guid: str) -> list[FileRecord]:
        """Every file peer ``guid`` hosts (seed 001 BROWSE)."""
        return await self._db.run(scripts.browse(guid, self.clock()), write=False)

    async def host_paths(self, guid: str) -> dict[int, str | None]:
        return await self._db.run(scripts.hosts_paths(guid), write=False)

    async def purge_expired(self) -> int:
        return await self._db.run(scripts.purge_expired(self.clock()))

    # -- files ---------------------------------------------------------------------------------

    async def add_file(
        self,
        spec: FileSpec,
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
        """Add a file (deduplicated by any hash) hosted by ``guid`` (None: register a new peer).
        Returns ``(file_id, guid)``."""
        return await self._db.run(
            scripts.add_file(
                spec,
                self.clock(),
                guid=guid,
                ip=ip,
                port=port,
                path=path,
                seq_number=seq_number,
                create_guid=create_guid,
                touch=touch,
                upsert_peer=upsert_peer,
            )
        )

    async def replace_files(self, guid: str, specs: Sequence[FileSpec]) -> list[int]:
        return await self._db.run(scripts.replace_files(guid, list(specs), self.clock()))

    async def register_with_files(
        self, user: User, specs: Sequence[FileSpec], *, ip: str | None = None, replace: bool = True
    ) -> str:
        """Seed 001 REGISTER: a fresh peer id for ``user`` hosting ``specs`` (old ids dropped)."""
        return await self._db.run(
            scripts.register_with_files(user.id, list(specs), self.clock(), ip=ip, replace=replace)
        )

    async def remove_host(
        self,
        guid: str,
        *,
        file_id: int | None = None,
        file_hash: str | None = None,
        seq_number: int | None = None,
    ) -> int:
        return await self._db.run(
            scripts.remove_host(
                guid, self.clock(), file_id=file_id, file_hash=file_hash, seq_number=seq_number
            )
        )

    async def get_file(self, file_id: int) -> FileDetail:
        return await self._db.run(scripts.detail(file_id, self.clock()), write=False)

    async def file_by_hash(self, value: str) -> FileDetail:
        """A file by any of its hashes (SHA-1, SHA-256, MD5, BEP 3 / BEP 52 info-hash)."""
        return await self._db.run(scripts.file_by_hash(value, self.clock()), write=False)

    async def files_named(self, name: str) -> list[FileDetail]:
        return await self._db.run(scripts.files_of_name(name, self.clock()), write=False)

    async def torrent(self, file_id: int) -> bytes:
        """The .torrent (bencoded metainfo) registered with file ``file_id`` (NotFound if none)."""
        return await self._db.run(scripts.torrent_of(file_id), write=False)

    async def list_files(self, *, limit: int = 100, offset: int = 0) -> list[FileRecord]:
        return await self._db.run(scripts.list_files(self.clock(), limit, offset), write=False)

    async def count_files(self) -> int:
        return await self._db.run(scripts.count_files(), write=False)

    async def search(self, query: str, *, limit: int = 50, offset: int = 0) -> SearchResult:
        return await self._db.search(query, self.clock(), limit, offset)

    async def bulk_add(self, rows: Sequence[tuple[FileSpec, str]]) -> int:
        return await self._db.run(scripts.bulk_add(list(rows), self.clock()))

    # -- federation ----------------------------------------------------------------------------

    async def mark_event(self, event_id: str) -> bool:
        return await self._db.run(scripts.mark_event(event_id, self.clock()))

    async def forget_event(self, event_id: str) -> None:
        await self._db.run(scripts.forget_event(event_id))

    async def add_tracker(self, name: str, ip: str) -> bool:
        return await self._db.run(scripts.add_tracker(name, ip, self.clock()))

    async def trackers(self) -> list[Tracker]:
        return await self._db.run(scripts.trackers(), write=False)

    async def dump(self) -> dict[str, Any]:
        return await self._db.run(scripts.dump(self.clock()))

    async def load_dump(self, data: dict[str, Any]) -> int:
        return await self._db.run(scripts.load_dump(data, self.clock()))
