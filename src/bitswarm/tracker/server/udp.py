"""UDP tracker front end (BEP 15): connect, announce, scrape, error.

Connection ids are a keyed MAC (BLAKE2b-64 with a random server secret) over the client's address,
port and a 60-second time slot; an id from the current or the previous slot is accepted (so an id
lives 60–120 s), and the BEP 15 protocol constant is never accepted as one. A datagram with a bad
connection id, a bad size, an unknown action or an unknown event gets either nothing (shorter than
16 bytes, or a connect without the protocol id) or an error reply truncated to the request's own
length, so the tracker never amplifies a spoofed packet.

The byte layouts are BEP 15's (see :mod:`bitswarm.tracker.udp_codec`, the sans-I/O codec used by
the client and by the tests); this module unpacks the hot path with precompiled ``struct``s.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from hashlib import blake2b
from typing import Any

from bitswarm.tracker.server import _mmsg
from bitswarm.tracker.server._mmsg import DATA_OFFSET, MmsgRing
from bitswarm.tracker.server.config import Mode
from bitswarm.tracker.server.core import Rejected, TrackerCore
from bitswarm.tracker.server.state import MemoryStore
from bitswarm.tracker.udp_codec import MAX_SCRAPE_HASHES, PROTOCOL_ID

_ANNOUNCE_SIZE = 98
_HDR = struct.Struct(">QII")
_ANN = struct.Struct(">20s20sQQQIIIiH")  # after the 16-byte header: BEP 15 announce body
_CONN = struct.Struct(">IIQ")
_ANNR = struct.Struct(">IIIII")
_ERR = struct.Struct(">II")
_SCR = struct.Struct(">III")
# connection id, transaction id, info_hash, peer_id, left, event, num_want, port (BEP 15 offsets)
_FAST = struct.Struct(">Q4xI20s20s8xQ8xI8xiH")
_PORT = struct.Struct(">H")
_ACTION_ANNOUNCE = b"\0\0\0\1"
_MAPPED = b"\0" * 10 + b"\xff\xff"
_LEFT_MAX = 0x7FFFFFFFFFFFFFFF
# The mmsg path reads a receive slot (sockaddr, then the datagram at DATA_OFFSET) in one unpack:
# raw address key, connection id, action, transaction id, info_hash, peer_id, left, event, num_want,
# port (BEP 15 offsets); the key is port + IPv4 (sockaddr_in) or port + flow info + IPv6 (sockaddr_in6).
_RING_ANN4 = struct.Struct(">2x6s24xQII20s20s8xQ8xI8xi2s")
_RING_ANN6 = struct.Struct(">2x22s8xQII20s20s8xQ8xI8xi2s")
_RING_HDR4 = struct.Struct(">2x6s24xQII")
_RING_HDR6 = struct.Struct(">2x22s8xQII")
assert _RING_ANN4.size == _RING_ANN6.size == DATA_OFFSET + _ANNOUNCE_SIZE
_CACHE_MAX = 65536
#: Most store calls in flight with an async store (Redis); datagrams beyond it are dropped (clients retry).
MAX_INFLIGHT = 4096
_BATCH = 128  # datagrams handled per hold of core.lock (the HTTP front end waits at most this long)


class UdpTrackerProtocol(asyncio.DatagramProtocol):
    """One bound UDP socket of the tracker."""

    def __init__(self, core: TrackerCore, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self.core = core
        self.secret = secret
        self.slot_seconds = core.config.udp_slot
        self._clock = clock
        self._slot = -1
        #: address (a ``(host, port)`` tuple, or raw sockaddr bytes on the mmsg path) →
        #: (connection id of the current slot, packed IP)
        self._ids: dict[object, tuple[int, bytes]] = {}
        self._hosts: dict[str, tuple[bytes, bool]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: the inline announce path: only for a synchronous store in open mode
        self._fast = (
            isinstance(getattr(core, "store", None), MemoryStore)
            and getattr(core.config, "mode", None) is Mode.OPEN
        )
        #: set by a :class:`UdpWorker` over an async store (Redis): announces of one ``recvmmsg``
        #: batch wait here as ``(announce, sockaddr address, transaction id)`` for one store call
        #: (:meth:`finish_ring`)
        self.deferred: list[tuple[tuple[bytes, bytes, bytes, bool, int, int, bool], int, int]] | None = None
        self._name = 0  # the sockaddr address of the datagram :meth:`handle` is answering

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:  # ICMP errors: nothing to do
        self.core.errors["udp_icmp"] += 1

    # ---------------------------------------------------------------------------- connection ids

    def _mac(self, peer: bytes, slot: int) -> int:
        """The id of the client at compact address ``peer`` (4/16-byte IP + 2-byte port) in ``slot``."""
        cid = int.from_bytes(blake2b(b"%s|%d" % (peer, slot), key=self.secret, digest_size=8).digest(), "big")
        return cid ^ 1 if cid == PROTOCOL_ID else cid

    def _roll(self) -> int:
        """The current time slot; a new slot forgets the cached ids of the previous one."""
        slot = int(self._clock()) // self.slot_seconds
        if slot != self._slot:
            self._slot = slot
            self._ids.clear()
        return slot

    def _entry(self, addr: tuple[object, ...]) -> tuple[int, bytes]:
        """``(current id, packed IP)`` of a ``(host, port, ...)`` address (cached for the slot)."""
        found = self._ids.get(addr)
        if found is None:
            ip = self._packed(addr[0])[0]  # type: ignore[arg-type]
            cid = self._mac(ip + _PORT.pack(addr[1]), self._slot)
            if len(self._ids) >= _CACHE_MAX:
                self._ids.clear()
            found = self._ids[addr] = (cid, ip)
        return found

    def _raw_entry(self, key: bytes, v6: bool) -> tuple[int, bytes]:
        """Like :meth:`_entry` for a raw ``sockaddr`` key: bytes 2..8 of a ``sockaddr_in`` (port, IPv4)
        or 2..24 of a ``sockaddr_in6`` (port, flow info, IPv6) — the mmsg path's address."""
        if v6:
            ip = key[6:22]
            if ip[:12] == _MAPPED:
                ip = ip[12:]
        else:
            ip = key[2:6]
        cid = self._mac(ip + key[:2], self._slot)
        if len(self._ids) >= _CACHE_MAX:
            self._ids.clear()
        found = self._ids[key] = (cid, ip)
        return found

    def connection_id(self, addr: tuple[object, ...]) -> int:
        """The id handed to ``addr`` now (BEP 15 connect response)."""
        self._roll()
        return self._entry(addr)[0]

    def valid(self, cid: int, addr: tuple[object, ...]) -> bool:
        """BEP 15: ``cid`` was handed to ``addr`` in the current or the previous time slot."""
        self._roll()
        cur, ip = self._entry(addr)
        if cid == cur:
            return True
        return cid != PROTOCOL_ID and cid == self._mac(ip + _PORT.pack(addr[1]), self._slot - 1)

    # ---------------------------------------------------------------------------- datagrams

    def _error(self, data: bytes, tid: int, kind: str, message: bytes) -> bytes:
        """BEP 15 error reply, never longer than the request (no amplification)."""
        self.core.errors[kind] += 1
        return _ERR.pack(3, tid) + message[: len(data) - 8]

    def _packed(self, host: str) -> tuple[bytes, bool]:
        found = self._hosts.get(host)
        if found is None:
            if ":" in host:
                packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
                found = (packed[12:], False) if packed[:12] == b"\0" * 10 + b"\xff\xff" else (packed, True)
            else:
                found = (socket.inet_aton(host), False)
            if len(self._hosts) >= _CACHE_MAX:
                self._hosts.clear()
            self._hosts[host] = found
        return found

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        reply = self.handle(data, addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def handle(self, data: bytes, addr: tuple[object, ...]) -> bytes | None:
        """The reply to one datagram (None: no reply, or one sent later by a task)."""
        if len(data) >= _ANNOUNCE_SIZE and data[8:12] == _ACTION_ANNOUNCE and self._fast:
            # the common case in one piece: an announce from an address with a current id
            cid, tid, info_hash, peer_id, left, event, numwant, port = _FAST.unpack_from(data)
            slot = int(self._clock()) // self.slot_seconds
            found = self._ids.get(addr)
            if slot == self._slot and found is not None and found[0] == cid:
                if event > 3 or left > 0x7FFFFFFFFFFFFFFF:
                    return self._error(data, tid, "malformed", b"bad announce field")
                if port == 0:
                    return self._error(data, tid, "port", b"invalid port 0")
                ip = found[1]
                core = self.core
                if numwant < 0:
                    numwant = core.numwant_default
                elif numwant > core.numwant_max:
                    numwant = core.numwant_max
                seeders, leechers, peers = core.store.announce(
                    info_hash, ip + _PORT.pack(port), peer_id, left == 0, event, numwant
                )
                core.announces["udp"] += 1
                iv = core._iv = (core._iv + 1) & 63
                reply: bytes = _ANNR.pack(1, tid, core.intervals[iv], leechers, seeders) + peers
                return reply
        size = len(data)
        if size < 16:
            self.core.errors["udp_short"] += 1
            return None
        cid, action, tid = _HDR.unpack_from(data)
        if action == 0:
            if cid != PROTOCOL_ID:
                self.core.errors["udp_bad_protocol_id"] += 1
                return None
            return _CONN.pack(0, tid, self.connection_id(addr))
        if action > 2:
            return self._error(data, tid, "udp_bad_action", b"unknown action")
        if not self.valid(cid, addr):
            return self._error(data, tid, "udp_bad_connection_id", b"bad connection id")
        if action == 1:
            return self._announce(data, tid, addr)
        return self._scrape(data, tid, addr)

    def serve_ring(self, ring: MmsgRing, n: int) -> int:
        """Answer the ``n`` datagrams ``recvmmsg`` put in ``ring``; the replies go to its send slots.

        Returns how many replies were prepared (for ``ring.send``). Connects and, with a synchronous
        store in open mode, announces carrying the current slot's id are answered inline from the
        raw slot bytes; everything else goes through :meth:`handle` with a ``(host, port)`` tuple.
        The caller holds ``core.lock``.
        """
        core = self.core
        self._roll()
        ids_get = self._ids.get
        raw_entry = self._raw_entry
        rbuf = ring.rbuf
        sbuf = ring.sbuf
        lens = ring.lens
        send_q = ring.send_q
        send_iov = ring.send_iov
        sslot = ring.send_slot
        ann_size = _ANNOUNCE_SIZE
        left_max = _LEFT_MAX
        no_port = b"\0\0"
        v6 = ring.namelen == 28
        unpack_ann = (_RING_ANN6 if v6 else _RING_ANN4).unpack_from
        unpack_hdr = (_RING_HDR6 if v6 else _RING_HDR4).unpack_from
        deferred = self.deferred
        inline = self._fast or (deferred is not None and core.config.mode is Mode.OPEN)
        announce = core.store.announce if self._fast else None
        nw_default = core.numwant_default
        nw_max = core.numwant_max
        intervals = core.intervals
        iv = core._iv
        pack_ann = _ANNR.pack_into
        pack_conn = _CONN.pack_into
        announced = 0
        j = 0
        outs = ring.outs
        for i, o, li, name in ring.slots[:n]:
            try:
                size = lens[li]
                if size >= ann_size:
                    if inline:
                        key, cid, action, tid, info_hash, peer_id, left, event, numwant, port = unpack_ann(
                            rbuf, o
                        )
                        if action == 1:
                            found = ids_get(key)
                            if found is None:
                                found = raw_entry(key, v6)
                            if found[0] == cid and event <= 3 and left <= left_max and port != no_port:
                                if numwant < 0:
                                    numwant = nw_default
                                elif numwant > nw_max:
                                    numwant = nw_max
                                if announce is None:  # async store: one call for the batch
                                    peer = found[1] + port
                                    item = (info_hash, peer, peer_id, left == 0, event, numwant, False)
                                    deferred.append((item, name, tid))  # type: ignore[union-attr]
                                    continue
                                seeders, leechers, peers = announce(
                                    info_hash, found[1] + port, peer_id, left == 0, event, numwant
                                )
                                announced += 1
                                iv = (iv + 1) & 63
                                so, qj, ij = outs[j]
                                pack_ann(sbuf, so, 1, tid, intervals[iv], leechers, seeders)
                                end = so + 20 + len(peers)
                                sbuf[so + 20 : end] = peers
                                send_q[qj] = name
                                send_iov[ij] = end - so
                                j += 1
                                continue
                elif size >= 16:
                    key, cid, action, tid = unpack_hdr(rbuf, o)
                    if action == 0 and cid == PROTOCOL_ID:
                        found = ids_get(key)
                        if found is None:
                            found = raw_entry(key, v6)
                        so, qj, ij = outs[j]
                        pack_conn(sbuf, so, 0, tid, found[0])
                        send_q[qj] = name
                        send_iov[ij] = 16
                        j += 1
                        continue
                # everything else: the general path
                if announced:
                    core.announces["udp"] += announced
                    announced = 0
                core._iv = iv
                self._name = name
                reply = self.handle(ring.datagram(i), ring.address(i))
                iv = core._iv
                if reply is None:
                    continue
                if len(reply) > sslot:  # cannot happen with numwant_max as configured: send it alone
                    ring.sock.sendto(reply, ring.address(i))
                    continue
                so, qj, ij = outs[j]
                sbuf[so : so + len(reply)] = reply
                send_q[qj] = name
                send_iov[ij] = len(reply)
                j += 1
            except OSError:
                core.errors["udp_icmp"] += 1
            except Exception:  # a bug must not end the thread
                core.errors["internal"] += 1
        if announced:
            core.announces["udp"] += announced
        core._iv = iv
        return j

    def finish_ring(self, ring: MmsgRing, j: int) -> int:
        """After :meth:`serve_ring` over an async store: run the batch's deferred announces in one
        blocking store call (:meth:`RedisStore.announce_batch`) and add their replies after the
        ``j`` already prepared. Returns the new number of replies. Called without ``core.lock``
        (taken only around the counters). If the store fails, those announces get no reply (the
        clients retry), as on the asyncio path."""
        deferred = self.deferred
        if not deferred:
            return j
        core = self.core
        try:
            results = core.store.announce_batch([d[0] for d in deferred])
        except Exception:
            with core.lock:
                core.errors["store"] += len(deferred)
            deferred.clear()
            return j
        sbuf = ring.sbuf
        send_q = ring.send_q
        send_iov = ring.send_iov
        outs = ring.outs
        pack_ann = _ANNR.pack_into
        with core.lock:
            intervals = core.intervals
            iv = core._iv
            for (_, name, tid), (seeders, leechers, peers) in zip(deferred, results, strict=True):
                iv = (iv + 1) & 63
                so, qj, ij = outs[j]
                pack_ann(sbuf, so, 1, tid, intervals[iv], leechers, seeders)
                end = so + 20 + len(peers)
                sbuf[so + 20 : end] = peers
                send_q[qj] = name
                send_iov[ij] = end - so
                j += 1
            core._iv = iv
            core.announces["udp"] += len(deferred)
        deferred.clear()
        return j

    @property
    def inflight(self) -> int:
        """Async-store calls still waiting (at most :data:`MAX_INFLIGHT`)."""
        return len(self._tasks)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run an async-store call, unless :data:`MAX_INFLIGHT` are already waiting on the store."""
        if len(self._tasks) >= MAX_INFLIGHT:
            coro.close()
            self.core.errors["udp_busy"] += 1
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _announce(self, data: bytes, tid: int, addr: tuple[object, ...]) -> bytes | None:
        core = self.core
        if len(data) < _ANNOUNCE_SIZE:
            return self._error(data, tid, "udp_short", b"announce too short")
        info_hash, peer_id, _down, left, _up, event, _ip, _key, numwant, port = _ANN.unpack_from(data, 16)
        if event > 3 or left > 0x7FFFFFFFFFFFFFFF:
            return self._error(data, tid, "malformed", b"bad announce field")
        if port == 0:
            return self._error(data, tid, "port", b"invalid port 0")
        if core.config.mode is not Mode.OPEN:
            try:
                if core.config.mode is Mode.PRIVATE:
                    raise Rejected("passkey", "private tracker: announce over HTTP")
                core.check(info_hash, None)
            except Rejected as exc:
                return self._error(data, tid, exc.kind, exc.reason.encode())
        ip, _v6 = self._packed(addr[0])  # type: ignore[arg-type]
        peer = ip + port.to_bytes(2, "big")
        store = core.store
        want = core.numwant(numwant)
        if store.is_async:
            if self.deferred is not None:  # a UdpWorker: the announce joins the batch's store call
                item = (info_hash, peer, peer_id, left == 0, event, want, False)
                self.deferred.append((item, self._name, tid))
                return None
            self._spawn(self._announce_async(tid, addr, info_hash, peer, peer_id, left == 0, event, want))
            return None
        seeders, leechers, peers = store.announce(info_hash, peer, peer_id, left == 0, event, want)
        core.announces["udp"] += 1
        reply: bytes = _ANNR.pack(1, tid, core.next_interval(), leechers, seeders) + peers
        return reply

    async def _announce_async(
        self,
        tid: int,
        addr: tuple[object, ...],
        info_hash: bytes,
        peer: bytes,
        peer_id: bytes,
        seeder: bool,
        event: int,
        want: int,
    ) -> None:
        core = self.core
        try:
            seeders, leechers, peers = await core.store.announce(
                info_hash, peer, peer_id, seeder, event, want, compact=True
            )
        except Exception:
            core.errors["store"] += 1
            return
        core.announces["udp"] += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(_ANNR.pack(1, tid, core.next_interval(), leechers, seeders) + peers, addr)

    def _scrape(self, data: bytes, tid: int, addr: tuple[object, ...]) -> bytes | None:
        core = self.core
        body = len(data) - 16
        if body == 0 or body % 20 or body // 20 > MAX_SCRAPE_HASHES:
            return self._error(data, tid, "malformed", b"scrape needs 1..74 info-hashes")
        hashes = [data[i : i + 20] for i in range(16, len(data), 20)]
        if core.config.mode is Mode.WHITELIST:
            try:
                for info_hash in hashes:
                    core.check(info_hash, None)
            except Rejected as exc:
                return self._error(data, tid, exc.kind, exc.reason.encode())
        elif core.config.mode is Mode.PRIVATE:
            return self._error(data, tid, "passkey", b"private tracker: scrape over HTTP")
        store = core.store
        if store.is_async:
            if self.deferred is not None:  # a UdpWorker thread: a blocking call (scrapes are rare)
                try:
                    stats = store.scrape_many_sync(hashes)
                except Exception:
                    core.errors["store"] += 1
                    return None
                core.scrapes["udp"] += 1
                return _ERR.pack(2, tid) + b"".join(_SCR.pack(*s) for s in stats)
            self._spawn(self._scrape_async(tid, addr, hashes))
            return None
        core.scrapes["udp"] += 1
        return _ERR.pack(2, tid) + b"".join(_SCR.pack(*store.scrape(h)) for h in hashes)

    async def _scrape_async(self, tid: int, addr: tuple[object, ...], hashes: list[bytes]) -> None:
        try:
            stats = await self.core.store.scrape_many(hashes)
        except Exception:
            self.core.errors["store"] += 1
            return
        self.core.scrapes["udp"] += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(_ERR.pack(2, tid) + b"".join(_SCR.pack(*s) for s in stats), addr)


def mmsg_wanted(core: TrackerCore) -> bool:
    """Whether UDP workers should batch with ``recvmmsg``/``sendmmsg``: where available, unless
    ``BITSWARM_UDP_MMSG=0`` is in the environment or the config's ``extra["udp_mmsg"]`` is false."""
    if os.environ.get("BITSWARM_UDP_MMSG", "1").lower() in ("0", "no", "off", "false"):
        return False
    extra = getattr(getattr(core, "config", None), "extra", None) or {}
    return bool(extra.get("udp_mmsg", True)) and _mmsg.available()


class UdpWorker:
    """Serves one UDP socket from a dedicated thread, no event loop round trip per datagram. Each
    batch is handled under ``core.lock``, which the HTTP front end and the background jobs take
    around a synchronous store too. With an async store (Redis) the worker needs ``recvmmsg``: the
    announces of one batch go to the store in one blocking call (:meth:`UdpTrackerProtocol.finish_ring`,
    outside the lock), so one Redis round trip answers a whole batch.

    On Linux one ``recvmmsg`` takes up to ``batch`` queued datagrams (``MSG_WAITFORONE``: it
    returns as soon as one is there), :meth:`UdpTrackerProtocol.serve_ring` answers them, and one
    ``sendmmsg`` sends the replies, outside the lock (:attr:`batched` is True). Elsewhere, or with
    ``mmsg=False``: blocking ``recvfrom`` then up to ``batch`` non-blocking ones, ``sendto`` each.
    """

    def __init__(
        self, proto: UdpTrackerProtocol, sock: socket.socket, *, batch: int = _BATCH, mmsg: bool | None = None
    ) -> None:
        self.proto = proto
        self.sock = sock
        self.batch = batch
        self._stop = False
        #: most datagrams one ``recvmmsg`` returned so far (0 on the recvfrom path)
        self.max_batch = 0
        want = mmsg_wanted(proto.core) if mmsg is None else mmsg and _mmsg.available()
        send_slot = (20 + 18 * max(200, proto.core.numwant_max) + 63) // 64 * 64
        self._ring = MmsgRing(sock, batch, send_slot) if want else None
        if getattr(proto.core.store, "is_async", False):
            if self._ring is None:
                raise ValueError("a UDP worker over an async store needs recvmmsg")
            proto.deferred = []
        self._thread = threading.Thread(target=self._run, name="bitswarm-tracker-udp", daemon=True)

    @property
    def batched(self) -> bool:
        """True when this worker uses ``recvmmsg``/``sendmmsg``."""
        return self._ring is not None

    def start(self) -> None:
        self.sock.setblocking(True)
        self._thread.start()

    def _run(self) -> None:
        if self._ring is not None:
            self._run_mmsg(self._ring)
        else:
            self._run_plain()

    def _run_mmsg(self, ring: MmsgRing) -> None:
        serve = self.proto.serve_ring
        finish = self.proto.finish_ring
        deferred = self.proto.deferred
        lock = self.proto.core.lock
        errors = self.proto.core.errors
        while not self._stop:
            try:
                n = ring.recv()
            except OSError as exc:
                if self._stop or exc.errno in (errno.EBADF, errno.ENOTSOCK, errno.EINVAL):
                    break
                with lock:
                    errors["udp_icmp"] += 1
                continue
            if self._stop:
                break
            if not n:
                continue
            if n > self.max_batch:
                self.max_batch = n
            with lock:
                m = serve(ring, n)
            if deferred is not None:
                m = finish(ring, m)
            if m:
                try:
                    refused = ring.send(m)
                except OSError:
                    break
                if refused:
                    with lock:
                        errors["udp_icmp"] += refused

    def _run_plain(self) -> None:
        sock = self.sock
        recv = sock.recvfrom
        send = sock.sendto
        handle = self.proto.handle
        lock = self.proto.core.lock
        errors = self.proto.core.errors
        batch = self.batch
        while not self._stop:
            try:
                data, addr = recv(2048)
            except OSError:
                if self._stop:
                    break
                with lock:
                    errors["udp_icmp"] += 1
                continue
            if self._stop:
                break
            with lock:  # a batch: whatever is already queued, up to `batch` datagrams
                budget = batch
                while True:
                    try:
                        reply = handle(data, addr)
                        if reply is not None:
                            send(reply, addr)
                    except OSError:
                        errors["udp_icmp"] += 1
                    except Exception:  # a bug must not end the thread
                        errors["internal"] += 1
                    budget -= 1
                    if not budget or self._stop:
                        break
                    try:
                        data, addr = recv(2048, socket.MSG_DONTWAIT)
                    except OSError:  # BlockingIOError: the queue is empty
                        break

    def stop(self, timeout: float = 2.0) -> None:
        """Wake the blocked ``recvfrom`` (shutdown), wait for the thread, close the socket."""
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            host, port = self.sock.getsockname()[:2]
            family = self.sock.family
            target = (
                host
                if host not in ("0.0.0.0", "::")
                else ("::1" if family == socket.AF_INET6 else "127.0.0.1")
            )
            with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as poke:
                poke.sendto(b"", (target, port))
            self._thread.join(timeout)
        self.sock.close()
