"""The announce driver of one torrent: its trackers (BEP 3/15 through
:class:`~bitswarm.tracker.client.AnnounceManager`) and the DHT (BEP 5), feeding found peers to
``add_peer``. Sleeps through an injected :class:`~bitswarm.session.clock.Clock`.

:class:`TrackerBook` remembers what each tracker last answered (or why it failed) and publishes
``tracker_reply`` / ``tracker_error`` events; :func:`waiting_reason` says in one line why a torrent
has no peer ("waiting: tracker X unreachable, DHT 0 nodes, 0 peers known").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bitswarm.errors import BitswarmError
from bitswarm.tracker import Event, TrackerError, TrackerTimeout, TrackerUnreachable
from bitswarm.tracker.client import (
    AllTrackersFailed,
    AnnounceParams,
    AnnounceResult,
    ScrapeResult,
    TrackerClient,
    UdpTrackerClient,
    open_tracker,
)

if TYPE_CHECKING:
    from bitswarm.dht.server import DHTServer
    from bitswarm.session.clock import Clock, Timer
    from bitswarm.tracker.client import AnnounceManager
    from bitswarm.tracker.udp_endpoint import UdpTrackerEndpoint

log = logging.getLogger("bitswarm.torrent")

#: Below this many connected peers a downloading torrent asks the DHT again soon (not only every
#: ``dht_announce_interval``).
DHT_FEW_PEERS = 8
#: Seconds after the start before the first DHT lookup (the listen port is known by then).
DHT_FIRST_DELAY = 0.2
DHT_TIMEOUT = 60.0
#: Announces in flight to one tracker from one session (10,000 torrents starting: issue 24).
MAX_ANNOUNCES_PER_TRACKER = 32
#: The first announce of a torrent waits a random part of (torrents started in the last
#: ``ANNOUNCE_WINDOW`` s) / ``ANNOUNCE_SPREAD`` seconds (at most ``MAX_ANNOUNCE_JITTER``): a torrent
#: added alone announces at once, 10,000 starting together spread over up to 30 s.
ANNOUNCE_SPREAD = 200.0
ANNOUNCE_WINDOW = 10.0
MAX_ANNOUNCE_JITTER = 30.0
#: Seconds the ``stopped`` announces of a closing session get, all of them together (libtorrent's
#: ``stop_tracker_timeout`` is 1 s too): a tracker that does not answer in time is not waited for.
STOPPED_ANNOUNCE_TIMEOUT = 1.0


class AnnounceGate:
    """What the torrents of one session share for their announces: a limit of announces in flight
    per tracker, the spreading of first announces when many torrents start together, and the UDP
    tracker endpoint (``udp``: one socket per address family for every ``udp://`` tracker of every
    torrent, set by the session that owns and closes it; None: each client its own socket)."""

    def __init__(
        self, per_tracker: int = MAX_ANNOUNCES_PER_TRACKER, rng: random.Random | None = None
    ) -> None:
        self.per_tracker = per_tracker
        self.rng = rng or random.Random()
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._starts: collections.deque[float] = collections.deque()  #: recent first announces
        #: the session is closing: every ``stopped`` announce ends by this time (clock seconds)
        self.stop_by: float | None = None
        self._held: asyncio.Event | None = None
        self.udp: UdpTrackerEndpoint | None = None

    def hold(self) -> None:
        """First announces wait until :meth:`release` (the daemon restoring thousands of torrents
        opens them all first: their announces then spread from there, not compete with the start)."""
        if self._held is None:
            self._held = asyncio.Event()

    @property
    def held(self) -> bool:
        return self._held is not None

    def release(self) -> None:
        if self._held is not None:
            self._held.set()
            self._held = None

    async def wait_released(self) -> None:
        if self._held is not None:
            await self._held.wait()

    def slot(self, tracker: str) -> asyncio.Semaphore:
        """The semaphore of announces to ``tracker`` (a host:port or URL)."""
        sem = self._slots.get(tracker)
        if sem is None:
            sem = self._slots[tracker] = asyncio.Semaphore(self.per_tracker)
        return sem

    def first_delay(self, now: float) -> float:
        """Seconds a torrent starting at ``now`` waits before its first announce: a random part of
        (torrents started in the last ``ANNOUNCE_WINDOW`` seconds) / ``ANNOUNCE_SPREAD``."""
        starts = self._starts
        while starts and starts[0] < now - ANNOUNCE_WINDOW:
            starts.popleft()
        starts.append(now)
        spread = min(MAX_ANNOUNCE_JITTER, (len(starts) - 1) / ANNOUNCE_SPREAD)
        return self.rng.uniform(0.0, spread) if spread > 0 else 0.0


@dataclass(frozen=True, slots=True)
class TrackerStatus:
    """What one tracker of a torrent last said (:meth:`TorrentHandle.tracker_status`). Times are
    Unix seconds (wall clock, for display)."""

    url: str
    tier: int
    #: ``not contacted``, ``ok`` (the last announce was answered) or ``error``
    status: str
    last_announce: float | None = None  #: when the last announce was answered or failed
    peers: int | None = None  #: peers the last answer returned
    seeders: int | None = None  #: as the tracker reported them (None if it did not)
    leechers: int | None = None
    interval: int | None = None  #: the re-announce interval the tracker asked for
    next_announce: float | None = None  #: when the torrent announces next (None: not running)
    error: str | None = None  #: the current error (None after an answer)
    warning: str | None = None  #: the tracker's ``warning message``, if any
    announces: int = 0  #: answers received this session
    failures: int = 0  #: failed announces this session

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class DhtStatus:
    """The DHT side of a torrent's peer search."""

    enabled: bool  #: False for a private torrent (BEP 27) or a session without the DHT
    nodes: int = 0  #: nodes in the routing table(s) now
    lookups: int = 0  #: lookups run for this torrent
    last_lookup: float | None = None  #: when the last one ended (Unix seconds)
    peers_found: int | None = None  #: peers the last lookup found
    error: str | None = None  #: why the last lookup failed

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


