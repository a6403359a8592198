"""The typed storage interface of the index.

:class:`IndexStore` is what :class:`~bitswarm.index.IndexService` (the rules layer: clock, sessions,
ownership, password hashing) calls. Both backends implement it — :class:`~bitswarm.index._store.Store`
(SQLite, FTS5) and :class:`~bitswarm.index._pgstore.PgStore` (PostgreSQL, tsvector) — and mypy checks
each against it (see :func:`bitswarm.index._service.open_store`), so there is no dispatch by method
name. Every operation but full-text search is a transaction script (:mod:`bitswarm.index._scripts`)
that both run with :meth:`run`, each turning the scripts' two dialect primitives into its own SQL.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from bitswarm.index._model import (
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

    async def search(self, query: str, now: float, limit: int = 50, offset: int = 0) -> SearchResult: ...
