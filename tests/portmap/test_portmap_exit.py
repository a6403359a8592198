"""A process that ends while the UPnP stack is still being imported never waits for that import
(issue 24): it runs in a daemon thread of its own, not in the event loop's executor, whose threads
the loop's and the interpreter's shutdown join. No sockets: the import is held by a finder."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import pytest

from bitswarm.portmap import mapper as mapper_mod
from bitswarm.portmap.mapper import PortMapConfig, PortMapper
from testtools import eventually

UPNP = "bitswarm.portmap.upnp"


class _HeldImport:
    """A meta-path finder that holds the import of ``UPNP`` until :attr:`release` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.thread: threading.Thread | None = None  #: the thread doing the import

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == UPNP:
            self.thread = threading.current_thread()
            self.entered.set()
            self.release.wait(30)
        return None  # the normal finders import it


def _non_daemon() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()}


@pytest.mark.timeout(60)
async def test_stop_during_the_upnp_import_leaves_no_thread_to_wait_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = _HeldImport()
    monkeypatch.delitem(sys.modules, UPNP, raising=False)
    monkeypatch.setattr(sys, "meta_path", [held, *sys.meta_path])
    monkeypatch.setattr(mapper_mod, "default_gateway", lambda: "192.0.2.1")  # TEST-NET: never asked
    pm = PortMapper(
        {"tcp": 6881}, config=PortMapConfig(methods=("upnp",), upnp_delay=0, network_check_interval=0)
    )
    try:
        await pm.start()

        async def importing_now() -> bool:
            return held.entered.is_set()

        await eventually(importing_now, timeout=10)
        async with asyncio.timeout(5):
            await pm.stop()  # the discovery task is cancelled; the import goes on in its thread
        assert held.thread is not None and held.thread.is_alive()  # still importing
        # a daemon thread of its own: neither the loop's executor shutdown nor the interpreter's
        # exit joins it (an executor thread would hold the exit until the import ends)
        assert held.thread.daemon
        assert held.thread not in _non_daemon()
    finally:
        held.release.set()
