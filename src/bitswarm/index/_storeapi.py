"""The typed storage interface of the index.

:class:`IndexStore` is what :class:`~bitswarm.index.IndexService` (the rules layer: clock, sessions,
ownership, password hashing) calls, one coroutine per operation, each one transaction. Both backends
implement it — :class:`~bitswarm.index._store.Store` (SQLite, FTS5) and
:class:`~bitswarm.index._pgstore.PgStore` (PostgreSQL, tsvector) — and mypy checks each against it
(see :func:`bitswarm.index._service.open_store`), so there is no dispatch by method name. The peer
rules are transaction scripts (:mod:`bitswarm.index._scripts`) that both run with :meth:`run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from bitswarm.index._model import (
    FileSpec,
    SearchResult,
)
from bitswarm.index._scripts import Script

T = TypeVar("T")


class IndexStore(Protocol):
    """One index database (see the module docstring). Time (``now``) is always passed in."""

    @property
    def kind(self) -> str: ...

    @property
    def path(self) -> str: ...

    async def close(self) -> None: ...

    async def run(self, script: Script[T], *, write: bool = True) -> T:
        """Run a transaction script of :mod:`bitswarm.index._scripts` as one transaction (``write``:
        it may change something; a read runs without the write lock)."""
        ...

    async def schema_version(self) -> int: ...

    async def purge_expired(self, now: float) -> int: ...

    async def delete_user_peers(self, user_id: int) -> int: ...

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
    ) -> tuple[int, str]: ...

    async def replace_files(self, guid: str, specs: Sequence[FileSpec], now: float) -> list[int]: ...

    async def register_with_files(
        self, user_id: int, specs: Sequence[FileSpec], now: float, *, ip: str | None, replace: bool = True
    ) -> str: ...

    async def remove_host(
        self,
        guid: str,
        now: float,
        *,
        file_id: int | None = None,
        file_hash: str | None = None,
        seq_number: int | None = None,
    ) -> int: ...

    async def search(self, query: str, now: float, limit: int = 50, offset: int = 0) -> SearchResult: ...

    async def bulk_add(self, rows: Sequence[tuple[FileSpec, str]], now: float) -> int: ...

    async def dump(self, now: float) -> dict[str, Any]: ...

    async def load_dump(self, data: dict[str, Any], now: float) -> int: ...
