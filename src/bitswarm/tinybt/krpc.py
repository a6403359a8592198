"""tinybt's ``KRPCPeer``: a bare KRPC endpoint (BEP 5's RPC layer) on one UDP socket.

    peer = KRPCPeer(("127.0.0.1", 0), query_handler)
    reply = peer.send_krpc_query(("127.0.0.1", 6881), "ping", id=my_id).get_result(5)
    peer.shutdown()

The messages are bitswarm's KRPC codec (:mod:`bitswarm.dht.krpc`); undecodable datagrams are
dropped without a reply. ``query_handler(send_krpc_response, rec, source_connection)`` is called for
each incoming query in a worker thread (so it may block, or send queries itself and wait for them):
``rec`` is the whole message (``rec['q']`` the method, ``rec['a']`` the arguments),
``send_krpc_response(**values)`` answers it (the ``r`` dict). A handler that raises answers
``202 Server Error``; without a handler every query gets ``204 Method Unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from bitswarm.bencode import decode as bdecode
from bitswarm.dht.krpc import (
    ERROR_METHOD_UNKNOWN,
    ERROR_SERVER,
    Addr,
    Error,
    KRPCError,
    Query,
    Response,
    decode,
    encode,
)
from bitswarm.tinybt._loop import (
    AsyncResult,
    AsyncTimeout,
    KRPCDict,
    KRPCRemoteError,
    LoopThread,
    resolve,
    to_krpc_args,
    wrap,
)

__all__ = ["KRPCPeer", "QueryHandler", "SendResponse"]

log = logging.getLogger(__name__)

#: ``send_krpc_response(**values)``: answer the query being handled with ``values`` as the ``r`` dict.
SendResponse = Callable[..., None]
#: ``query_handler(send_krpc_response, rec, source_connection)``.
QueryHandler = Callable[[SendResponse, KRPCDict, Addr], object]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, peer: KRPCPeer) -> None:
        self.peer = peer

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        self.peer._received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors on UDP: the query simply times out


class KRPCPeer:
    """A KRPC endpoint listening on ``connection`` = (host, port); port 0 picks a free port (see
    :attr:`connection`). ``cleanup_timeout`` is how long an unanswered query is kept (then its
    result raises :class:`AsyncTimeout`); at most ``max_handlers`` incoming queries wait for or run in
    the handler at once (more are dropped unanswered)."""

    def __init__(
        self,
        connection: tuple[str, int],
        query_handler: QueryHandler | None = None,
        *,
        cleanup_timeout: float = 60.0,
        max_handlers: int = 64,
    ) -> None:
        self._handler = query_handler
        self._max_handlers = max_handlers
        self._handlers = 0  # handler calls queued or running (loop thread)
        self._cleanup_timeout = cleanup_timeout
        self._pending: dict[bytes, tuple[Addr, AsyncResult[KRPCDict], asyncio.TimerHandle]] = {}
        self._tid = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._loop = LoopThread("tinybt-krpc")
        self.connection: Addr = self._loop.run_or_stop(self._start(connection))

    async def _start(self, connection: tuple[str, int]) -> Addr:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(connection[0], int(connection[1]))
        )
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    # ------------------------------------------------------------------ the three tinybt methods

    def send_krpc_query(
        self, connection: tuple[str, int], method: str | bytes, **kwargs: Any
    ) -> AsyncResult[KRPCDict]:
        """Send query ``method`` with arguments ``kwargs`` to ``connection``; the result holder gets the
        reply's ``r`` dict, or raises :class:`KRPCRemoteError` (error reply) / :class:`AsyncTimeout`."""
        name = method.encode("ascii") if isinstance(method, str) else method
        result: AsyncResult[KRPCDict] = AsyncResult((connection[0], int(connection[1])))
        args = to_krpc_args(kwargs)
        encode(Query(b"\0\0", name, args))  # an argument bencode cannot carry raises LocalProtocolError here
        self._loop.spawn(self._query(connection, name, args, result))
        return result

    def shutdown(self) -> None:
        """Close the socket (the port is free when this returns) and stop the loop thread."""
        with contextlib.suppress(RuntimeError):
            self._loop.call(self._close)
        self._loop.stop()

    # ------------------------------------------------------------------ loop side

    async def _query(
        self,
        connection: tuple[str, int],
        method: bytes,
        args: dict[bytes, Any],
        result: AsyncResult[KRPCDict],
    ) -> None:
        try:
            addr = await resolve(connection)
        except (OSError, ValueError) as exc:
            result.set_exception(exc)
            return
        if self._transport is None:
            result.set_exception(AsyncTimeout("peer shut down"))
            return
        self._tid = (self._tid + 1) & 0xFFFF
        t = self._tid.to_bytes(2, "big")
        old = self._pending.pop(t, None)
        if old is not None:
            old[2].cancel()
            old[1].set_exception(AsyncTimeout(f"no reply from {old[0]}"))
        timer = asyncio.get_running_loop().call_later(self._cleanup_timeout, self._expire, t)
        self._pending[t] = (addr, result, timer)
        self._sendto(encode(Query(t, method, args)), addr)

    def _expire(self, t: bytes) -> None:
        entry = self._pending.pop(t, None)
        if entry is not None:
            entry[1].set_exception(AsyncTimeout(f"no reply from {entry[0]} within {self._cleanup_timeout} s"))

    def _sendto(self, data: bytes, addr: Addr) -> None:
        if self._transport is not None:
            with contextlib.suppress(OSError):
                self._transport.sendto(data, addr)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for _addr, result, timer in self._pending.values():
            timer.cancel()
            result.set_exception(AsyncTimeout("peer shut down"))
        self._pending.clear()

    def _received(self, data: bytes, addr: Addr) -> None:
        try:
            msg = decode(data)
        except KRPCError:
            return  # not KRPC: no reply (no amplification)
        if isinstance(msg, Query):
            if self._handlers >= self._max_handlers:
                return  # the handlers cannot keep up: drop, as an overloaded UDP server does
            self._handlers += 1
            fut = self._loop.loop.run_in_executor(None, self._handle, msg, wrap(bdecode(data)), addr)
            fut.add_done_callback(self._handler_done)
            return
        entry = self._pending.get(msg.t)
        if entry is None or entry[0] != addr:
            return
        del self._pending[msg.t]
        entry[2].cancel()
        if isinstance(msg, Error):
            entry[1].set_exception(KRPCRemoteError(msg.code, msg.message))
        else:
            entry[1].set_result(wrap(msg.values), addr)

    def _handler_done(self, fut: asyncio.Future[None]) -> None:
        self._handlers -= 1

    def _handle(self, q: Query, rec: KRPCDict, addr: Addr) -> None:
        """Run the user's handler (worker thread)."""

        def send_krpc_response(**values: Any) -> None:
            data = encode(Response(q.t, to_krpc_args(values), None, addr))
            self._loop.soon(self._sendto, data, addr)

        if self._handler is None:
            self._loop.soon(self._sendto, encode(Error(q.t, ERROR_METHOD_UNKNOWN, "Method Unknown")), addr)
            return
        try:
            self._handler(send_krpc_response, rec, addr)
        except Exception:
            log.exception("tinybt query handler failed on %r from %s", q.method, addr)
            self._loop.soon(self._sendto, encode(Error(q.t, ERROR_SERVER, "Server Error")), addr)

    def __enter__(self) -> KRPCPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
