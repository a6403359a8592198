"""The async storage of one torrent: disk I/O and hashing on a thread pool, never on the event loop.

Threading model (as libtorrent's disk threads): the asyncio loop owns all state (``have``,
priorities); every ``pread``/``pwrite``/``open``/``stat`` and every SHA-1/SHA-256 runs as one job on
a :class:`~concurrent.futures.ThreadPoolExecutor`. Job results are applied on the loop in the
future's done callback, so a caller that is cancelled mid-write never leaves ``have`` inconsistent.

Back-pressure: each job first takes its size from a byte budget (``max_inflight_bytes``); when the
budget is spent, :meth:`Storage.write_piece` waits, so a fast peer is slowed instead of filling RAM.

Skipped files (priority 0) are not created. Bytes of a skipped file that share a piece with a wanted
file go to a sparse side file ``<save_path>/.<swarm hash hex>.parts`` at their piece-space offset,
so boundary pieces still verify; when the file is wanted later its verified bytes are copied over.
A file that already exists on disk is always used in place, whatever its priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from bitswarm.metainfo import Torrent
from bitswarm.storage._filemap import Extent, FileMap, StorageError
from bitswarm.storage._io import FdCache, pread_into, pwrite_all, stat_file, storage_error
from bitswarm.storage._move import Rename, move_file, remove_empty_dirs
from bitswarm.storage._plan import DiskStats, FileEntry, OpenLayout, plan_open
from bitswarm.storage._prealloc import Preallocation, check_mode, check_space, fallocate
from bitswarm.storage._verify import PieceHasher, check_hashes
from bitswarm.storage.bitfield import Bitfield
from bitswarm.storage.resume import ResumeData, load_resume, save_resume_file

T = TypeVar("T")

#: guards every storage's :class:`StorageStats` (counts from the disk threads) and the making of its
#: fd cache: one lock for all (a lock per torrent was ~90 bytes of 10,000 idle torrents, issue 24)
_STATS_LOCK = threading.Lock()

DEFAULT_MAX_INFLIGHT_BYTES = 64 << 20
_PARTS_KEY = -1
log = logging.getLogger("bitswarm.storage")
_CHECK_GROUP_BYTES = 4 << 20

ProgressCallback = Callable[[int, int], object]  #: progress(pieces_done, pieces_total), on the loop


@dataclass(slots=True)
class StorageStats:
    """Counters (updated from worker threads under a lock; read them on the loop)."""

    pieces_hashed: int = 0  #: piece hash checks run (write_piece, verify_piece, recheck, open)
    hash_failures: int = 0
    pieces_written: int = 0
    bytes_written: int = 0
    bytes_read: int = 0
    peak_inflight_bytes: int = 0  #: highest byte budget in use at once
    write_jobs: int = 0  #: disk jobs that hashed and wrote pieces (several pieces each when queued)


@dataclass(frozen=True, slots=True)
class SendSegment:
    """One run of an upload range: ``length`` bytes at ``offset`` of ``fd`` (``fd`` None: zeros,
    a padding range). Use with ``os.sendfile(sock_fd, fd, offset, length)``."""

    fd: int | None
    offset: int
    length: int


#: pieces per write job at most (pieces queue while every worker is busy; see Storage.write_piece)
WRITE_BATCH_MAX = 8


@dataclass(slots=True)
class _QueuedWrite:
    """A complete piece admitted for hash + write; ``ok``/``error`` are set by the worker."""

    index: int
    buf: bytes | bytearray | memoryview
    nbytes: int  # its share of the byte budget
    done: asyncio.Future[bool]
    ok: bool | None = None
    error: Exception | None = None


class _ByteBudget:
    """FIFO async semaphore counted in bytes. A request larger than the limit waits for an empty
    budget and then runs alone."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("max_inflight_bytes must be positive")
        self.limit = limit
        self.used = 0
        self.peak = 0
        #: a list, not a deque: an empty deque is ~0.6 KiB and every torrent has one (issue 24)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def acquire(self, n: int) -> int:
        n = min(max(n, 0), self.limit)
        if not self._waiters and self.used + n <= self.limit:
            self._take(n)
            return n
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(n)  # granted just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
                self._wake()
            raise
        return n

    def try_acquire(self, n: int) -> int | None:
        """:meth:`acquire` when it would not wait (nobody queued, room left); else None."""
        n = min(max(n, 0), self.limit)
        if self._waiters or self.used + n > self.limit:
            return None
        self._take(n)
        return n

    def _take(self, n: int) -> None:
        self.used += n
        if self.used > self.peak:
            self.peak = self.used

    def release(self, n: int) -> None:
        self.used -= n
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                del self._waiters[0]
                continue
            if self.used + n > self.limit:
                return
            del self._waiters[0]
            self._take(n)
            fut.set_result(None)