def _error_text(exc: BaseException) -> str:
    """A tracker failure in a few words: the tracker's own ``failure reason`` as it is, else the
    kind of failure and its detail."""
    if isinstance(exc, TrackerError):
        return exc.reason or "failure"
    text = str(exc)
    url = getattr(exc, "url", "")
    if url and text.startswith(f"{url}: "):
        text = text[len(url) + 2 :]
    if isinstance(exc, TrackerTimeout):
        return f"timed out ({text})"
    if isinstance(exc, TrackerUnreachable):
        return f"unreachable ({text})"
    return f"{type(exc).__name__}: {text}"


@dataclass(slots=True)
class _Record:
    url: str
    tier: int
    status: str = "not contacted"
    last_announce: float | None = None
    result: AnnounceResult | None = None
    error: str | None = None
    announces: int = 0
    failures: int = 0
    last_exc: BaseException | None = field(default=None, repr=False)


class TrackerBook:
    """Per-tracker results of one torrent, kept across pauses. :meth:`client_factory` is given to
    the :class:`~bitswarm.tracker.client.AnnounceManager`: each client it opens reports its answers
    and failures here, and each one is published as a ``tracker_reply`` or ``tracker_error`` event
    through ``emit``."""

    __slots__ = ("_emit", "_open", "_records", "_wall", "errors_total", "udp")  # one per torrent

    def __init__(
        self,
        tiers: Sequence[Sequence[str]],
        *,
        emit: Callable[..., None],
        wall: Callable[[], float] = time.time,
        open_client: Callable[[str], TrackerClient] = open_tracker,
    ) -> None:
        self._emit = emit
        self._wall = wall
        self._open = open_client
        self._records: dict[str, _Record] = {}
        for n, tier in enumerate(tiers):
            for url in tier:
                url = url.strip()
                if url and url not in self._records:
                    self._records[url] = _Record(url, n)
        self.errors_total = 0  #: failed announces of every tracker this session (metrics)
        #: the session's shared UDP tracker endpoint (set by :class:`AnnounceDriver` from its gate):
        #: a ``udp://`` client ``open_client`` makes goes through it instead of its own socket
        self.udp: UdpTrackerEndpoint | None = None

    def client_factory(self, url: str) -> TrackerClient:
        client = self._open(url)
        if self.udp is not None and isinstance(client, UdpTrackerClient):
            client = client.with_endpoint(self.udp)  # a proxied one (no UDP at all) stays as it is
        return _RecordingClient(client, url, self)

    def _record(self, url: str) -> _Record:
        rec = self._records.get(url)
        if rec is None:
            rec = self._records[url] = _Record(url, len({r.tier for r in self._records.values()}))
        return rec

    def answered(self, url: str, result: AnnounceResult) -> None:
        rec = self._record(url)
        rec.status, rec.result, rec.error = "ok", result, None
        rec.last_announce = self._wall()
        rec.announces += 1
        rec.last_exc = None
        self._emit(
            "tracker_reply",
            url=url,
            peers=len(result.peers),
            seeders=result.seeders,
            leechers=result.leechers,
            interval=result.interval,
            warning=result.warning,
            **({"external_ip": result.external_ip} if result.external_ip else {}),  # BEP 24
        )

    def failed(self, url: str, exc: BaseException) -> None:
        """Record a failed announce (once per exception: the client and the manager may both report
        the same one)."""
        rec = self._record(url)
        if rec.last_exc is exc:
            return
        rec.last_exc = exc
        rec.status, rec.error = "error", _error_text(exc)
        rec.last_announce = self._wall()
        rec.failures += 1
        self.errors_total += 1
        self._emit("tracker_error", url=url, error=rec.error)

    def failed_all(self, exc: AllTrackersFailed) -> None:
        for url, err in exc.errors.items():
            self.failed(url, err)

    def snapshot(self, next_in: float | None) -> list[TrackerStatus]:
        """Every tracker, in tier order; ``next_in``: seconds until the next announce (None: the
        torrent does not announce now)."""
        nxt = self._wall() + next_in if next_in is not None else None
        out = []
        for rec in sorted(self._records.values(), key=lambda r: r.tier):
            res = rec.result
            out.append(
                TrackerStatus(
                    url=rec.url,
                    tier=rec.tier,
                    status=rec.status,
                    last_announce=rec.last_announce,
                    peers=len(res.peers) if res is not None else None,
                    seeders=res.seeders if res is not None else None,
                    leechers=res.leechers if res is not None else None,
                    interval=res.interval if res is not None else None,
                    next_announce=nxt,
                    error=rec.error,
                    warning=res.warning if res is not None and rec.status == "ok" else None,
                    announces=rec.announces,
                    failures=rec.failures,
                )
            )
        return out


