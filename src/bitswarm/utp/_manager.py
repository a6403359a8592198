"""The asyncio driver of uTP: one UDP socket for every connection, shareable with the DHT.

:class:`UtpSocketManager` is the socket's ``DatagramProtocol``. It routes each datagram by
``(address, connection id)`` to a sans-I/O :class:`~bitswarm.utp.UtpConnection`, hands datagrams
that are not uTP (bencoded KRPC starts with ``b"d"``) to ``on_other_datagram``, and runs every
connection's timers from ONE event-loop timer keyed on the earliest deadline (a heap with lazy
deletion). Sending is batched: whatever a loop turn changes (datagrams in, writes, timers) is
flushed by one ``call_soon`` callback, so small writes of one turn share packets and ACKs.

:class:`UtpStream` is an :class:`asyncio.Transport`: give it any ``asyncio.Protocol`` or
``BufferedProtocol`` (received bytes go into ``get_buffer``/``buffer_updated``), the way
``loop.create_connection`` does::

    mgr = await UtpSocketManager.open("0.0.0.0", 6881, accept=MyProtocol)
    stream, proto = await mgr.connect(("198.51.100.7", 6881), MyProtocol, timeout=10)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import os
import random
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from bitswarm.transport import StreamReceiver
from bitswarm.utp._connection import (
    Closed,
    Connected,
    Data,
    EndOfStream,
    Reset,
    UtpConfig,
    UtpConnection,
    WritableAgain,
)
from bitswarm.utp._packet import HEADER, SEQ_MASK, VERSION, PacketType, UtpPacketError, is_utp_datagram
from bitswarm.utp._state import State

__all__ = ["Addr", "ManagerStats", "UtpSocketManager", "UtpStream"]

Addr = tuple[str, int]
#: What a stream drives: an asyncio ``Protocol``/``BufferedProtocol`` or the engine's
#: :class:`~bitswarm.transport.StreamReceiver` (the same callbacks, duck-typed).
Receiver = asyncio.BaseProtocol | StreamReceiver
P = TypeVar("P", bound=Receiver)
_SYN, _RESET = int(PacketType.SYN), int(PacketType.RESET)
_SOCKET_BUFFER = 4 << 20
TIME_WAIT = 5.0  # seconds a cleanly closed connection still answers a retransmitted FIN
# Linux UDP generic segmentation offload: one sendmsg carries a run of equal-size datagrams (the
# kernel cuts it). Measured on loopback: the sender's sendto per datagram was its largest cost.
_UDP_SEGMENT = 103
_GSO_MAX_SEGMENTS = 44  # 44 x 1420 bytes stays under the 64 KiB UDP limit (and the 64-segment cap)
_U16 = struct.Struct("=H")
# Linux reports ICMP errors for what an unconnected UDP socket sent only with IP_RECVERR (IPV6_RECVERR
# on an AF_INET6 socket): as messages on the socket's error queue whose msg_name is the destination of
# the datagram that failed (ip(7)). A dial to a peer with nothing on its UDP port then fails at once.
_IP_RECVERR, _IPV6_RECVERR, _MSG_ERRQUEUE = 11, 25, 0x2000
_RECVERR_CMSGS = frozenset({(socket.IPPROTO_IP, _IP_RECVERR), (socket.IPPROTO_IPV6, _IPV6_RECVERR)})
_EXTENDED_ERR = struct.Struct("=IB")  # struct sock_extended_err: ee_errno, ee_origin, ...
_ORIGIN_ICMP = frozenset({2, 3})  # SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6
_UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})
_ERRQUEUE_BATCH = 64  # error-queue messages read per loop turn; more wait for the next turn


@dataclass(slots=True)
class ManagerStats:
    datagrams_in: int = 0
    datagrams_out: int = 0
    other_in: int = 0  # handed to on_other_datagram (the DHT)
    invalid: int = 0  # looked like uTP, failed to parse
    resets_sent: int = 0  # replies to packets for unknown connections
    refused: int = 0  # SYNs over max_connections or with no accept factory
    unreachable: int = 0  # dials failed at once by an ICMP port/host unreachable (Linux)
    unreachable_closed: int = 0  # established connections ended by repeated ICMP unreachable
    gso_sends: int = 0  # sendmsg calls that carried several datagrams (UDP GSO)
    wrong_family: int = 0  # connections failed unsent: a destination of a family the socket lacks


class _Entry:
    """A connection, its address and (once connected) its stream."""

    __slots__ = ("addr", "conn", "deadline", "stream", "time_wait", "waiter")

    def __init__(self, conn: UtpConnection, addr: Addr) -> None:
        self.conn = conn
        self.addr = addr
        self.stream: UtpStream | None = None
        self.deadline: float | None = None
        self.waiter: asyncio.Future[UtpStream] | None = None
        self.time_wait: float | None = None  # a cleanly closed connection stays until then


class UtpSocketManager(asyncio.DatagramProtocol):
    """Every uTP connection on one UDP socket (see the module docstring)."""

    def __init__(
        self,
        *,
        accept: Callable[[], Receiver] | None = None,
        on_other_datagram: Callable[[bytes, Addr], None] | None = None,
        config: UtpConfig | None = None,
        max_connections: int = 1000,
        rng: random.Random | None = None,
        use_gso: bool = True,
    ) -> None:
        self.accept = accept
        self.on_other_datagram = on_other_datagram
        self.config = config or UtpConfig()
        self.max_connections = max_connections
        self.use_gso = use_gso
        self.stats = ManagerStats()
        self._rng = rng or random.Random()
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._conns: dict[tuple[Addr, int], _Entry] = {}  # (addr, our receive id)
        self._by_send: dict[tuple[Addr, int], _Entry] = {}  # (addr, our send id): RESETs
        self._by_addr: dict[Addr, dict[_Entry, None]] = {}  # ICMP errors name only the address
        self._dirty: dict[_Entry, None] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._heap: list[tuple[float, int, _Entry]] = []
        self._heap_seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._gso: socket.socket | None = None
        self._dual = False  # an AF_INET6 socket: IPv4 peers are addressed as ::ffff:a.b.c.d
        #: the destination families the socket carries (an IPv6-only socket: no IPv4)
        self._v4, self._v6 = True, False
        self._fd = -1  # the socket's descriptor while the error queue is on (Linux IP_RECVERR)
        self._drain_handle: asyncio.Handle | None = None
        self._dialing: dict[_Entry, None] = {}  # connect() calls waiting for their SYN's answer
        self.closed = asyncio.Event()

    @classmethod
    async def open(cls, host: str = "0.0.0.0", port: int = 0, **kwargs: Any) -> UtpSocketManager:
        """Bind a UDP socket and return its manager (``kwargs`` go to the constructor)."""
        loop = asyncio.get_running_loop()
        _, mgr = await loop.create_datagram_endpoint(lambda: cls(**kwargs), local_addr=(host, port))
        return mgr

    # ---- DatagramProtocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._dual = sock.family == socket.AF_INET6
            self._v4, self._v6 = True, self._dual  # AF_INET6: dual-stack unless IPV6_V6ONLY says not
            if self._dual:
                with contextlib.suppress(OSError, AttributeError):
                    self._v4 = not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
            if self.use_gso and sys.platform == "linux":
                # a plain socket object on a duplicate of the transport's descriptor: asyncio's and
                # uvloop's socket wrappers do not offer sendmsg
                with contextlib.suppress(OSError):
                    self._gso = socket.socket(fileno=os.dup(sock.fileno()))
            if sys.platform == "linux":
                opts = [(socket.IPPROTO_IP, _IP_RECVERR)]
                if self._dual:
                    opts.append((socket.IPPROTO_IPV6, _IPV6_RECVERR))
                try:
                    for level, opt in opts:
                        sock.setsockopt(level, opt, 1)
                    self._fd = sock.fileno()
                except OSError:
                    pass  # no error queue: a dial to a dead port times out, as elsewhere

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fd = -1  # closed: the number may soon name another file
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
        self._drop_gso()
        for entry in list(self._conns.values()):
            entry.conn.abort()
            self._lost(entry, ConnectionAbortedError("uTP socket closed"))
            self._forget(entry)
        if self._timer is not None:
            self._timer.cancel()
        self.closed.set()

    def error_received(self, exc: Exception) -> None:
        """An ICMP error on the socket (asyncio and uvloop call this when a receive or send returns
        ECONNREFUSED and the like). A dial fails at once; an established connection ends on a second
        report a moment after the first, drawn by a probe (see :meth:`UtpConnection.unreachable`);
        errors for the DHT's queries are dropped (the query times out)."""
        self._drain_errors()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        if not is_utp_datagram(data):  # KRPC (b"d...") and anything else: not ours
            if self.on_other_datagram is not None:
                self.stats.other_in += 1
                self.on_other_datagram(data, _addr(addr))
            return
        self.stats.datagrams_in += 1
        peer = _addr(addr)
        kind = data[0] >> 4
        conn_id = (data[2] << 8) | data[3]
        entry = self._conns.get((peer, (conn_id + 1) & SEQ_MASK if kind == _SYN else conn_id))
        if entry is None and kind == _RESET:
            entry = self._by_send.get((peer, conn_id))
        if entry is None:
            self._unknown(data, peer, kind, conn_id)
            return
        try:
            entry.conn.receive_datagram(data, self._loop.time())
        except UtpPacketError:
            self.stats.invalid += 1
            return
        self._events(entry)
        self._touch(entry)

    # ---- public API ------------------------------------------------------------------------

    @property
    def address(self) -> Addr:
        assert self._transport is not None, "manager not open"
        return _addr(self._transport.get_extra_info("sockname"))

    @property
    def connections(self) -> int:
        return len(self._conns)

    def sendto(self, data: bytes, addr: Addr) -> None:
        """Send a datagram that is not uTP (the DHT's KRPC) through the shared socket (not to an
        address of a family the socket does not carry: the query simply times out)."""
        wire = self._wire(addr)
        if self._transport is not None and wire is not None:
            with contextlib.suppress(OSError):  # unreachable: the DHT query simply times out
                self._transport.sendto(data, wire)

    def _drain_errors(self) -> None:
        """Read the error queue (bounded; the rest on the next loop turn) and fail the dials whose
        destination answered ICMP port/host unreachable."""
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
        if self._fd < 0 or self._transport is None:
            return
        sock = socket.socket(fileno=self._fd)  # the transport's own socket, not the GSO duplicate
        try:
            for _ in range(_ERRQUEUE_BATCH):
                try:
                    _, ancdata, _, name = sock.recvmsg(0, 256, _MSG_ERRQUEUE | socket.MSG_DONTWAIT)
                except OSError:
                    return  # empty (EAGAIN)
                for level, kind, data in ancdata:
                    if (level, kind) not in _RECVERR_CMSGS or len(data) < _EXTENDED_ERR.size or not name:
                        continue
                    err, origin = _EXTENDED_ERR.unpack_from(data)
                    if origin in _ORIGIN_ICMP and err in _UNREACHABLE:
                        self._unreachable(_addr(name), err)
            self._drain_handle = self._loop.call_soon(self._drain_errors)  # maybe more queued
        finally:
            sock.detach()

    def _unreachable(self, addr: Addr, err: int) -> None:
        now = self._loop.time()
        for entry in list(self._by_addr.get(addr, ())):
            conn = entry.conn
            if conn.state is State.SYN_SENT:
                if entry not in self._dialing:
                    continue
                conn.unreachable(now)
                self.stats.unreachable += 1
                msg = f"uTP: {os.strerror(err)} (ICMP from {addr[0]}:{addr[1]})"
                self._lost(entry, ConnectionRefusedError(err, msg))
            elif not conn.finished:
                # established: a second report a moment after the first ends it
                conn.unreachable(now, refused=err == errno.ECONNREFUSED)
                if conn.finished:
                    self.stats.unreachable_closed += 1
                self._events(entry)
            else:
                continue
            self._touch(entry)

    def _wire(self, addr: Addr) -> Addr | None:
        """``addr`` as the socket takes it (an IPv4 one on a dual-stack socket: ``::ffff:a.b.c.d``),
        or None when the socket does not carry its family (IPv6 on an IPv4 socket, IPv4 on an
        IPv6-only one): nothing may be sent there."""
        host = addr[0]
        if ":" in host:
            if host.startswith("::ffff:") and "." in host:  # IPv4-mapped: an IPv4 peer
                return addr if self._dual and self._v4 else ((host[7:], addr[1]) if self._v4 else None)
            return addr if self._v6 else None
        if not self._v4:
            return None
        return ("::ffff:" + host, addr[1]) if self._dual else addr

    async def connect(
        self, addr: Addr, protocol_factory: Callable[[], P], *, timeout: float | None = 10.0
    ) -> tuple[UtpStream, P]:
        """Dial ``addr``; once the SYN is acknowledged, build the protocol and connect it to a
        :class:`UtpStream` (``connection_made``), like ``loop.create_connection``. Raises
        ``TimeoutError`` (after ``timeout`` or the SYN retries), ``ConnectionResetError``, or on Linux
        ``ConnectionRefusedError`` at once when ``addr`` answers ICMP port/host unreachable."""
        if self._transport is None:
            raise ConnectionError("uTP socket manager is closed")
        peer = (addr[0], addr[1])
        while True:
            recv_id = self._rng.randrange(0x10000)
            if (peer, recv_id) not in self._conns and (peer, (recv_id + 1) & SEQ_MASK) not in self._by_send:
                break
        conn = UtpConnection.connect(self._loop.time(), conn_id=recv_id, config=self.config, rng=self._rng)
        entry = self._register(conn, peer)
        waiter: asyncio.Future[UtpStream] = self._loop.create_future()
        entry.waiter = waiter
        holder: list[P] = []

        def factory() -> Receiver:
            holder.append(protocol_factory())
            return holder[0]

        entry.stream = UtpStream(self, entry, factory)
        self._touch(entry)
        self._dialing[entry] = None
        try:
            stream = await asyncio.wait_for(waiter, timeout)
        except BaseException:
            if not entry.conn.finished:
                entry.conn.abort()
                self._touch(entry)
            raise
        finally:
            del self._dialing[entry]
        return stream, holder[0]

    def close(self) -> None:
        """Abort every connection (ST_RESET to each peer) and close the socket."""
        for entry in list(self._conns.values()):
            entry.conn.abort()
            self._flush_one(entry, self._loop.time())
            self._lost(entry, ConnectionAbortedError("uTP socket manager closed"))
        if self._transport is not None:
            self._transport.close()

    # ---- internals -------------------------------------------------------------------------

    def _unknown(self, data: bytes, peer: Addr, kind: int, conn_id: int) -> None:
        if kind == _SYN:
            if self.accept is None or len(self._conns) >= self.max_connections:
                self.stats.refused += 1
                return
            try:
                conn = UtpConnection.accept(data, self._loop.time(), config=self.config, rng=self._rng)
            except UtpPacketError:
                self.stats.invalid += 1
                return
            self._touch(self._register(conn, peer))
        elif kind != _RESET and self._transport is not None:
            # no such connection: tell the sender (libutp matches a RESET on its send id)
            seq = (data[16] << 8) | data[17]
            reply = HEADER.pack(
                (_RESET << 4) | VERSION, 0, conn_id, 0, 0, 0, self._rng.randrange(0x10000), seq
            )
            wire = self._wire(peer)
            if wire is not None:
                self.stats.resets_sent += 1
                self._transport.sendto(reply, wire)

    def _register(self, conn: UtpConnection, peer: Addr) -> _Entry:
        entry = _Entry(conn, peer)
        self._conns[(peer, conn.recv_id)] = entry
        self._by_send[(peer, conn.send_id)] = entry
        self._by_addr.setdefault(peer, {})[entry] = None
        return entry

    def _forget(self, entry: _Entry) -> None:
        peer, conn = entry.addr, entry.conn
        if self._conns.get((peer, conn.recv_id)) is entry:
            del self._conns[(peer, conn.recv_id)]
        if self._by_send.get((peer, conn.send_id)) is entry:
            del self._by_send[(peer, conn.send_id)]
        same = self._by_addr.get(peer)
        if same is not None:
            same.pop(entry, None)
            if not same:
                del self._by_addr[peer]
        self._dirty.pop(entry, None)
        entry.deadline = None

    def _touch(self, entry: _Entry) -> None:
        """Flush this connection at the end of the loop turn."""
        self._dirty[entry] = None
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        now = self._loop.time()
        dirty = self._dirty
        while dirty:
            entry = next(iter(dirty))
            del dirty[entry]
            self._flush_one(entry, now)
        self._arm()

    def _flush_one(self, entry: _Entry, now: float) -> None:
        conn = entry.conn
        out = conn.datagrams_to_send(now)
        if out and self._transport is not None:
            addr = self._wire(entry.addr)
            if addr is None:  # a family this socket does not carry: fail the connection, send nothing
                self._wrong_family(entry)
                return
            if self._gso is not None and len(out) > 2:
                self._send_gso(out, addr)
            else:
                sendto = self._transport.sendto
                for dgram in out:
                    sendto(dgram, addr)
            self.stats.datagrams_out += len(out)
        self._events(entry)
        if entry.stream is not None:
            entry.stream._after_flush()
        t: float | None
        if conn.finished:
            if conn.state is State.CLOSED and entry.time_wait is None:
                # TIME_WAIT: a FIN retransmitted because our last ACK was lost gets that ACK again
                # (not a RESET that would fail the peer's clean close)
                entry.time_wait = t = now + TIME_WAIT
            elif entry.time_wait is None or now >= entry.time_wait:
                self._forget(entry)
                return
            else:
                t = entry.time_wait
        else:
            t = conn.next_timeout()
        if t is not None and (entry.deadline is None or t < entry.deadline):
            entry.deadline = t
            self._heap_seq += 1
            heapq.heappush(self._heap, (t, self._heap_seq, entry))

    def _wrong_family(self, entry: _Entry) -> None:
        """A connection to an address of a family the socket does not carry (an IPv6 peer on an
        IPv4 socket): nothing is sent (a GSO send would fail and turn GSO off for every connection;
        a plain send would fail unseen and leave the dial to time out); it ends at once with
        ``OSError(EAFNOSUPPORT)``."""
        host, port = entry.addr
        kind = "IPv6-only" if self._dual else "IPv4"
        self.stats.wrong_family += 1
        if not entry.conn.finished:
            entry.conn.abort()
            entry.conn.datagrams_to_send(self._loop.time())  # the RESET it queued goes nowhere
        entry.conn.pop_events()
        msg = f"uTP: cannot reach {host}:{port} from an {kind} socket"
        self._lost(entry, OSError(errno.EAFNOSUPPORT, msg))
        self._forget(entry)

    def _send_gso(self, out: list[bytes], addr: Addr) -> None:
        """Runs of equal-size datagrams (and one shorter datagram closing a run) in one sendmsg."""
        assert self._transport is not None
        sendto = self._transport.sendto
        i, n = 0, len(out)
        while i < n:
            size = len(out[i])
            j = i + 1
            while j < n and j - i < _GSO_MAX_SEGMENTS and len(out[j]) == size:
                j += 1
            if j < n and j - i < _GSO_MAX_SEGMENTS and len(out[j]) < size:
                j += 1
            gso = self._gso
            if j - i < 2 or gso is None:
                for k in range(i, j):
                    sendto(out[k], addr)
            else:
                try:
                    gso.sendmsg(
                        [b"".join(out[i:j])], [(socket.SOL_UDP, _UDP_SEGMENT, _U16.pack(size))], 0, addr
                    )
                    self.stats.gso_sends += 1
                except OSError as exc:
                    if exc.errno in _UNREACHABLE:
                        self._drain_errors()  # an ICMP error was pending on the socket: not GSO's fault
                    elif not isinstance(exc, BlockingIOError):
                        self._drop_gso()  # no GSO here (old kernel, device): datagram by datagram
                    for k in range(i, j):
                        sendto(out[k], addr)  # the transport queues them while the socket is full
            i = j

    def _drop_gso(self) -> None:
        if self._gso is not None:
            self._gso.close()
            self._gso = None

    def _arm(self) -> None:
        heap = self._heap
        if not heap:
            return
        t = heap[0][0]
        if self._timer_at is not None and self._timer_at <= t:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = t
        self._timer = self._loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            t, _, entry = heapq.heappop(heap)
            if entry.deadline != t:
                continue  # superseded by an earlier deadline, or forgotten
            entry.deadline = None
            conn = entry.conn
            nt = conn.next_timeout()
            if nt is not None and nt <= now:
                conn.on_timeout(now)
            self._dirty[entry] = None  # flushing re-registers its next deadline
        self._flush()

    def _events(self, entry: _Entry) -> None:
        events = entry.conn.pop_events()
        if not events:
            return
        stream = entry.stream
        for ev in events:
            if isinstance(ev, Data):
                if stream is not None:
                    stream._data(ev.data)
                else:
                    entry.conn.consumed(len(ev.data))
            elif isinstance(ev, Connected):
                if stream is None:  # an accepted connection
                    factory = self.accept
                    if factory is None:
                        entry.conn.abort()
                        continue
                    stream = entry.stream = UtpStream(self, entry, factory)
                stream._connected()
                if entry.waiter is not None and not entry.waiter.done():
                    entry.waiter.set_result(stream)
            elif isinstance(ev, EndOfStream):
                if stream is not None:
                    stream._eof()
            elif isinstance(ev, WritableAgain):
                pass  # the stream checks its buffer after every flush
            elif isinstance(ev, Closed):
                self._lost(entry, None)
            elif isinstance(ev, Reset):
                exc: Exception
                if ev.reason == "timed out":
                    exc = TimeoutError("uTP connection timed out")
                elif ev.reason == "unreachable":
                    host, port = entry.addr
                    exc = ConnectionResetError(f"uTP: peer unreachable (ICMP from {host}:{port})")
                else:
                    exc = ConnectionResetError("uTP connection reset by peer")
                self._lost(entry, exc)

    def _lost(self, entry: _Entry, exc: Exception | None) -> None:
        if entry.waiter is not None and not entry.waiter.done():
            entry.waiter.set_exception(exc or ConnectionResetError("uTP connection closed"))
            entry.waiter.exception()  # retrieved here: the caller may have given up already
        if entry.stream is not None:
            entry.stream._lost(exc)


