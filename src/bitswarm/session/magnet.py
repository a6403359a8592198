"""Magnet links: fetch the info dictionary from peers (BEP 9) before the download starts.

:meth:`Session.add <bitswarm.session.Session.add>` runs one :class:`MetadataFetch` for a magnet link
before it creates the torrent's runtime (the design choice: a separate phase with its own small
connections, not a runtime state without info — the engine's hot path keeps assuming the info).

Peers come from the magnet's ``x.pe`` addresses and the caller's ``peers``, its ``tr`` trackers, the
session's DHT node (repeated ``get_peers`` lookups, BEP 5) and peer exchange (BEP 11) from the peers
reached. Each connection is driven by the sans-I/O wire codec: BEP 3 handshake with the extension
bit, BEP 10 extended handshake offering ``ut_metadata`` and ``ut_pex``, then BEP 9 requests for
16 KiB metadata pieces, a few outstanding per peer, spread over all peers that offer the same
``metadata_size`` (:class:`~bitswarm.wire.ut_metadata.MetadataAssembler`). The assembled dictionary
is checked against the magnet's info-hash(es); on a mismatch every peer that supplied a piece is
dropped and never asked again, and the fetch starts over. The whole phase is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bitswarm.errors import BitswarmError
from bitswarm.metainfo import Magnet
from bitswarm.tracker.client import AnnounceManager, TransferStats, open_tracker
from bitswarm.wire import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    HaveNone,
    PeerConnection,
    Port,
)
from bitswarm.wire.ut_metadata import (
    MetadataAssembler,
    MetadataComplete,
    MetadataData,
    MetadataFailed,
    MetadataReject,
    MetadataRequest,
    decode_metadata_message,
    encode_metadata_message,
)
from bitswarm.wire.ut_pex import decode_pex_message

if TYPE_CHECKING:
    from bitswarm.session.session import Session

log = logging.getLogger("bitswarm.magnet")

__all__ = ["MetadataFetch"]

#: Connections open at once while fetching metadata.
MAX_FETCH_CONNECTIONS = 12
#: Metadata requests outstanding per peer.
REQUESTS_PER_PEER = 4
#: Addresses remembered at most (from trackers, the DHT and PEX).
MAX_CANDIDATES = 1000
#: A peer that sends nothing for this long is dropped.
IDLE_TIMEOUT = 30.0


@dataclass(slots=True)
class _FetchPeer:
    """One metadata connection: its codec, the peer's ``ut_metadata`` id, bytes to write."""

    addr: tuple[str, int]
    codec: PeerConnection
    ut_metadata: int = 0  #: the peer's id for ut_metadata (0: not offered yet)
    out: list[bytes] = field(default_factory=list)


class _Dropped(Exception):
    """Close this metadata connection (a reason, not an error)."""


