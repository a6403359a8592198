"""A completed one-shot download never waits on port mapping at exit (issue 24): the UPnP stack's
import runs in a daemon thread of its own (not in the event loop's executor, whose threads the
loop's and the interpreter's shutdown join), and the delete of a map request the gateway never
answered is sent, not waited for. No sockets: an import held by a finder, a silent fake gateway."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import pytest

from bitswarm.portmap import mapper as mapper_mod
from bitswarm.portmap.mapper import Granted, MappingBackend, PortMapConfig, PortMapper
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


class _SilentGateway:
    """A MappingBackend that never answers: a router ignoring NAT-PMP/PCP, an IGD that hangs."""

    method = "natpmp"

    def __init__(self) -> None:
        self.maps: list[tuple[str, int]] = []
        self.unmaps: list[tuple[str, int]] = []
        self.closed = False

    async def map(self, protocol: str, internal_port: int, external_port: int, lifetime: int) -> Granted:
        self.maps.append((protocol, internal_port))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def unmap(self, protocol: str, internal_port: int, external_port: int) -> None:
        self.unmaps.append((protocol, internal_port))
        await asyncio.Event().wait()

    def close(self) -> None:
        self.closed = True


@pytest.mark.timeout(60)
async def test_stop_sends_the_delete_of_an_unanswered_request_without_waiting_for_it() -> None:
    """A one-shot download done before the gateway answered its map request: stop sends the delete
    (the request may have been granted) and returns; the delete goes on in the background, however
    long ``unmap_timeout`` is (here an hour), and the backend is closed after it."""
    gw = _SilentGateway()

    async def make() -> MappingBackend:
        return gw

    pm = PortMapper(
        {"tcp": 6881},
        config=PortMapConfig(methods=("natpmp",), unmap_timeout=3600, network_check_interval=0),
        backends={"natpmp": make},
    )
    await pm.start()

    async def request_sent() -> bool:
        return bool(gw.maps)

    await eventually(request_sent, timeout=10)
    async with asyncio.timeout(5):  # not the hour of unmap_timeout
        await pm.stop()
    assert gw.unmaps == [("tcp", 6881)]  # the delete left
    assert not gw.closed  # its answer may still come
    forgetting = [t for t in asyncio.all_tasks() if t.get_name() == "portmap-natpmp-forget"]
    assert len(forgetting) == 1
    forgetting[0].cancel()  # the loop ending (the process exiting) ends it
    with contextlib.suppress(asyncio.CancelledError):
        await forgetting[0]
    assert gw.closed