class Storage:
    """Disk storage of one torrent (v1, v2 or hybrid) below ``save_path``.

    ``priorities`` has one entry per ``info.files`` entry (padding entries included, their value is
    ignored); 0 means "do not download, do not create". None takes them from the resume data, else 1.
    ``executor`` may be shared between torrents (the session's disk pool); without one, a private pool
    of ``workers`` threads (default: CPU count) is made and shut down by :meth:`close`.
    ``max_inflight_bytes`` bounds the bytes held by queued/running jobs (back-pressure).
    ``verify_v2_in_hybrid``: hybrid pieces are checked against SHA-1 and also the BEP 52 merkle
    hashes (False: SHA-1 only, about twice as fast). ``fsync_resume`` makes the resume file durable;
    ``fsync_data_on_save`` also fsyncs the data files first (power-loss safe resume data);
    ``fsync_on_close`` fsyncs data files in :meth:`close`. ``preallocate`` is ``"sparse"`` (files
    are truncated to size, blocks allocated as data arrives) or ``"full"`` (every wanted file is
    allocated with ``posix_fallocate`` when it is created, after a free-space check:
    :class:`~bitswarm.storage.DiskSpaceError` from :meth:`open` or :meth:`set_file_priorities` when
    the filesystem is too small, before anything is written).

    Resume data (``resume_path``) is trusted per file on :meth:`open`: it records each file's size
    and mtime (ns) at save time, and a piece touching a file whose size/mtime changed is re-hashed. A
    crash while pieces are being written therefore re-hashes the files being written, never trusts
    them blindly.
    """

    #: no instance dict: ~1.2 KiB less per torrent (10,000 torrents in one daemon: issue 24)
    __slots__ = (
        "_budget",
        "_closed",
        "_closing",
        "_executor",
        "_fdc",
        "_fsync_data_on_save",
        "_fsync_on_close",
        "_fsync_resume",
        "_gate",
        "_gen",
        "_given_priorities",
        "_hasher_obj",
        "_materialized",
        "_max_inflight",
        "_max_open",
        "_move",
        "_opened",
        "_own_executor",
        "_pending",
        "_priorities",
        "_resume_lock",
        "_resume_users",
        "_saved_gen",
        "_stats",
        "_unchecked",
        "_unverified",
        "_verify_v2_in_hybrid",
        "_write_jobs",
        "_write_queue",
        "file_map",
        "have",
        "info",
        "num_pieces",
        "piece_length",
        "preallocate",
        "resume_path",
        "resume_status",
        "save_path",
        "torrent",
        "workers",
    )

    def __init__(
        self,
        torrent: Torrent,
        save_path: str | os.PathLike[str],
        *,
        priorities: Sequence[int] | None = None,
        resume_path: str | os.PathLike[str] | None = None,
        executor: Executor | None = None,
        workers: int | None = None,
        max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
        verify_v2_in_hybrid: bool = True,
        max_open_files: int = 256,
        fsync_on_close: bool = False,
        fsync_resume: bool = True,
        fsync_data_on_save: bool = False,
        preallocate: Preallocation = "sparse",
    ) -> None:
        try:
            self.preallocate: Preallocation = check_mode(preallocate)
        except ValueError as exc:
            raise StorageError(str(exc)) from None
        self.torrent = torrent
        self.info = torrent.info
        self.file_map = FileMap(torrent.info, save_path)
        self.save_path = self.file_map.save_path
        self.num_pieces = self.info.num_pieces
        self.piece_length = self.info.piece_length
        self.have = Bitfield(self.num_pieces)  #: verified pieces; read it, never change it yourself
        #: seed mode: pieces trusted but not hashed yet (None: none, the usual case)
        self._unverified: Bitfield | None = None
        #: pieces a check (maybe interrupted) has not hashed yet (None: none; a set per idle torrent
        #: was 216 bytes: issue 24)
        self._unchecked: set[int] | None = None
        check_hashes(torrent)
        #: the expected hashes: made by the first piece check (:attr:`_hasher`; issue 24)
        self._hasher_obj: PieceHasher | None = None
        self._verify_v2_in_hybrid = verify_v2_in_hybrid
        nfiles = len(self.info.files)
        if priorities is not None and len(priorities) != nfiles:
            raise StorageError(f"{len(priorities)} priorities given for {nfiles} files")
        self._given_priorities = None if priorities is None else list(priorities)
        self._priorities: list[int] = [1] * nfiles
        self._materialized: list[bool] = [False] * nfiles
        self.resume_path = None if resume_path is None else os.fspath(resume_path)
        self.resume_status = "none"  #: "none" | "corrupt" | "mismatch" | "trusted" | "partial" | "seed-mode"
        self._stats: StorageStats | None = None  # made by the first count (:attr:`stats`)
        #: open file descriptors: made by the first disk job that opens a file (:attr:`_fds`)
        self._max_open = max_open_files
        self._fdc: FdCache | None = None
        self._own_executor = executor is None
        self.workers = workers or os.cpu_count() or 2
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="bitswarm-disk"
        )
        if max_inflight_bytes <= 0:
            raise ValueError("max_inflight_bytes must be positive")
        self._max_inflight = max_inflight_bytes
        #: the byte budget of the jobs in flight: made by the first job (issue 24)
        self._budget: _ByteBudget | None = None
        #: the futures of the jobs in flight (None: none; made by the first one, dropped by the last)
        self._pending: set[asyncio.Future[Any]] | None = None
        self._write_queue: list[_QueuedWrite] = []  # admitted pieces waiting for a write job
        self._write_jobs = 0  # write jobs of this storage in the pool
        #: set while :meth:`_exclusive` holds the storage (no job starts); None the rest of the time
        #: (an asyncio.Event per torrent was ~0.8 KiB: issue 24)
        self._gate: asyncio.Event | None = None
        #: held while resume data is saved; created by a save, dropped by the last one (a lock that
        #: once had a waiter keeps a ~0.8 KiB deque: issue 24)
        self._resume_lock: asyncio.Lock | None = None
        self._resume_users = 0
        self._gen = 0  # bumped on every change that resume data records
        self._saved_gen = -1
        self._fsync_on_close = fsync_on_close
        self._fsync_resume = fsync_resume
        self._fsync_data_on_save = fsync_data_on_save
        self._opened = False
        self._closing = False
        self._closed = False
        self._move: tuple[str, str] | None = None  # (from, to) while :meth:`move` runs

    @property
    def stats(self) -> StorageStats:
        """Counters of this storage's disk work (all zero until the first job)."""
        stats = self._stats
        if stats is None:
            with _STATS_LOCK:
                stats = self._stats
                if stats is None:
                    stats = self._stats = StorageStats()
        return stats

    @property
    def _fds(self) -> FdCache:
        """The open file descriptors (made on first use, from any disk thread)."""
        fdc = self._fdc
        if fdc is None:
            with _STATS_LOCK:
                fdc = self._fdc
                if fdc is None:
                    fdc = self._fdc = FdCache(self._max_open)
        return fdc

    @property
    def _hasher(self) -> PieceHasher:
        """The expected hashes of every piece (made on first use, from any disk thread)."""
        hasher = self._hasher_obj
        if hasher is None:
            with _STATS_LOCK:
                hasher = self._hasher_obj
                if hasher is None:
                    hasher = self._hasher_obj = PieceHasher(
                        self.torrent, self.file_map, verify_v2_in_hybrid=self._verify_v2_in_hybrid
                    )
        return hasher

    @property
    def parts_path(self) -> str:
        """The side file of skipped files' bytes that share a piece with wanted ones."""
        return os.path.join(self.save_path, f".{self.torrent.swarm_hash.hex()}.parts")

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Storage:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self, *, progress: ProgressCallback | None = None, seed_mode: bool = False) -> Bitfield:
        """Create directories and wanted files (sparse: truncated to size, never zero-filled), load
        the resume data and hash whatever it does not vouch for. Returns :attr:`have`.

        Resume data is trusted per file: pieces of a file whose size or mtime differs from the record
        (or that appeared/disappeared) are re-hashed, the rest are taken as recorded. Without usable
        resume data every piece that touches an existing file is hashed; freshly created files are
        known to be empty and skipped. ``seed_mode`` (no usable resume data, every file present with
        its exact size): all pieces are taken as had and each is hashed lazily before its first upload.
        """
        if self._opened:
            raise StorageError("storage is already open")
        if self._closed:
            raise StorageError("storage is closed")
        loop = asyncio.get_running_loop()
        moved = await self._finish_interrupted_move()
        have, to_check, status = await loop.run_in_executor(self._executor, self._open_job, seed_mode)
        self.have = have
        self.resume_status = status
        if status == "seed-mode" and self.num_pieces:
            self._unverified = Bitfield(self.num_pieces, full=True)
        self._opened = True
        if to_check:
            await self._check_pieces(to_check, progress)
        elif progress is not None:
            progress(0, 0)
        self._saved_gen = -1 if status != "trusted" or moved else self._gen
        if moved:
            await self.save_resume(force=True)  # the record no longer names a move in progress
        return self.have

    async def close(self) -> None:
        """Finish in-flight jobs, save resume data, optionally fsync, close every fd."""
        if self._closed or self._closing:
            return
        self._closing = True  # new jobs are refused from here on
        try:
            await self._drain()
            if self._opened and self.resume_path is not None:
                await self.save_resume(force=True)
        finally:
            self._closed = True
            loop = asyncio.get_running_loop()
            try:
                fdc = self._fdc
                if fdc is not None and len(fdc):  # no file open (an idle seed): no disk job
                    await loop.run_in_executor(
                        self._executor, functools.partial(fdc.close_all, fsync=self._fsync_on_close)
                    )
            finally:
                if self._own_executor:
                    self._executor.shutdown(wait=False)

    async def release_files(self) -> bool:
        """Close the open files of a storage nothing reads or writes now (a seed without peers:
        10,000 idle seeds held an fd and ~0.3 KiB each; issue 24); the next job opens what it
        needs again. Nothing happens while a job, a resume save or an exclusive section runs, or
        an fd is pinned (an upload). True if files were closed."""
        fdc = self._fdc
        if fdc is None or not len(fdc) or self._closing or self._closed or self._gate is not None:
            return False
        if self._pending or self._write_jobs or self._resume_users or fdc.pinned():
            return False
        self._fdc = None  # a job from now on makes a new cache; this one is only closed
        await asyncio.get_running_loop().run_in_executor(self._executor, fdc.close_all)
        return True

    # -- job plumbing ------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise StorageError("storage is closed")
        if not self._opened:
            raise StorageError("storage is not open (await storage.open() first)")

    async def _admit(self, nbytes: int) -> int:
        """Wait for the gate and ``nbytes`` of the byte budget (released by the caller's job)."""
        if self._closed or self._closing:
            raise StorageError("storage is closed")
        budget = self._budget
        if budget is None:
            budget = self._budget = _ByteBudget(self._max_inflight)
        while True:  # the gate is checked again after waiting for budget: no job slips past it
            while (gate := self._gate) is not None:
                await gate.wait()
            n = await budget.acquire(nbytes)
            if self._closing:
                budget.release(n)
                raise StorageError("storage is closed")
            if self._gate is None:
                break
            budget.release(n)
        if budget.peak > self.stats.peak_inflight_bytes:
            self.stats.peak_inflight_bytes = budget.peak
        return n

    def _release(self, n: int) -> None:
        """Give back ``n`` bytes of the budget (taken by :meth:`_admit`, which made it)."""
        assert self._budget is not None
        self._budget.release(n)

    def _track(self, fut: asyncio.Future[Any]) -> None:
        pending = self._pending
        if pending is None:
            pending = self._pending = set()
        pending.add(fut)

    def _untrack(self, fut: asyncio.Future[Any]) -> None:
        pending = self._pending
        if pending is not None:
            pending.discard(fut)
            if not pending:
                self._pending = None

    async def _run(
        self,
        nbytes: int,
        fn: Callable[..., T],
        *args: Any,
        on_done: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``fn(*args)`` on the disk pool under ``nbytes`` of the byte budget. ``on_done`` gets
        the result on the loop even if the awaiting task is cancelled meanwhile."""
        n = await self._admit(nbytes)
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._executor, fn, *args)
        except BaseException:
            self._release(n)
            raise
        self._track(fut)
        fut.add_done_callback(functools.partial(self._job_done, n, on_done))
        return await asyncio.shield(fut)

    def _job_done(self, n: int, on_done: Callable[[Any], None] | None, fut: asyncio.Future[Any]) -> None:
        self._untrack(fut)
        self._release(n)
        if fut.cancelled():
            return
        exc = fut.exception()  # also marks it retrieved when the awaiting task went away
        if exc is None and on_done is not None:
            on_done(fut.result())

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """No new jobs start and none runs while the body runs (priority changes)."""
        while (held := self._gate) is not None:
            await held.wait()
        gate = self._gate = asyncio.Event()
        try:
            await self._drain()
            yield
        finally:
            self._gate = None
            gate.set()

    def _count(self, **kw: int) -> None:
        with _STATS_LOCK:
            stats = self._stats
            if stats is None:
                stats = self._stats = StorageStats()
            for k, v in kw.items():
                setattr(stats, k, getattr(stats, k) + v)

    def _check_index(self, index: int) -> int:
        if not 0 <= index < self.num_pieces:
            raise StorageError(f"piece {index} out of range (torrent has {self.num_pieces})")
        return self.file_map.piece_size(index)

    # -- public piece API --------------------------------------------------------------------------

    async def write_piece(self, index: int, buf: bytes | bytearray | memoryview) -> bool:
        """Verify a whole piece held in memory and, only if it is valid, write it. One worker job.

        ``buf`` is the full piece as the piece space has it (``info.piece_size(index)`` bytes;
        padding/v2-gap bytes must be zero, as in a fresh ``bytearray``). Returns False (nothing
        written) on a hash mismatch. Do not modify ``buf`` until this returns. Pieces that complete
        while every worker is busy share one job (see :meth:`_start_write_jobs`). Waits when the byte
        budget is spent (back-pressure). Raises :class:`StorageError` on I/O failure (the piece then
        stays missing).
        """
        self._require_open()
        size = self._check_index(index)
        if len(buf) != size:
            raise StorageError(f"piece {index} buffer has {len(buf)} bytes, expected {size}")
        n = await self._admit(size)
        loop = asyncio.get_running_loop()
        item = _QueuedWrite(index, buf, n, loop.create_future())
        self._write_queue.append(item)
        self._track(item.done)
        self._start_write_jobs(loop)
        return await asyncio.shield(item.done)

    def submit_piece(self, index: int, buf: bytes | bytearray | memoryview) -> asyncio.Future[bool] | None:
        """:meth:`write_piece` without a coroutine, when it would not wait: the piece is queued for
        its hash + write at once and the future returned gets what :meth:`write_piece` would return
        or raise (a done-callback per piece instead of a task per piece: issue 24). None — nothing
        queued — when it would wait (a priority change holds the gate, the byte budget is spent or
        others wait for it) or fail (closed, not open, a bad index or size): then await
        :meth:`write_piece`, which waits or raises as usual. Same rules for ``buf`` (do not modify it
        until the future is done). Call it on the loop."""
        if self._closed or self._closing or not self._opened or self._gate is not None:
            return None
        if not 0 <= index < self.num_pieces or len(buf) != self.file_map.piece_size(index):
            return None
        budget = self._budget
        if budget is None:
            budget = self._budget = _ByteBudget(self._max_inflight)
        n = budget.try_acquire(len(buf))
        if n is None:
            return None
        if budget.peak > self.stats.peak_inflight_bytes:
            self.stats.peak_inflight_bytes = budget.peak
        loop = asyncio.get_running_loop()
        item = _QueuedWrite(index, buf, n, loop.create_future())
        self._write_queue.append(item)
        self._track(item.done)
        self._start_write_jobs(loop)
        return item.done

    def _start_write_jobs(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give queued pieces to the disk pool: at most ``workers`` write jobs of this storage run at
        once, and each takes up to :data:`WRITE_BATCH_MAX` queued pieces. When pieces complete faster
        than the workers hash and write them, they queue here and go out as one job (one hand-off to
        a worker and one back to the loop for several pieces, not one each)."""
        queue = self._write_queue
        while queue and self._write_jobs < self.workers:
            batch = queue[:WRITE_BATCH_MAX]
            del queue[:WRITE_BATCH_MAX]
            self._write_jobs += 1
            self.stats.write_jobs += 1
            try:
                fut = loop.run_in_executor(self._executor, self._write_batch_job, batch)
            except Exception as exc:  # the pool is shut down: each piece's caller gets the error
                self._write_jobs -= 1
                self._finish_writes(batch, exc)
                continue
            fut.add_done_callback(functools.partial(self._write_batch_done, batch))

    def _write_batch_job(self, batch: list[_QueuedWrite]) -> None:
        """Worker side: hash and write each piece of the batch (an error stays with its piece)."""
        for item in batch:
            try:
                item.ok = self._write_piece_job(item.index, item.buf)
            except Exception as exc:
                item.error = exc

    def _write_batch_done(self, batch: list[_QueuedWrite], fut: asyncio.Future[None]) -> None:
        self._write_jobs -= 1
        failure = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        self._finish_writes(batch, failure)
        self._start_write_jobs(fut.get_loop())

    def _finish_writes(self, batch: list[_QueuedWrite], failure: BaseException | None) -> None:
        """On the loop: apply each piece's result (even if its caller was cancelled meanwhile)."""
        for item in batch:
            self._release(item.nbytes)
            self._untrack(item.done)
            error = item.error or failure
            if error is None and item.ok is not None:
                self._piece_result(item.index, item.ok)
                item.done.set_result(item.ok)
            elif isinstance(error, asyncio.CancelledError):
                item.done.cancel()
            else:
                item.done.set_exception(error or StorageError(f"piece {item.index} was not written"))
                item.done.exception()  # retrieved: a caller that went away logs nothing

    def _piece_result(self, index: int, ok: bool) -> None:
        if self._unverified is not None:
            self._unverified.clear(index)
        if ok != self.have.get(index):
            self.have.set(index, ok)
            self._gen += 1

    async def write_block(self, index: int, begin: int, data: bytes | bytearray | memoryview) -> None:
        """Write unverified bytes into a piece (out-of-band use; follow with :meth:`verify_piece`).
        The piece stops being had until it verifies again."""
        self._require_open()
        self._check_index(index)
        exts = self.file_map.block_extents(index, begin, len(data))
        if self.have.get(index):
            self.have.clear(index)
        self._gen += 1
        await self._run(len(data), self._write_job, exts, data)

    async def verify_piece(self, index: int) -> bool:
        """Hash piece ``index`` from disk; sets or clears it in :attr:`have` and returns the result."""
        self._require_open()
        size = self._check_index(index)
        res = await self._run(size, self._check_job, [index], on_done=self._check_results)
        return res[0][1]

    async def read_block(self, index: int, begin: int, length: int) -> bytes:
        """Read ``length`` bytes at ``begin`` of piece ``index`` (padding reads as zeros). In seed mode a
        piece is hashed before its first read; a piece that fails raises :class:`StorageError`."""
        self._require_open()
        size = self._check_index(index)
        if self._unverified is not None and self._unverified.get(index):
            if begin == 0 and length == size:  # a whole piece: hash the bytes read, one read
                res: tuple[bool, bytes] = await self._run(
                    size,
                    self._read_verify_job,
                    index,
                    size,
                    on_done=functools.partial(self._read_verify_result, index),
                )
                if not res[0]:
                    raise StorageError(
                        f"piece {index} failed verification (seed mode): data on disk is wrong"
                    )
                return res[1]
            await self._seed_verify(index, size)
        exts = self.file_map.block_extents(index, begin, length)
        return await self._run(length, self._read_job, exts, length)

    async def read_piece(self, index: int) -> bytes:
        size = self._check_index(index)
        return await self.read_block(index, 0, size)

    async def _seed_verify(self, index: int, size: int) -> None:
        res = await self._run(size, self._check_job, [index], on_done=self._check_results)
        if not res[0][1]:
            raise StorageError(f"piece {index} failed verification (seed mode): data on disk is wrong")

    @contextlib.asynccontextmanager
    async def sendfile_segments(
        self, index: int, begin: int, length: int
    ) -> AsyncIterator[list[SendSegment]]:
        """Zero-copy upload: ``async with storage.sendfile_segments(i, begin, n) as segs:`` gives the
        (fd, offset, length) runs to pass to ``os.sendfile``; the fds stay open inside the block."""
        self._require_open()
        size = self._check_index(index)
        if self._unverified is not None and self._unverified.get(index):
            await self._seed_verify(index, size)
        exts = self.file_map.block_extents(index, begin, length)
        segs, keys = await self._run(0, self._pin_job, exts, length)
        try:
            yield segs
        finally:
            for k in keys:
                self._fds.release(k)

    async def recheck(self, progress: ProgressCallback | None = None) -> Bitfield:
        """Hash every piece from disk (in parallel, bounded) and return the new :attr:`have`."""
        self._require_open()
        await self._check_pieces(range(self.num_pieces), progress)
        return self.have

    def set_piece_layer(self, pieces_root: bytes, layer: bytes) -> None:
        """BEP 52: provide a file's piece layer learnt after opening (magnet downloads)."""
        self._hasher.set_piece_layer(pieces_root, layer)

    # -- priorities --------------------------------------------------------------------------------

    @property
    def priorities(self) -> list[int]:
        return list(self._priorities)

    def piece_priorities(self) -> list[int]:
        """Per piece, the highest priority of the files it touches (0: no wanted file)."""
        out = [0] * self.num_pieces
        for i, f in enumerate(self.info.files):
            p = self._priorities[i]
            if f.pad or p <= 0:
                continue
            for k in self.file_map.file_pieces(i):
                if out[k] < p:
                    out[k] = p
        return out

    def wanted(self) -> Bitfield:
        """Pieces touching at least one file of priority > 0."""
        bf = Bitfield(self.num_pieces)
        for k, p in enumerate(self.piece_priorities()):
            if p:
                bf.set(k)
        return bf

    async def set_file_priorities(self, priorities: Sequence[int]) -> None:
        """Change per-file priorities. A skipped file that becomes wanted is created and receives the
        verified bytes kept for it in the ``.parts`` file. Lowering to 0 keeps an existing file."""
        self._require_open()
        if len(priorities) != len(self.info.files):
            raise StorageError(f"{len(priorities)} priorities given for {len(self.info.files)} files")
        async with self._exclusive():
            new = [
                i
                for i, p in enumerate(priorities)
                if p > 0 and not self._materialized[i] and not self.info.files[i].pad
            ]
            have = self.have.copy()
            loop = asyncio.get_running_loop()
            if self.preallocate == "full":
                wanted_now = [
                    i
                    for i, p in enumerate(priorities)
                    if p > 0 and self._priorities[i] <= 0 and not self.info.files[i].pad
                ]
                await loop.run_in_executor(self._executor, self._allocate_selected, wanted_now, new)
            for i in new:
                await loop.run_in_executor(self._executor, self._materialize, i, have, True)
            if new:
                await loop.run_in_executor(self._executor, self._drop_parts_if_unused)
            self._priorities = list(priorities)
            self._gen += 1

    # -- moving ------------------------------------------------------------------------------------

    async def move(
        self,
        new_save_path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
        rename: Rename = os.rename,
    ) -> None:
        """Move every file (and the ``.parts`` file) below ``new_save_path``; piece I/O waits
        meanwhile. Each file moves atomically (:func:`~bitswarm.storage._move.move_file`: a rename
        within one filesystem, copy + fsync + rename across). The move is recorded in the resume
        data first, so a process killed mid-move finishes it on the next :meth:`open`.
        ``progress(files moved, files)`` runs on the event loop after each file.

        A failure (:class:`StorageError`: disk full, a file in the way ...) moves the files that had
        moved back and leaves the storage where it was; only if that fails too does the move stay
        recorded (:attr:`move_pending`), to be finished by the next :meth:`open`. A cancelled move
        stays recorded the same way."""
        self._require_open()
        target = FileMap(self.info, new_save_path)  # StorageError for an unusable path
        if target.save_path == self.save_path:
            return
        loop = asyncio.get_running_loop()
        async with self._exclusive():
            if self._fdc is not None:
                await loop.run_in_executor(self._executor, functools.partial(self._fdc.close_all, fsync=True))
            self._move = (self.save_path, target.save_path)
            await self.save_resume(force=True)
            moved: list[tuple[str, str]] = []
            try:
                await self._move_files(self.file_map, target, progress, rename, moved)
            except StorageError:
                await self._move_back(moved)
                raise
            self._move = None
            self._gen += 1
            await self.save_resume(force=True)

    @property
    def move_pending(self) -> bool:
        """A :meth:`move` is under way, or failed halfway and could not be undone."""
        return self._move is not None

    async def _move_back(self, moved: list[tuple[str, str]]) -> None:
        loop = asyncio.get_running_loop()
        for src, dst in reversed(moved):
            try:
                await loop.run_in_executor(self._executor, move_file, dst, src)
            except StorageError as exc:
                log.error("cannot move %s back after a failed move (%s): the next open finishes it", dst, exc)
                return
        self._move = None
        await self.save_resume(force=True)

    async def _move_files(
        self,
        source: FileMap,
        target: FileMap,
        progress: ProgressCallback | None,
        rename: Rename,
        moved: list[tuple[str, str]] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        pairs = [(s, d) for s, d in zip(source.paths, target.paths, strict=True) if s and d]
        parts = os.path.basename(self.parts_path)
        pairs.append((os.path.join(source.save_path, parts), os.path.join(target.save_path, parts)))
        for k, (src, dst) in enumerate(pairs):
            job = functools.partial(move_file, src, dst, rename=rename)
            if await loop.run_in_executor(self._executor, job) and moved is not None:
                moved.append((src, dst))
            if progress is not None:
                progress(k + 1, len(pairs))
        if not self.info.single_file:
            top = os.path.join(source.save_path, self.info.name)
            await loop.run_in_executor(self._executor, remove_empty_dirs, top, source.save_path)
        self.file_map = target
        if self._hasher_obj is not None:
            self._hasher_obj.fmap = target
        self.save_path = target.save_path
        target.check_paths()

    async def _finish_interrupted_move(self) -> bool:
        """Before opening: finish a move the resume data says was interrupted. True if it did."""
        if self.resume_path is None:
            return False
        loop = asyncio.get_running_loop()
        resume = await loop.run_in_executor(self._executor, load_resume, self.resume_path)
        if resume is None or resume.move is None or resume.info_hash != self.torrent.swarm_hash:
            return False
        src, dst = resume.move
        await self._move_files(FileMap(self.info, src), FileMap(self.info, dst), None, os.rename)
        return True

    # -- resume data -------------------------------------------------------------------------------

    async def save_resume(self, *, force: bool = False) -> bool:
        """Write resume data atomically if anything changed since the last save (or ``force``).
        Cheap enough to call every few seconds. Returns True when a file was written."""
        if self.resume_path is None or not self._opened:
            return False
        lock = self._resume_lock
        if lock is None:
            lock = self._resume_lock = asyncio.Lock()
        self._resume_users += 1
        try:
            async with lock:
                gen = self._gen
                if not force and gen == self._saved_gen:
                    return False
                pieces = self.have.to_bytes()
                prios = tuple(self._priorities)
                unchecked = frozenset(self._unchecked or ())
                loop = asyncio.get_running_loop()
                job = functools.partial(self._save_resume_job, pieces, prios, unchecked, self._move)
                await loop.run_in_executor(self._executor, job)
                self._saved_gen = gen
                return True
        finally:
            self._resume_users -= 1
            if not self._resume_users:
                self._resume_lock = None

    def _save_resume_job(
        self,
        pieces: bytes,
        prios: tuple[int, ...],
        unchecked: frozenset[int],
        move: tuple[str, str] | None,
    ) -> None:
        assert self.resume_path is not None
        if self._fsync_data_on_save:  # survive power loss: the data is durable before the claim is
            self._fds.fsync_all()
        fm = self.file_map
        # a file with pieces an interrupted check never hashed is recorded as unknown (None): the
        # next open hashes it again instead of taking those pieces as missing
        files = tuple(
            stat_file(p)
            if p is not None
            and self._materialized[i]
            and not (unchecked and any(k in unchecked for k in fm.file_pieces(i)))
            else None
            for i, p in enumerate(fm.paths)
        )
        data = ResumeData(
            info_hash=self.torrent.swarm_hash,
            num_pieces=self.num_pieces,
            pieces=pieces,
            files=files,
            parts=stat_file(self.parts_path),
            priorities=prios,
            move=move,
        )
        try:
            save_resume_file(self.resume_path, data, fsync=self._fsync_resume)
        except OSError as exc:
            raise storage_error(exc, "saving resume data to", self.resume_path) from exc

    # -- checking ----------------------------------------------------------------------------------

    async def _check_pieces(self, indices: Sequence[int], progress: ProgressCallback | None) -> None:
        total = len(indices)
        if self._unchecked is None:
            self._unchecked = set()
        self._unchecked.update(indices)
        per_job = max(1, _CHECK_GROUP_BYTES // self.piece_length)
        window = max(2, 2 * self.workers)
        done = 0
        running: set[asyncio.Future[list[tuple[int, bool]]]] = set()

        def take(finished: set[asyncio.Future[list[tuple[int, bool]]]]) -> None:
            nonlocal done
            for f in finished:
                done += len(f.result())
            if progress is not None:
                progress(done, total)

        try:
            for start in range(0, total, per_job):
                group = list(indices[start : start + per_job])
                nbytes = sum(self.file_map.piece_size(i) for i in group)
                if len(running) >= window:
                    finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    take(finished)
                coro = self._run(nbytes, self._check_job, group, on_done=self._check_results)
                running.add(asyncio.ensure_future(coro))
            if running:
                finished, _ = await asyncio.wait(running)
                take(finished)
                running = set()
        finally:
            for f in running:
                f.cancel()

    def _check_results(self, results: list[tuple[int, bool]]) -> None:
        unchecked = self._unchecked
        for index, ok in results:
            if unchecked is not None:
                unchecked.discard(index)
            self._piece_result(index, ok)
        if not unchecked:
            self._unchecked = None

    # -- worker-thread jobs (blocking) -------------------------------------------------------------

    def _location(self, e: Extent) -> tuple[int, str, int]:
        if self._materialized[e.file_index]:
            path = self.file_map.paths[e.file_index]
            assert path is not None
            return e.file_index, path, e.file_offset
        return _PARTS_KEY, self.parts_path, e.space_offset

    def _write_extents(self, exts: list[Extent], mv: memoryview) -> None:
        for e in exts:
            key, path, off = self._location(e)
            fd = self._fds.acquire(key, path, create=True)
            assert fd is not None
            try:
                pwrite_all(fd, mv[e.buf_offset : e.buf_offset + e.length], off, path)
            finally:
                self._fds.release(key)

    def _read_extents(self, exts: list[Extent], mv: memoryview) -> None:
        """Fill ``mv`` (a whole range) from disk; bytes outside every extent become zeros."""
        pos = 0
        for e in exts:
            if e.buf_offset > pos:
                mv[pos : e.buf_offset] = bytes(e.buf_offset - pos)
            key, path, off = self._location(e)
            part = mv[e.buf_offset : e.buf_offset + e.length]
            fd = self._fds.acquire(key, path, create=False)
            if fd is None:
                part[:] = bytes(e.length)
            else:
                try:
                    pread_into(fd, part, off, path)
                finally:
                    self._fds.release(key)
            pos = e.buf_offset + e.length
        if pos < len(mv):
            mv[pos:] = bytes(len(mv) - pos)

    def _write_piece_job(self, index: int, buf: bytes | bytearray | memoryview) -> bool:
        ok = self._hasher.check(index, buf)
        if not ok:
            self._count(pieces_hashed=1, hash_failures=1)
            return False
        self._write_extents(self.file_map.piece_extents(index), memoryview(buf))
        self._count(pieces_hashed=1, pieces_written=1, bytes_written=len(buf))
        return True

    def _write_job(self, exts: list[Extent], data: bytes | bytearray | memoryview) -> None:
        self._write_extents(exts, memoryview(data))
        self._count(bytes_written=len(data))

    def _read_job(self, exts: list[Extent], length: int) -> bytes:
        data = self._read_bytes(exts, length)
        self._count(bytes_read=length)
        return data

    def _read_bytes(self, exts: list[Extent], length: int) -> bytes:
        """The range as ``bytes``: a range inside one file is one ``pread`` (no second copy)."""
        if len(exts) == 1 and exts[0].buf_offset == 0 and exts[0].length == length:
            key, path, off = self._location(exts[0])
            fd = self._fds.acquire(key, path, create=False)
            if fd is not None:
                try:
                    data = os.pread(fd, length, off)
                    while len(data) < length:
                        more = os.pread(fd, length - len(data), off + len(data))
                        if not more:  # past the end of a short/sparse file: zeros
                            return data + bytes(length - len(data))
                        data += more
                    return data
                except OSError as exc:
                    raise storage_error(exc, "reading", path) from exc
                finally:
                    self._fds.release(key)
        buf = bytearray(length)
        self._read_extents(exts, memoryview(buf))
        return bytes(buf)

    def _read_verify_job(self, index: int, size: int) -> tuple[bool, bytes]:
        """Seed mode: read a whole piece once, hash it, return it (and whether it matched)."""
        data = self._read_bytes(self.file_map.piece_extents(index), size)
        ok = self._hasher.check(index, data)
        self._count(pieces_hashed=1, hash_failures=int(not ok), bytes_read=size)
        return ok, data

    def _read_verify_result(self, index: int, result: tuple[bool, bytes]) -> None:
        self._piece_result(index, result[0])

    def _check_job(self, indices: list[int]) -> list[tuple[int, bool]]:
        buf = bytearray(self.piece_length)
        out = []
        failures = nbytes = 0
        for index in indices:
            size = self.file_map.piece_size(index)
            mv = memoryview(buf)[:size]
            self._read_extents(self.file_map.piece_extents(index), mv)
            ok = self._hasher.check(index, mv)
            failures += not ok
            nbytes += size
            out.append((index, ok))
        self._count(pieces_hashed=len(indices), hash_failures=failures, bytes_read=nbytes)
        return out

    def _pin_job(self, exts: list[Extent], length: int) -> tuple[list[SendSegment], list[int]]:
        segs: list[SendSegment] = []
        keys: list[int] = []
        pos = 0
        try:
            for e in exts:
                if e.buf_offset > pos:
                    segs.append(SendSegment(None, 0, e.buf_offset - pos))
                key, path, off = self._location(e)
                fd = self._fds.acquire(key, path, create=False)
                if fd is None:
                    segs.append(SendSegment(None, 0, e.length))
                else:
                    keys.append(key)
                    segs.append(SendSegment(fd, off, e.length))
                pos = e.buf_offset + e.length
            if pos < length:
                segs.append(SendSegment(None, 0, length - pos))
        except BaseException:
            for k in keys:
                self._fds.release(k)
            raise
        return segs, keys

    def _create_file(self, i: int) -> None:
        path = self.file_map.paths[i]
        assert path is not None
        length = self.info.files[i].length
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if os.fstat(fd).st_size < length:
                    os.ftruncate(fd, length)  # sparse: no zeros are written
                if self.preallocate == "full":
                    fallocate(fd, length)
            finally:
                os.close(fd)
        except OSError as exc:
            raise storage_error(exc, "creating", path) from exc

    def _allocate_selected(self, files: Sequence[int], later: Sequence[int]) -> None:
        """``files`` were just selected (full preallocation): check the space for all of them, then
        allocate those that exist already (``later`` ones are created, allocated, by the caller)."""
        self._check_space(files)
        for i in files:
            if i not in later:
                self._create_file(i)

    def _check_space(self, files: Sequence[int]) -> None:
        """Can the filesystem hold ``files`` fully allocated? (:class:`DiskSpaceError` if not.)"""
        paths = self.file_map.paths
        check_space(
            [(p, self.info.files[i].length) for i in files if (p := paths[i]) is not None], self.save_path
        )

    def _materialize(self, i: int, have: Bitfield, migrate: bool) -> None:
        """Create skipped file ``i`` on disk and move its verified bytes out of the ``.parts`` file."""
        self._create_file(i)
        path = self.file_map.paths[i]
        assert path is not None
        if migrate and os.path.exists(self.parts_path):
            pfd = self._fds.acquire(_PARTS_KEY, self.parts_path, create=False)
            ffd = self._fds.acquire(i, path, create=True)
            assert ffd is not None
            try:
                if pfd is not None:
                    for k in self.file_map.file_pieces(i):
                        if not have.get(k):
                            continue
                        for e in self.file_map.piece_extents(k):
                            if e.file_index == i:
                                tmp = bytearray(e.length)
                                pread_into(pfd, memoryview(tmp), e.space_offset, self.parts_path)
                                pwrite_all(ffd, memoryview(tmp), e.file_offset, path)
            finally:
                self._fds.release(i)
                if pfd is not None:
                    self._fds.release(_PARTS_KEY)
        self._materialized[i] = True

    def _drop_parts_if_unused(self) -> None:
        """Delete the ``.parts`` file once every data file lives in its real file."""
        if all(m or f.pad for m, f in zip(self._materialized, self.info.files, strict=True)):
            self._fds.forget(_PARTS_KEY)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.parts_path)

    def _open_job(self, seed_mode: bool) -> tuple[Bitfield, list[int], str]:
        """Gather the facts (resume record, file stats), let :func:`plan_open` decide, carry it out."""
        fm = self.file_map
        fm.check_paths()
        resume: ResumeData | None = None
        resume_exists = False
        if self.resume_path is not None:
            resume = load_resume(self.resume_path)
            resume_exists = resume is not None or os.path.exists(self.resume_path)
        stats = DiskStats(
            files=tuple(None if p is None else stat_file(p) for p in fm.paths),
            parts=stat_file(self.parts_path),
            resume_exists=resume_exists,
        )
        plan = plan_open(self._layout(), resume, stats, self._given_priorities, seed_mode)
        self._priorities = list(plan.priorities)
        if self.preallocate == "full":
            wanted = [i for i, f in enumerate(self.info.files) if not f.pad and self._priorities[i] > 0]
            self._check_space(wanted)  # before any file is created or extended
            for i in wanted:
                if i not in plan.create:
                    self._create_file(i)  # a wanted file already there: allocate its holes
        for i in plan.create:  # wanted files that are missing or short: create/extend (sparse)
            self._create_file(i)
        self._materialized = list(plan.materialized)
        fm.check_paths()
        for i in plan.migrate:
            self._materialize(i, plan.have, True)
        if plan.drop_parts:
            self._drop_parts_if_unused()
        return plan.have, list(plan.to_check), plan.status

    def _layout(self) -> OpenLayout:
        fm = self.file_map
        files = tuple(FileEntry(f.length, f.pad, fm.file_pieces(i)) for i, f in enumerate(self.info.files))
        return OpenLayout(self.torrent.swarm_hash, self.num_pieces, files)
