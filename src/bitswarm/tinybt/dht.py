"""tinybt's ``DHT`` class: the Mainline DHT API of tinybt (``dht.py``), run by bitswarm's own DHT node.

    dht = DHT(("0.0.0.0", 10001), bootstrap_connection=("router.bittorrent.com", 6881))
    for peer in dht.dht_get_peers(info_hash):
        print(peer)
    dht.dht_announce_peer(info_hash)
    dht.shutdown()

The node is a :class:`~bitswarm.dht.server.DHTServer` on a private event loop thread; every method
here blocks the calling thread (never the loop). The raw BEP 5 methods ``ping``, ``find_node``,
``get_peers``, ``announce_peer`` return an :class:`AsyncResult` holding the reply's ``r`` dict; the
``dht_*`` helpers run bitswarm's iterative lookups (routing table kept up to date by the node).
``user_setup`` tunes the maintenance tasks (defaults ``{'discover_t': 180, 'check_t': 30,
'check_N': 10}``: a random-id discovery lookup every ``discover_t`` s, a ping of the ``check_N``
least recently heard contacts every ``check_t`` s); ``user_router`` is a
:class:`~bitswarm.dht.node.NodeRouter` that decides the contacts the node hands out and starts its
lookups from. See ``docs/seeds.md`` (seed 004).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bitswarm.dht.bep42 import is_local_address
from bitswarm.dht.krpc import ERROR_SERVER, Addr, Error, Query, ResponseBody
from bitswarm.dht.lookup import Lookup
from bitswarm.dht.node import DHTConfig, NodeRouter
from bitswarm.dht.server import DHTServer
from bitswarm.tinybt import _loop
from bitswarm.tinybt._loop import AsyncResult, AsyncTimeout, KRPCDict, KRPCRemoteError
from bitswarm.tinybt.krpc import SendResponse

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SETUP", "DHT", "DHTQueryHandler", "get_external_connection", "init", "shutdown"]

#: tinybt's maintenance defaults (seed 004).
DEFAULT_SETUP: Mapping[str, float] = {"discover_t": 180, "check_t": 30, "check_N": 10}
#: A DHT's custom query handler: like :data:`bitswarm.tinybt.krpc.QueryHandler`, called on the loop
#: thread for every incoming query before the built-in handling; it returns True when it took care of
#: the query (it may call ``send_krpc_response`` later, from any thread), False to let the node answer.
DHTQueryHandler = Callable[[SendResponse, KRPCDict, Addr], bool]


def _setup(user_setup: Mapping[str, float]) -> dict[str, float]:
    setup = dict(DEFAULT_SETUP)
    for key, value in user_setup.items():
        if key not in setup:
            raise ValueError(f"unknown user_setup key {key!r} (known: {', '.join(setup)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"user_setup[{key!r}] must be a number >= 0, not {value!r}")
        if key != "check_N" and value == 0:
            raise ValueError(f"user_setup[{key!r}] must be > 0")
        setup[key] = value
    return setup


def _public_dht_forbidden(host: str) -> bool:
    """``BITSWARM_NO_PUBLIC_DHT`` set (CI): only loopback/private bootstrap nodes are contacted."""
    if os.environ.get("BITSWARM_NO_PUBLIC_DHT", "") in ("", "0"):
        return False
    if host == "localhost":
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return not is_local_address(host)


class DHT:
    """A Mainline DHT peer listening on ``listen_connection`` = (host, port) (port 0: any free port,
    see :attr:`listen_connection`), joining through ``bootstrap_connection``. A first node may name its
    own address as bootstrap node (it then waits for others to join it). With ``BITSWARM_NO_PUBLIC_DHT``
    set, a public bootstrap node is not contacted at all."""

    def __init__(
        self,
        listen_connection: tuple[str, int],
        bootstrap_connection: tuple[str, int] = ("router.bittorrent.com", 6881),
        user_setup: Mapping[str, float] = {},
        user_router: NodeRouter | None = None,
    ) -> None:
        self.setup = _setup(user_setup)
        self._tokens: dict[bytes, dict[Addr, bytes]] = {}  # info_hash -> node -> write token (loop thread)
        self._query_handler: DHTQueryHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random()
        self._closed = False
        host = str(listen_connection[0])
        self._server = DHTServer(host, int(listen_connection[1]), config=DHTConfig(), tick_interval=0.1)
        self._node = self._server.node
        self._node.router = user_router
        self._runner = _loop.LoopThread("tinybt-dht")
        self.listen_connection: Addr = self._runner.run_or_stop(self._start(bootstrap_connection))

    # ------------------------------------------------------------------ start, stop, external address

    async def _start(self, bootstrap_connection: tuple[str, int]) -> Addr:
        await self._server.start()
        me = self._server.address
        if not _public_dht_forbidden(str(bootstrap_connection[0])):
            try:
                boot = await _loop.resolve(bootstrap_connection)
            except BaseException:
                await self._server.stop()  # the constructor fails: free the port
                raise
            if self._server.config.lan is None:
                self._server.config.lan = is_local_address(boot[0])
            if not self._is_self(boot, me) and boot[1] != 0:
                self._node.bootstrap([boot])
        self._tasks = [
            asyncio.ensure_future(self._every(self.setup["discover_t"], self._discover)),
            asyncio.ensure_future(self._every(self.setup["check_t"], self._check)),
        ]
        return me

    @staticmethod
    def _is_self(boot: Addr, me: Addr) -> bool:
        if boot[1] != me[1]:
            return False
        return boot[0] == me[0] or (me[0] in ("0.0.0.0", "::") and is_local_address(boot[0]))

    async def _every(self, interval: float, job: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                job()
            except Exception:  # a user router that raises must not end the maintenance
                log.exception("tinybt maintenance task failed")

    def _discover(self) -> None:
        self._node.find_node(self._rng.randbytes(20))

    def _check(self) -> None:
        """Ping the ``check_N`` least recently heard contacts; two misses make a node bad."""
        n = int(self.setup["check_N"])
        if n <= 0:
            return
        if self._node.router is not None:
            contacts = self._node.router.closest_nodes(self._node.node_id, n)
        else:
            entries = [e for t in self._node.tables.values() for e in t.entries()]
            entries.sort(key=lambda e: max(e.last_response or 0.0, e.last_query or 0.0))
            contacts = [e.info() for e in entries[:n]]
        for c in contacts:
            self._node.query(c.addr, b"ping", {}, lambda r: None, node_id=c.id)

    def shutdown(self) -> None:
        """Stop the maintenance tasks, close the UDP socket (the port is free when this returns) and
        end the loop thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):
            self._runner.run(self._stop())
        self._runner.stop()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.stop()

    def get_external_connection(self) -> Addr | None:
        """The (ip, port) other nodes see us at: as soon as one node has reported it (BEP 42 ``ip``),
        then what most reporters agree on; None until a first report."""
        return self._runner.call(lambda: self._node.external_address)

    @property
    def node_id(self) -> bytes:
        """Our 20-byte node id (BEP 42: it may change once the external IP is known)."""
        return self._runner.call(lambda: self._node.node_id)

    def __enter__(self) -> DHT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ custom query handler

    @property
    def query_handler(self) -> DHTQueryHandler | None:
        """A :data:`DHTQueryHandler` seeing every incoming query first (None: the node answers all)."""
        return self._query_handler

    @query_handler.setter
    def query_handler(self, handler: DHTQueryHandler | None) -> None:
        self._query_handler = handler
        self._runner.call(setattr, self._node, "query_hook", None if handler is None else self._hook)

    def _hook(self, q: Query, addr: Addr) -> bool:
        handler = self._query_handler
        if handler is None:
            return False
        rec = _loop.wrap({b"t": q.t, b"y": b"q", b"q": q.method, b"a": q.args})

        def send_krpc_response(**values: Any) -> None:
            self._runner.soon(self._node.respond, q, addr, _loop.to_krpc_args(values))

        try:
            return bool(handler(send_krpc_response, rec, addr))
        except Exception:
            log.exception("tinybt query handler failed on %r from %s", q.method, addr)
            self._node.respond_error(q, addr, ERROR_SERVER, "Server Error")
            return True

    # ------------------------------------------------------------------ raw BEP 5 methods

    def _raw(
        self, connection: tuple[str, int], method: bytes, args: dict[bytes, Any]
    ) -> AsyncResult[KRPCDict]:
        result: AsyncResult[KRPCDict] = AsyncResult((str(connection[0]), int(connection[1])))

        def done(addr: Addr, reply: ResponseBody | Error | None) -> None:
            if isinstance(reply, ResponseBody):
                result.set_result(_loop.wrap(reply.to_values()), addr)
            elif isinstance(reply, Error):
                result.set_exception(KRPCRemoteError(reply.code, reply.message))
            else:
                result.set_exception(AsyncTimeout(f"no reply from {addr}"))

        async def send() -> None:
            try:
                addr = await _loop.resolve(connection)
            except (OSError, ValueError) as exc:
                result.set_exception(exc)
                return
            self._node.query(addr, method, args, lambda r: done(addr, r))

        self._runner.spawn(send())
        return result

    def ping(self, target_connection: tuple[str, int], sender_id: bytes) -> AsyncResult[KRPCDict]:
        return self._raw(target_connection, b"ping", {b"id": sender_id})

    def find_node(
        self, target_connection: tuple[str, int], sender_id: bytes, search_id: bytes
    ) -> AsyncResult[KRPCDict]:
        return self._raw(target_connection, b"find_node", {b"id": sender_id, b"target": search_id})

    def get_peers(
        self, target_connection: tuple[str, int], sender_id: bytes, info_hash: bytes
    ) -> AsyncResult[KRPCDict]:
        return self._raw(target_connection, b"get_peers", {b"id": sender_id, b"info_hash": info_hash})

    def announce_peer(
        self,
        target_connection: tuple[str, int],
        sender_id: bytes,
        info_hash: bytes,
        port: int,
        token: bytes,
        implied_port: int | None = None,
    ) -> AsyncResult[KRPCDict]:
        args: dict[bytes, Any] = {b"id": sender_id, b"info_hash": info_hash, b"port": port, b"token": token}
        if implied_port is not None:
            args[b"implied_port"] = int(implied_port)
        return self._raw(target_connection, b"announce_peer", args)

    # ------------------------------------------------------------------ blocking helpers

    def dht_ping(self, connection: tuple[str, int], timeout: float = 5) -> KRPCDict | None:
        """Ping ``connection``; the complete result dict, or None without an answer within ``timeout``
        (or with an error answer). A node that answers enters the routing table."""
        try:
            return self.ping(connection, self.node_id).get_result(timeout)
        except (AsyncTimeout, KRPCRemoteError, OSError):
            return None

    def _iterate(
        self,
        start: Callable[[queue.SimpleQueue[Addr | None]], Lookup],
        timeout: float,
        retries: int,
    ) -> Iterator[Addr]:
        """Run lookups (1 + ``retries`` while nothing was found, each awaited up to ``timeout`` s),
        yielding each address the loop side puts in the queue once."""
        seen: set[Addr] = set()
        for _ in range(1 + max(0, retries)):
            found: queue.SimpleQueue[Addr | None] = queue.SimpleQueue()
            self._runner.call(start, found)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                try:
                    item = found.get(timeout=left)
                except queue.Empty:
                    break
                if item is None:
                    break
                if item not in seen:
                    seen.add(item)
                    yield item
            if seen:
                return

    def dht_find_node(self, search_id: bytes, timeout: float = 5, retries: int = 2) -> Iterator[Addr]:
        """Iterative find_node for ``search_id``: yields the (host, port) of the node with that id when
        the lookup meets it."""

        def start(found: queue.SimpleQueue[Addr | None]) -> Lookup:
            def reply(addr: Addr, r: ResponseBody) -> None:
                if r.id == search_id:
                    found.put(addr)
                for n in (*r.nodes, *r.nodes6):
                    if n.id == search_id:
                        found.put(n.addr)

            lookup = self._node.find_node(search_id)
            lookup.add_reply_callback(reply)
            lookup.add_done_callback(lambda res: found.put(None))
            return lookup

        return self._iterate(start, timeout, retries)

    def dht_get_peers(self, info_hash: bytes, timeout: float = 5, retries: int = 2) -> Iterator[Addr]:
        """Iterative get_peers for ``info_hash``: yields each peer's (host, port) as the lookup finds it.
        The write tokens handed out on the way are kept for :meth:`dht_announce_peer`."""

        def start(found: queue.SimpleQueue[Addr | None]) -> Lookup:
            tokens = self._tokens.setdefault(info_hash, {})

            def reply(addr: Addr, r: ResponseBody) -> None:
                if r.token is not None:
                    tokens[addr] = r.token
                for peer in r.values:
                    found.put(peer)

            lookup = self._node.get_peers(info_hash)
            lookup.add_reply_callback(reply)
            lookup.add_done_callback(lambda res: found.put(None))
            return lookup

        return self._iterate(start, timeout, retries)

    def dht_announce_peer(self, info_hash: bytes, implied_port: int = 1) -> int:
        """Announce ``info_hash`` on this node's port to every node that handed out a write token
        during a :meth:`dht_get_peers` for it (one is run first when there was none). ``implied_port=1``
        asks them to store the port our packets come from (BEP 5). Returns how many acknowledged."""
        if not self._runner.call(lambda: bool(self._tokens.get(info_hash))):
            for _ in self.dht_get_peers(info_hash):
                pass
        return self._runner.run(self._announce(info_hash, implied_port))

    async def _announce(self, info_hash: bytes, implied_port: int) -> int:
        targets = list(self._tokens.get(info_hash, {}).items())
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bool]] = []
        for addr, token in targets:
            fut: asyncio.Future[bool] = loop.create_future()
            args: dict[bytes, Any] = {
                b"info_hash": info_hash,
                b"port": self.listen_connection[1],
                b"token": token,
            }
            if implied_port:
                args[b"implied_port"] = 1

            def done(r: ResponseBody | Error | None, fut: asyncio.Future[bool] = fut) -> None:
                if not fut.done():
                    fut.set_result(isinstance(r, ResponseBody))

            self._node.query(addr, b"announce_peer", args, done)
            futures.append(fut)
        return sum(await asyncio.gather(*futures))


# ---------------------------------------------------------------------- module-level init / shutdown

_default: DHT | None = None
_default_lock = threading.Lock()


def init(
    listen_connection: tuple[str, int],
    bootstrap_connection: tuple[str, int] = ("router.bittorrent.com", 6881),
    user_setup: Mapping[str, float] = {},
    user_router: NodeRouter | None = None,
) -> DHT:
    """Start the module's DHT peer (the arguments of :class:`DHT`) and return it; :func:`shutdown` and
    :func:`get_external_connection` act on it."""
    global _default
    with _default_lock:
        if _default is not None:
            raise RuntimeError("bitswarm.tinybt.init() already called; shutdown() first")
        _default = DHT(listen_connection, bootstrap_connection, user_setup, user_router)
        return _default


def shutdown() -> None:
    """Shut the module's DHT peer down (nothing to do when none runs)."""
    global _default
    with _default_lock:
        dht, _default = _default, None
    if dht is not None:
        dht.shutdown()


def get_external_connection() -> Addr | None:
    """:meth:`DHT.get_external_connection` of the module's DHT peer (None when none runs)."""
    dht = _default
    return None if dht is None else dht.get_external_connection()