class UtpStream(asyncio.Transport):
    """One uTP connection as an asyncio transport (``write``/``close``/flow control both ways) and
    as the engine's :class:`~bitswarm.transport.PeerStream` (``kind``, ``encrypted``,
    ``peer_address``, ``set_receive_hint``): hand it a ``StreamReceiver`` such as the session's
    peer connection directly, or wrap it in ``TcpStream(receiver, kind="utp")``."""

    kind = "utp"
    encrypted = False

    def __init__(self, manager: UtpSocketManager, entry: _Entry, factory: Callable[[], Receiver]) -> None:
        super().__init__()
        self._manager = manager
        self._entry = entry
        self._conn = entry.conn
        self._factory = factory
        self._protocol: Any = None  # a Receiver, called duck-typed
        self._buffered = False
        self._paused_reading = False
        self._pending: deque[bytes] = deque()
        self._pending_eof = False
        self._closing = False
        self._lost_called = False
        self._lost_scheduled = False
        self._writing_paused = False
        self._high = manager.config.send_high_water
        self._low = manager.config.send_low_water

    # ---- PeerStream --------------------------------------------------------------------------

    @property
    def peer_address(self) -> tuple[str, int] | None:
        return self._entry.addr

    def set_receive_hint(self, nbytes: int) -> None:
        """Ignored: payload arrives a datagram at a time, each handed over as it comes in order."""

    # ---- asyncio.Transport -----------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._entry.addr
        if name == "sockname":
            return self._manager.address
        if name == "transport_kind":
            return "utp"
        if name == "utp_connection":
            return self._conn
        return default  # no "socket": there is no per-connection socket to tune

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._conn.finished:
            self._conn.close()
        self._manager._touch(self._entry)

    def abort(self) -> None:
        self._closing = True
        self._pending.clear()
        self._conn.abort()
        self._manager._touch(self._entry)
        self._lost(None)

    def set_protocol(self, protocol: Receiver) -> None:
        self._protocol = protocol
        self._buffered = hasattr(protocol, "get_buffer")

    def get_protocol(self) -> Any:
        return self._protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._conn.finished:
            return
        self._conn.send(data)
        self._manager._touch(self._entry)
        self._check_write_pause()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        if self._closing or self._conn.finished:
            return
        send = self._conn.send
        for data in list_of_data:
            send(data)
        self._manager._touch(self._entry)
        self._check_write_pause()

    def can_write_eof(self) -> bool:
        return False  # a uTP FIN ends the connection (close), there is no half-close call

    def get_write_buffer_size(self) -> int:
        return self._conn.send_buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = self._manager.config.send_high_water if high is None else high
        self._low = self._high // 4 if low is None else low
        self._check_write_pause()

    def is_reading(self) -> bool:
        return not self._paused_reading

    def pause_reading(self) -> None:
        self._paused_reading = True  # bytes wait here; the advertised window shrinks

    def resume_reading(self) -> None:
        if not self._paused_reading:
            return
        self._paused_reading = False
        while self._pending and not self._paused_reading and not self._lost_called:
            self._deliver(self._pending.popleft())
        if not self._pending and self._pending_eof and not self._paused_reading:
            self._pending_eof = False
            self._eof()
        self._manager._touch(self._entry)

    # ---- driven by the manager -------------------------------------------------------------

    def _connected(self) -> None:
        self.set_protocol(self._factory())
        assert self._protocol is not None
        self._protocol.connection_made(self)

    def _data(self, data: bytes) -> None:
        if self._lost_called or self._protocol is None:
            self._conn.consumed(len(data))
        elif self._paused_reading or self._pending:
            self._pending.append(data)
        else:
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        proto = self._protocol
        conn = self._conn
        if not self._buffered:
            proto.data_received(data)
            conn.consumed(len(data))
            return
        view = memoryview(data)
        total = len(view)
        pos = 0
        while pos < total:
            buf = memoryview(proto.get_buffer(total - pos))
            n = min(len(buf), total - pos)
            if n <= 0:
                raise RuntimeError("get_buffer() returned an empty buffer")
            buf[:n] = view[pos : pos + n]
            pos += n
            proto.buffer_updated(n)
            if self._paused_reading and pos < total:
                self._pending.appendleft(bytes(view[pos:]))
                break
        conn.consumed(pos)

    def _eof(self) -> None:
        if self._paused_reading or self._pending:
            self._pending_eof = True
            return
        proto = self._protocol
        if proto is None or self._lost_called:
            return
        keep_open = proto.eof_received() if hasattr(proto, "eof_received") else None
        if not keep_open:
            self.close()

    def _after_flush(self) -> None:
        if self._writing_paused and self._conn.send_buffered <= self._low:
            self._writing_paused = False
            if self._protocol is not None and not self._lost_called:
                self._protocol.resume_writing()
        if self._closing and not self._lost_scheduled and not self._conn.send_buffered:
            self._lost_scheduled = True
            # like TCP's close(): the protocol is done once the bytes left our buffer; the
            # connection stays in the manager until the peer has acknowledged them and the FIN
            self._manager._loop.call_soon(self._lost, None)

    def _check_write_pause(self) -> None:
        if not self._writing_paused and self._conn.send_buffered > self._high and self._protocol is not None:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _lost(self, exc: Exception | None) -> None:
        if self._lost_called:
            return
        self._lost_called = True
        self._closing = True
        if self._protocol is not None:
            self._protocol.connection_lost(exc)


def _addr(addr: tuple[str | Any, ...]) -> Addr:
    host = str(addr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]  # IPv4-mapped on a dual-stack socket
    port = addr[1]
    assert isinstance(port, int)
    return host, port