class _RecordingClient:
    """A :class:`~bitswarm.tracker.client.TrackerClient` that reports each announce's outcome to a
    :class:`TrackerBook` (``stopped`` announces excepted: they end a session)."""

    __slots__ = ("_book", "_inner", "url")

    def __init__(self, inner: TrackerClient, url: str, book: TrackerBook) -> None:
        self._inner = inner
        self.url = url
        self._book = book

    async def announce(self, params: AnnounceParams) -> AnnounceResult:
        try:
            result = await self._inner.announce(params)
        except BitswarmError as exc:
            if params.event is not Event.STOPPED:
                self._book.failed(self.url, exc)
            raise
        if params.event is not Event.STOPPED:
            self._book.answered(self.url, result)
        return result

    async def scrape(self, info_hashes: Sequence[bytes]) -> dict[bytes, ScrapeResult]:
        return await self._inner.scrape(info_hashes)

    async def aclose(self) -> None:
        await self._inner.aclose()


def dht_nodes(dht: DHTServer) -> int:
    """Nodes in the DHT's routing tables (IPv4 and IPv6)."""
    return sum(len(table) for table in dht.node.tables.values())


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return url


def waiting_reason(trackers: Sequence[TrackerStatus], dht: DhtStatus, known_peers: int) -> str:
    """Why a torrent has no peer, in one line: each tracker's last outcome, the DHT, the peers known.
    E.g. ``waiting: tracker t.example:6969 unreachable, DHT 0 nodes, 0 peers known``."""
    parts: list[str] = []
    for t in trackers:
        if t.status == "ok":
            parts.append(f"tracker {_host(t.url)} returned {t.peers} peers")
        elif t.status == "error":
            kind = "unreachable" if t.error and t.error.startswith(("unreachable", "timed out")) else None
            parts.append(f"tracker {_host(t.url)} " + (kind or f"failed: {t.error}"))
        else:
            parts.append(f"tracker {_host(t.url)} not answered yet")
    if not trackers:
        parts.append("no trackers")
    parts.append(f"DHT {dht.nodes} nodes" if dht.enabled else "DHT off")
    parts.append(f"{known_peers} peers known")
    return "waiting: " + ", ".join(parts)


