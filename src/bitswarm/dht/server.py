"""asyncio UDP driver for :class:`~bitswarm.dht.node.DHTNode` (works under uvloop).

The driver only moves datagrams and runs the node's timer; all protocol logic stays in the sans-I/O
node. Lookups are exposed as coroutines that wait (with a timeout) on the node's lookup callbacks.

    async with DHTServer("127.0.0.1", 0, bootstrap=[("127.0.0.1", 6881)]) as dht:
        await dht.announce(info_hash, 6881)
        peers = await dht.lookup(info_hash)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bitswarm.dht.bep42 import is_local_address
from bitswarm.dht.krpc import Addr, KRPCError, NodeInfo
from bitswarm.dht.node import DHTConfig, DHTNode, load_state

if TYPE_CHECKING:
    from bitswarm.dht.lookup import Item, Lookup, LookupResult

__all__ = ["DHTServer", "SharedSocket"]


class SharedSocket(Protocol):
    """A UDP socket the DHT shares with another protocol (the uTP socket manager): it sends our
    datagrams and hands us the ones that are not its own (``on_other_datagram``)."""

    on_other_datagram: Callable[[bytes, Addr], None] | None

    @property
    def address(self) -> Addr: ...

    def sendto(self, data: bytes, addr: Addr) -> None: ...


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DHTServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        host = str(addr[0])
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]  # IPv4-mapped on a dual-stack socket
        port = addr[1]
        assert isinstance(port, int)
        self.server.node.datagram_received(data, (host, port))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors on UDP: the query simply times out


class DHTServer:
    """A DHT node on a real UDP socket. ``host`` "::" binds dual-stack (BEP 32).

    ``shared``: run on that socket (the session's uTP socket manager, BEP 29's one port for uTP and
    the DHT) instead of binding one; ``host`` then only says whether it is dual-stack, and
    :meth:`stop` leaves the socket open."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 0,
        *,
        node_id: bytes | None = None,
        bootstrap: Iterable[Addr] = (),
        config: DHTConfig | None = None,
        state_file: str | os.PathLike[str] | None = None,
        rng: random.Random | None = None,
        tick_interval: float = 0.1,
        shared: SharedSocket | None = None,
    ) -> None:
        self.host = host
        self._shared = shared
        self.port = port
        self.config = config or DHTConfig()
        self.bootstrap_addrs = list(bootstrap)
        self.state_file = Path(state_file) if state_file is not None else None
        self.tick_interval = tick_interval
        self._dual = ":" in host or host == ""
        if self.config.lan is None and is_local_address(host):
            self.config.lan = True  # bound to loopback/private: a LAN or test network
        # BEP 32: a wildcard "::" carries both families; an IPv6 address only IPv6
        self.config.families = ((4, 6) if host in ("::", "") else (6,)) if self._dual else (4,)
        saved: list[NodeInfo] = []
        if self.state_file is not None and self.state_file.exists():
            try:
                saved_id, saved = load_state(self.state_file.read_bytes())
                node_id = node_id or saved_id
            except KRPCError:
                saved = []
        self._saved = saved
        self.node = DHTNode(node_id, self._send, time.monotonic, rng, self.config)
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._running = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, wait_bootstrap: float | None = None) -> None:
        """Bind the socket, start the timer and bootstrap (optionally waiting up to ``wait_bootstrap`` s)."""
        loop = asyncio.get_running_loop()
        if self._shared is not None:
            self._shared.on_other_datagram = self.node.datagram_received
        elif self._dual:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((self.host, self.port))
            self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        else:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.host, self.port)
            )
        self._running = True
        self._timer = loop.call_later(self.tick_interval, self._tick)
        contacts: list[NodeInfo | Addr] = [*self._saved, *self.bootstrap_addrs]
        if contacts:
            lk = self.node.bootstrap(contacts)
            if wait_bootstrap:
                await self._wait(lk, wait_bootstrap)

    async def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.state_file is not None:
            self.save_state()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._shared is not None and self._shared.on_other_datagram == self.node.datagram_received:
            self._shared.on_other_datagram = None

    async def __aenter__(self) -> DHTServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def save_state(self) -> None:
        """Write our id and contacts to ``state_file`` atomically (fast restart)."""
        assert self.state_file is not None
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_bytes(self.node.save_state())
        tmp.replace(self.state_file)

    @property
    def address(self) -> Addr:
        if self._shared is not None:
            return self._shared.address
        assert self._transport is not None, "server not started"
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    @property
    def node_id(self) -> bytes:
        return self.node.node_id

    # ------------------------------------------------------------------ I/O glue

    def _send(self, data: bytes, addr: Addr) -> None:
        if self._shared is not None:
            if self._running:
                self._shared.sendto(data, addr)
            return
        if self._transport is None:
            return
        host = addr[0]
        if self._dual and ":" not in host:
            host = "::ffff:" + host
        with contextlib.suppress(OSError):  # unreachable: the query simply times out
            self._transport.sendto(data, (host, addr[1]))

    def _tick(self) -> None:
        try:
            self.node.tick()
        finally:
            if self._running:
                self._timer = asyncio.get_running_loop().call_later(self.tick_interval, self._tick)

    async def _wait(self, lookup: Lookup, timeout: float) -> LookupResult:
        fut: asyncio.Future[LookupResult] = asyncio.get_running_loop().create_future()

        def done(result: LookupResult) -> None:
            if not fut.done():
                fut.set_result(result)

        lookup.add_done_callback(done)
        return await asyncio.wait_for(fut, timeout)

    # ------------------------------------------------------------------ public operations

    async def bootstrap(self, contacts: Iterable[NodeInfo | Addr], timeout: float = 30.0) -> LookupResult:
        return await self._wait(self.node.bootstrap(contacts), timeout)

    async def find_node(self, target: bytes, timeout: float = 30.0) -> list[NodeInfo]:
        """Iterative find_node: the k closest nodes that answered."""
        return (await self._wait(self.node.find_node(target), timeout)).nodes

    async def lookup(self, info_hash: bytes, timeout: float = 30.0) -> list[Addr]:
        """Iterative get_peers: the peers the network holds for ``info_hash``."""
        return (await self.get_peers(info_hash, timeout)).peers

    async def get_peers(self, info_hash: bytes, timeout: float = 30.0) -> LookupResult:
        return await self._wait(self.node.get_peers(info_hash), timeout)

    async def scrape(self, info_hash: bytes, timeout: float = 30.0) -> LookupResult:
        """BEP 33 scrape: ``result.seeds_estimate`` / ``result.peers_estimate`` (and the peers found)."""
        return await self._wait(self.node.scrape(info_hash), timeout)

    async def announce(
        self,
        info_hash: bytes,
        port: int = 0,
        *,
        implied_port: bool = False,
        seed: bool = False,
        timeout: float = 30.0,
    ) -> LookupResult:
        """get_peers lookup then announce_peer; ``result.stored`` counts acknowledging nodes
        (``seed``: BEP 33 ``seed=1``)."""
        lk = self.node.announce(info_hash, port, implied_port=implied_port, seed=seed)
        return await self._wait(lk, timeout)

    async def get_item(
        self, target: bytes, *, salt: bytes = b"", seq: int | None = None, timeout: float = 30.0
    ) -> Item | None:
        return (await self._wait(self.node.get_item(target, salt=salt, seq=seq), timeout)).item

    async def put_item(self, item: Item, timeout: float = 30.0) -> LookupResult:
        return await self._wait(self.node.put_item(item), timeout)
