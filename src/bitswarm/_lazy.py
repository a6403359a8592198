"""Lazy re-exports for package ``__init__`` modules (PEP 562 module ``__getattr__``).

``from bitswarm.dht import DHTServer`` keeps working, but importing ``bitswarm.dht`` (as
``from bitswarm.dht.bep42 import ...`` does) no longer imports every submodule: a ``bitswarm
download`` process starts faster (many of them start at once in the swarm benchmarks). Each package
also imports the names under ``if TYPE_CHECKING:`` so that type checkers see them.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], table: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package whose ``globals()`` is ``namespace``: ``table``
    maps an exported name to the submodule (relative, e.g. ``"._create"``) that defines it. The first
    access imports the submodule and caches the value in the package's namespace.

        __getattr__, __dir__ = lazy_exports(globals(), {"make_torrent": "._create"})
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
