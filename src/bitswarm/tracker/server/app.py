"""Wiring: :class:`TrackerServer` starts the HTTP and UDP front ends, the store, persistence and
the background jobs (expiry sweep, journal + counter flush, peer snapshot, HTTP deadlines), and
stops them cleanly. Starting raises the soft ``RLIMIT_NOFILE`` to the hard limit.

    server = TrackerServer(TrackerConfig(http=(("127.0.0.1", 0),), udp=(("127.0.0.1", 0),), db=None))
    await server.start()
    server.http_addresses, server.udp_addresses   # the ports actually bound
    await server.stop()                            # saves counters and a peer snapshot
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

from bitswarm.httpguard import raise_nofile_limit
from bitswarm.tracker.server.admin import AdminApi
from bitswarm.tracker.server.cluster import ClusterStore
from bitswarm.tracker.server.config import Address, TrackerConfig
from bitswarm.tracker.server.core import TrackerCore
from bitswarm.tracker.server.errors import TrackerServerError
from bitswarm.tracker.server.http import HttpTrackerProtocol, connection_guard, http_factory
from bitswarm.tracker.server.persist import Persistence
from bitswarm.tracker.server.state import MemoryStore
from bitswarm.tracker.server.udp import UdpTrackerProtocol, UdpWorker, mmsg_wanted

log = logging.getLogger("bitswarm.tracker.server")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class TrackerServer:
    """A BitTorrent tracker (HTTP + UDP) bound to the addresses in ``config``."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.persist: Persistence | None = Persistence(config.db) if config.db is not None else None
        self.store: Any = None
        self.core: TrackerCore | None = None
        self.http_addresses: list[Address] = []
        self.udp_addresses: list[Address] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._udp: list[asyncio.DatagramTransport] = []
        self._workers: list[UdpWorker] = []
        self._connections: set[HttpTrackerProtocol] = set()
        #: the HTTP front end's per-IP cap and deadlines
        self.guard = connection_guard(config)
        self._jobs: list[asyncio.Task[None]] = []
        self._running = False
        #: with ``redis`` (and ``redis_sync`` > 0): the write-behind link to the other instances
        self.sync: Any = None

    @property
    def _local(self) -> bool:
        """The swarms live in this process only (a memory store, not a cluster's copy): SQLite
        keeps its peers."""
        return isinstance(self.store, MemoryStore) and not isinstance(self.store, ClusterStore)

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._running:
            raise TrackerServerError("tracker already started")
        config = self.config
        loop = asyncio.get_running_loop()
        nofile = raise_nofile_limit()
        if nofile is not None:
            log.info("open-files limit %d", nofile)
        if config.redis and config.redis_sync > 0:
            self.store = ClusterStore(config.ttl, sync_every=config.redis_sync)
        elif config.redis:
            from bitswarm.tracker.server.redis_state import RedisStore

            self.store = RedisStore(config.redis, config.ttl)
            await self.store.connect()
        else:
            self.store = MemoryStore(config.ttl)
        core = self.core = TrackerCore(config, self.store)
        if isinstance(self.store, ClusterStore):
            assert config.redis is not None
            await self._join_cluster(config.redis, self.store, core)
        secret = os.urandom(32)
        if self.persist is not None:
            await self.persist.open()
            secret = await self.persist.secret()
            whitelist, passkeys, completed, peers = await self.persist.load()
            core.whitelist |= whitelist
            core.passkeys.update(passkeys)
            if self._local:
                self.store.completed.update(completed)
                restored = self.store.restore(peers)
                self.store.enable_journal()
                log.info("restored %d peers, %d counters from %s", restored, len(completed), config.db)
        admin = AdminApi(core, self.persist)
        try:
            for host, port in config.http:
                server = await loop.create_server(
                    http_factory(core, admin, self._connections, self.guard),
                    host,
                    port,
                    family=_family(host),
                    reuse_address=True,
                    backlog=1024,
                )
                self._servers.append(server)
                self.http_addresses.append(server.sockets[0].getsockname()[:2])
            for host, port in config.udp:
                if isinstance(self.store, MemoryStore) or mmsg_wanted(core):
                    # a thread per socket: blocking recvfrom/sendto, no event-loop hop per datagram;
                    # over Redis (recvmmsg only) one script call per received batch
                    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
                    try:
                        if sock.family == socket.AF_INET6:
                            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                        sock.bind((host, port))
                    except OSError:
                        sock.close()
                        raise
                    worker = UdpWorker(UdpTrackerProtocol(core, secret), sock)
                    self._workers.append(worker)
                else:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: UdpTrackerProtocol(core, secret),
                        local_addr=(host, port),
                        family=_family(host),
                    )
                    sock = transport.get_extra_info("socket")
                    self._udp.append(transport)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                self.udp_addresses.append(sock.getsockname()[:2])
        except OSError:
            await self._close_sockets()
            if self.sync is not None:
                await self.sync.close()
                self.sync = None
            raise
        for worker in self._workers:
            worker.start()
        self._running = True
        self._jobs = [loop.create_task(self._sweeper())]
        if self.sync is not None:
            self._jobs.append(loop.create_task(self.sync.run()))
        if self._servers:
            self._jobs.append(loop.create_task(self._reaper()))
        if self.persist is not None:
            self._jobs.append(loop.create_task(self._flusher()))
        log.info("tracker listening http=%s udp=%s", self.http_addresses, self.udp_addresses)

    async def _join_cluster(self, url: str, store: ClusterStore, core: TrackerCore) -> None:
        """Connect to the cluster's Redis and load its current swarms (before serving)."""
        from bitswarm.tracker.server.redis_sync import RedisSync

        sync = RedisSync(url, store, core.lock)
        await sync.connect()
        try:
            merged = await sync.load()
        except BaseException:
            await sync.close()
            raise
        self.sync = sync
        log.info("loaded %d peer records from the cluster at %s", merged, url)

    async def _close_sockets(self) -> None:
        for server in self._servers:
            server.close()
        for transport in self._udp:
            transport.close()
        for worker in self._workers:
            await asyncio.to_thread(worker.stop)
        self._workers.clear()
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()
        self._udp.clear()

    async def stop(self) -> None:
        """Close every socket, flush counters, save a peer snapshot, close the stores."""
        if not self._running:
            return
        self._running = False
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        self._jobs.clear()
        await self._close_sockets()
        try:
            if self.sync is not None:
                await self.sync.close()  # publish the last changes
                self.sync = None
            await self.save()
        finally:
            if self.persist is not None:
                await self.persist.close()
                self.persist = Persistence(self.config.db) if self.config.db is not None else None
            if self.store is not None and self.store.is_async:
                await self.store.close()

    async def __aenter__(self) -> TrackerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------------------- background jobs

    async def save(self) -> None:
        """Write changed completed counters and a peer snapshot (memory store) to SQLite."""
        if self.persist is None or not self._local:
            return
        assert self.core is not None
        with self.core.lock:
            dirty = self.store.take_dirty()
            self.store.take_journal()  # the snapshot holds every change
            peers = list(self.store.peers())
        await self.persist.save_completed(dirty)
        await self.persist.save_peers(peers)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_every)
            if isinstance(self.store, MemoryStore) and self.core is not None:
                with self.core.lock:
                    self.store.sweep(self.config.sweep_budget)

    async def _reaper(self) -> None:
        """Close HTTP connections past their request or keep-alive deadline."""
        guard = self.guard
        while True:
            await asyncio.sleep(guard.tick)
            for conn, kind in guard.sweep(list(self._connections)):
                conn.timed_out(kind)

    async def _flusher(self) -> None:
        """Every ``flush_every`` seconds: the store's journal (peers that joined, moved or left) and
        the changed completed counters in one SQLite transaction; every ``snapshot_every`` seconds a
        full peer snapshot instead (it holds the journal's changes too)."""
        assert self.persist is not None
        loop = asyncio.get_running_loop()
        last_snapshot = loop.time()
        spent = 0.0
        while True:
            # one batch per flush_every, however long the last write took (the loss bound)
            await asyncio.sleep(max(0.0, self.config.flush_every - spent))
            if not self._local:
                continue  # Redis keeps the swarms itself
            started = loop.time()
            try:
                assert self.core is not None
                snapshot = started - last_snapshot >= self.config.snapshot_every
                with self.core.lock:
                    dirty = self.store.take_dirty()
                    journal = self.store.take_journal()
                    peers = list(self.store.peers()) if snapshot else None
                if peers is None:
                    await self.persist.save_batch(journal, dirty)
                else:
                    last_snapshot = started
                    await self.persist.save_completed(dirty)
                    await self.persist.save_peers(peers)
            except Exception:  # keep serving; the next snapshot writes what a failed batch lost
                log.exception("tracker persistence failed")
            spent = loop.time() - started

    def describe(self) -> dict[str, Any]:
        """The bound addresses as printed by ``bitswarm tracker --json``."""
        return {
            "http": [f"http://{_hostport(a)}/announce" for a in self.http_addresses],
            "udp": [f"udp://{_hostport(a)}/announce" for a in self.udp_addresses],
            "mode": self.config.mode.value,
            "db": str(self.config.db) if self.config.db else None,
            "redis": self.config.redis,
        }


def _hostport(addr: Address) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
