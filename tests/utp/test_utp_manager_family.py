"""The socket manager's send path refuses destinations of an address family its socket does not carry
(issue 19): an IPv6 peer on an IPv4 socket, an IPv4 one on an IPv6-only socket. The dial fails at once
with ``OSError(EAFNOSUPPORT)``, nothing is sent, GSO stays on; DHT datagrams there are dropped. The
unit tests drive the manager through a fake transport (no sockets); one runs on loopback with GSO."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest

from bitswarm.utp import UtpSocketManager

pytestmark = pytest.mark.timeout(30)


class FakeSocket:
    def __init__(self, family: int, v6only: bool = False) -> None:
        self.family = family
        self.v6only = v6only

    def setsockopt(self, *args: Any) -> None:
        pass

    def getsockopt(self, level: int, opt: int) -> int:
        assert (level, opt) == (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        return int(self.v6only)

    def fileno(self) -> int:
        return -1


class FakeTransport(asyncio.DatagramTransport):
    def __init__(self, sock: FakeSocket) -> None:
        super().__init__()
        self.sock = sock
        self.sent: list[tuple[bytes, Any]] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        if name == "sockname":
            return ("::", 6881) if self.sock.family == socket.AF_INET6 else ("0.0.0.0", 6881)
        return default

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append((bytes(data), addr))

    def close(self) -> None:
        pass


def manager(family: int, v6only: bool = False) -> tuple[UtpSocketManager, FakeTransport]:
    mgr = UtpSocketManager(use_gso=False)
    transport = FakeTransport(FakeSocket(family, v6only))
    mgr.connection_made(transport)
    return mgr, transport


@pytest.mark.parametrize(
    ("family", "v6only", "dest"),
    [
        (socket.AF_INET, False, ("2001:db8::7", 6881)),
        (socket.AF_INET6, True, ("198.51.100.7", 6881)),
        (socket.AF_INET6, True, ("::ffff:198.51.100.7", 6881)),
    ],
)
async def test_a_dial_of_the_wrong_family_fails_at_once_unsent(
    family: int, v6only: bool, dest: tuple[str, int]
) -> None:
    mgr, transport = manager(family, v6only)
    with pytest.raises(OSError) as exc:
        await asyncio.wait_for(mgr.connect(dest, asyncio.Protocol, timeout=10), 2)
    assert exc.value.errno == errno.EAFNOSUPPORT and dest[0] in str(exc.value)
    assert transport.sent == [] and mgr.connections == 0 and mgr.stats.wrong_family == 1
    mgr.sendto(b"d1:y1:qe", dest)  # a DHT datagram there: dropped too
    assert transport.sent == []


@pytest.mark.parametrize(
    ("family", "v6only", "dest", "wire"),
    [
        (socket.AF_INET, False, ("198.51.100.7", 6881), ("198.51.100.7", 6881)),
        (socket.AF_INET, False, ("::ffff:198.51.100.7", 6881), ("198.51.100.7", 6881)),
        (socket.AF_INET6, False, ("198.51.100.7", 6881), ("::ffff:198.51.100.7", 6881)),
        (socket.AF_INET6, False, ("2001:db8::7", 6881), ("2001:db8::7", 6881)),
        (socket.AF_INET6, True, ("2001:db8::7", 6881), ("2001:db8::7", 6881)),
    ],
)
async def test_a_dial_of_a_carried_family_sends_its_syn(
    family: int, v6only: bool, dest: tuple[str, int], wire: tuple[str, int]
) -> None:
    mgr, transport = manager(family, v6only)
    dial = asyncio.ensure_future(mgr.connect(dest, asyncio.Protocol, timeout=10))
    try:
        for _ in range(10):
            if transport.sent:
                break
            await asyncio.sleep(0)
        assert [addr for _, addr in transport.sent] == [wire]
        assert mgr.stats.wrong_family == 0 and not dial.done()
    finally:
        dial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dial


async def test_a_wrong_family_dial_leaves_gso_on_over_loopback() -> None:
    mgr = await UtpSocketManager.open("127.0.0.1", 0)
    try:
        gso = mgr._gso  # None where the platform has no GSO: the refusal is the same
        with pytest.raises(OSError) as exc:
            await asyncio.wait_for(mgr.connect(("::1", 9), asyncio.Protocol, timeout=10), 2)
        assert exc.value.errno == errno.EAFNOSUPPORT
        assert mgr._gso is gso and mgr.connections == 0
    finally:
        mgr.close()
