"""One torrent inside a session: the coordinator of its engine parts, its lifecycle and status.

:class:`TorrentRuntime` is the engine's per-torrent state; everything in it runs on the event loop.
:class:`TorrentHandle` is the small public face the library gives callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitswarm.errors import BitswarmError
from bitswarm.metainfo import Torrent
from bitswarm.session.announce import DHT_FEW_PEERS, AnnounceDriver
from bitswarm.session.choker import Choker
from bitswarm.session.choking import ChokeDriver
from bitswarm.session.peer_manager import PeerManager
from bitswarm.session.picker import PiecePicker
from bitswarm.session.ratelimit import RateLimiter, RateMeter
from bitswarm.session.scheduler import RequestScheduler
from bitswarm.session.upload_cache import ReadCache
from bitswarm.storage import Storage
from bitswarm.storage.bitfield import Bitfield as PieceSet
from bitswarm.tracker import Event
from bitswarm.tracker.client import AnnounceManager, TransferStats
from bitswarm.transport import connect_tcp
from bitswarm.wire.ut_metadata import MetadataServer
from bitswarm.wire.ut_pex import PexTracker

if TYPE_CHECKING:
    from bitswarm.session.peer import PeerProtocol
    from bitswarm.session.session import Session

log = logging.getLogger("bitswarm.torrent")

#: Seconds between housekeeping ticks (timeouts, keep-alives, snubs, PEX, resume data).
HOUSEKEEPING_SECONDS = 1.0


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
    """Engine state of one torrent: the coordinator of its parts, created by
    :class:`~bitswarm.session.Session`. It owns the lifecycle (start, seeding, error, stop), the
    housekeeping tick and the status; the work is done by

    * :class:`~bitswarm.session.peer_manager.PeerManager` — candidates, dials, peers, bans, PEX, HAVEs;
    * :class:`~bitswarm.session.scheduler.RequestScheduler` — requests, piece buffers, blocks, pieces;
    * :class:`~bitswarm.session.choking.ChokeDriver` — the :class:`Choker` applied to peers;
    * :class:`~bitswarm.session.upload_cache.ReadCache` — whole pieces for uploads;
    * :class:`~bitswarm.session.announce.AnnounceDriver` — trackers and the DHT.

    Every part reads time through the session's :class:`~bitswarm.session.clock.Clock`.
    """

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
        self.clock = session.clock
        cfg = self.config = session.config
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
            executor=session.disk_pool,
            max_inflight_bytes=cfg.max_inflight_write_bytes,
            verify_v2_in_hybrid=not hybrid_without_layers,
        )
        #: BEP 9: our info dictionary, served to peers that fetch it for a magnet link.
        self.metadata_server = MetadataServer(self.info.raw)
        self.state = TorrentState.CHECKING
        self.error: str | None = None
        self.accepting = False
        self._seed_mode = seed_mode
        self.trackers = trackers
        now = self.clock.now
        self.download_limiter = RateLimiter(0, parent=session.download_limiter, clock=now)
        self.upload_limiter = RateLimiter(0, parent=session.upload_limiter, clock=now)
        self.down = RateMeter(clock=now)
        self.up = RateMeter(clock=now)
        self._complete = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._writes: set[asyncio.Task[Any]] = set()
        self._last_resume_save = 0.0
        self.started_at = self.clock.now()
        self.completed_at: float | None = None

        self.piece_size = _piece_sizer(self.info.num_pieces, self.info.piece_length, self.info.piece_space)
        self.picker = PiecePicker(self.info.num_pieces, self.piece_size, rng=random.Random())
        self.picker.sequential = sequential
        self.peer_manager = PeerManager(
            config=cfg,
            clock=self.clock,
            our_peer_id=session.peer_id,
            own_address=lambda: (cfg.listen_host, session.port),
            dial=self._dial,
            spawn=self._spawn,
            emit=self._emit,
            pex=PexTracker(interval=cfg.pex_interval) if cfg.enable_pex and not self.private else None,
        )
        #: connected peers by peer id, and the addresses we may dial (the peer manager's own)
        self.peers = self.peer_manager.peers
        self.candidates = self.peer_manager.candidates
        self.pex = self.peer_manager.pex
        self.scheduler = RequestScheduler(
            info=self.info,
            piece_size=self.piece_size,
            picker=self.picker,
            storage=self.storage,
            peers=self.peer_manager,
            config=cfg,
            clock=self.clock,
            download_limiter=self.download_limiter,
            down=self.down,
            spawn=lambda coro: self._spawn(coro, keep=True),
            on_verified=self._piece_verified,
            on_hash_failed=lambda index: self._emit("hash_failed", index=index),
            on_disk_error=self._fail,
        )
        self.choking = ChokeDriver(
            Choker(cfg.upload_slots, seed_slots=cfg.seed_upload_slots),
            self.peer_manager,
            clock=self.clock,
            rechoke_interval=cfg.rechoke_interval,
        )
        plen = max(1, self.info.piece_length)
        self.read_cache = ReadCache(
            self.storage.read_piece, max(2, min(cfg.read_cache_pieces, cfg.read_cache_bytes // plen))
        )
        self.announce: AnnounceDriver | None = None
        for addr in peers:
            self.add_peer(*addr)

    # -- lifecycle -----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, keep: bool = False) -> None:
        """Run a short background job, keeping a reference so it is not garbage-collected.

        ``keep`` jobs (piece writes) are awaited, not cancelled, when the torrent stops.
        """
        task = asyncio.get_running_loop().create_task(coro)
        group = self._writes if keep else self._background
        group.add(task)
        task.add_done_callback(group.discard)

    def _emit(self, kind: str, **data: Any) -> None:
        self.session.publish(kind, self, **data)

    def _set_state(self, state: TorrentState) -> None:
        self.state = state
        seeding = state is TorrentState.SEEDING
        self.scheduler.downloading = state is TorrentState.DOWNLOADING
        self.scheduler.seeding = self.choking.seeding = seeding
        if seeding:
            self.peer_manager.seeding = True

    @property
    def have(self) -> PieceSet:
        return self.storage.have

    async def start(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Open storage (resume data / recheck), then start trackers, connections and choking."""
        try:
            await self.storage.open(progress=progress, seed_mode=self._seed_mode)
        except BitswarmError as exc:
            self._set_state(TorrentState.ERROR)
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
            self._set_state(TorrentState.DOWNLOADING)
        session, cfg = self.session, self.config
        announcer = None
        if self.trackers:
            announcer = AnnounceManager(
                self.trackers,
                info_hash=self.swarm_hash,
                peer_id=session.peer_id,
                port=session.port,
                stats=self._transfer_stats,
                num_want=cfg.announce_numwant,
            )
            announcer.schedule.floor = cfg.min_announce_interval
        self.announce = AnnounceDriver(
            clock=self.clock,
            swarm_hash=self.swarm_hash,
            port=lambda: session.port,
            add_peer=self.add_peer,
            want_more_peers=self._wants_more_peers,
            announcer=announcer,
            dht=session.dht if not self.private else None,
            dht_interval=cfg.dht_announce_interval,
        )
        loop = asyncio.get_running_loop()
        name = self.info.name
        self._tasks = [
            loop.create_task(self.peer_manager.run(), name=f"connect-{name}"),
            loop.create_task(self.choking.run(), name=f"choke-{name}"),
            loop.create_task(self._housekeeping_loop(), name=f"housekeeping-{name}"),
        ]
        self.announce.start(name)

    def _wants_more_peers(self) -> bool:
        return self.state is TorrentState.DOWNLOADING and len(self.peers) < DHT_FEW_PEERS

    async def stop(self) -> None:
        """Disconnect every peer, send ``stopped`` to trackers, save resume data, close files."""
        self.accepting = False
        for task in self._tasks + list(self._background):
            task.cancel()
        for task in self._tasks + list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.read_cache.close()
        self.peer_manager.stop()
        if self._writes:  # pieces already downloaded: let their verified writes land
            await asyncio.wait(list(self._writes), timeout=30)
        if self.announce is not None:
            await self.announce.stop()
        await self.storage.close()
        if self.state is not TorrentState.ERROR:
            self._set_state(TorrentState.STOPPED)

    def _become_seed(self, *, announce: bool) -> None:
        if self.state is TorrentState.SEEDING:
            return
        self._set_state(TorrentState.SEEDING)
        self.completed_at = self.clock.now()
        self.scheduler.drop_buffer_pool()
        self._complete.set()
        self._emit("torrent_completed")
        self.peer_manager.became_seed()
        self.choking.unchoke_free_slots()  # a seed has more slots (``seed_upload_slots``)
        self._spawn(self._save_resume(force=True))
        if announce and self.announce is not None:
            self._spawn(self.announce.announce_event(Event.COMPLETED))

    def _fail(self, message: str) -> None:
        if self.state is TorrentState.ERROR:
            return
        self._set_state(TorrentState.ERROR)
        self.error = message
        self.accepting = False
        log.error("%s: %s", self.info.name, message)
        self._emit("torrent_error", error=message)
        self.peer_manager.close_all("torrent error")
        self._complete.set()  # wake waiters: they check the state

    async def wait_complete(self) -> None:
        await self._complete.wait()

    # -- events from the parts and from peers --------------------------------------------------

    def add_peer(self, host: str, port: int) -> None:
        """Remember an address to dial (from a tracker, ``--peer``, PEX ...)."""
        self.peer_manager.add(host, port)

    def outgoing_connection(self, addr: tuple[str, int]) -> PeerProtocol:
        """A peer connection for a stream we open to ``addr`` (on any transport)."""
        from bitswarm.session.peer import PeerProtocol

        return PeerProtocol(self.session, self, outgoing=True, address=addr)

    async def _dial(self, addr: tuple[str, int]) -> None:
        """Dial over TCP (the transport a uTP-first dialer would fall back to)."""
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await connect_tcp(addr[0], addr[1], self.outgoing_connection(addr))
        except (OSError, TimeoutError) as exc:
            log.debug("dial %s:%d failed: %s", *addr, exc)

    def peer_joined(self, peer: PeerProtocol) -> bool:
        """A handshake completed. False (and the connection is closed) for a duplicate or a ban."""
        if not self.accepting:
            peer.close("torrent not running")
            return False
        return self.peer_manager.join(peer)

    def peer_gone(self, peer: PeerProtocol) -> None:
        if self.peer_manager.remove(peer):
            self.metadata_server.forget(peer)
            self.scheduler.peer_lost(peer)
            self.choking.peer_gone(peer)

    def _piece_verified(self, index: int, buf: bytearray) -> None:
        if not self.picker.is_complete():
            # peers ask for a piece right after our HAVE: serve it from memory, not a disk read
            # through the thread pool (a copy: ``buf`` goes back to the buffer pool)
            self.read_cache.put(index, bytes(buf))
        self.peer_manager.announce_have(index)
        self._emit("piece_verified", index=index)
        if self.picker.is_complete():
            self._become_seed(announce=True)

    def on_uploaded(self, n: int) -> None:
        self.up.add(n)

    # -- housekeeping: timeouts, keep-alives, snubs, resume data -------------------------------

    async def _housekeeping_loop(self) -> None:
        while True:
            await self.clock.sleep(HOUSEKEEPING_SECONDS)
            await self.housekeeping()

    async def housekeeping(self) -> None:
        """One tick: drop silent peers, keep quiet links alive, hand a snubbing peer's requests to
        others, keep upload slots busy, top up requests, send PEX, save resume data when due."""
        now = self.clock.now()
        self.peer_manager.check_timeouts(now)
        self.scheduler.check_snubs(now)
        self.choking.rotate_idle_unchokes()
        if self.state is TorrentState.DOWNLOADING:
            self.scheduler.fill_all()
        self.peer_manager.send_pex(now)
        if now - self._last_resume_save >= self.config.resume_save_interval:
            await self._save_resume()

    async def _save_resume(self, *, force: bool = False) -> None:
        self._last_resume_save = self.clock.now()
        try:
            await self.storage.save_resume(force=force)
        except BitswarmError as exc:
            log.warning("could not save resume data: %s", exc)

    # -- status --------------------------------------------------------------------------------

    @property
    def dht_lookups(self) -> int:
        return self.announce.dht_lookups if self.announce is not None else 0

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
            redundant=self.scheduler.redundant,
        )


def _piece_sizer(num_pieces: int, piece_length: int, piece_space: int) -> Callable[[int], int]:
    """``InfoDict.piece_size`` without its per-call property work (only the last piece is short)."""
    last_index = num_pieces - 1
    last = piece_space - last_index * piece_length if num_pieces else piece_length

    def piece_size(index: int) -> int:
        return last if index == last_index else piece_length

    return piece_size


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
                "transport": p.transport_kind,
            }
            for p in self._rt.peers.values()
        ]

    def known_peers(self) -> list[tuple[str, int]]:
        """Every address the torrent is connected to or may dial (to keep across a restart)."""
        return sorted(self._rt.peer_manager.known_addresses())

    async def save_resume(self) -> None:
        await self._rt._save_resume(force=True)
