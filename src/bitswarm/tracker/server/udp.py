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
import socket
import struct
import time
from hashlib import blake2b

from bitswarm.tracker.server.config import Mode
from bitswarm.tracker.server.core import Rejected, TrackerCore
from bitswarm.tracker.udp_codec import MAX_SCRAPE_HASHES, PROTOCOL_ID

_HDR = struct.Struct(">QII")
_ANN = struct.Struct(">20s20sQQQIIIiH")  # after the 16-byte header: BEP 15 announce body
_CONN = struct.Struct(">IIQ")
_ANNR = struct.Struct(">IIIII")
_ERR = struct.Struct(">II")
_SCR = struct.Struct(">III")
_ANNOUNCE_SIZE = 98
_CACHE_MAX = 65536


class UdpTrackerProtocol(asyncio.DatagramProtocol):
    """One bound UDP socket of the tracker."""

    def __init__(self, core: TrackerCore, secret: bytes, *, clock: object = time.time) -> None:
        self.core = core
        self.secret = secret
        self.slot_seconds = core.config.udp_slot
        self._clock = clock
        self._slot = -1
        self._ids: dict[tuple[object, ...], int] = {}  # address → id of the current slot
        self._hosts: dict[str, tuple[bytes, bool]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:  # ICMP errors: nothing to do
        self.core.errors["udp_icmp"] += 1

    # ---------------------------------------------------------------------------- connection ids

    def _mac(self, addr: tuple[object, ...], slot: int) -> int:
        msg = b"%s|%s|%d" % (str(addr[0]).encode(), str(addr[1]).encode(), slot)
        cid = int.from_bytes(blake2b(msg, key=self.secret, digest_size=8).digest(), "big")
        return cid ^ 1 if cid == PROTOCOL_ID else cid

    def connection_id(self, addr: tuple[object, ...]) -> int:
        """The id handed to ``addr`` now (BEP 15 connect response)."""
        slot = int(self._clock()) // self.slot_seconds  # type: ignore[operator, unused-ignore]
        if slot != self._slot:
            self._slot = slot
            self._ids.clear()
        cid = self._ids.get(addr)
        if cid is None:
            if len(self._ids) >= _CACHE_MAX:
                self._ids.clear()
            cid = self._ids[addr] = self._mac(addr, slot)
        return cid

    def valid(self, cid: int, addr: tuple[object, ...]) -> bool:
        if cid == self.connection_id(addr):
            return True
        return cid != PROTOCOL_ID and cid == self._mac(addr, self._slot - 1)

    # ---------------------------------------------------------------------------- datagrams

    def _error(self, data: bytes, tid: int, addr: tuple[object, ...], kind: str, message: bytes) -> None:
        """BEP 15 error reply, never longer than the request (no amplification)."""
        self.core.errors[kind] += 1
        if self.transport is not None:
            self.transport.sendto(_ERR.pack(3, tid) + message[: len(data) - 8], addr)

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
        size = len(data)
        if size < 16:
            self.core.errors["udp_short"] += 1
            return
        cid, action, tid = _HDR.unpack_from(data)
        if action == 0:
            if cid != PROTOCOL_ID:
                self.core.errors["udp_bad_protocol_id"] += 1
                return
            self.transport.sendto(_CONN.pack(0, tid, self.connection_id(addr)), addr)  # type: ignore[union-attr]
            return
        if action > 2:
            self._error(data, tid, addr, "udp_bad_action", b"unknown action")
            return
        if not self.valid(cid, addr):
            self._error(data, tid, addr, "udp_bad_connection_id", b"bad connection id")
            return
        if action == 1:
            self._announce(data, tid, addr)
        else:
            self._scrape(data, tid, addr)

    def _announce(self, data: bytes, tid: int, addr: tuple[object, ...]) -> None:
        core = self.core
        if len(data) < _ANNOUNCE_SIZE:
            self._error(data, tid, addr, "udp_short", b"announce too short")
            return
        info_hash, peer_id, _down, left, _up, event, _ip, _key, numwant, port = _ANN.unpack_from(data, 16)
        if event > 3 or left > 0x7FFFFFFFFFFFFFFF:
            self._error(data, tid, addr, "malformed", b"bad announce field")
            return
        if port == 0:
            self._error(data, tid, addr, "port", b"invalid port 0")
            return
        if core.config.mode is not Mode.OPEN:
            try:
                if core.config.mode is Mode.PRIVATE:
                    raise Rejected("passkey", "private tracker: announce over HTTP")
                core.check(info_hash, None)
            except Rejected as exc:
                self._error(data, tid, addr, exc.kind, exc.reason.encode())
                return
        ip, _v6 = self._packed(addr[0])  # type: ignore[arg-type]
        peer = ip + port.to_bytes(2, "big")
        store = core.store
        want = core.numwant(numwant)
        if store.is_async:
            task = asyncio.get_running_loop().create_task(
                self._announce_async(tid, addr, info_hash, peer, peer_id, left == 0, event, want)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        seeders, leechers, peers = store.announce(info_hash, peer, peer_id, left == 0, event, want)
        core.announces["udp"] += 1
        self.transport.sendto(  # type: ignore[union-attr]
            _ANNR.pack(1, tid, core.next_interval(), leechers, seeders) + peers, addr
        )

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
                info_hash, peer, peer_id, seeder, event, want
            )
        except Exception:
            core.errors["store"] += 1
            return
        core.announces["udp"] += 1
        if self.transport is not None and not self.transport.is_closing():
            body = b"".join(p[0] for p in peers)
            self.transport.sendto(_ANNR.pack(1, tid, core.next_interval(), leechers, seeders) + body, addr)

    def _scrape(self, data: bytes, tid: int, addr: tuple[object, ...]) -> None:
        core = self.core
        body = len(data) - 16
        if body == 0 or body % 20 or body // 20 > MAX_SCRAPE_HASHES:
            self._error(data, tid, addr, "malformed", b"scrape needs 1..74 info-hashes")
            return
        hashes = [data[i : i + 20] for i in range(16, len(data), 20)]
        if core.config.mode is Mode.WHITELIST:
            try:
                for info_hash in hashes:
                    core.check(info_hash, None)
            except Rejected as exc:
                self._error(data, tid, addr, exc.kind, exc.reason.encode())
                return
        elif core.config.mode is Mode.PRIVATE:
            self._error(data, tid, addr, "passkey", b"private tracker: scrape over HTTP")
            return
        store = core.store
        if store.is_async:
            task = asyncio.get_running_loop().create_task(self._scrape_async(tid, addr, hashes))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        core.scrapes["udp"] += 1
        reply = _ERR.pack(2, tid) + b"".join(_SCR.pack(*store.scrape(h)) for h in hashes)
        self.transport.sendto(reply, addr)  # type: ignore[union-attr]

    async def _scrape_async(self, tid: int, addr: tuple[object, ...], hashes: list[bytes]) -> None:
        try:
            stats = await self.core.store.scrape_many(hashes)
        except Exception:
            self.core.errors["store"] += 1
            return
        self.core.scrapes["udp"] += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(_ERR.pack(2, tid) + b"".join(_SCR.pack(*s) for s in stats), addr)
