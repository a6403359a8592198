"""One torrent inside a session: the coordinator of its engine parts, its lifecycle and status.

:class:`TorrentRuntime` is the engine's per-torrent state; everything in it runs on the event loop.
:class:`TorrentHandle` is the small public face the library gives callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from bitswarm.errors import BitswarmError
from bitswarm.metainfo import Torrent
from bitswarm.session.announce import (
    DHT_FEW_PEERS,
    AnnounceDriver,
    DhtStatus,
    TrackerBook,
    TrackerStatus,
    dht_nodes,
    session_gate,
    waiting_reason,
)
from bitswarm.session.choker import Choker
from bitswarm.session.choking import ChokeDriver
from bitswarm.session.hash_exchange import HashDriver
from bitswarm.session.lifecycle import DISPLAY_NAME, Event, Lifecycle, State, transfer
from bitswarm.session.peer_manager import PeerManager
from bitswarm.session.picker import PiecePicker
from bitswarm.session.ratelimit import RateLimiter, RateMeter
from bitswarm.session.scheduler import RequestScheduler
from bitswarm.session.upload_cache import ReadCache
from bitswarm.session.webseed import WebSeedManager
from bitswarm.storage import Storage
from bitswarm.storage.bitfield import Bitfield as PieceSet
from bitswarm.tracker.client import AnnounceManager, TransferStats, open_tracker
from bitswarm.wire.ut_metadata import MetadataServer
from bitswarm.wire.ut_pex import PexTracker

if TYPE_CHECKING:
    from bitswarm.session.peer import PeerProtocol
    from bitswarm.session.session import Session
    from bitswarm.utp import UtpSocketManager

log = logging.getLogger("bitswarm.torrent")

#: Seconds between housekeeping ticks (timeouts, keep-alives, snubs, PEX, resume data).
HOUSEKEEPING_SECONDS = 1.0
#: One random generator for every torrent's picker and choker (2.5 KiB of state each: three per
#: torrent were 15 % of an idle torrent's memory; issue 24).
_RNG = random.Random()
#: what a torrent without a peer manager has connected and may dial: nothing (read-only, shared)
_EMPTY: Mapping[Any, Any] = MappingProxyType({})
#: the web seeds of a torrent without any (shared: nothing in it changes)
_NO_WEB_SEEDS: Final = WebSeedManager(())
#: session → the swarm hashes of its torrents that are not idle (connected to a peer, or
#: downloading): what the daemon's automation looks at every second (:func:`busy_torrents`)
_BUSY: weakref.WeakKeyDictionary[object, set[bytes]] = weakref.WeakKeyDictionary()


def busy_torrents(session: object) -> set[bytes]:
    """The swarm hashes of ``session``'s torrents connected to a peer or downloading (the others
    cost nothing per second; a torrent enters the set when a peer joins or its state changes and
    leaves it when its housekeeping finds it idle)."""
    busy = _BUSY.get(session)
    if busy is None:
        busy = _BUSY[session] = set()
    return busy


#: A torrent's state: the lifecycle table's (:mod:`bitswarm.session.lifecycle`), the one source of it.
TorrentState = State


@dataclass(frozen=True, slots=True)
class TorrentStatus:
    """A snapshot of one torrent, for progress bars, ``--json`` lines and the API."""

    name: str
    info_hash: str
    state: str  #: ``DISPLAY_NAME`` of the lifecycle state (``downloading``, ``paused``, ``error`` ...)
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
    web_seeds: int = 0  #: web seeds (BEP 19/17) answering now
    web_seed_downloaded: int = 0  #: payload bytes from web seeds (counted in ``downloaded`` too)
    #: Why a downloading torrent has no peer: each tracker's last outcome, the DHT's nodes, the peers
    #: known (``waiting: tracker X unreachable, DHT 0 nodes, 0 peers known``); None otherwise.
    waiting_reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class _Swarm:
    """The parts of a torrent that only peers (or addresses to dial) need, built together by the
    first of them (:meth:`TorrentRuntime._swarm`; issue 24)."""

    peer_manager: PeerManager
    scheduler: RequestScheduler
    choking: ChokeDriver
    read_cache: ReadCache
    metadata_server: MetadataServer


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

    #: no instance dict: ~1.2 KiB less per torrent (10,000 torrents in one daemon: issue 24)
    __slots__ = (
        "_background",
        "_busy_set",
        "_complete",
        "_control",
        "_control_users",
        "_done",
        "_down",
        "_download_limiter",
        "_hashes",
        "_last_resume_save",
        "_loops",
        "_parts",
        "_picker",
        "_piece_size",
        "_running",
        "_seed_mode",
        "_sequential",
        "_super_seed",
        "_up",
        "_upload_limiter",
        "_writes",
        "accepting",
        "announce",
        "clock",
        "closed",
        "completed_at",
        "config",
        "error",
        "info",
        "life",
        "private",
        "save_path",
        "session",
        "started_at",
        "status_version",
        "storage",
        "swarm_hash",
        "torrent",
        "tracker_book",
        "trackers",
        "web_seeds",
    )

    def __init__(
        self,
        session: Session,
        torrent: Torrent,
        save_path: str,
        *,
        resume_path: str | None,
        trackers: tuple[tuple[str, ...], ...],
        peers: list[tuple[str, int]],
        priorities: list[int] | None,
        seed_mode: bool,
        sequential: bool,
        lifecycle: Lifecycle | None = None,
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
        # A v2 or hybrid torrent built from a magnet's metadata has no BEP 52 piece layers (they are
        # not in the info dictionary): ``hashes`` fetches them from peers; a hybrid torrent's pieces
        # are verified with SHA-1 alone until its file's layer is in, then with both.
        self.storage = Storage(
            torrent,
            save_path,
            priorities=priorities,
            resume_path=resume_path,
            executor=session.disk_pool,
            max_inflight_bytes=cfg.max_inflight_write_bytes,
            verify_v2_in_hybrid=True,
            preallocate="full" if cfg.preallocate == "full" else "sparse",
        )
        #: BEP 52 hash exchange (serves hash requests, fetches the piece layers we lack): built
        #: here for a v2 or hybrid torrent (it loads saved layers at the start), with the swarm
        #: parts for a v1 one (:attr:`hashes`)
        self._hashes: HashDriver | None = None
        if torrent.info_hash_v2 is not None and self.info.meta_version == 2:
            self._hashes = HashDriver(self)
        #: THE state (shared with the daemon when it passes its own): change it only through _fire
        self.life = lifecycle if lifecycle is not None else Lifecycle()
        self.error: str | None = None
        #: bumped by every change of what a quiet torrent's status shows (state, error, super-
        #: seeding, priorities): ``TorrentHandle.status_version`` (issue 24)
        self.status_version = 0
        self.accepting = False
        self.closed = False  #: stopped: out of the session
        #: pause, resume, recheck, priorities, move and stop run one at a time (:meth:`_controlled`:
        #: the lock exists while one runs or waits)
        self._control: asyncio.Lock | None = None
        self._control_users = 0
        self._seed_mode = seed_mode
        self.trackers = trackers
        #: each tracker's last answer or error, kept across pauses (``tracker_reply``/``_error`` events)
        self.tracker_book = TrackerBook(
            trackers, emit=self._emit, open_client=functools.partial(open_tracker, proxy=cfg.proxy)
        )
        #: this torrent's rate limits: made by the first peer or limit (:attr:`download_limiter`)
        self._download_limiter: RateLimiter | None = None
        self._upload_limiter: RateLimiter | None = None
        #: payload rates and totals: made by the first byte (:attr:`down`, :attr:`up`)
        self._down: RateMeter | None = None
        self._up: RateMeter | None = None
        #: complete (or failed): what :meth:`wait_complete` waits for; its event is created by
        #: the first waiter (an asyncio.Event is ~0.8 KiB; issue 24)
        self._done = False
        self._complete: asyncio.Event | None = None
        self._busy_set = busy_torrents(session)
        #: the transfer runs (between :meth:`_start_transfer` and :meth:`_stop_transfer`)
        self._running = False
        #: the loops running now, by kind: each runs only while it has work and returns when idle
        #: (:meth:`_ensure_loops` starts them again), so an idle seed holds no task (issue 24)
        self._loops: dict[str, asyncio.Task[None]] = {}
        # dicts used as sets: an empty set is 216 bytes, an empty dict 64 (issue 24)
        # (None while empty: a dict that held a task keeps its table)
        self._background: dict[asyncio.Task[Any], None] | None = None
        self._writes: dict[asyncio.Task[Any], None] | None = None
        self._last_resume_save = 0.0
        self.started_at = self.clock.now()
        self.completed_at: float | None = None

        self._piece_size: Callable[[int], int] | None = None
        self._sequential = sequential
        #: the piece picker; None until the start loads it (:meth:`_load_picker`; a picker made here
        #: was garbage at the start of each of 10,000 restored torrents) and while every piece is
        #: here and wanted (a seed); :attr:`picker` builds it when something asks (a peer, a
        #: priority change)
        self._picker: PiecePicker | None = None
        #: this torrent's BEP 16 switch (None: the session's ``super_seed``), kept here while the
        #: scheduler is not built
        self._super_seed: bool | None = None
        # The swarm parts — peer manager (candidates, dials, peers, bans, PEX, hole punching),
        # request scheduler, choke driver, upload read cache, metadata server — are built together
        # by the first thing that needs them (an address to dial, a peer, a download: the
        # properties below, :meth:`_swarm`). An idle seed has none of them: 10,000 idle seeds in
        # one daemon (issue 24). Until then every reader sees "no peer, no candidate".
        self._parts: _Swarm | None = None
        self.web_seeds = _NO_WEB_SEEDS
        if torrent.url_list or torrent.httpseeds:
            self.web_seeds = WebSeedManager.for_torrent(
                url_list=torrent.url_list,
                httpseeds=torrent.httpseeds,
                info=self.info,
                info_hash_v1=torrent.info_hash_v1,
                scheduler=self.scheduler,
                clock=self.clock,
                limiter=self.download_limiter,
                proxy=cfg.proxy,
            )
        self.announce: AnnounceDriver | None = None
        for addr in peers:
            self.add_peer(*addr)

    # -- the parts built on first use (issue 24) ------------------------------------------------

    def _swarm(self) -> _Swarm:
        """The swarm parts: built now if they are not yet."""
        parts = self._parts
        if parts is None:
            parts = self._build_swarm()
        return parts

    def _build_swarm(self) -> _Swarm:
        """Build the peer manager, the request scheduler, the choke driver, the read cache and the
        metadata server, in the state the torrent's events so far would have left them in: no peer
        was connected and no address known before (else they were built then), so that is the
        lifecycle state's flags, the BEP 16 switch and a picker of what storage has."""
        cfg = self.config
        session = self.session
        seeding = self.state is State.SEEDING
        pm = PeerManager(
            config=cfg,
            clock=self.clock,
            our_peer_id=session.peer_id,
            own_address=self._listen_address,
            dial=self._dial,
            spawn=self._spawn,
            emit=self._emit,
            pex=PexTracker(interval=cfg.pex_interval) if cfg.enable_pex and not self.private else None,
            utp=self._utp,
            holepunch=cfg.enable_holepunch and not self.private,
            own_ip=session.own_address,
            families=self._families,
        )
        pm.wake = functools.partial(self._ensure_loop, "connect")
        pm.seeding = seeding
        hashes = self.hashes
        scheduler = RequestScheduler(
            info=self.info,
            piece_size=self.piece_size,
            picker=self.picker,
            storage=self.storage,
            peers=pm,
            config=cfg,
            clock=self.clock,
            download_limiter=self.download_limiter,
            down=self.down,
            spawn=self._spawn_write,
            on_verified=self._piece_verified,
            on_hash_failed=self._hash_failed,
            on_disk_error=self._fail,
            on_pieces_dropped=self._pieces_dropped,
        )
        if self._super_seed is not None:
            scheduler.set_super_seed(self._super_seed)
        scheduler.downloading = self.state is State.DOWNLOADING and not hashes.blocking
        scheduler.seeding = seeding
        choking = ChokeDriver(
            Choker(cfg.upload_slots, seed_slots=cfg.seed_upload_slots, rng=_RNG),
            pm,
            clock=self.clock,
            rechoke_interval=cfg.rechoke_interval,
            rng=_RNG,
        )
        choking.seeding = seeding
        plen = max(1, self.info.piece_length)
        read_cache = ReadCache(
            self.storage.read_piece, max(2, min(cfg.read_cache_pieces, cfg.read_cache_bytes // plen))
        )
        parts = self._parts = _Swarm(pm, scheduler, choking, read_cache, MetadataServer(self.info.raw))
        return parts

    @property
    def peer_manager(self) -> PeerManager:
        """Candidates, dials, peers, bans, PEX, hole punching (built on first use)."""
        return self._swarm().peer_manager

    @property
    def scheduler(self) -> RequestScheduler:
        """Requests, piece buffers, blocks, pieces (built with the peer manager)."""
        return self._swarm().scheduler

    @property
    def choking(self) -> ChokeDriver:
        """The :class:`Choker` applied to peers (built with the peer manager)."""
        return self._swarm().choking

    @property
    def read_cache(self) -> ReadCache:
        """Whole pieces for uploads (built with the peer manager)."""
        return self._swarm().read_cache

    @property
    def metadata_server(self) -> MetadataServer:
        """BEP 9: our info dictionary for peers fetching it (built with the peer manager)."""
        return self._swarm().metadata_server

    @property
    def pex(self) -> PexTracker | None:
        """BEP 11 state (None: no PEX for this torrent); asked by peers only."""
        return self._swarm().peer_manager.pex

    @property
    def hashes(self) -> HashDriver:
        """The BEP 52 hash exchange (a v1 torrent's is built when a peer needs it)."""
        hashes = self._hashes
        if hashes is None:
            hashes = self._hashes = HashDriver(self)
        return hashes

    @property
    def peers(self) -> Mapping[bytes, PeerProtocol]:
        """Connected peers by peer id (the peer manager's; empty while it is not built)."""
        parts = self._parts
        return parts.peer_manager.peers if parts is not None else _EMPTY

    @property
    def candidates(self) -> Mapping[tuple[str, int], float]:
        """The addresses we may dial, with their not-before times (empty while none came)."""
        parts = self._parts
        return parts.peer_manager.candidates if parts is not None else _EMPTY

    def known_addresses(self) -> set[tuple[str, int]]:
        parts = self._parts
        return parts.peer_manager.known_addresses() if parts is not None else set()

    @property
    def piece_size(self) -> Callable[[int], int]:
        """The size of piece ``index`` (a closure the picker and the scheduler call; made for them)."""
        size = self._piece_size
        if size is None:
            info = self.info
            size = self._piece_size = _piece_sizer(info.num_pieces, info.piece_length, info.piece_space)
        return size

    @property
    def picker(self) -> PiecePicker:
        """The piece picker; a seed's is built when something asks (:meth:`_load_picker`)."""
        picker = self._picker
        if picker is None:
            picker = self._picker = self._build_picker(self.storage.piece_priorities())
        return picker

    def _build_picker(self, priorities: list[int]) -> PiecePicker:
        picker = PiecePicker(self.info.num_pieces, self.piece_size, rng=_RNG)
        picker.sequential = self._sequential
        have = self.storage.have
        for i, prio in enumerate(priorities):
            if have.get(i):
                picker.set_have(i)
            if prio != 1:
                picker.set_priority(i, prio)
        return picker

    def _is_complete(self) -> bool:
        """Every wanted piece is verified (no picker: not started yet, or a seed of every piece)."""
        picker = self._picker
        return picker.is_complete() if picker is not None else self.storage.have.all()

    def set_sequential(self, value: bool) -> None:
        self._sequential = value
        if self._picker is not None:
            self._picker.sequential = value

    @property
    def download_limiter(self) -> RateLimiter:
        """This torrent's download limit under the session's (made on first use)."""
        limiter = self._download_limiter
        if limiter is None:
            limiter = self._download_limiter = RateLimiter(
                0, parent=self.session.download_limiter, clock=self.clock.now
            )
        return limiter

    @property
    def upload_limiter(self) -> RateLimiter:
        """This torrent's upload limit under the session's (made on first use)."""
        limiter = self._upload_limiter
        if limiter is None:
            limiter = self._upload_limiter = RateLimiter(
                0, parent=self.session.upload_limiter, clock=self.clock.now
            )
        return limiter

    def set_rate_limits(self, *, download: int | None = None, upload: int | None = None) -> None:
        """Set this torrent's limits (bytes/s, 0 = none); a limiter not made yet is made only for a
        limit (a new limiter is unlimited)."""
        if download is not None and (download or self._download_limiter is not None):
            self.download_limiter.set_rate(download)
        if upload is not None and (upload or self._upload_limiter is not None):
            self.upload_limiter.set_rate(upload)

    @property
    def super_seed(self) -> bool:
        """BEP 16 is switched on for this torrent (its own switch, else the session's)."""
        if self._parts is not None:
            return self._parts.scheduler.super_seed
        return self.config.super_seed if self._super_seed is None else self._super_seed

    @property
    def super_seeding(self) -> bool:
        """Super-seeding now: switched on and seeding every piece (what the scheduler's
        ``superseed`` holds once built; before, the same from the state)."""
        if self._parts is not None:
            return self._parts.scheduler.superseed is not None
        return self.state is State.SEEDING and self.super_seed and self.storage.have.all()

    def set_super_seed(self, value: bool | None) -> None:
        self._super_seed = value
        if self._parts is not None:
            self._parts.scheduler.set_super_seed(value)
        self.status_version += 1

    @property
    def down(self) -> RateMeter:
        """Payload received: rate and total (made by the first byte; :meth:`transferred`)."""
        meter = self._down
        if meter is None:
            meter = self._down = RateMeter(clock=self.clock.now)
        return meter

    @property
    def up(self) -> RateMeter:
        """Payload sent: rate and total (made by the first byte; :meth:`transferred`)."""
        meter = self._up
        if meter is None:
            meter = self._up = RateMeter(clock=self.clock.now)
        return meter

    def transferred(self) -> tuple[int, int]:
        """(payload bytes received, sent) this session, without making the meters."""
        down, up = self._down, self._up
        return (down.total if down is not None else 0), (up.total if up is not None else 0)

    def rates(self) -> tuple[float, float]:
        """(download, upload) payload rates, without making the meters (none: 0)."""
        down, up = self._down, self._up
        return (down.rate if down is not None else 0.0), (up.rate if up is not None else 0.0)

    @contextlib.asynccontextmanager
    async def _controlled(self) -> AsyncIterator[None]:
        """Run a control alone: the lock is made by the first control waiting and dropped by the
        last (an idle torrent holds none: issue 24)."""
        lock = self._control
        if lock is None:
            lock = self._control = asyncio.Lock()
        self._control_users += 1
        try:
            async with lock:
                yield
        finally:
            self._control_users -= 1
            if not self._control_users:
                self._control = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, keep: bool = False) -> None:
        """Run a short background job, keeping a reference so it is not garbage-collected.

        ``keep`` jobs (piece writes) are awaited, not cancelled, when the torrent stops.
        """
        task = asyncio.get_running_loop().create_task(coro)
        if keep:
            group = self._writes
            if group is None:
                group = self._writes = {}
        else:
            group = self._background
            if group is None:
                group = self._background = {}
        group[task] = None
        task.add_done_callback(functools.partial(self._forget_task, keep))

    def _forget_task(self, keep: bool, task: asyncio.Task[Any]) -> None:
        group = self._writes if keep else self._background
        if group is not None:
            group.pop(task, None)
            if not group:
                if keep:
                    self._writes = None
                else:
                    self._background = None

    def _emit(self, kind: str, **data: Any) -> None:
        self.session.publish(kind, self, **data)

    # Callbacks the parts are given: bound methods, not lambdas (a closure is ~0.2 KiB, a bound
    # method 64 bytes, and every torrent had a dozen: issue 24).

    def _listen_address(self) -> tuple[str, int]:
        return (self.config.listen_host, self.session.port)

    def _utp(self) -> UtpSocketManager | None:
        return self.session.utp

    def _families(self) -> tuple[int, ...]:
        return self.session.families

    def _own_ips(self) -> dict[int, str]:
        return self.session.own_ips

    def _advertised_port(self) -> int:
        return self.session.reachability.advertised_port

    def _have_all(self) -> bool:
        return self.storage.have.all()

    def _before_first_announce(self) -> Coroutine[Any, Any, None]:
        # a port mapping in flight: the first tracker announce waits for it (first_announce_wait)
        return self.session.reachability.before_first_announce(
            self.announce, limit=self.config.first_announce_wait
        )

    def _spawn_write(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._spawn(coro, keep=True)

    def _hash_failed(self, index: int) -> None:
        self._emit("hash_failed", index=index)

    def _pieces_dropped(self) -> None:
        self._transfer(announce=False)

    @property
    def state(self) -> State:
        return self.life.state

    def _fire(self, event: Event) -> State:
        """Apply a lifecycle event (:class:`LifecycleError` if the table refuses it) and point the
        parts at the new state: requests only while downloading, seed behaviour only while seeding."""
        state = self.life.fire(event)
        if self._parts is not None:  # else :meth:`_build_swarm` reads the state
            seeding = state is State.SEEDING
            self.scheduler.downloading = state is State.DOWNLOADING and not self.hashes.blocking
            self.scheduler.seeding = self.choking.seeding = self.peer_manager.seeding = seeding
        self.status_version += 1
        self._wake()
        return state

    @property
    def have(self) -> PieceSet:
        return self.storage.have

    async def start(
        self, progress: Callable[[int, int], None] | None = None, *, paused: bool = False
    ) -> None:
        """Open storage (resume data / recheck), then start trackers, connections and choking
        (``paused``: stop after the check, in the paused state)."""
        async with self._controlled():
            self._fire(Event.CHECK)
            try:
                if self._hashes is not None:  # BEP 52 piece layers fetched by an earlier run
                    await self._hashes.load()
                await self.storage.open(progress=progress, seed_mode=self._seed_mode)
            except BitswarmError as exc:
                self.error = str(exc)
                self._fire(Event.FAIL)
                raise
            self.save_path = self.storage.save_path  # an interrupted move was finished
            self._load_picker()
            if paused:
                self._fire(Event.PAUSE)
            else:
                self._transfer(announce=False)

    def _load_picker(self) -> None:
        """A picker for what storage has and wants (at the start, and after a recheck); none yet
        when every piece is here and wanted: a seed's picker (two arrays and a shuffled list per
        piece) is built by the first peer (:attr:`picker`; issue 24)."""
        old = self._picker
        if old is not None:
            self._sequential = old.sequential
        prios = self.storage.piece_priorities()
        if self.storage.have.all() and 0 not in prios:
            self._picker = None
            if self._parts is None:
                self._piece_size = None  # nothing calls it until the picker is built again
        else:
            self._picker = self._build_picker(prios)
        if self._parts is not None:
            self._parts.scheduler.reset(self.picker)

    def _transfer(self, *, announce: bool) -> None:
        """Download or seed, whichever the pieces say (the lifecycle's one decision), and run the
        connections, choking and announces if they are not running."""
        complete = self._is_complete()
        if complete:
            self._become_seed(announce=announce)
        else:
            if self.state is State.SEEDING:  # a file wanted again: seeds it closed are dialed again
                self._dial_candidates_now()
            self._fire(transfer(complete))
            self._set_done(False)
        if not self._running:
            self._start_transfer()

    def _start_transfer(self) -> None:
        session, cfg = self.session, self.config
        self.accepting = True
        announcer = None
        if self.trackers:
            announcer = AnnounceManager(
                self.trackers,
                info_hash=self.swarm_hash,
                peer_id=session.peer_id,
                port=session.reachability.advertised_port,  # the mapped external port, if any
                stats=self._transfer_stats,
                num_want=cfg.announce_numwant,
                client_factory=self.tracker_book.client_factory,
                ip=cfg.announce_ip,  # BEP 3 ``ip``: only when configured
                addresses=self._own_ips,
            )
            announcer.schedule.floor = cfg.min_announce_interval
        self.announce = AnnounceDriver(
            clock=self.clock,
            swarm_hash=self.swarm_hash,
            port=self._advertised_port,
            add_peer=self.add_peer,
            want_more_peers=self._wants_more_peers,
            announcer=announcer,
            dht=session.dht if not self.private else None,
            dht_interval=cfg.dht_announce_interval,
            book=self.tracker_book,
            complete=self._have_all,
            gate=session_gate(session),
            # a port mapping in flight: the first tracker announce waits for it (first_announce_wait)
            before_first=self._before_first_announce,
        )
        self._running = True
        self._ensure_loops()
        if self._parts is not None:  # else the first address builds it and wakes it
            self._ensure_loop("connect")
        if self.web_seeds.seeds:
            self._ensure_loop("webseeds")
        self.announce.start(self.info.name)

    def _ensure_loops(self) -> None:
        """Start the loops that have work now and are not running: housekeeping (it returns once
        the torrent is idle: no peer, not downloading) and, with a peer, the choke loop."""
        self._ensure_loop("housekeeping")
        if self.peers:
            self._ensure_loop("choke")

    def _ensure_loop(self, kind: str) -> None:
        if not self._running:
            return
        task = self._loops.get(kind)
        if task is not None and not task.done():
            return  # running: it looks at the new work before it returns
        if kind == "housekeeping":
            coro: Coroutine[Any, Any, None] = self._housekeeping_loop()
        elif kind == "choke":
            coro = self.choking.run()
        elif kind == "connect":
            coro = self.peer_manager.run()
        else:
            coro = self.web_seeds.run()
        task = asyncio.get_running_loop().create_task(coro, name=f"{kind}-{self.info.name}")
        self._loops[kind] = task
        task.add_done_callback(functools.partial(self._loop_done, kind))

    def _loop_done(self, kind: str, task: asyncio.Task[None]) -> None:
        if self._loops.get(kind) is task:
            del self._loops[kind]
            if not self._loops:
                self._loops = {}  # (a dict that held tasks keeps its table)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s: the %s loop failed: %r", self.info.name, kind, exc)

    async def _stop_transfer(self, reason: str) -> None:
        """Close every connection (their addresses stay candidates, to be dialed at once on resume),
        stop the loops, let verified writes land, send ``stopped`` to the trackers."""
        self.accepting = False
        self._running = False
        tasks = [*self._loops.values(), *(self._background or ())]
        self._loops = {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        parts = self._parts
        if parts is not None:
            await parts.read_cache.close()
            pm = parts.peer_manager
            for peer in pm.peers.values():  # dialable addresses: ours, or the one an incoming peer gave
                addr = peer.address if peer.outgoing else peer.pex_address
                if addr is not None:
                    pm.add(*addr)
            pm.stop()
            self._dial_candidates_now()
        if self._writes:  # pieces already downloaded: let their verified writes land
            await asyncio.wait(list(self._writes), timeout=30)
        if self.announce is not None:
            await self.announce.stop()
            self.announce = None
        self._busy_set.discard(self.swarm_hash)  # its loops are gone: nothing moves
        log.debug("%s: transfer stopped (%s)", self.info.name, reason)

    def _dial_candidates_now(self) -> None:
        if self._parts is None:
            return  # no address known
        pm = self._parts.peer_manager
        candidates = pm.candidates
        for addr in candidates:
            candidates[addr] = 0.0
        pm.dial_soon()

    def _wants_more_peers(self) -> bool:
        return self.state is State.DOWNLOADING and len(self.peers) < DHT_FEW_PEERS

    async def stop(self) -> None:
        """Disconnect every peer, send ``stopped`` to trackers, save resume data, close files."""
        async with self._controlled():
            if self.closed:
                return
            self.closed = True
            await self._stop_transfer("torrent stopped")
            await self.storage.close()
            self._fire(Event.STOP)  # an error stays an error
            self._busy_set.discard(self.swarm_hash)

    def _become_seed(self, *, announce: bool) -> None:
        if self.state is State.SEEDING:
            return
        before = self.state
        self._fire(Event.SEED)
        self._set_done(True)
        if self._parts is not None:  # (else no peer: nothing to tell)
            self.peer_manager.became_seed()
            self.choking.unchoke_free_slots()  # a seed has more slots (``seed_upload_slots``)
        if before not in (State.CHECKING, State.DOWNLOADING):
            return  # resumed or moved: it had completed before
        self.completed_at = self.clock.now()
        if self._parts is not None:
            self._parts.scheduler.drop_buffer_pool()
        self._emit("torrent_completed")
        self._spawn(self._save_resume(force=True))
        if announce and self.announce is not None:
            self.announce.completed()  # its task outlives a stop right after (it sends it first)

    def _fail(self, message: str) -> None:
        if self.state is State.ERROR:
            return
        self._fire(Event.FAIL)
        self.error = message
        self.accepting = False
        log.error("%s: %s", self.info.name, message)
        self._emit("torrent_error", error=message)
        if self._parts is not None:
            self._parts.peer_manager.close_all("torrent error")
        self._set_done(True)  # wake waiters: they check the state

    # -- control: pause, resume, recheck, priorities, move, reannounce -------------------------

    def _require_open(self) -> None:
        if self.closed:
            raise BitswarmError(f"torrent {self.info.name} is no longer in the session")

    async def pause(self) -> None:
        """Close every connection cleanly and stop announcing; peers' addresses, pieces and resume
        data are kept (the resume data is saved now). Pausing a paused torrent does nothing."""
        async with self._controlled():
            self._require_open()
            if self.state is State.PAUSED:
                return
            self._fire(Event.PAUSE)
            await self._stop_transfer("torrent paused")
            await self._save_resume(force=True)
            self._emit("torrent_paused")

    async def resume(self) -> None:
        """Download or seed again after :meth:`pause`, dialing the peers it knew at once; an
        errored torrent is rechecked first. Resuming a running torrent does nothing."""
        async with self._controlled():
            self._require_open()
            if self.state is State.ERROR:
                await self._recheck(None)
            elif self.state is State.PAUSED:
                self._transfer(announce=False)
                self._emit("torrent_resumed")

    async def recheck(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Hash every piece again (connections are closed meanwhile); a piece that fails is
        downloaded again. A paused torrent stays paused; an error is cleared."""
        async with self._controlled():
            self._require_open()
            await self._recheck(progress)

    async def _recheck(self, progress: Callable[[int, int], None] | None) -> None:
        paused = self.state is State.PAUSED
        self._fire(Event.CHECK)
        self.error = None
        await self._stop_transfer("recheck")
        try:
            await self.storage.recheck(progress)
        except BitswarmError as exc:
            self._fail(f"recheck failed: {exc}")
            return
        self._load_picker()
        await self._save_resume(force=True)
        if paused:
            self._fire(Event.PAUSE)
        else:
            self._transfer(announce=False)

    async def set_file_priorities(self, priorities: list[int]) -> None:
        """Change file priorities (one per ``info.files`` entry, 0 = skip) while running: the picker
        follows at once, a seed that wants a file again downloads, a download whose wanted pieces
        are all there seeds."""
        async with self._controlled():
            self._require_open()
            await self.storage.set_file_priorities(priorities)
            picker = self.picker
            for i, prio in enumerate(self.storage.piece_priorities()):
                if picker.priority[i] != prio:
                    picker.set_priority(i, prio)
            self.status_version += 1
            await self._save_resume(force=True)
            if self.state in (State.DOWNLOADING, State.SEEDING):
                if picker.is_complete() != (self.state is State.SEEDING):
                    self._transfer(announce=True)
                if self._parts is not None:  # (else no peer to tell)
                    self._parts.scheduler.refresh_interest()

    async def move_storage(self, new_path: str, progress: Callable[[int, int], None] | None = None) -> None:
        """Move the files below ``new_path`` (see :meth:`Storage.move`); peers stay connected,
        piece I/O waits, no new requests go out. Afterwards the torrent goes on from where it was
        (paused stays paused). A move that fails is raised; its files are moved back and the
        torrent goes on from the old place, or, if that failed too, the torrent is in error."""
        async with self._controlled():
            self._require_open()
            before = self.state
            self._fire(Event.MOVE)
            try:
                await self.storage.move(new_path, progress=progress)
            except BitswarmError as exc:
                if self.storage.move_pending:
                    self._fail(f"moving to {new_path}: {exc}")
                else:
                    self._after_move(before)
                raise
            finally:
                self.save_path = self.storage.save_path
            self._after_move(before)

    def _after_move(self, before: State) -> None:
        if self.state is not State.MOVING:
            return  # failed meanwhile (a disk error)
        if before is State.PAUSED:
            self._fire(Event.PAUSE)
        else:
            self._transfer(announce=True)

    async def force_reannounce(self) -> None:
        """Announce to the trackers now and look the torrent up on the DHT (not while paused)."""
        self._require_open()
        if self.announce is None:
            state = DISPLAY_NAME[self.state]
            raise BitswarmError(f"torrent {self.info.name} is {state}: it does not announce")
        await self.announce.reannounce()

    def _set_done(self, done: bool) -> None:
        self._done = done
        if self._complete is not None:
            if done:
                self._complete.set()
            else:
                self._complete.clear()

    async def wait_complete(self) -> None:
        if self._complete is None:
            self._complete = asyncio.Event()
            if self._done:
                self._complete.set()
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
        """Dial under the session's encryption policy (MSE first, plaintext fallback: PeerManager)."""
        await self.peer_manager.connect(addr, self.outgoing_connection, self.swarm_hash)

    def peer_joined(self, peer: PeerProtocol) -> bool:
        """A handshake completed. False (and the connection is closed) for a duplicate or a ban."""
        if not self.accepting:
            peer.close("torrent not running")
            return False
        joined = self.peer_manager.join(peer)
        if joined:
            self._wake()
            self.hashes.peer_joined(peer)
        return joined

    def peer_gone(self, peer: PeerProtocol) -> None:
        if self._parts is None:
            return  # never joined, never dialed: nothing knows it
        self.hashes.peer_gone(peer)
        if self.peer_manager.remove(peer):
            self.metadata_server.forget(peer)
            self.scheduler.peer_lost(peer)
            self.choking.peer_gone(peer)

    def _piece_verified(self, index: int, buf: bytearray) -> None:
        if not self.picker.is_complete() and self._a_peer_lacks(index):
            # peers ask for a piece right after our HAVE: serve it from memory, not a disk read
            # through the thread pool (a copy: ``buf`` goes back to the buffer pool). Not when
            # every peer has it (downloading from seeds): a copy of every byte for nobody.
            self.read_cache.put(index, bytes(buf))
        self.peer_manager.announce_have(index)
        self._emit("piece_verified", index=index)
        if self.picker.is_complete() and self.state is State.DOWNLOADING:  # not while moving
            self._become_seed(announce=True)

    def _a_peer_lacks(self, index: int) -> bool:
        """Is a connected peer (not a seed) without piece ``index``, as far as we know?"""
        for peer in self.peers.values():
            if not peer.is_seed and (peer.has is None or not peer.has.get(index)):
                return True
        return False

    def on_piece_layers_complete(self) -> None:
        """BEP 52: the last missing piece layer is in; a v2-only torrent's pieces can be verified now,
        so it starts downloading."""
        if self._parts is None:
            return  # not built: it reads the state when it is
        scheduler = self._parts.scheduler
        if self.state is State.DOWNLOADING and not scheduler.downloading:
            scheduler.downloading = True
            scheduler.refresh_interest()

    def on_uploaded(self, n: int) -> None:
        self.up.add(n)

    # -- housekeeping: timeouts, keep-alives, snubs, resume data -------------------------------

    async def _housekeeping_loop(self) -> None:
        """A tick every ``HOUSEKEEPING_SECONDS`` while there is something to keep: an idle torrent
        (no peer, not downloading) saves its resume data once, closes its files and the loop
        returns; :meth:`_wake` (a peer joins, the state changes) starts it again. 10,000 idle
        seeds cost nothing per second and hold no task and no file (issue 24)."""
        while True:
            if self._idle():
                await self._save_resume()
                if self._idle():
                    await self._release_files()
                    if self._idle():  # (not if a peer came meanwhile)
                        self._busy_set.discard(self.swarm_hash)
                        return
            await self.clock.sleep(HOUSEKEEPING_SECONDS)
            await self.housekeeping()

    def _idle(self) -> bool:
        return not self.peers and self.state is not State.DOWNLOADING

    def _wake(self) -> None:
        """Something to keep: the housekeeping and choke loops run again."""
        if not self._idle():
            self._busy_set.add(self.swarm_hash)
        self._ensure_loops()

    async def housekeeping(self) -> None:
        """One tick: drop silent peers, keep quiet links alive, hand a snubbing peer's requests to
        others, keep upload slots busy, top up requests, send PEX, save resume data when due."""
        now = self.clock.now()
        self.peer_manager.check_timeouts(now)
        self.scheduler.check_snubs(now)
        self.choking.rotate_idle_unchokes()
        self.hashes.tick()
        if self.state is State.DOWNLOADING:
            self.scheduler.fill_all()
        self.peer_manager.send_pex(now)
        if now - self._last_resume_save >= self.config.resume_save_interval:
            await self._save_resume()

    async def _release_files(self) -> None:
        """Idle: close the storage's open files (the next peer's read opens them again)."""
        try:
            await self.storage.release_files()
        except (BitswarmError, OSError) as exc:
            log.warning("could not close the files: %s", exc)

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

    def tracker_status(self) -> list[TrackerStatus]:
        nxt = self.announce.seconds_until_next() if self.announce is not None else None
        return self.tracker_book.snapshot(nxt)

    def dht_status(self) -> DhtStatus:
        if self.announce is not None:
            return self.announce.dht_status()
        dht = self.session.dht if not self.private else None
        return DhtStatus(enabled=False) if dht is None else DhtStatus(enabled=True, nodes=dht_nodes(dht))

    def _waiting_reason(self) -> str | None:
        if self.peers or self.state is not State.DOWNLOADING:
            return None
        return waiting_reason(self.tracker_status(), self.dht_status(), len(self.candidates))

    def _transfer_stats(self) -> TransferStats:
        downloaded, uploaded = self.transferred()
        return TransferStats(uploaded=uploaded, downloaded=downloaded, left=self._left())

    def _left(self) -> int:
        done = self._done_bytes(self.storage.have)
        return max(0, self.info.piece_space - done) if not self._is_complete() else 0

    def _done_bytes(self, pieces: PieceSet) -> int:
        """Bytes in ``pieces``: O(1) (every piece is ``piece_length`` long but the last)."""
        n = self.info.num_pieces
        if not n:
            return 0
        plen = self.info.piece_length
        last = self.info.piece_space - (n - 1) * plen
        return pieces.count() * plen - (plen - last if pieces.get(n - 1) else 0)

    def _wanted_done(self) -> tuple[int, int]:
        """(bytes wanted, bytes of those verified): O(1) unless some files are skipped (priority 0);
        ``status()`` runs twice a second per torrent and a per-piece loop there was ~18 % of a swarm
        leecher's CPU. No picker: every piece is here and wanted (or, before the start, every
        piece is wanted, as a new picker has it)."""
        have = self.storage.have
        if self._picker is None:
            return self.info.piece_space, self._done_bytes(have)
        prios = self._picker.priority
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
        rate, up_rate = self.rates()
        downloaded, uploaded = self.transferred()
        left = wanted - done
        eta = (left / rate) if rate > 0 and left > 0 else (0.0 if left == 0 else None)
        return TorrentStatus(
            name=info.name,
            info_hash=self.swarm_hash.hex(),
            state=DISPLAY_NAME[self.state],
            progress=(done / wanted) if wanted else 1.0,
            total_size=info.total_size,
            wanted_size=wanted,
            done_size=done,
            pieces_done=have.count(),
            num_pieces=info.num_pieces,
            download_rate=rate,
            upload_rate=up_rate,
            downloaded=downloaded,
            uploaded=uploaded,
            peers=len(self.peers),
            seeds=sum(1 for p in self.peers.values() if p.is_seed),
            known_peers=len(self.candidates),
            eta=eta,
            error=self.error,
            redundant=self._parts.scheduler.redundant if self._parts is not None else 0,
            web_seeds=self.web_seeds.connected,
            web_seed_downloaded=self.web_seeds.downloaded,
            waiting_reason=self._waiting_reason(),
        )


#: states whose status moves without a bump of ``status_version``: pieces, sizes, metadata
_MOVING_STATES: Final = frozenset({State.DOWNLOADING, State.CHECKING, State.METADATA, State.MOVING})


def _piece_sizer(num_pieces: int, piece_length: int, piece_space: int) -> Callable[[int], int]:
    """``InfoDict.piece_size`` without its per-call property work (only the last piece is short)."""
    last_index = num_pieces - 1
    last = piece_space - last_index * piece_length if num_pieces else piece_length

    def piece_size(index: int) -> int:
        return last if index == last_index else piece_length

    return piece_size


class TorrentHandle:
    """What :meth:`Session.add` returns: status, waiting, control (pause, resume, recheck, file
    priorities, moving, reannouncing), peers. Every control is one lifecycle event; one the
    torrent's state does not allow raises :class:`~bitswarm.session.lifecycle.LifecycleError`, and
    any control on a removed torrent raises :class:`~bitswarm.errors.BitswarmError`."""

    __slots__ = ("_rt",)  # one per torrent, kept by the daemon: no instance dict (issue 24)

    def __init__(self, runtime: TorrentRuntime) -> None:
        self._rt = runtime

    def __eq__(self, other: object) -> bool:
        """Two handles are equal when they are of the same torrent in the same session (added once:
        a torrent removed and added again is another one)."""
        return isinstance(other, TorrentHandle) and other._rt is self._rt

    def __hash__(self) -> int:
        return id(self._rt)

    @property
    def torrent(self) -> Torrent:
        return self._rt.torrent

    @property
    def info_hash(self) -> bytes:
        return self._rt.swarm_hash

    @property
    def name(self) -> str:
        return self._rt.info.name

    @property
    def state(self) -> State:
        """The lifecycle state (:class:`~bitswarm.session.lifecycle.State`)."""
        return self._rt.state

    @property
    def lifecycle(self) -> Lifecycle:
        return self._rt.life

    @property
    def save_path(self) -> str:
        """The directory the content is in (it changes with :meth:`move_storage`)."""
        return self._rt.save_path

    @property
    def trackers(self) -> list[list[str]]:
        """The announce tiers in use."""
        return [list(tier) for tier in self._rt.trackers]

    def tracker_status(self) -> list[TrackerStatus]:
        """Each tracker's last announce: when, the outcome (``ok`` with the peers, seeders and
        leechers it returned, or the error), the next announce. (:attr:`trackers` is the tiers.)"""
        return self._rt.tracker_status()

    def dht_status(self) -> DhtStatus:
        """The DHT's part: nodes, lookups for this torrent, the last one's time and peers found."""
        return self._rt.dht_status()

    def pieces(self) -> PieceSet:
        """A copy of the verified pieces."""
        return self._rt.storage.have.copy()

    def file_priorities(self) -> list[int]:
        """The priority of each ``info.files`` entry (0 = skipped)."""
        return self._rt.storage.priorities

    def status(self) -> TorrentStatus:
        return self._rt.status()

    def status_version(self) -> tuple[int, int, int, int] | None:
        """A cheap key of :meth:`status` while it cannot move by itself: equal keys, equal
        statuses (the daemon keeps each torrent's status and rebuilds it only when this changes;
        issue 24). The engine bumps a counter with every change of state, error, priorities or
        super-seeding; the number of known peers and the byte totals (a peer that came and went
        between two lists) change without one and are the other parts. None while the status
        moves by itself: connected to a peer, downloading, checking, moving, fetching metadata, a
        rate not settled at zero, a web seed connected."""
        rt = self._rt
        web = rt.web_seeds
        if rt.peers or rt.life.state in _MOVING_STATES or any(rt.rates()):
            return None
        if web.seeds and web.connected:
            return None
        return rt.status_version, len(rt.candidates), *rt.transferred()

    def totals(self) -> tuple[int, int, int, int]:
        """(downloaded, uploaded, wanted bytes, verified wanted bytes) without building a
        :meth:`status`: the daemon's automation reads it of every torrent (issue 24)."""
        rt = self._rt
        wanted, done = rt._wanted_done()
        return *rt.transferred(), wanted, done

    @property
    def active(self) -> bool:
        """Connected to a peer, or downloading: its counters may move now."""
        rt = self._rt
        return bool(rt.peers) or rt.state is State.DOWNLOADING

    async def wait_complete(self, timeout: float | None = None) -> None:
        """Wait until every wanted piece is verified (raises on torrent error or timeout)."""
        async with asyncio.timeout(timeout):
            await self._rt.wait_complete()
        if self._rt.state is State.ERROR:
            raise BitswarmError(self._rt.error or "torrent failed")

    async def pause(self) -> None:
        await self._rt.pause()

    async def resume(self) -> None:
        await self._rt.resume()

    async def recheck(self, progress: Callable[[int, int], None] | None = None) -> None:
        await self._rt.recheck(progress)

    async def set_file_priorities(self, priorities: list[int]) -> None:
        await self._rt.set_file_priorities(priorities)

    async def move_storage(
        self, new_path: str | os.PathLike[str], progress: Callable[[int, int], None] | None = None
    ) -> None:
        await self._rt.move_storage(os.fspath(new_path), progress)

    async def force_reannounce(self) -> None:
        await self._rt.force_reannounce()

    def add_peer(self, host: str, port: int) -> None:
        self._rt.add_peer(host, port)

    def set_rate_limits(self, *, download: int | None = None, upload: int | None = None) -> None:
        self._rt.set_rate_limits(download=download, upload=upload)

    def set_sequential(self, value: bool) -> None:
        self._rt.set_sequential(value)

    @property
    def super_seed(self) -> bool:
        """BEP 16 super-seeding is on for this torrent (it applies while every piece is here)."""
        return self._rt.super_seed

    @property
    def super_seeding(self) -> bool:
        """Super-seeding now: on, and seeding every piece."""
        return self._rt.super_seeding

    def set_super_seed(self, value: bool | None) -> None:
        """Switch BEP 16 super-seeding for this torrent at run time (None: the session's
        ``super_seed`` setting). Peers connected before it is switched on keep our bitfield; when
        it is switched off, super-seeded peers are told every piece we have."""
        self._rt.set_super_seed(value)

    def set_piece_deadline(self, index: int, deadline: float | None) -> None:
        self._rt.picker.set_deadline(index, deadline)

    def peers(self) -> list[dict[str, object]]:
        """Connected peers, then the web seeds (``transport`` ``http``)."""
        peers: list[dict[str, object]] = [
            {
                "address": f"{p.address[0]}:{p.address[1]}",
                "client": p.client,
                "seed": p.is_seed,
                "download_rate": p.download.rate,
                "upload_rate": p.upload.rate,
                "choked": p.peer_choking,
                "choking": p.am_choking,
                "transport": p.transport_kind,
                "encrypted": p.encrypted,
            }
            for p in self._rt.peers.values()
        ]
        return peers + self._rt.web_seeds.peers()

    def known_peers(self) -> list[tuple[str, int]]:
        """Every address the torrent is connected to or may dial (to keep across a restart)."""
        return sorted(self._rt.known_addresses())

    async def save_resume(self) -> None:
        await self._rt._save_resume(force=True)
