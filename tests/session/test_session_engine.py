"""Engine parts driven by a ManualClock, without sockets: the peer manager's dials, retries and
timeouts, the HAVE batching, the choke driver's idle-slot rotation, the scheduler's back-pressure
and download limit, the clock itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest

from bitswarm.session import SessionConfig
from bitswarm.session.choker import Choker
from bitswarm.session.choking import IDLE_UNCHOKE_SECONDS, ChokeDriver
from bitswarm.session.clock import ManualClock
from bitswarm.session.peer_manager import CONNECT_TICK, HAVE_BATCH_SECONDS, REDIAL_SECONDS, PeerManager
from bitswarm.session.picker import BLOCK_SIZE, PiecePicker
from bitswarm.session.ratelimit import RateLimiter, RateMeter, WindowMeter
from bitswarm.session.scheduler import RequestScheduler
from bitswarm.storage import StorageError
from bitswarm.storage.bitfield import Bitfield as PieceSet


class FakePeer:
    """The attributes of a PeerProtocol the drivers read, and the calls they make."""

    def __init__(self, name: str, *, interested: bool = True, choking: bool = True) -> None:
        self.name = name
        self.peer_id = name.encode().ljust(20, b"-")
        self.address = ("10.0.0.9", 6881)
        self.outgoing = True
        self.am_choking = choking
        self.peer_interested = interested
        self.closed = False
        self.uploads: list[object] = []
        self.last_request = 0.0
        self.unchoked_at = 0.0
        self.idle_choked_at = 0.0
        self.is_seed = False
        self.has = None
        self.queued_haves: list[int] = []
        self.withheld_haves: list[int] = []
        self.sent_haves: list[list[int]] = []
        self.last_recv = self.last_send = 0.0
        self.keepalives = 0
        self.closed_for = ""

    def set_choking(self, value: bool) -> None:
        self.am_choking = value

    def close(self, reason: str = "") -> None:
        self.closed, self.closed_for = True, reason

    def send_keepalive(self) -> None:
        self.keepalives += 1

    def send_have(self, index: int) -> None:
        self.sent_haves.append([index])

    def flush_haves(self) -> None:
        self.sent_haves.append(list(self.queued_haves))
        self.queued_haves.clear()


_tasks: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def manager(clock: ManualClock, dials: list[tuple[float, tuple[str, int]]]) -> PeerManager:
    async def dial(addr: tuple[str, int]) -> None:
        dials.append((clock.now(), addr))

    return PeerManager(
        config=SessionConfig(),
        clock=clock,
        our_peer_id=b"us".ljust(20, b"-"),
        own_address=lambda: ("127.0.0.1", 6881),
        dial=dial,
        spawn=spawn,
        emit=lambda kind, **data: None,
        pex=None,
    )


async def test_a_new_address_is_dialed_at_once_and_redialed_only_after_the_retry_time() -> None:
    clock = ManualClock()
    dials: list[tuple[float, tuple[str, int]]] = []
    pm = manager(clock, dials)
    loops: list[asyncio.Future[None]] = []
    pm.wake = lambda: loops.append(asyncio.ensure_future(pm.run()))  # as the torrent does
    try:
        await clock.advance(0)
        pm.add("10.0.0.1", 6881)
        pm.add("127.0.0.1", 6881)  # our own address: dropped, never dialed
        await clock.advance(0)
        assert dials == [(1000.0, ("10.0.0.1", 6881))]
        await clock.advance(REDIAL_SECONDS - CONNECT_TICK)
        assert len(dials) == 1
        await clock.advance(CONNECT_TICK)
        assert [addr for _, addr in dials] == [("10.0.0.1", 6881)] * 2
        assert dials[1][0] == 1000.0 + REDIAL_SECONDS
        assert ("127.0.0.1", 6881) not in pm.candidates
    finally:
        for task in loops:
            task.cancel()


async def test_haves_to_choked_peers_leave_together_after_the_batch_time() -> None:
    clock = ManualClock()
    pm = manager(clock, [])
    choked, unchoked = FakePeer("choked"), FakePeer("unchoked", choking=False)
    pm.peers.update({choked.peer_id: choked, unchoked.peer_id: unchoked})  # type: ignore[dict-item]
    pm.announce_have(1)
    pm.announce_have(2)
    assert unchoked.sent_haves == [[1], [2]] and choked.sent_haves == []
    await clock.advance(HAVE_BATCH_SECONDS / 2)
    assert choked.sent_haves == []
    await clock.advance(HAVE_BATCH_SECONDS / 2 + 1e-6)
    assert choked.sent_haves == [[1, 2]]


async def test_an_idle_unchoked_peer_gives_its_slot_to_a_waiting_one() -> None:
    clock = ManualClock()
    pm = manager(clock, [])
    idle, waiting = FakePeer("idle", choking=False), FakePeer("waiting")
    idle.unchoked_at = clock.now()
    pm.peers.update({idle.peer_id: idle, waiting.peer_id: waiting})  # type: ignore[dict-item]
    driver = ChokeDriver(Choker(1), pm, clock=clock, rechoke_interval=10.0)
    await clock.advance(IDLE_UNCHOKE_SECONDS - 0.1)
    driver.rotate_idle_unchokes()
    assert not idle.am_choking and waiting.am_choking
    await clock.advance(0.1)
    driver.rotate_idle_unchokes()
    assert idle.am_choking and not waiting.am_choking
    assert idle.idle_choked_at == clock.now()


async def test_the_rechoke_runs_every_interval_of_the_clock() -> None:
    clock = ManualClock()
    pm = manager(clock, [])
    pm.peers[b"p" * 20] = FakeChokePeer()  # type: ignore[assignment]
    driver = ChokeDriver(Choker(1), pm, clock=clock, rechoke_interval=10.0)
    runs: list[float] = []
    driver.rechoke = lambda: runs.append(clock.now())  # type: ignore[method-assign]
    task = asyncio.ensure_future(driver.run())
    try:
        await clock.advance(35.0)
        assert runs == [1010.0, 1020.0, 1030.0]
    finally:
        task.cancel()


async def test_without_peers_the_rechoke_loop_returns_and_holds_no_timer() -> None:
    """Issue 24: an idle torrent's choke loop schedules nothing and is no task (the torrent starts
    it again when a peer joins); the interval already begun ends with a rechoke."""
    clock = ManualClock()
    pm = manager(clock, [])
    driver = ChokeDriver(Choker(1), pm, clock=clock, rechoke_interval=10.0)
    runs: list[float] = []
    driver.rechoke = lambda: runs.append(clock.now())  # type: ignore[method-assign]
    task = asyncio.ensure_future(driver.run())
    await clock.advance(0)
    assert task.done() and runs == [] and clock.pending == 0
    pm.peers[b"p" * 20] = FakeChokePeer()  # type: ignore[assignment]
    task = asyncio.ensure_future(driver.run())
    try:
        await clock.advance(10.0)
        assert runs == [1010.0]
        pm.peers.clear()
        await clock.advance(30.0)
        assert runs == [1010.0, 1020.0] and clock.pending == 0 and task.done()
    finally:
        task.cancel()


class FakeChokePeer:
    """Only counted by the choke loop (its rechoke is replaced in these tests)."""


async def test_manual_clock_wait_returns_on_the_event_or_the_timeout() -> None:
    clock = ManualClock()
    event = asyncio.Event()
    waiter = asyncio.ensure_future(clock.wait(event, 5.0))
    await clock.advance(4.9)
    assert not waiter.done()
    await clock.advance(0.1)
    assert waiter.done() and waiter.result() is False
    waiter = asyncio.ensure_future(clock.wait(event, 5.0))
    await clock.advance(0)
    event.set()
    await clock.advance(0)
    assert waiter.result() is True
    assert clock.pending == 0


async def test_silent_peers_are_closed_and_quiet_links_kept_alive() -> None:
    clock = ManualClock()
    pm = manager(clock, [])
    cfg = pm.config
    quiet, silent, busy = FakePeer("quiet"), FakePeer("silent"), FakePeer("busy")
    for p in (quiet, silent, busy):
        p.last_recv = p.last_send = clock.now()
        pm.peers[p.peer_id] = p  # type: ignore[assignment]
    await clock.advance(cfg.keepalive_interval + 1)
    busy.last_send = clock.now()
    pm.check_timeouts(clock.now())
    assert (quiet.keepalives, silent.keepalives, busy.keepalives) == (1, 1, 0)
    await clock.advance(cfg.inactivity_timeout)
    busy.last_recv = quiet.last_recv = clock.now()
    pm.check_timeouts(clock.now())
    assert silent.closed_for == "inactive" and not quiet.closed and not busy.closed


class BlockPeer(FakePeer):
    """A FakePeer that blocks arrive from (the download side of PeerProtocol)."""

    def __init__(self, name: str, clock: ManualClock) -> None:
        super().__init__(name)
        self.requested: set[tuple[int, int]] = set()
        self.download = RateMeter(clock=clock.now)
        self.recent = WindowMeter(clock=clock.now)
        self.refill_at = -1  # never tops up: the scheduler sends no requests here
        self.established = True
        self.am_interested = False
        self.reading = True

    @property
    def outstanding(self) -> int:
        return len(self.requested)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class GatedStorage:
    """``write_piece`` waits until the test opens the gate (a disk that is behind)."""

    def __init__(self, n: int) -> None:
        self.have = PieceSet(n)
        self.gate = asyncio.Event()

    async def write_piece(self, index: int, buf: bytearray) -> bool:
        await self.gate.wait()
        return True

    def submit_piece(self, index: int, buf: bytearray) -> asyncio.Future[bool] | None:
        return asyncio.ensure_future(self.write_piece(index, buf))  # the callback path


class QueuingStorage(GatedStorage):
    """Never takes a piece at once (a spent byte budget): every piece goes the kept-job path."""

    def submit_piece(self, index: int, buf: bytearray) -> asyncio.Future[bool] | None:
        return None


def scheduler(
    clock: ManualClock,
    peer: BlockPeer,
    storage: GatedStorage,
    limiter: RateLimiter,
    verified: list[int],
    errors: list[str] | None = None,
    spawner: Callable[[Coroutine[Any, Any, Any]], None] = spawn,
) -> RequestScheduler:
    pm = manager(clock, [])
    pm.peers[peer.peer_id] = peer  # type: ignore[assignment]
    plen = 2 * BLOCK_SIZE
    sched = RequestScheduler(
        info=SimpleNamespace(piece_length=plen, num_pieces=8),  # type: ignore[arg-type]
        piece_size=lambda i: plen,
        picker=PiecePicker(8, lambda i: plen),
        storage=storage,  # type: ignore[arg-type]
        peers=pm,
        config=SessionConfig(max_inflight_write_bytes=2 * plen),
        clock=clock,
        download_limiter=limiter,
        down=RateMeter(clock=clock.now),
        spawn=spawner,
        on_verified=lambda index, buf: verified.append(index),
        on_hash_failed=lambda index: None,
        on_disk_error=(lambda message: None) if errors is None else errors.append,
    )
    sched.downloading = True
    return sched


def receive_piece(sched: RequestScheduler, peer: BlockPeer, index: int) -> None:
    blocks = sched.picker.pick_piece(peer, index, 2)
    sched.buffers[index] = bytearray(2 * BLOCK_SIZE)
    for b in blocks:
        peer.requested.add((b.index, b.begin))
        sched.on_block(peer, b.index, b.begin, bytes(b.length))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [GatedStorage, QueuingStorage])
async def test_a_disk_that_falls_behind_pauses_every_peer_until_it_catches_up(
    kind: type[GatedStorage],
) -> None:
    clock = ManualClock()
    peer, storage = BlockPeer("p", clock), kind(8)
    verified: list[int] = []
    sched = scheduler(clock, peer, storage, RateLimiter(0, clock=clock.now), verified)
    receive_piece(sched, peer, 0)
    receive_piece(sched, peer, 1)
    assert peer.reading and sched.finishing == 2  # two pieces in flight: at the limit, not over
    receive_piece(sched, peer, 2)
    assert not peer.reading  # over max_inflight_write_bytes: reading stops
    storage.gate.set()
    await clock.advance(0)
    assert peer.reading and sched.finishing == 0 and sorted(verified) == [0, 1, 2]


class FullDiskStorage(GatedStorage):
    """Piece 0's write fails (the disk is full); the others' succeed, after it."""

    async def write_piece(self, index: int, buf: bytearray) -> bool:
        await self.gate.wait()
        if index == 0:
            raise StorageError("No space left on device (ENOSPC)")
        return True


class QueuingFullDiskStorage(FullDiskStorage):
    def submit_piece(self, index: int, buf: bytearray) -> asyncio.Future[bool] | None:
        return None


@pytest.mark.parametrize("kind", [FullDiskStorage, QueuingFullDiskStorage])
async def test_after_a_disk_error_pieces_still_in_flight_are_not_reported_verified(
    kind: type[FullDiskStorage],
) -> None:
    """A CI run saw ``piece_verified`` after ``torrent_error``: a piece whose write ended after
    the failing one was still reported (and counted) though the torrent had stopped."""
    clock = ManualClock()
    peer, storage = BlockPeer("p", clock), kind(8)
    verified: list[int] = []
    errors: list[str] = []
    sched = scheduler(clock, peer, storage, RateLimiter(0, clock=clock.now), verified, errors)
    receive_piece(sched, peer, 0)
    receive_piece(sched, peer, 1)
    storage.gate.set()
    await clock.advance(0)
    assert len(errors) == 1 and "ENOSPC" in errors[0]
    assert verified == [] and sched.finishing == 0
    assert not sched.picker.have[1]
    sched.reset(PiecePicker(8, lambda i: 2 * BLOCK_SIZE))  # a recheck clears the error
    receive_piece(sched, peer, 2)
    await clock.advance(0)
    assert verified == [2]


async def test_a_kept_job_lasts_while_submitted_piece_writes_are_out() -> None:
    """Pieces submitted with a done-callback (no task each) still hold one kept job, which a stop
    waits for, until the last of them is written."""
    clock = ManualClock()
    peer, storage = BlockPeer("p", clock), GatedStorage(8)
    verified: list[int] = []
    jobs: list[asyncio.Future[Any]] = []
    sched = scheduler(
        clock,
        peer,
        storage,
        RateLimiter(0, clock=clock.now),
        verified,
        spawner=lambda coro: jobs.append(asyncio.ensure_future(coro)),
    )
    receive_piece(sched, peer, 0)
    receive_piece(sched, peer, 1)
    await clock.advance(0)
    assert len(jobs) == 1 and not jobs[0].done()  # one job for both pieces
    storage.gate.set()
    await asyncio.wait_for(asyncio.wait(jobs), 5)
    assert sorted(verified) == [0, 1] and sched.finishing == 0
    receive_piece(sched, peer, 2)  # a later piece gets a job of its own
    await asyncio.wait_for(asyncio.wait(jobs), 5)
    assert len(jobs) == 2 and verified[-1] == 2


async def test_the_download_limit_pauses_a_peer_for_the_time_the_clock_says() -> None:
    clock = ManualClock()
    peer, storage = BlockPeer("p", clock), GatedStorage(8)
    verified: list[int] = []
    storage.gate.set()
    limiter = RateLimiter(BLOCK_SIZE, burst=BLOCK_SIZE, clock=clock.now)  # one block per second
    sched = scheduler(clock, peer, storage, limiter, verified)
    receive_piece(sched, peer, 0)  # two blocks from an empty bucket: two seconds over the budget
    assert not peer.reading
    await clock.advance(1.9)  # not at the first block's wait: at the second's (the whole debt)
    assert not peer.reading
    await clock.advance(0.2)
    assert peer.reading


async def test_many_blocks_at_once_keep_reading_paused_until_their_whole_debt_is_paid() -> None:
    """Issue 24: over TCP one read brings many blocks (a timer per block resumed reading at the
    first, shortest wait: 3.1 MB/s under a 500 kB/s limit); nor does the disk catching up lift it."""
    clock = ManualClock()
    peer, storage = BlockPeer("p", clock), GatedStorage(8)
    verified: list[int] = []
    limiter = RateLimiter(BLOCK_SIZE, burst=BLOCK_SIZE, clock=clock.now)  # one block per second
    sched = scheduler(clock, peer, storage, limiter, verified)
    for index in range(4):  # eight blocks in one read: eight seconds of debt, the disk behind too
        receive_piece(sched, peer, index)
    assert not peer.reading and sched.finishing == 4
    storage.gate.set()
    await clock.advance(0)
    assert sched.finishing == 0 and sorted(verified) == [0, 1, 2, 3]  # the disk has caught up...
    assert not peer.reading  # ...the limit still holds
    await clock.advance(7.9)
    assert not peer.reading
    await clock.advance(0.2)
    assert peer.reading and clock.pending == 0  # one timer, now gone


async def test_the_connect_loop_returns_while_there_is_no_candidate_and_a_new_one_wakes_it() -> None:
    """Issue 24: a torrent with nothing to dial schedules nothing and holds no task (it woke twice
    a second); a new address starts the loop (``wake``) and is dialed at once, and a failed one is
    looked at again only at its redial time."""
    clock = ManualClock()
    dials: list[tuple[float, tuple[str, int]]] = []
    pm = manager(clock, dials)
    tasks: list[asyncio.Future[None]] = []
    pm.wake = lambda: tasks.append(asyncio.ensure_future(pm.run()))
    task = asyncio.ensure_future(pm.run())
    try:
        await clock.advance(10.0)
        assert clock.pending == 0 and task.done()
        pm.add("10.0.0.1", 6881)
        assert len(tasks) == 1  # woken once
        await clock.advance(0)
        assert dials == [(1010.0, ("10.0.0.1", 6881))]
        assert clock.pending == 1  # one timer: the redial time, not a tick every CONNECT_TICK
        pm.add("10.0.0.2", 6881)
        assert len(tasks) == 1  # running: told through its event, not started again
        await clock.advance(0)
        await clock.advance(REDIAL_SECONDS)
        assert [t for t, _ in dials] == [1010.0, 1010.0, 1010.0 + REDIAL_SECONDS, 1010.0 + REDIAL_SECONDS]
    finally:
        for t in tasks:
            t.cancel()
