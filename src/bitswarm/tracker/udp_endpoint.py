"""The UDP side of BEP 15 tracker clients: one unconnected socket per address family for every
transaction of every :class:`~bitswarm.tracker.client.UdpTrackerClient` that shares the endpoint.

A session owns one :class:`UdpTrackerEndpoint` for all its torrents' UDP trackers (10,000 torrents
held up to 10,000 sockets, ~3.5 KiB and a descriptor each, and a stop made a socket, a connect and
an announce per torrent: issue 24); a standalone client owns a private one. Replies are routed to
the waiting transaction by transaction id and source address; anything else is dropped. The BEP 15
connection id is cached per tracker address (it belongs to our source address, which every torrent
of the session shares) for :data:`CONNECTION_ID_LIFETIME` seconds on the injected clock, and
concurrent connects to one tracker coalesce into one. The bytes are :mod:`.udp_codec`'s.

An unconnected socket gets no ICMP "port unreachable": a tracker that is down times out (per the
BEP 15 retry schedule, bounded by the announce manager's ``tracker_timeout``) instead of failing at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from bitswarm.tracker._common import TrackerError, TrackerTimeout, TrackerUnreachable

if TYPE_CHECKING:
    from bitswarm.tracker import udp_codec

__all__ = ["CONNECTION_ID_LIFETIME", "UdpTrackerEndpoint"]

#: BEP 15: a connection id may be used for one minute after it was received.
CONNECTION_ID_LIFETIME = 60.0
#: Seconds a tracker host name's resolved address is reused.
RESOLVE_TTL = 300.0
#: Transactions in flight to one tracker address over the endpoint; more wait for a slot. A
#: closing session sends every torrent's ``stopped`` at once: 5,000 replies arriving together
#: overflowed the socket's receive buffer (256 of them were read; issue 24).
MAX_IN_FLIGHT_PER_TRACKER = 128
#: Bytes asked for the sockets' receive buffer (the kernel caps it at ``net.core.rmem_max``).
RECEIVE_BUFFER = 1 << 20

Addr = tuple[str, int]


class _Socket(asyncio.DatagramProtocol):
    """One socket of the endpoint: hands every datagram to the endpoint."""

    def __init__(self, owner: UdpTrackerEndpoint, family: int) -> None:
        self.owner = owner
        self.family = family
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # the selector one is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.owner._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        return None  # an unconnected socket: not attributable to one tracker (the request times out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self)


@dataclass(slots=True)
class _Connect:
    """A connect in flight to one tracker, shared by every transaction waiting for its reply."""

    tid: int
    reply: asyncio.Future[bytes]
    next_send: float = 0.0  #: loop time before which nobody retransmits it
    users: set[int] = field(default_factory=set)  #: transactions (ids) that use it


class UdpTrackerEndpoint:
    """UDP tracker transactions of many clients over one socket per address family (opened on
    first use). ``clock`` (seconds) times the connection ids; the retransmission waits run on the
    event loop's timers."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, per_tracker: int = MAX_IN_FLIGHT_PER_TRACKER
    ) -> None:
        self._clock = clock
        self.per_tracker = per_tracker
        self._slots: dict[Addr, asyncio.Semaphore] = {}
        self._sockets: dict[int, _Socket] = {}
        self._open_lock = asyncio.Lock()
        #: transaction id -> (tracker address, reply)
        self._pending: dict[int, tuple[Addr, asyncio.Future[bytes]]] = {}
        #: tracker address -> (connection id, valid until on ``clock``)
        self._connections: dict[Addr, tuple[int, float]] = {}
        self._connecting: dict[Addr, _Connect] = {}
        self._resolved: dict[Addr, tuple[int, Addr, float]] = {}
        self.sockets_opened = 0  #: sockets opened so far (status, tests)
        self.closed = False
        #: the clients over this endpoint, one per tracker and settings, shared by the torrents while
        #: any uses it (``UdpTrackerClient.with_endpoint``; they keep no state of their own)
        self.clients: weakref.WeakValueDictionary[tuple[object, ...], object] = weakref.WeakValueDictionary()

    # -- state, for status and tests -------------------------------------------------------------

    @property
    def sockets(self) -> int:
        """Sockets open now."""
        return len(self._sockets)

    @property
    def in_flight(self) -> int:
        """Transactions waiting for a reply (connects included)."""
        return len(self._pending)

    def connection_id(self, addr: Addr) -> int | None:
        """The cached connection id of the tracker at ``addr`` (an IP and port), if still valid."""
        entry = self._connections.get(addr)
        if entry is None:
            return None
        if self._clock() < entry[1]:
            return entry[0]
        del self._connections[addr]
        return None

    # -- sockets ---------------------------------------------------------------------------------

    async def _socket(self, family: int) -> _Socket:
        sock = self._sockets.get(family)
        if sock is not None:
            return sock
        async with self._open_lock:
            sock = self._sockets.get(family)
            if sock is not None:
                return sock
            if self.closed:
                raise TrackerUnreachable("the UDP tracker endpoint is closed")
            loop = asyncio.get_running_loop()
            local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
            transport, proto = await loop.create_datagram_endpoint(
                lambda: _Socket(self, family), local_addr=local, family=family
            )
            raw = transport.get_extra_info("socket")
            if raw is not None:
                with contextlib.suppress(OSError):
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._sockets[family] = proto
            self.sockets_opened += 1
            return proto

    def _lost(self, sock: _Socket) -> None:
        if self._sockets.get(sock.family) is sock:
            del self._sockets[sock.family]
        # connection ids belong to the source address: a new socket connects again
        for addr in [a for a in self._connections if (":" in a[0]) == (sock.family == socket.AF_INET6)]:
            del self._connections[addr]
        for addr, fut in self._pending.values():
            if (":" in addr[0]) == (sock.family == socket.AF_INET6) and not fut.done():
                fut.set_exception(TrackerUnreachable("socket closed"))

    def close(self) -> None:
        """Close the sockets; transactions in flight fail with :class:`TrackerUnreachable`."""
        self.closed = True
        for sock in list(self._sockets.values()):
            if sock.transport is not None:
                sock.transport.close()
            self._lost(sock)
        self._connections.clear()

    def _received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        from bitswarm.tracker import udp_codec

        tid = udp_codec.peek_transaction_id(data)
        entry = self._pending.get(tid) if tid is not None else None
        if entry is None or tuple(addr[:2]) != entry[0] or entry[1].done():
            return  # stray, late or spoofed: dropped
        entry[1].set_result(data)

    # -- addresses -------------------------------------------------------------------------------

    async def resolve(self, host: str, port: int, timeout: float) -> tuple[int, Addr]:
        """(address family, (ip, port)) of a tracker; literal addresses without a lookup."""
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(host)
            return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (str(ip), port)
        now = self._clock()
        cached = self._resolved.get((host, port))
        if cached is not None and now < cached[2]:
            return cached[0], cached[1]
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"no address for {host}")
        family, _, _, _, sockaddr = infos[0]
        addr = (str(sockaddr[0]), int(sockaddr[1]))
        self._resolved[(host, port)] = (int(family), addr, now + RESOLVE_TTL)
        return int(family), addr

    # -- transactions ----------------------------------------------------------------------------

    def _new_tid(self) -> int:
        for _ in range(16):
            tid = secrets.randbits(32)
            if tid not in self._pending:
                return tid
        raise TrackerUnreachable("no free transaction id")

    async def _wait(self, fut: asyncio.Future[bytes], wait: float) -> bytes | None:
        """The reply, or None after ``wait`` seconds. ``asyncio.timeout`` (not ``wait_for``, which on
        3.11 can swallow a cancel racing the reply); the shield keeps ``fut`` for a retransmission."""
        try:
            async with asyncio.timeout(wait):
                return await asyncio.shield(fut)
        except TimeoutError:
            return None

    async def _connect(self, sock: _Socket, addr: Addr, wait: float, me: int, url: str) -> int | None:
        """A connection id for ``addr``: cached, or from the one connect in flight to it (sent or
        retransmitted here when due). None: no reply within ``wait`` (one BEP 15 attempt)."""
        from bitswarm.tracker import udp_codec

        conn = self.connection_id(addr)
        if conn is not None:
            return conn
        loop = asyncio.get_running_loop()
        pend = self._connecting.get(addr)
        if pend is None:
            tid = self._new_tid()
            pend = self._connecting[addr] = _Connect(tid, loop.create_future())
            self._pending[tid] = (addr, pend.reply)
        pend.users.add(me)
        if loop.time() >= pend.next_send - 0.001:  # (a timer may fire a hair early)
            pend.next_send = loop.time() + wait
            self._send(sock, udp_codec.encode_request(udp_codec.ConnectRequest(pend.tid)), addr, url)
        reply = await self._wait(pend.reply, wait)
        if reply is None:
            return None
        self._drop_connect(addr, pend)
        resp = udp_codec.decode_response(reply, expecting=udp_codec.Action.CONNECT)
        if isinstance(resp, udp_codec.ErrorResponse):
            raise TrackerError(resp.message, url=url)
        assert isinstance(resp, udp_codec.ConnectResponse)
        if self.connection_id(addr) is None:
            self._connections[addr] = (resp.connection_id, self._clock() + CONNECTION_ID_LIFETIME)
        return resp.connection_id

    def _drop_connect(self, addr: Addr, pend: _Connect) -> None:
        if self._connecting.get(addr) is pend:
            del self._connecting[addr]
            self._pending.pop(pend.tid, None)
        if pend.reply.done() and not pend.reply.cancelled():
            pend.reply.exception()  # retrieved: a failure nobody awaits must not be logged
        elif not pend.reply.done():
            pend.reply.cancel()

    def _send(self, sock: _Socket, data: bytes, addr: Addr, url: str) -> None:
        if sock.transport is None:
            raise TrackerUnreachable("socket closed", url=url)
        sock.transport.sendto(data, addr)

    async def transact(
        self,
        url: str,
        host: str,
        port: int,
        build: Callable[[int, int], bytes],
        expecting: udp_codec.Action,
        *,
        retry_base: float,
        max_retries: int,
        resolve_timeout: float = 15.0,
    ) -> udp_codec.Response:
        """Connect if needed, send ``build(connection_id, tid)``, retransmit after ``retry_base *
        2**n`` seconds for n = 0..``max_retries`` (BEP 15; a lost connect and a lost request both
        count as one attempt) and return the decoded reply."""

        try:
            family, addr = await self.resolve(host, port, resolve_timeout)
        except TimeoutError:
            raise TrackerTimeout("resolving the tracker's address timed out", url=url) from None
        except OSError as exc:
            raise TrackerUnreachable(f"{type(exc).__name__}: {exc}", url=url) from None
        try:
            sock = await self._socket(family)
        except OSError as exc:
            raise TrackerUnreachable(f"{type(exc).__name__}: {exc}", url=url) from None
        slot = self._slots.get(addr)
        if slot is None:
            slot = self._slots[addr] = asyncio.Semaphore(self.per_tracker)
        async with slot:
            return await self._transact(sock, addr, url, build, expecting, retry_base, max_retries)

    async def _transact(
        self,
        sock: _Socket,
        addr: Addr,
        url: str,
        build: Callable[[int, int], bytes],
        expecting: udp_codec.Action,
        retry_base: float,
        max_retries: int,
    ) -> udp_codec.Response:
        from bitswarm.tracker import udp_codec

        ipv6 = sock.family == socket.AF_INET6
        loop = asyncio.get_running_loop()
        tid = self._new_tid()
        reply_fut: asyncio.Future[bytes] = loop.create_future()
        self._pending[tid] = (addr, reply_fut)
        try:
            attempt = 0
            while attempt <= max_retries:
                wait = retry_base * 2**attempt
                conn = await self._connect(sock, addr, wait, tid, url)
                if conn is None:
                    attempt += 1
                    continue
                self._send(sock, build(conn, tid), addr, url)
                reply = await self._wait(reply_fut, wait)
                if reply is None:
                    attempt += 1
                    continue
                resp = udp_codec.decode_response(reply, ipv6=ipv6, expecting=expecting)
                if isinstance(resp, udp_codec.ErrorResponse):
                    raise TrackerError(resp.message, url=url)
                return resp
        except TrackerUnreachable as exc:
            raise TrackerUnreachable(str(exc), url=url) from None
        finally:
            self._pending.pop(tid, None)
            if reply_fut.done() and not reply_fut.cancelled():
                reply_fut.exception()
            pend = self._connecting.get(addr)
            if pend is not None:
                pend.users.discard(tid)
                if not pend.users:  # nobody waits for this connect any more
                    self._drop_connect(addr, pend)
        total = sum(retry_base * 2**n for n in range(max_retries + 1))
        raise TrackerTimeout(f"no reply after {max_retries + 1} tries ({total:g} s)", url=url)