class AnnounceDriver:
    """Tracker announces and DHT lookups for one torrent, each in its own task."""

    # one per torrent: slotted (issue 24, memory at 10,000 torrents)
    __slots__ = (
        "_add_peer", "_before_first", "_complete", "_completed", "_completed_due", "_dht_now", "_name",
        "_next", "_port", "_stopped", "_tasks", "_wall", "_want_more_peers", "announcer", "book", "clock",
        "dht", "dht_error", "dht_interval", "dht_last_lookup", "dht_lookups", "dht_peers_found", "gate",
        "swarm_hash",
    )  # fmt: skip

    def __init__(
        self,
        *,
        clock: Clock,
        swarm_hash: bytes,
        port: Callable[[], int],
        add_peer: Callable[[str, int], None],
        want_more_peers: Callable[[], bool],
        announcer: AnnounceManager | None,
        dht: DHTServer | None,
        dht_interval: float,
        book: TrackerBook | None = None,
        wall: Callable[[], float] = time.time,
        complete: Callable[[], bool] | None = None,
        gate: AnnounceGate | None = None,
        before_first: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.clock = clock
        #: awaited before the first tracker announce (the session's port mapping in flight, ≤ 1 s)
        self._before_first = before_first
        #: shared by the session's torrents: announces in flight per tracker, first-announce spread
        self.gate = gate or AnnounceGate()
        #: do we hold every piece? (BEP 33: the DHT announce then says ``seed=1``)
        self._complete = complete or (lambda: False)
        self.swarm_hash = swarm_hash
        self._port = port
        self._add_peer = add_peer
        self._want_more_peers = want_more_peers
        self.announcer = announcer
        self.dht = dht
        self.dht_interval = max(0.5, dht_interval)
        self.dht_lookups = 0  #: DHT lookups/announces run (status, tests)
        self.book = book
        if book is not None and self.gate.udp is not None:
            book.udp = self.gate.udp
        self._wall = wall
        self.dht_last_lookup: float | None = None
        self.dht_peers_found: int | None = None
        self.dht_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        #: set by :meth:`reannounce`: the DHT loop runs at once (None without the DHT)
        self._dht_now = asyncio.Event() if dht is not None else None
        #: the next tracker announce, between two (no task sleeps through a tracker's interval:
        #: 10,000 idle torrents held 10,000 such tasks; issue 24)
        self._next: Timer | None = None
        self._name = ""
        #: ``completed`` is owed to the trackers (the download finished) and none acknowledged it yet:
        #: if its own announce failed, the next one carries it (BEP 3)
        self._completed_due = False
        #: the ``completed`` announce in flight (not cancelled by :meth:`stop`: waited for)
        self._completed: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        self._name = name
        if self.announcer is not None:
            self._announce_task(first=True)
        if self.dht is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._dht_loop(), name=f"dht-{name}"))

    def _announce_task(self, first: bool = False) -> None:
        self._next = None
        if self._stopped:
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._tracker_loop(first), name=f"announce-{self._name}")
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    def completed(self) -> None:
        """The download finished: announce ``completed`` now, in a task :meth:`stop` waits for
        instead of cancelling (a session closed at once after the last piece still tells the
        tracker the download completed, before its ``stopped``)."""
        if self.announcer is None or self._stopped:
            return
        self._completed_due = True
        self._send_completed()

    def _send_completed(self) -> None:
        task = self._completed
        if task is None or task.done():
            self._completed = asyncio.get_running_loop().create_task(
                self.announce_event(Event.COMPLETED), name=f"completed-{self._name}"
            )

    async def _flush_completed(self, deadline: float) -> None:
        """Wait for the ``completed`` in flight until ``deadline`` (one that failed is not sent
        again here: a dead tracker must not hold the stop; it goes with the next announce)."""
        task = self._completed
        if task is None or task.done():
            return
        done = asyncio.Event()
        task.add_done_callback(lambda _: done.set())
        if not await self.clock.wait(done, max(0.0, deadline - self.clock.now())):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def stop(self) -> None:
        """Stop the loops and send ``stopped`` to the trackers (after the ``completed`` in flight:
        both within the one deadline of ``stopped`` announces)."""
        self._stopped = True
        if self._next is not None:
            self._next.cancel()
            self._next = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        announcer = self.announcer
        if announcer is None:
            return
        stop_by = self.gate.stop_by
        if self._completed is not None and not self._completed.done():
            if stop_by is None:
                stop_by = self.clock.now() + announcer.stopped_timeout
            await self._flush_completed(stop_by)
        if stop_by is None:  # this torrent alone: the announcer's own ``stopped_timeout``
            with contextlib.suppress(Exception):
                await announcer.stop()
            return
        # The session is closing: every torrent's ``stopped`` goes out at once, and none is waited
        # for beyond the one deadline they share (10,000 torrents: seconds, not minutes; issue 24).
        with contextlib.suppress(Exception):
            await announcer.stop(timeout=max(0.0, stop_by - self.clock.now()))

    async def announce_event(self, event: Event) -> None:
        """One announce now (``completed`` when the download finishes)."""
        if self.announcer is None:
            return
        try:
            if event is Event.COMPLETED:
                await self.announcer.complete()
                self._completed_due = False
            else:
                result = await self.announcer.announce(event)
                for host, port in result.peers:
                    self._add_peer(host, port)
        except BitswarmError as exc:
            self._failed(exc)
            log.info("announce (%s) failed: %s", event.name, exc)

    async def reannounce(self, *, trackers: bool = True) -> None:
        """Announce to the trackers now (returns when one answered or all failed; not with
        ``trackers`` False) and run a DHT lookup at once (``force_reannounce``)."""
        if self._dht_now is not None:
            self._dht_now.set()
        if trackers:
            await self.announce_event(Event.NONE)

    def _failed(self, exc: BitswarmError) -> None:
        """Record the failures the clients could not (the manager's own timeout of a client)."""
        if self.book is not None and isinstance(exc, AllTrackersFailed):
            self.book.failed_all(exc)

    def seconds_until_next(self) -> float | None:
        """Seconds until the next tracker announce (None without trackers)."""
        return self.announcer.seconds_until_next() if self.announcer is not None else None

    def dht_status(self) -> DhtStatus:
        dht = self.dht
        if dht is None:
            return DhtStatus(enabled=False)
        return DhtStatus(
            enabled=True,
            nodes=dht_nodes(dht),
            lookups=self.dht_lookups,
            last_lookup=self.dht_last_lookup,
            peers_found=self.dht_peers_found,
            error=self.dht_error,
        )

    async def _tracker_loop(self, first: bool) -> None:
        """One tracker announce (the first after the start-up spread and the port mapping); the
        next one is a timer, not a task asleep."""
        announcer = self.announcer
        assert announcer is not None
        if first:
            await self.gate.wait_released()
            delay = self.gate.first_delay(self.clock.now())
            if delay > 0:
                await self.clock.sleep(delay)
            if self._before_first is not None:
                await self._before_first()  # so the first announce carries a mapped port being made
        key = _tracker_key(getattr(announcer, "tiers", None))
        try:
            async with self.gate.slot(key):
                # a ``completed`` owed (its own announce failed) goes with the next one (libtorrent)
                pending = self._completed is not None and not self._completed.done()
                owed = self._completed_due and not first and not pending
                result = (await announcer.complete() if owed else None) or await (
                    announcer.start() if first else announcer.announce()
                )
                if owed:
                    self._completed_due = False
            for host, port in result.peers:
                self._add_peer(host, port)
            if result.warning:
                log.warning("tracker %s: %s", result.url, result.warning)
        except BitswarmError as exc:
            self._failed(exc)
            log.info("announce failed: %s", exc)
        if self._stopped:
            # a cancel lost in a library's ``asyncio.wait_for`` (3.11) as the reply came: the torrent
            # is stopping, nothing follows
            return
        self._next = self.clock.call_later(max(1.0, announcer.seconds_until_next()), self._announce_task)

    async def _dht_loop(self) -> None:
        """Announce our port on the DHT and take the peers its get_peers lookup finds: soon after
        the start, then every ``dht_interval``, and every few seconds while the torrent wants more
        peers."""
        dht, now = self.dht, self._dht_now
        assert dht is not None and now is not None
        soon = min(self.dht_interval, 30.0)
        await self.clock.sleep(DHT_FIRST_DELAY)
        while True:
            self.dht_lookups += 1
            try:
                result = await dht.announce(
                    self.swarm_hash, self._port(), seed=self._complete(), timeout=DHT_TIMEOUT
                )
                for host, port in result.peers:
                    self._add_peer(host, port)
                self.dht_peers_found, self.dht_error = len(result.peers), None
            except (TimeoutError, BitswarmError, OSError) as exc:
                self.dht_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.debug("DHT announce failed: %s", exc)
            self.dht_last_lookup = self._wall()
            if self._stopped:
                return  # asyncio.wait_for (3.11) may swallow the stop's cancel when the lookup ends
            await self.clock.wait(now, soon if self._want_more_peers() else self.dht_interval)
            now.clear()


_GATES: weakref.WeakKeyDictionary[object, AnnounceGate] = weakref.WeakKeyDictionary()


def session_gate(session: object) -> AnnounceGate:
    """The :class:`AnnounceGate` of ``session`` (one per session, made when first asked for)."""
    gate = _GATES.get(session)
    if gate is None:
        gate = _GATES[session] = AnnounceGate()
    return gate


def _tracker_key(tiers: object) -> str:
    """The tracker a torrent's announces go to first (its first tier's first URL's host:port)."""
    try:
        url = str(tiers[0][0])  # type: ignore[index]
    except (IndexError, KeyError, TypeError):
        return ""
    parts = urlsplit(url)
    return parts.netloc or url
