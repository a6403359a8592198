"""One torrent inside a session: peers, picker, choker, storage, trackers, status.

:class:`TorrentRuntime` is the engine's per-torrent state; everything in it runs on the event loop.
:class:`TorrentHandle` is the small public face the library gives callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitswarm.errors import BitswarmError
from bitswarm.metainfo import Torrent
from bitswarm.session.choker import Choker, PeerRates
from bitswarm.session.picker import BLOCK_SIZE, PiecePicker
from bitswarm.session.ratelimit import RateLimiter, RateMeter
from bitswarm.session.smartban import Ban, PeerKey, SmartBan
from bitswarm.storage import Storage
from bitswarm.storage.bitfield import Bitfield as PieceSet
from bitswarm.tracker import Event
from bitswarm.tracker.client import AnnounceManager, TransferStats
from bitswarm.wire.ut_metadata import MetadataServer
from bitswarm.wire.ut_pex import (
    FLAG_REACHABLE,
    FLAG_SEED,
    PexMessage,
    PexPeer,
    PexTracker,
    encode_pex_message,
)

if TYPE_CHECKING:
    from bitswarm.session.peer import PeerProtocol
    from bitswarm.session.session import Session

log = logging.getLogger("bitswarm.torrent")

#: End-game duplicates go only to a peer with fewer blocks than this outstanding (an idle peer).
ENDGAME_IDLE_BLOCKS = 4
#: Seconds a peer that choked us (fast extension) may leave our requests unanswered before they are
#: given to other peers.
CHOKED_REQUESTS_TIMEOUT = 10.0
#: Seconds an unchoked peer may ask us for nothing before its slot goes to a choked interested peer.
IDLE_UNCHOKE_SECONDS = 2.0
#: HAVEs to peers we choke wait this long and leave together: such a peer cannot ask us for the
#: piece yet, and one HAVE per segment (plus the receiver's wake-up and ACK) was the swarm's most
#: frequent message by far.
HAVE_BATCH_SECONDS = 0.1
#: Seconds between passes of the connect loop over known addresses (retry timers, freed slots); a
#: new address wakes it at once.
CONNECT_TICK = 0.5
#: Addresses learnt from peer exchange are remembered only while fewer than this many are known.
MAX_PEX_CANDIDATES = 500
#: Below this many connected peers a downloading torrent asks the DHT again soon (not only every
#: ``dht_announce_interval``).
DHT_FEW_PEERS = 8


class TorrentState(enum.Enum):
    CHECKING = "checking"
    DOWNLOADING = "downloading"
    SEEDING = "seeding"
    PAUSED = "paused"
    ERROR = "error"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class TorrentStatus:
    """A snapshot of one torrent, for progress bars, ``--json`` lines and the API."""

    name: str
    info_hash: str
    state: str
    progress: float  #: 0..1 of the wanted bytes
    total_size: int
    wanted_size: int
    done_size: int
    pieces_done: int
    num_pieces: int
    download_rate: float
    upload_rate: float
    downloaded: int  #: payload bytes received this session
    uploaded: int  #: payload bytes sent this session
    peers: int
    seeds: int
    known_peers: int
    eta: float | None
    error: str | None = None
    #: Payload bytes received that were not needed: blocks we already had (end-game duplicates, a
    #: block still in flight when its cancel went out) or of a piece already finished (libtorrent's
    #: ``total_redundant_bytes``). Counted in ``downloaded`` too.
    redundant: int = 0

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


class TorrentRuntime:
    """Engine state of one torrent. Created and driven by :class:`~bitswarm.session.Session`."""

    def __init__(
        self,
        session: Session,
        torrent: Torrent,
        save_path: str,
        *,
        resume_path: str | None,
        trackers: list[list[str]],
        peers: list[tuple[str, int]],
        priorities: list[int] | None,
        seed_mode: bool,
        sequential: bool,
    ) -> None:
        self.session = session
        self.torrent = torrent
        self.info = torrent.info
        self.swarm_hash = torrent.swarm_hash
        self.save_path = save_path
        #: BEP 27: a private torrent gets peers from its trackers only (no DHT, PEX or LSD).
        self.private = self.info.private
        # A hybrid torrent built from a magnet's metadata has no BEP 52 piece layers (they are not in
        # the info dictionary): its pieces are verified with SHA-1 only.
        hybrid_without_layers = (
            torrent.info_hash_v1 is not None and torrent.info_hash_v2 is not None and not torrent.piece_layers
        )
        self.storage = Storage(
            torrent,
            save_path,
            priorities=priorities,
            resume_path=resume_path,
            executor=session._disk_pool,
            max_inflight_bytes=session.config.max_inflight_write_bytes,
            verify_v2_in_hybrid=not hybrid_without_layers,
        )
        #: BEP 9: our info dictionary, served to peers that fetch it for a magnet link.
        self.metadata_server = MetadataServer(self.info.raw)
        cfg0 = session.config
        #: BEP 11: what we told each peer about our other peers (None: no PEX for this torrent).
        self.pex: PexTracker | None = (
            PexTracker(interval=cfg0.pex_interval) if cfg0.enable_pex and not self.private else None
        )
        self.dht_lookups = 0  #: DHT lookups/announces run for this torrent (status, tests)
        self.state = TorrentState.CHECKING
        self.error: str | None = None
        self.accepting = False
        self._seed_mode = seed_mode
        self.piece_size = _piece_sizer(self.info.num_pieces, self.info.piece_length, self.info.piece_space)
        self.picker = PiecePicker(self.info.num_pieces, self.piece_size, rng=random.Random())
        self.picker.sequential = sequential
        self.choker = Choker(session.config.upload_slots, seed_slots=session.config.seed_upload_slots)
        self.peers: dict[bytes, PeerProtocol] = {}  # by peer id
        self.connecting: set[tuple[str, int]] = set()
        self.candidates: dict[tuple[str, int], float] = {}  # address -> not before (monotonic)
        #: set when a new address arrives: the connect loop dials it now, not at its next 0.5 s tick
        #: (a tracker reply at start-up used to wait up to half a second for its dials)
        self._new_candidates = asyncio.Event()
        #: who sent the bad data of failed pieces (bans per peer, per IP only after several)
        self.smart_ban = SmartBan()
        for addr in peers:
            self.add_peer(*addr)
        self.trackers = trackers
        self.announcer: AnnounceManager | None = None
        self.download_limiter = RateLimiter(0, parent=session.download_limiter)
        self.upload_limiter = RateLimiter(0, parent=session.upload_limiter)
        self.down = RateMeter()
        self.up = RateMeter()
        self._buffers: dict[int, bytearray] = {}
        #: finished piece buffers for reuse: a fresh 512 KiB ``bytearray`` costs a zero-fill and a
        #: page fault per 4 KiB (~15 % of the leecher's time before the pool)
        self._buffer_pool: list[bytearray] = []
        cfg = session.config
        plen = max(1, self.info.piece_length)
        self._buffer_pool_max = max(4, cfg.piece_buffer_pool_bytes // plen)
        self._read_cache_max = max(2, min(cfg.read_cache_pieces, cfg.read_cache_bytes // plen))
        self._block_src: dict[int, dict[int, PeerProtocol]] = {}
        self._read_cache: OrderedDict[int, bytes] = OrderedDict()
        self._reading: dict[int, asyncio.Task[bytes]] = {}
        self._finishing = 0  # complete pieces waiting for their hash + write
        self._disk_paused = False  # peers' reading paused until the disk catches up
        self._complete = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._writes: set[asyncio.Task[Any]] = set()
        self._last_resume_save = 0.0
        self.hash_failures = 0
        self.redundant = 0  #: see TorrentStatus.redundant
        self._have_timer: asyncio.TimerHandle | None = None
        self.started_at = time.monotonic()
        self.completed_at: float | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, keep: bool = False) -> None:
        """Run a short background job, keeping a reference so it is not garbage-collected.

        ``keep`` jobs (piece writes) are awaited, not cancelled, when the torrent stops.
        """
        task = asyncio.get_running_loop().create_task(coro)
        group = self._writes if keep else self._background
        group.add(task)
        task.add_done_callback(group.discard)

    @property
    def have(self) -> PieceSet:
        return self.storage.have

    async def start(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Open storage (resume data / recheck), then start trackers, connections and choking."""
        try:
            await self.storage.open(progress=progress, seed_mode=self._seed_mode)
        except BitswarmError as exc:
            self.state = TorrentState.ERROR
            self.error = str(exc)
            raise
        prios = self.storage.piece_priorities()
        for i in range(self.info.num_pieces):
            if self.storage.have.get(i):
                self.picker.set_have(i)
            if not prios[i]:
                self.picker.set_priority(i, 0)
        self.accepting = True
        if self.picker.is_complete():
            self._become_seed(announce=False)
        else:
            self.state = TorrentState.DOWNLOADING
        if self.trackers:
            self.announcer = AnnounceManager(
                self.trackers,
                info_hash=self.swarm_hash,
                peer_id=self.session.peer_id,
                port=self.session.port,
                stats=self._transfer_stats,
                num_want=self.session.config.announce_numwant,
            )
            self.announcer.schedule.floor = self.session.config.min_announce_interval
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._connect_loop(), name=f"connect-{self.info.name}"),
            loop.create_task(self._choke_loop(), name=f"choke-{self.info.name}"),
            loop.create_task(self._housekeeping_loop(), name=f"housekeeping-{self.info.name}"),
        ]
        if self.announcer is not None:
            self._tasks.append(loop.create_task(self._announce_loop(), name=f"announce-{self.info.name}"))
        if self.session.dht is not None and not self.private:
            self._tasks.append(loop.create_task(self._dht_loop(), name=f"dht-{self.info.name}"))

    async def stop(self) -> None:
        """Disconnect every peer, send ``stopped`` to trackers, save resume data, close files."""
        self.accepting = False
        self._stopped.set()
        if self._have_timer is not None:
            self._have_timer.cancel()
            self._have_timer = None
        for task in self._tasks + list(self._background):
            task.cancel()
        for task in self._tasks + list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for peer in list(self.peers.values()):
            peer.close("torrent stopped")
        if self._writes:  # pieces already downloaded: let their verified writes land
            await asyncio.wait(list(self._writes), timeout=30)
        if self.announcer is not None:
            with contextlib.suppress(Exception):
                await self.announcer.stop()
        await self.storage.close()
        if self.state is not TorrentState.ERROR:
            self.state = TorrentState.STOPPED

    def _transfer_stats(self) -> TransferStats:
        return TransferStats(uploaded=self.up.total, downloaded=self.down.total, left=self._left())

    def _left(self) -> int:
        done = self._done_bytes(self.storage.have)
        return max(0, self.info.piece_space - done) if not self.picker.is_complete() else 0

    def _done_bytes(self, pieces: PieceSet) -> int:
        """Bytes in ``pieces``: O(1) (every piece is ``piece_length`` long but the last)."""
        n = self.info.num_pieces
        if not n:
            return 0
        plen = self.info.piece_length
        return pieces.count() * plen - (plen - self.piece_size(n - 1) if pieces.get(n - 1) else 0)

    def _wanted_done(self) -> tuple[int, int]:
        """(bytes wanted, bytes of those verified): O(1) unless some files are skipped (priority 0);
        ``status()`` runs twice a second per torrent and a per-piece loop there was ~18 % of a swarm
        leecher's CPU."""
        prios = self.picker.priority
        have = self.storage.have
        if not prios.count(0):
            return self.info.piece_space, self._done_bytes(have)
        size = self.piece_size
        wanted = done = 0
        for i in range(len(prios)):
            if prios[i]:
                wanted += size(i)
                if have.get(i):
                    done += size(i)
        return wanted, done

    async def wait_complete(self) -> None:
        await self._complete.wait()

    # -- peers: connecting ---------------------------------------------------------------------

    def add_peer(self, host: str, port: int) -> None:
        """Remember an address to dial (from a tracker, ``--peer``, PEX ...)."""
        if not 0 < port < 65536 or (host, port) in self.candidates:
            return
        if not self.smart_ban.is_banned(host, port):
            self.candidates[(host, port)] = 0.0
            self._new_candidates.set()

    def _wanted_connections(self) -> int:
        cfg = self.session.config
        return cfg.max_peers_per_torrent - len(self.peers) - len(self.connecting)

    async def _connect_loop(self) -> None:
        cfg = self.session.config
        while True:
            budget = min(self._wanted_connections(), cfg.max_half_open - len(self.connecting))
            if budget > 0 and not (self.state is TorrentState.SEEDING and not self.candidates):
                now = time.monotonic()
                connected = {p.address for p in self.peers.values()}
                for addr, not_before in list(self.candidates.items()):
                    if budget <= 0:
                        break
                    if not_before > now or addr in self.connecting or addr in connected:
                        continue
                    if self.smart_ban.is_banned(*addr) or addr == (self._own_host(), self.session.port):
                        del self.candidates[addr]
                        continue
                    self.candidates[addr] = now + 30.0  # retry this address in 30 s at the earliest
                    self.connecting.add(addr)
                    budget -= 1
                    self._spawn(self._dial(addr))
            self._new_candidates.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_candidates.wait(), CONNECT_TICK)

    def _own_host(self) -> str:
        return self.session.config.listen_host

    async def _dial(self, addr: tuple[str, int]) -> None:
        from bitswarm.session.peer import PeerProtocol

        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.session.config.connect_timeout):
                await loop.create_connection(
                    lambda: PeerProtocol(self.session, self, outgoing=True, address=addr), addr[0], addr[1]
                )
        except (OSError, TimeoutError) as exc:
            log.debug("dial %s:%d failed: %s", *addr, exc)
        finally:
            self.connecting.discard(addr)

    # -- peers: events from PeerProtocol -------------------------------------------------------

    def peer_joined(self, peer: PeerProtocol) -> bool:
        """A handshake completed. False (and the connection is closed) for a duplicate or a ban."""
        assert peer.peer_id is not None
        if not self.accepting:
            peer.close("torrent not running")
            return False
        if self._is_banned(peer):
            peer.abort("banned")
            return False
        old = self.peers.get(peer.peer_id)
        if old is not None:
            # Two connections to one peer (both sides dialed: LSD, PEX, DHT find each other at once).
            # Both sides keep the one opened by the peer with the lower peer id, so they agree.
            keep_new = old.outgoing != peer.outgoing and (
                peer.outgoing == (self.session.peer_id < peer.peer_id)
            )
            if not keep_new:
                peer.close("duplicate connection")
                return False
            old.close("duplicate connection (the other one is kept)")
        if len(self.peers) >= self.session.config.max_peers_per_torrent:
            peer.close("too many peers")
            return False
        self.peers[peer.peer_id] = peer
        self.session._emit("peer_connected", self, address=f"{peer.address[0]}:{peer.address[1]}")
        return True

    def peer_gone(self, peer: PeerProtocol) -> None:
        if peer.peer_id is not None and self.peers.get(peer.peer_id) is peer:
            del self.peers[peer.peer_id]
            self.metadata_server.forget(peer)
            if self.pex is not None:
                self.pex.forget(peer)
            self.picker.peer_lost(peer)
            if peer.has is not None:
                if peer.is_seed:
                    self.picker.peer_has_all(-1)
                elif peer.has.any():
                    self.picker.peer_bitfield(_bits(peer.has), -1)
            if self.choker.optimistic is peer:
                self.choker.optimistic = None
            self._unchoke_free_slots()

    # -- peer exchange (BEP 11) -----------------------------------------------------------------

    def on_pex(self, peer: PeerProtocol, msg: PexMessage) -> None:
        """Addresses a peer is connected to: dial candidates (bounded; dropped ones are left alone)."""
        for p in msg.added:
            if len(self.candidates) >= MAX_PEX_CANDIDATES:
                break
            self.add_peer(p.ip, p.port)

    def _send_pex(self, now: float) -> None:
        """Give every peer that offered ``ut_pex`` the changes in our peer set (at most one message
        per ``pex_interval`` each; :class:`PexTracker` keeps the per-peer state)."""
        pex = self.pex
        if pex is None:
            return
        targets = [p for p in self.peers.values() if p.ext_ids.get("ut_pex")]
        if not targets:
            return
        connected: list[PexPeer] = []
        for p in self.peers.values():
            addr = p.pex_address
            if addr is not None:
                flags = (FLAG_REACHABLE if p.outgoing else 0) | (FLAG_SEED if p.is_seed else 0)
                connected.append(PexPeer(addr[0], addr[1], flags))
        for peer in targets:
            own = peer.pex_address
            try:
                msg = pex.next_message(peer, connected, now, exclude=[own] if own else [])
            except ValueError:  # an address that is not an IP literal: nothing to tell
                continue
            if msg is not None:
                peer.send_extended("ut_pex", encode_pex_message(msg))

    def on_bitfield(self, peer: PeerProtocol, bits: bytes) -> None:
        assert peer.has is not None
        if peer.is_seed:  # a repeated bitfield (aria2 batches its haves so) replaces the first
            peer.is_seed = False
            self.picker.peer_has_all(-1)
        elif peer.has.any():
            self.picker.peer_bitfield(_bits(peer.has), -1)
        has = PieceSet.from_bytes(bits, self.info.num_pieces)
        peer.has = has
        if has.all():
            peer.is_seed = True
            self.picker.peer_has_all()
        else:
            self.picker.peer_bitfield(_bits(has))
        self._after_pieces_known(peer)

    def on_have_all(self, peer: PeerProtocol) -> None:
        assert peer.has is not None
        peer.has.set_all()
        peer.is_seed = True
        self.picker.peer_has_all()
        self._after_pieces_known(peer)

    def on_have_none(self, peer: PeerProtocol) -> None:
        self._after_pieces_known(peer)

    def on_have(self, peer: PeerProtocol, index: int) -> None:
        has = peer.has
        assert has is not None
        if has.get(index):
            return
        has.set(index)
        if peer.is_seed:
            return
        self.picker.peer_has(index)
        if has.all():
            # a seed from now on; its per-piece counts already equal the all-pieces form that
            # leaving takes back (``peer_has_all(-1)``), so availability needs no rewrite (swapping
            # one for the other walked every piece twice, ~10 ms per peer at 2,048 pieces)
            peer.is_seed = True
        if peer.is_seed and self.state is TorrentState.SEEDING:
            peer.close("both seeds")
            return
        if self.state is not TorrentState.DOWNLOADING:
            return
        if self.storage.have.get(index) or not self.picker.priority[index]:
            return  # nothing new for us: no scan (a busy swarm sends thousands of these)
        if not peer.am_interested:
            peer.set_interested(True)
        if peer.peer_choking or peer.outstanding > peer.refill_at or peer.closed:
            return
        # request from the piece just announced only (O(1)); the regular refill scans the rest
        blocks = self.picker.pick_piece(peer, index, self._queue_target(peer) - peer.outstanding)
        if blocks:
            if index not in self._buffers:
                self._buffers[index] = self._new_buffer(self.piece_size(index))
            peer.send_requests([(b.index, b.begin, b.length) for b in blocks])

    def _after_pieces_known(self, peer: PeerProtocol) -> None:
        if self.state is TorrentState.SEEDING:
            if peer.is_seed:
                peer.close("both seeds")
            return
        assert peer.has is not None
        has = peer.has
        if self.picker.wants_mask(has.as_int()):
            peer.set_interested(True)
            self.fill_requests(peer)

    def on_interest_changed(self, peer: PeerProtocol) -> None:
        if peer.peer_interested:
            self._unchoke_free_slots()
        elif not peer.am_choking and peer is not self.choker.optimistic:
            peer.set_choking(True)
            self._unchoke_free_slots()

    def on_choked(self, peer: PeerProtocol) -> None:
        peer.choked_at = time.monotonic()
        if peer.codec.fast:
            # BEP 6: a choke no longer cancels requests: each one is still answered, by its block
            # (already on its way) or a reject, and frees its block then. Freeing them all now
            # would hand blocks in flight to other peers: duplicate transfers.
            if peer.allowed_fast:
                self.fill_requests(peer)
            return
        self.picker.peer_lost(peer)  # without it every request is gone
        peer.requested.clear()

    def on_reject(self, peer: PeerProtocol, index: int, begin: int) -> None:
        key = (index, begin)
        if key in peer.requested:  # not one we cancelled already
            peer.requested.discard(key)
            self.picker.cancel(peer, index, begin)
            if not peer.peer_choking:
                self.fill_requests(peer)

    def allowed_fast_for(self, peer: PeerProtocol) -> set[int]:
        return set()  # we do not grant allowed-fast pieces (BEP 6 makes it optional)

    # -- downloading ---------------------------------------------------------------------------

    def _queue_target(self, peer: PeerProtocol) -> int:
        cfg = self.session.config
        # about ``request_queue_seconds`` of this peer's current rate in flight: deep enough to keep a
        # fast link busy, shallow enough that end-game starts late (deep queues request everything
        # early and turn the last part of a swarm download into duplicate transfers)
        by_rate = int(peer.recent.rate * cfg.request_queue_seconds / BLOCK_SIZE)
        return max(cfg.min_queue, min(cfg.max_queue, peer.reqq, by_rate))

    def fill_requests(self, peer: PeerProtocol) -> None:
        """Top up the requests to ``peer`` (after unchoke, a block, a have ...)."""
        if peer.outstanding > peer.refill_at:
            return  # the common case, once per block: top up in batches of a quarter queue
        if peer.closed or not peer.established or self.state is not TorrentState.DOWNLOADING:
            return
        if peer.peer_choking and not peer.allowed_fast:
            return
        target = self._queue_target(peer)
        want = target - peer.outstanding
        peer.refill_at = target - target // 4
        if want <= 0 or (peer.outstanding and want < target // 4):
            return  # top up in batches: one pick per several blocks, not per block
        has = peer.has
        if has is None:
            return
        peer_has: Callable[[int], bool] = has.get
        mask: int | None = has.as_int()
        if peer.peer_choking:
            fast = peer.allowed_fast
            mask = None

            def peer_has(i: int) -> bool:
                return i in fast and has.get(i)

        blocks = self.picker.pick(
            peer,
            peer_has,
            want,
            memo=not peer.peer_choking,
            endgame_max=ENDGAME_IDLE_BLOCKS - peer.outstanding,
            peer_mask=mask,
        )
        if not blocks:
            if peer.outstanding == 0 and not self.picker.wants_mask(has.as_int()):
                peer.set_interested(False)
            return
        if not peer.am_interested:
            peer.set_interested(True)
        buffers = self._buffers
        for b in blocks:
            if b.index not in buffers:
                buffers[b.index] = self._new_buffer(self.piece_size(b.index))
        peer.send_requests([(b.index, b.begin, b.length) for b in blocks])

    def _new_buffer(self, size: int) -> bytearray:
        """A piece buffer. Recycled ones hold stale bytes: every block is received before a piece is
        hashed, so each byte is overwritten first (padding blocks too: they are requested like any)."""
        pool = self._buffer_pool
        if pool and size == self.info.piece_length:
            return pool.pop()
        return bytearray(size)

    def _recycle_buffer(self, buf: bytearray) -> None:
        if len(buf) != self.info.piece_length or len(self._buffer_pool) >= self._buffer_pool_max:
            return
        try:
            buf.append(0)  # BufferError while a view is alive (an end-game duplicate still arriving)
        except BufferError:
            return
        buf.pop()
        self._buffer_pool.append(buf)

    def block_sink_for(self, peer: PeerProtocol) -> Callable[[int, int, int], memoryview | None]:
        """Where an incoming block of ``peer`` may be received in place (the wire codec's sink)."""
        picker, buffers = self.picker, self._buffers

        def sink(index: int, begin: int, length: int) -> memoryview | None:
            buf = buffers.get(index)
            if buf is None or not picker.block_wanted(index, begin) or begin + length > len(buf):
                return None
            return memoryview(buf)[begin : begin + length]

        return sink

    def on_block(self, peer: PeerProtocol, index: int, begin: int, data: bytes | memoryview) -> None:
        n = len(data)
        peer.requested.discard((index, begin))
        peer.download.add(n)
        peer.recent.add(n)
        self.down.add(n)
        buf = self._buffers.get(index)
        result = self.picker.received(peer, index, begin) if buf is not None else None
        if result is None or buf is None or (n != BLOCK_SIZE and begin + n != len(buf)):
            if result is None:
                self.redundant += n
            if result is not None and buf is not None:
                # wrong length for this block: give it back to the picker
                self.picker.piece_failed(index)
                self._buffers[index] = bytearray(len(buf))
            self.fill_requests(peer)
            return
        if not (isinstance(data, memoryview) and data.obj is buf):
            buf[begin : begin + n] = data
        src = self._block_src.get(index)
        if src is None:
            src = self._block_src[index] = {}
        src[begin] = peer
        done, others = result
        for other in others:  # end-game duplicates still in flight elsewhere
            assert isinstance(other, type(peer))
            other.send_cancel(index, begin, n)
        if done:
            self._finishing += 1
            self._spawn(self._finish_piece(index), keep=True)
            if (
                not self._disk_paused
                and self._finishing * self.info.piece_length > self.session.config.max_inflight_write_bytes
            ):
                # back-pressure: the network is faster than hashing + writing; stop reading
                self._disk_paused = True
                for p in self.peers.values():
                    if p.transport is not None and not p.closed:
                        p.transport.pause_reading()
        self.fill_requests(peer)
        wait = self.download_limiter.take(n)
        if wait > 0.01 and peer.transport is not None:
            peer.transport.pause_reading()
            asyncio.get_running_loop().call_later(wait, _resume_reading, peer)

    async def _finish_piece(self, index: int) -> None:
        buf = self._buffers.pop(index, None)
        src = self._block_src.pop(index, {})
        try:
            if buf is None:
                return
            try:
                ok = await self.storage.write_piece(index, buf)
            except BitswarmError as exc:
                self._fail(f"disk error: {exc}")
                return
            if ok:
                self._piece_passed(index, buf, src)
            else:
                self._piece_failed(index, buf, src)
            if self.state is TorrentState.DOWNLOADING:
                self._recycle_buffer(buf)
        finally:
            self._finishing -= 1
            if (
                self._disk_paused
                and self._finishing * self.info.piece_length
                <= self.session.config.max_inflight_write_bytes // 2
            ):
                self._disk_paused = False
                for p in self.peers.values():
                    _resume_reading(p)

    def _piece_passed(self, index: int, buf: bytearray, src: dict[int, PeerProtocol]) -> None:
        self.picker.piece_passed(index)
        if not self.picker.is_complete():
            # peers ask for a piece right after our HAVE: serve it from memory, not a disk read
            # through the thread pool (a copy: ``buf`` goes back to the buffer pool)
            cache = self._read_cache
            cache[index] = bytes(buf)
            while len(cache) > self._read_cache_max:
                cache.popitem(last=False)
        if self.smart_ban.suspect_blocks(index):
            mv = memoryview(buf)
            for verdict in self.smart_ban.piece_passed(
                index, lambda begin: hashlib.sha1(mv[begin : begin + BLOCK_SIZE]).digest()
            ):
                self._ban(verdict)
        for peer in list(self.peers.values()):
            # A seed learns nothing from a HAVE (late in a swarm most peers are seeds), nor does a
            # peer that has the piece: its HAVE waits until we complete (peers tell a seed from its
            # HAVEs). On a connection we do not upload on, each HAVE is a packet of its own, and
            # the receiver's ACK another one.
            if peer.is_seed:
                continue
            has = peer.has
            if has is not None and has.get(index):
                peer.withheld_haves.append(index)
            elif peer.am_choking:
                peer.queued_haves.append(index)
                if self._have_timer is None:
                    loop = asyncio.get_running_loop()
                    self._have_timer = loop.call_later(HAVE_BATCH_SECONDS, self._flush_haves)
            else:
                peer.send_have(index)
        self.session._emit("piece_verified", self, index=index)
        if self.picker.is_complete():
            self._become_seed(announce=True)

    def _flush_haves(self) -> None:
        self._have_timer = None
        for peer in self.peers.values():
            if peer.queued_haves:
                peer.flush_haves()

    def _piece_failed(self, index: int, buf: bytearray, src: dict[int, PeerProtocol]) -> None:
        self.hash_failures += 1
        self.picker.piece_failed(index)
        log.info("piece %d failed its hash check (%d peers contributed)", index, len(set(src.values())))
        self.session._emit("hash_failed", self, index=index)
        mv = memoryview(buf)
        blocks = {
            begin: (_peer_key(peer), hashlib.sha1(mv[begin : begin + BLOCK_SIZE]).digest())
            for begin, peer in src.items()
        }
        for verdict in self.smart_ban.piece_failed(index, blocks):
            self._ban(verdict)

    def _is_banned(self, peer: PeerProtocol) -> bool:
        key = _peer_key(peer)
        return self.smart_ban.is_banned(key.ip, key.port, key.peer_id)

    def _ban(self, verdict: Ban) -> None:
        """Apply a smart-ban verdict: drop the peer's address (or every address of its IP) from the
        candidates and its connections."""
        key = verdict.peer
        if verdict.whole_ip:
            gone = [a for a in self.candidates if a[0] == key.ip]
        else:
            gone = [(key.ip, key.port)] if (key.ip, key.port) in self.candidates else []
        for addr in gone:
            del self.candidates[addr]
        scope = "ip" if verdict.whole_ip else "peer"
        self.session._emit(
            "peer_banned", self, address=key.ip, port=key.port, scope=scope, reason=verdict.reason
        )
        log.warning("banning %s %s:%d: %s", scope, key.ip, key.port, verdict.reason)
        for other in list(self.peers.values()):
            if self._is_banned(other):
                other.abort(f"banned: {verdict.reason}")

    def _become_seed(self, *, announce: bool) -> None:
        if self.state is TorrentState.SEEDING:
            return
        self.state = TorrentState.SEEDING
        self.completed_at = time.monotonic()
        self._buffer_pool.clear()
        self._complete.set()
        self.session._emit("torrent_completed", self)
        for peer in list(self.peers.values()):
            if peer.is_seed:
                peer.close("both seeds")
            else:
                peer.set_interested(False)
                peer.queued_haves.extend(peer.withheld_haves)  # one write: they go out together
                peer.withheld_haves.clear()
                peer.flush_haves()
        self._unchoke_free_slots()  # a seed has more slots (``seed_upload_slots``)
        self._spawn(self._save_resume(force=True))
        if announce and self.announcer is not None:
            self._spawn(self._announce_event(Event.COMPLETED))

    def _fail(self, message: str) -> None:
        if self.state is TorrentState.ERROR:
            return
        self.state = TorrentState.ERROR
        self.error = message
        self.accepting = False
        log.error("%s: %s", self.info.name, message)
        self.session._emit("torrent_error", self, error=message)
        for peer in list(self.peers.values()):
            peer.close("torrent error")
        self._complete.set()  # wake waiters: they check the state

    # -- uploading -----------------------------------------------------------------------------

    async def read_piece(self, index: int) -> bytes:
        """A verified piece for uploading, through a small LRU cache (whole pieces per disk read)."""
        cache = self._read_cache
        data = cache.get(index)
        if data is not None:
            cache.move_to_end(index)
            return data
        task = self._reading.get(index) or self._start_read(index)
        return await asyncio.shield(task)

    def _start_read(self, index: int) -> asyncio.Task[bytes]:
        # The read belongs to the torrent, not to the peer that asked first: a peer that goes away
        # (its upload task cancelled) must not cancel the read others wait for.
        task = asyncio.get_running_loop().create_task(self._load_piece(index))
        self._reading[index] = task
        self._background.add(task)
        task.add_done_callback(self._read_done)
        return task

    async def _load_piece(self, index: int) -> bytes:
        try:
            data = await self.storage.read_piece(index)
        finally:
            self._reading.pop(index, None)
        cache = self._read_cache
        cache[index] = data
        while len(cache) > self._read_cache_max:
            cache.popitem(last=False)
        return data

    def _read_done(self, task: asyncio.Task[bytes]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the waiters (if any) get it through their shield

    def cached_piece(self, index: int) -> bytes | None:
        """The piece if it is in the read cache (marked recently used), else None; no I/O."""
        data = self._read_cache.get(index)
        if data is not None:
            self._read_cache.move_to_end(index)
        return data

    def on_uploaded(self, n: int) -> None:
        self.up.add(n)

    # -- choking -------------------------------------------------------------------------------

    def _unchoke_free_slots(self) -> None:
        unchoked = sum(1 for p in self.peers.values() if not p.am_choking)
        slots = self.choker.slot_count(seeding=self.state is TorrentState.SEEDING)
        if unchoked >= slots:
            return
        for peer in self.peers.values():
            if unchoked >= slots:
                break
            if peer.am_choking and peer.peer_interested:
                peer.set_choking(False)
                unchoked += 1

    def _rotate_idle_unchokes(self, now: float) -> None:
        """Between rechokes, keep the uplink working: an unchoked peer that has asked us for
        nothing for ``IDLE_UNCHOKE_SECONDS`` (it is interested, but gets what we have elsewhere)
        gives its slot to a choked interested peer, one that has not just lost a slot this way
        first. Early in a swarm every slot fills at once and some uplinks idled until the rechoke."""
        waiting = [p for p in self.peers.values() if p.am_choking and p.peer_interested and not p.closed]
        if not waiting:
            return
        random.shuffle(waiting)
        waiting.sort(key=lambda p: p.idle_choked_at, reverse=True)  # pop() takes the least recent
        for peer in list(self.peers.values()):
            if not waiting:
                return
            if peer.am_choking or peer.uploads or peer is self.choker.optimistic:
                continue
            if now - max(peer.last_request, peer.unchoked_at) < IDLE_UNCHOKE_SECONDS:
                continue
            peer.set_choking(True)
            peer.idle_choked_at = now
            waiting.pop().set_choking(False)

    def rechoke(self) -> None:
        peers = list(self.peers.values())
        now = time.monotonic()
        rates = [
            PeerRates(
                key=p,
                interested=p.peer_interested,
                download_rate=p.download.rate,
                upload_rate=p.upload.rate,
                uploaded=p.upload.total,
                snubbed=p.snubbed,
                new=now - p.connected_at < 30,
            )
            for p in peers
        ]
        chosen = self.choker.rechoke(rates, seeding=self.state is TorrentState.SEEDING)
        for p in peers:
            p.set_choking(p not in chosen)

    async def _choke_loop(self) -> None:
        interval = self.session.config.rechoke_interval
        while True:
            await asyncio.sleep(interval)
            self.rechoke()

    # -- housekeeping: timeouts, keep-alives, resume data --------------------------------------

    async def _housekeeping_loop(self) -> None:
        cfg = self.session.config
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for peer in list(self.peers.values()):
                if now - peer.last_recv > cfg.inactivity_timeout:
                    peer.close("inactive")
                    continue
                if now - peer.last_send > cfg.keepalive_interval:
                    peer.send_keepalive()
                if (
                    peer.outstanding
                    and not peer.snubbed
                    and (
                        now - peer.last_block > cfg.request_timeout
                        or (peer.peer_choking and now - peer.choked_at > CHOKED_REQUESTS_TIMEOUT)
                    )
                ):
                    # silent for too long, or choked us and neither sent nor rejected our requests
                    # (BEP 6 asks for one or the other): hand its blocks to others
                    peer.snubbed = True
                    self.picker.peer_lost(peer)
                    peer.requested.clear()
            self._rotate_idle_unchokes(now)
            if self.state is TorrentState.DOWNLOADING:
                for peer in list(self.peers.values()):
                    self.fill_requests(peer)
            self._send_pex(now)
            if now - self._last_resume_save >= cfg.resume_save_interval:
                await self._save_resume()

    async def _save_resume(self, *, force: bool = False) -> None:
        self._last_resume_save = time.monotonic()
        try:
            await self.storage.save_resume(force=force)
        except BitswarmError as exc:
            log.warning("could not save resume data: %s", exc)

    # -- trackers ------------------------------------------------------------------------------

    async def _announce_event(self, event: Event) -> None:
        assert self.announcer is not None
        try:
            if event is Event.COMPLETED:
                await self.announcer.complete()
            else:
                result = await self.announcer.announce(event)
                for host, port in result.peers:
                    self.add_peer(host, port)
        except BitswarmError as exc:
            log.info("announce (%s) failed: %s", event.name, exc)

    async def _announce_loop(self) -> None:
        announcer = self.announcer
        assert announcer is not None
        first = True
        while True:
            try:
                result = await (announcer.start() if first else announcer.announce())
                first = False
                for host, port in result.peers:
                    self.add_peer(host, port)
                if result.warning:
                    log.warning("tracker %s: %s", result.url, result.warning)
            except BitswarmError as exc:
                log.info("announce failed: %s", exc)
            await asyncio.sleep(max(1.0, announcer.seconds_until_next()))

    # -- DHT (BEP 5) ---------------------------------------------------------------------------

    async def _dht_loop(self) -> None:
        """Announce our port on the DHT and take the peers its get_peers lookup finds: soon after
        the start, then every ``dht_announce_interval``, and every few seconds while downloading
        with few peers."""
        dht = self.session.dht
        assert dht is not None
        cfg = self.session.config
        interval = max(0.5, cfg.dht_announce_interval)
        soon = min(interval, 30.0)
        await asyncio.sleep(0.2)
        while True:
            self.dht_lookups += 1
            try:
                result = await dht.announce(self.swarm_hash, self.session.port, timeout=60.0)
                for host, port in result.peers:
                    self.add_peer(host, port)
            except (TimeoutError, BitswarmError, OSError) as exc:
                log.debug("DHT announce failed: %s", exc)
            if self._stopped.is_set():
                return  # asyncio.wait_for (3.11) may swallow the stop's cancel when the lookup ends
            few = self.state is TorrentState.DOWNLOADING and len(self.peers) < DHT_FEW_PEERS
            await asyncio.sleep(soon if few else interval)

    # -- status --------------------------------------------------------------------------------

    def status(self) -> TorrentStatus:
        info = self.info
        have = self.storage.have
        wanted, done = self._wanted_done()
        rate = self.down.rate
        left = wanted - done
        eta = (left / rate) if rate > 0 and left > 0 else (0.0 if left == 0 else None)
        return TorrentStatus(
            name=info.name,
            info_hash=self.swarm_hash.hex(),
            state=self.state.value,
            progress=(done / wanted) if wanted else 1.0,
            total_size=info.total_size,
            wanted_size=wanted,
            done_size=done,
            pieces_done=have.count(),
            num_pieces=info.num_pieces,
            download_rate=rate,
            upload_rate=self.up.rate,
            downloaded=self.down.total,
            uploaded=self.up.total,
            peers=len(self.peers),
            seeds=sum(1 for p in self.peers.values() if p.is_seed),
            known_peers=len(self.candidates),
            eta=eta,
            error=self.error,
            redundant=self.redundant,
        )


def _piece_sizer(num_pieces: int, piece_length: int, piece_space: int) -> Callable[[int], int]:
    """``InfoDict.piece_size`` without its per-call property work (only the last piece is short)."""
    last_index = num_pieces - 1
    last = piece_space - last_index * piece_length if num_pieces else piece_length

    def piece_size(index: int) -> int:
        return last if index == last_index else piece_length

    return piece_size


def _peer_key(peer: PeerProtocol) -> PeerKey:
    """Who a peer is for the smart ban: its IP, the port it listens on (the address we dialed, or an
    incoming peer's advertised port) and its peer id."""
    host, port = peer.pex_address or peer.address
    return PeerKey(host, port, peer.peer_id or b"")


def _bits(has: PieceSet) -> bytearray:
    out = bytearray(len(has))
    for i in has.iter_set():
        out[i] = 1
    return out


def _resume_reading(peer: PeerProtocol) -> None:
    if not peer.closed and peer.transport is not None:
        peer.transport.resume_reading()


class TorrentHandle:
    """What :meth:`Session.add` returns: status, waiting, pausing, peers, priorities."""

    def __init__(self, runtime: TorrentRuntime) -> None:
        self._rt = runtime

    @property
    def torrent(self) -> Torrent:
        return self._rt.torrent

    @property
    def info_hash(self) -> bytes:
        return self._rt.swarm_hash

    @property
    def name(self) -> str:
        return self._rt.info.name

    def status(self) -> TorrentStatus:
        return self._rt.status()

    async def wait_complete(self, timeout: float | None = None) -> None:
        """Wait until every wanted piece is verified (raises on torrent error or timeout)."""
        async with asyncio.timeout(timeout):
            await self._rt.wait_complete()
        if self._rt.state is TorrentState.ERROR:
            raise BitswarmError(self._rt.error or "torrent failed")

    def add_peer(self, host: str, port: int) -> None:
        self._rt.add_peer(host, port)

    def set_rate_limits(self, *, download: int | None = None, upload: int | None = None) -> None:
        if download is not None:
            self._rt.download_limiter.set_rate(download)
        if upload is not None:
            self._rt.upload_limiter.set_rate(upload)

    def set_sequential(self, value: bool) -> None:
        self._rt.picker.sequential = value

    def set_piece_deadline(self, index: int, deadline: float | None) -> None:
        self._rt.picker.set_deadline(index, deadline)

    def peers(self) -> list[dict[str, object]]:
        return [
            {
                "address": f"{p.address[0]}:{p.address[1]}",
                "client": p.client,
                "seed": p.is_seed,
                "download_rate": p.download.rate,
                "upload_rate": p.upload.rate,
                "choked": p.peer_choking,
                "choking": p.am_choking,
            }
            for p in self._rt.peers.values()
        ]

    async def save_resume(self) -> None:
        await self._rt._save_resume(force=True)