class MetadataFetch:
    """One magnet link's metadata phase: :meth:`run` returns the verified raw info dictionary.

    ``peers_with_metadata`` afterwards holds the addresses that offered the metadata (good first
    peers for the download).
    """

    def __init__(
        self,
        session: Session,
        magnet: Magnet,
        *,
        peers: list[tuple[str, int]],
        trackers: list[list[str]],
    ) -> None:
        self.session = session
        self.magnet = magnet
        self.info_hash = magnet.swarm_hash
        self.trackers = trackers
        self.candidates: dict[tuple[str, int], float] = {}  # address -> not before (monotonic)
        #: Addresses that supplied metadata failing the hash check: never asked again.
        self.bad: set[tuple[str, int]] = set()
        self.peers_with_metadata: list[tuple[str, int]] = []
        self.assembler: MetadataAssembler | None = None
        self._writers: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._active: set[tuple[str, int]] = set()
        self._result: asyncio.Future[bytes] | None = None
        self._wake = asyncio.Event()
        self._children: set[asyncio.Task[None]] = set()
        self._stopping = False
        for host, port in peers:
            self.add_candidate(host, port)

    def add_candidate(self, host: str, port: int) -> None:
        from bitswarm.session.peer_priority import canonical_ip, ip_family

        host = canonical_ip(host)  # one key per peer; a family the session does not speak is skipped
        if (family := ip_family(host)) is not None and family not in self.session.families:
            return
        blocklist = self.session.config.blocklist
        if blocklist is not None and blocklist.check(host):
            return
        addr = (host, port)
        if (
            0 < port < 65536
            and addr not in self.bad
            and addr not in self.candidates
            and len(self.candidates) < MAX_CANDIDATES
        ):
            self.candidates[addr] = 0.0
            self._wake.set()

    async def run(self, timeout: float) -> bytes:
        """The info dictionary, verified against the magnet's hash(es); TimeoutError after ``timeout``."""
        loop = asyncio.get_running_loop()
        self._result = loop.create_future()
        tasks = [loop.create_task(self._connect_loop())]
        if self.session.dht is not None:
            tasks.append(loop.create_task(self._dht_loop()))
        if self.trackers:
            tasks.append(loop.create_task(self._tracker_loop()))
        children = self._children
        try:
            async with asyncio.timeout(timeout):
                return await self._result
        finally:
            self._stopping = True
            for t in [*tasks, *children]:
                t.cancel()
            for w in list(self._writers.values()):
                w.close()
            for t in [*tasks, *children]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    # -- peer sources --------------------------------------------------------------------------

    async def _dht_loop(self) -> None:
        dht = self.session.dht
        assert dht is not None
        delay = 1.0
        while True:
            try:
                for host, port in await dht.lookup(self.info_hash, timeout=30.0):
                    self.add_candidate(host, port)
            except (TimeoutError, BitswarmError, OSError) as exc:
                log.debug("DHT lookup failed: %s", exc)
            if self._result is None or self._result.done() or self._stopping:
                return  # asyncio.wait_for (3.11) may swallow our cancel when the lookup ends
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _tracker_loop(self) -> None:
        announcer = AnnounceManager(
            self.trackers,
            info_hash=self.info_hash,
            peer_id=self.session.peer_id,
            port=self.session.port,
            stats=lambda: TransferStats(left=1),
            num_want=self.session.config.announce_numwant,
            client_factory=functools.partial(open_tracker, proxy=self.session.config.proxy),
        )
        announcer.schedule.floor = self.session.config.min_announce_interval
        try:
            first = True
            while True:
                try:
                    result = await (announcer.start() if first else announcer.announce())
                    first = False
                    for host, port in result.peers:
                        self.add_candidate(host, port)
                except BitswarmError as exc:
                    log.info("announce (metadata phase) failed: %s", exc)
                await asyncio.sleep(max(5.0, announcer.seconds_until_next()))
        finally:
            with contextlib.suppress(Exception):
                await announcer.aclose()

    # -- connections ---------------------------------------------------------------------------

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        own = (self.session.config.listen_host, self.session.port)
        while True:
            now = time.monotonic()
            for addr, not_before in list(self.candidates.items()):
                if len(self._active) >= MAX_FETCH_CONNECTIONS:
                    break
                if addr in self._active or not_before > now or addr == own or addr in self.bad:
                    continue
                self.candidates[addr] = now + 10.0  # retry this address in 10 s at the earliest
                self._active.add(addr)
                task = loop.create_task(self._peer(addr))
                self._children.add(task)
                task.add_done_callback(self._children.discard)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)

    async def _peer(self, addr: tuple[str, int]) -> None:
        """Fetch from one peer under the session's encryption policy: MSE first, and in plaintext
        again when the peer refuses MSE under ``prefer`` (``PeerManager.connect`` does the same)."""
        from bitswarm.session.peer_manager import dial_plan

        try:
            for attempt in dial_plan(self.session.config.encryption):
                if not await self._fetch_from(addr, mse=attempt.mse):
                    break
        finally:
            self._active.discard(addr)
            self._wake.set()

    async def _open(self, addr: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Dial ``addr`` the way a torrent's peers are dialed: over uTP first when the session has
        its socket (a uTP-only peer is reachable no other way), over TCP when uTP does not connect
        within ``utp_connect_timeout`` (see ``PeerManager.connect``)."""
        cfg = self.session.config
        utp = self.session.utp
        if cfg.proxy:  # no uTP socket while proxied (session/proxy.py)
            from bitswarm.session.proxy import open_via_proxy

            async with asyncio.timeout(cfg.connect_timeout):
                sock = await open_via_proxy(cfg.proxy, *addr, timeout=cfg.connect_timeout)
                return await asyncio.open_connection(sock=sock)
        if utp is not None:
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader(loop=loop)
            proto = asyncio.StreamReaderProtocol(reader, loop=loop)
            try:
                stream, _ = await utp.connect(addr, lambda: proto, timeout=cfg.utp_connect_timeout)
                return reader, asyncio.StreamWriter(stream, proto, reader, loop)
            except (OSError, TimeoutError) as exc:
                if "tcp" not in cfg.transports:
                    raise
                log.debug("metadata peer %s:%d: no uTP (%s), trying TCP", *addr, exc or "timeout")
        async with asyncio.timeout(cfg.connect_timeout):
            return await asyncio.open_connection(addr[0], addr[1])

    async def _fetch_from(self, addr: tuple[str, int], *, mse: bool) -> bool:
        """One connection; True if the peer refused MSE (a plaintext attempt may follow)."""
        from bitswarm.mse import EncryptionPolicy, MSEProtocolError, State, StreamCipher, skey_for
        from bitswarm.transport import initiate_mse

        cfg = self.session.config
        writer: asyncio.StreamWriter | None = None
        cipher: StreamCipher | None = None
        try:
            reader, writer = await self._open(addr)
            self._writers[addr] = writer
            conn = _FetchPeer(addr, PeerConnection())
            hello = conn.codec.send(Handshake(self.info_hash, self.session.peer_id, self.session.reserved))
            if mse:
                try:
                    async with asyncio.timeout(cfg.handshake_timeout):
                        cipher, trailing = await initiate_mse(
                            reader,
                            writer,
                            skey_for(self.info_hash),
                            policy=cfg.encryption,
                            initial_payload=hello,
                        )
                except MSEProtocolError as exc:
                    log.debug("metadata peer %s:%d: MSE failed: %s", *addr, exc)
                    return exc.state is State.AWAIT_KEY and cfg.encryption is EncryptionPolicy.PREFER
                if trailing:
                    conn.codec.receive_data(trailing)
            else:
                writer.write(hello)
            last_recv = time.monotonic()
            handshake_deadline = last_recv + cfg.handshake_timeout
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), 1.0)
                except TimeoutError:
                    data = None
                now = time.monotonic()
                if data is not None:
                    if not data:
                        raise _Dropped("closed by peer")
                    last_recv = now
                    conn.codec.receive_data(cipher.decrypt(data) if cipher is not None else data)
                elif now - last_recv > IDLE_TIMEOUT:
                    raise _Dropped("idle")
                if conn.codec.their_handshake is None and now > handshake_deadline:
                    raise _Dropped("handshake timeout")
                while (ev := conn.codec.next_event()) is not NEED_DATA:
                    self._on_event(conn, ev)  # type: ignore[arg-type]
                self._request_metadata(conn, now)
                if addr in self.bad:
                    raise _Dropped("supplied bad metadata")
                if conn.out:
                    out = b"".join(conn.out)
                    writer.write(cipher.encrypt(out) if cipher is not None else out)
                    conn.out.clear()
                    await writer.drain()
        except _Dropped as exc:
            log.debug("metadata peer %s:%d: %s", *addr, exc)
        except (OSError, TimeoutError, BitswarmError) as exc:
            log.debug("metadata peer %s:%d failed: %s", *addr, exc)
        finally:
            self._writers.pop(addr, None)
            if self.assembler is not None:
                self.assembler.drop_peer(addr)
            if writer is not None:
                writer.close()
        return False

    def _on_event(self, conn: _FetchPeer, ev: Event) -> None:
        from bitswarm.session.peer import UT_METADATA_ID, UT_PEX_ID

        if isinstance(ev, Handshake):
            self._on_handshake(conn, ev)
        elif isinstance(ev, ExtendedHandshake):
            self._on_extended_handshake(conn, ev)
        elif isinstance(ev, Extended) and ev.ext_id == UT_METADATA_ID:
            self._on_metadata(conn.addr, ev.payload, conn.ut_metadata, conn.codec, conn.out)
        elif isinstance(ev, Extended) and ev.ext_id == UT_PEX_ID:
            for p in decode_pex_message(ev.payload).added:
                self.add_candidate(p.ip, p.port)
        elif isinstance(ev, Port):
            self.session.on_dht_port(conn.addr[0], ev.port)
        elif isinstance(ev, ConnectionClosed):
            raise _Dropped("closed by peer")

    def _on_handshake(self, conn: _FetchPeer, ev: Handshake) -> None:
        from bitswarm.session.peer import UT_METADATA_ID, UT_PEX_ID

        codec = conn.codec
        if ev.info_hash != self.info_hash:
            raise _Dropped("another info-hash")
        if ev.peer_id == self.session.peer_id:
            raise _Dropped("ourselves")
        if not codec.extension_protocol:
            raise _Dropped("no extension protocol (BEP 10): cannot send metadata")
        m = {"ut_metadata": UT_METADATA_ID, "ut_pex": UT_PEX_ID}
        agent = self.session.config.user_agent
        conn.out.append(codec.send(ExtendedHandshake(m=m, client=agent, port=self.session.port)))
        if codec.fast:
            conn.out.append(codec.send(HaveNone()))
        dht_port = self.session.dht_port
        if ev.reserved.dht and dht_port:
            conn.out.append(codec.send(Port(dht_port)))

    def _on_extended_handshake(self, conn: _FetchPeer, ev: ExtendedHandshake) -> None:
        conn.ut_metadata = ev.m.get("ut_metadata", 0)
        if not conn.ut_metadata or not ev.metadata_size:
            raise _Dropped("peer does not offer ut_metadata")
        if self.assembler is None:
            self.assembler = MetadataAssembler(
                self.magnet.info_hash_v1, self.magnet.info_hash_v2, ev.metadata_size
            )
        elif ev.metadata_size != self.assembler.metadata_size:
            raise _Dropped("metadata_size differs from the other peers'")
        if conn.addr not in self.peers_with_metadata:
            self.peers_with_metadata.append(conn.addr)

    def _request_metadata(self, conn: _FetchPeer, now: float) -> None:
        """Keep ``REQUESTS_PER_PEER`` metadata pieces requested from a peer that offers them."""
        asm = self.assembler
        if not conn.ut_metadata or asm is None or conn.addr in self.bad:
            return
        while len(asm.outstanding(conn.addr)) < REQUESTS_PER_PEER:
            piece = asm.next_request(conn.addr, now)
            if piece is None:
                break
            payload = encode_metadata_message(MetadataRequest(piece))
            conn.out.append(conn.codec.send(Extended(conn.ut_metadata, payload)))

    def _on_metadata(
        self, addr: tuple[str, int], payload: bytes, reply_id: int, codec: PeerConnection, out: list[bytes]
    ) -> None:
        msg = decode_metadata_message(payload)
        asm = self.assembler
        if isinstance(msg, MetadataRequest):
            if reply_id:  # we have no metadata yet
                out.append(codec.send(Extended(reply_id, encode_metadata_message(MetadataReject(msg.piece)))))
            return
        if asm is None:
            return
        if isinstance(msg, MetadataReject):
            asm.reject(addr, msg.piece)
            return
        if not isinstance(msg, MetadataData):
            return  # BEP 9: unknown message types are ignored
        if msg.total_size != asm.metadata_size:
            raise _Dropped("total_size differs from metadata_size")
        result = asm.receive(addr, msg.piece, msg.data)
        if isinstance(result, MetadataComplete):
            if self._result is not None and not self._result.done():
                self._result.set_result(result.raw_info)
        elif isinstance(result, MetadataFailed):
            for bad in result.peers:
                assert isinstance(bad, tuple)
                log.warning("metadata from %s:%d failed the info-hash check: dropping its sender(s)", *bad)
                self.bad.add(bad)
                self.candidates.pop(bad, None)
                w = self._writers.get(bad)
                if w is not None:
                    w.close()
