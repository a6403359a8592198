"""The :class:`Daemon`: a long-running :class:`~bitswarm.session.Session` whose torrent list,
settings and resume data live in a data directory, plus the operations the control API offers.

Each torrent's state is its :class:`~bitswarm.session.lifecycle.Lifecycle` (one object, shared with
the engine once the torrent is in the session): the daemon fires ``queue`` when it starts a torrent
(at most :data:`MAX_CONCURRENT_STARTS` open at once), the engine the rest. Pause, resume, recheck,
file priorities and moving are the engine's own controls on the torrent's
:class:`~bitswarm.session.TorrentHandle`. A torrent that is paused and not in the session (added
paused, or paused when the daemon started) is opened paused when one of them needs it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import gc
import json
import logging
import mimetypes
import operator
import os
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeGuard

from bitswarm import __version__
from bitswarm.daemon._store import DataDir, TorrentRecord
from bitswarm.daemon._trackers import Tiers, tracker_report, tracker_rows
from bitswarm.daemon.automation import (
    SPECS,
    Automation,
    SettingsError,
    TorrentView,
    WatchFolder,
    check_goals,
    check_setting,
    effective_goals,
    ratio_of,
    settings_view,
)
from bitswarm.daemon.privacy import BLOCKLIST_KEYS, Privacy
from bitswarm.errors import BitswarmError
from bitswarm.metainfo import MetainfoError, Torrent, magnet_from_torrent, parse_magnet, parse_torrent
from bitswarm.session import Session, SessionConfig, SessionError, TorrentHandle
from bitswarm.session.announce import session_gate
from bitswarm.session.lifecycle import DISPLAY_NAME, Event, Lifecycle, LifecycleError, State
from bitswarm.session.torrent import busy_torrents
from bitswarm.storage import Bitfield, FileMap, StorageError, load_resume

log = logging.getLogger("bitswarm.daemon")

#: The largest .torrent the daemon accepts (upload, server-side path or index download).
MAX_TORRENT_BYTES = 16 * 1024 * 1024
#: Highest file priority (0 = skip, 1 = normal, higher = sooner).
MAX_PRIORITY = 7
#: Torrents opened (hashed) at the same time.
MAX_CONCURRENT_STARTS = 2
#: Saved torrents with resume data opened at the same time at start-up (trusted resume data needs no
#: hashing: more than two keep the disk threads busy while the event loop finishes the previous
#: opens; 10,000 started in 7 s instead of 9, issue 24).
MAX_CONCURRENT_RESTORES = 8
#: With this many torrents, the objects alive once every start is done are frozen out of the cyclic GC.
GC_FREEZE_TORRENTS = 1000
#: Engine events forwarded to event-stream subscribers (``piece_verified`` is summed up in the
#: periodic ``torrents`` snapshot instead; the daemon sends its own ``added``/``removed``/``paused``).
FORWARDED_ENGINE_EVENTS = frozenset(
    {"peer_connected", "torrent_completed", "hash_failed", "peer_banned", "torrent_error"}
    | {"tracker_reply", "tracker_error"}
)


class DaemonError(BitswarmError):
    """A request the daemon refuses. ``status`` is the HTTP status the API answers with (4xx)."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _not_found(torrent_id: str) -> DaemonError:
    return DaemonError(f"no torrent with id {torrent_id!r}", 404, "not_found")


#: The states counted as ``active`` in the stats.
_ACTIVE = frozenset(
    DISPLAY_NAME[s] for s in (State.METADATA, State.CHECKING, State.DOWNLOADING, State.SEEDING, State.MOVING)
)


def _refused(exc: LifecycleError) -> DaemonError:
    return DaemonError(str(exc), 409, "wrong_state")


@dataclass(eq=False, slots=True)
class _Entry:
    """The daemon's state of one torrent. Slotted, and nothing made per torrent that an idle one
    does not use (10,000 idle seeds: the instance dicts, locks and finished start tasks were
    ~1.5 KiB each; issue 24)."""

    rec: TorrentRecord
    torrent: Torrent | None
    handle: TorrentHandle | None = None
    #: adding it to the session (queued, metadata, checking); None once that ended
    task: asyncio.Task[None] | None = None
    job: asyncio.Task[None] | None = None  #: a recheck or move running in the background
    life: Lifecycle = field(default_factory=Lifecycle)  #: THE state (the engine's, once added)
    error: str | None = None
    check: tuple[int, int] = (0, 0)
    #: waiting in the queue: the user wants it running, the automation holds it (engine-paused)
    held: bool = False
    have: Bitfield | None = None  #: verified pieces while not running (from the resume data)
    #: the last status listed, with what it was made of (``Daemon._shown``; issue 24)
    shown: _Shown | None = None
    #: the lock of :meth:`locked` while someone holds it or waits for it, and how many do
    lock: asyncio.Lock | None = None
    lockers: int = 0

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """One operation on the torrent at a time: the lock is made by the first one and dropped by
        the last (an ``asyncio.Lock`` per idle torrent; issue 24)."""
        if self.lock is None:
            self.lock = asyncio.Lock()
        lock = self.lock
        self.lockers += 1
        try:
            async with lock:
                yield
        finally:
            self.lockers -= 1
            if not self.lockers:
                self.lock = None


@dataclass(slots=True)
class _Shown:
    """A torrent's cached status: ``status`` (read-only) and its JSON, valid while ``key`` (all
    that the status is made of but the seeding time) stays equal. The seeding time of every seed
    grows at each accounting: it is set in the dict, and put between the JSON's two parts."""

    key: tuple[object, ...]
    status: dict[str, Any]
    json: tuple[bytes, bytes] | None = None  #: the JSON before and after the seeding time's value


#: every field of a record that :meth:`Daemon.status` shows but the seeding time (``_shown``'s key)
_RECORD_SHOWN: Final = operator.attrgetter(
    "name", "save_path", "added_at", "paused", "download_limit", "upload_limit", "magnet",
    "progress", "total_size", "wanted_size", "done_size", "pieces_done", "num_pieces",
    "downloaded_ever", "uploaded_ever", "goals", "goal_reached", "compat",
)  # fmt: skip


def _json_of(shown: _Shown) -> bytes:
    """A status's JSON: from the kept parts (made once), or afresh for a busy torrent's (not kept)."""
    if not shown.key:
        return _dumps(shown.status)
    if shown.json is None:
        shown.json = _split_at_seeding_time(shown.status)
    head, tail = shown.json
    return b"%b%d%b" % (head, shown.status["seeding_time"], tail)


def _let_go(entry: _Entry, job: asyncio.Task[None]) -> None:
    """A background job ended: the entry lets go of it."""
    if entry.job is job:
        entry.job = None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off while a list is built (no await inside): a list of thousands of torrents
    makes tens of thousands of (mostly acyclic) rows, statuses and their JSON, and the collections
    those allocations set off, a full one over the daemon's heap among them, were a third of a cold
    ``torrent-get`` at 10,000 torrents (~40 ms of ~120 in-process; issue 24). The collection is left
    to later allocations. Nested uses keep it off until the outermost ends."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _is_num(value: object) -> TypeGuard[int]:
    """``value`` is a Transmission id (an int, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _errored(rec: TorrentRecord, message: str) -> _Entry:
    """The entry of a saved torrent that cannot be restored: listed in the error state."""
    return _Entry(rec, None, life=Lifecycle(State.ERROR), error=message)


class Daemon:
    """Owns a session and the data directory; every public coroutine is one API operation."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        config: SessionConfig | None = None,
        *,
        download_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
        gc_batch: int = GC_FREEZE_TORRENTS,
    ) -> None:
        self.data = DataDir(data_dir)
        #: with this many torrents, the cyclic GC is off while the saved ones start (see :meth:`start`)
        self.gc_batch = gc_batch
        self._restoring: set[asyncio.Task[None]] = set()  #: starts of saved torrents with metainfo
        self._gc_paused = False
        self.download_dir = Path(download_dir).resolve() if download_dir else self.data.downloads
        self.download_dir.mkdir(parents=True, exist_ok=True)
        self.session = Session(config or SessionConfig())
        #: the IP blocklist and proxy settings (privacy.py)
        self.privacy = Privacy(self.session)
        self._entries: dict[str, _Entry] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._starts = asyncio.Semaphore(MAX_CONCURRENT_STARTS)
        self._restores = asyncio.Semaphore(MAX_CONCURRENT_RESTORES)
        self._pump: asyncio.Task[None] | None = None
        self._settings: dict[str, Any] = {}
        self.started_at = time.time()
        self.closing = asyncio.Event()
        self.clock = clock
        #: the queue, seeding goals, speed schedule and watch folder (automation.py)
        self.automation = Automation(self, clock=clock, wall=wall)
        self._auto_task: asyncio.Task[None] | None = None
        self.watch: WatchFolder | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_stop = asyncio.Event()
        self._dirty: set[str] = set()
        self._dirty_time: set[str] = set()
        self._starting = 0  #: starts under way
        self._flushed_time = clock()
        self._flushed = clock()
        #: the last Transmission id given (``rec.compat["num"]``, :meth:`_number`)
        self._last_num = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for peers and bring back every saved torrent (paused ones stay paused)."""
        self._settings = self.data.load_settings()
        proxy = self.automation_settings()["proxy"]
        if proxy and not self.session.config.proxy:  # before the session opens its sockets
            if "tcp" in self.session.config.transports:
                self.session.config.proxy = proxy
            else:
                log.warning("proxy %s not used: the transports do not include tcp", proxy)
        await self.session.start()
        self.privacy.configure(self.automation_settings())
        self.apply_rates(*self._rates_now())
        self._pump = asyncio.get_running_loop().create_task(self._pump_events())
        records, broken = self.data.records()
        await self._number_saved(records)
        # Thousands of saved torrents: their engine objects are long-lived, and the cyclic GC's full
        # passes over them while they start were a third of the start-up (issue 24). It is off until
        # the last of them is open (magnets still fetching metadata are not waited for), then the
        # survivors are frozen out of its care (:meth:`_started_one`).
        if len(records) >= self.gc_batch and gc.isenabled():
            gc.disable()
            self._gc_paused = True
        # their first announces and the automation wait until all are open (:meth:`_restored`)
        session_gate(self.session).hold()
        for rec in records:
            entry = self._restore(rec)
            self._entries[rec.id] = entry
            if entry.life.state is State.ERROR:
                continue
            if rec.paused:
                entry.life = Lifecycle(State.PAUSED)
                self._load_have(entry)
            else:
                self._start(entry, held=self.queueing())
                if entry.torrent is not None and entry.task is not None:
                    self._restoring.add(entry.task)
        if not self._restoring:
            self._restored()
        for tid, reason in broken.items():  # never dropped silently: listed, in the error state
            log.warning("saved torrent %s cannot be restored: %s", tid, reason)
            rec = TorrentRecord(id=tid, name=tid, save_path=str(self.download_dir))
            self._number(rec)  # not saved: its damaged record is left as it is
            self._entries[tid] = _errored(rec, f"cannot be restored: {reason}")
        self._configure_watch()
        self._auto_task = asyncio.get_running_loop().create_task(self.automation.run())

    async def _number_saved(self, records: list[TorrentRecord]) -> None:
        """Give each saved torrent without a Transmission id (a data directory of an older version)
        its id, after every id already given, oldest first; the records written in one disk job."""
        last = int(self.setting("last_num", 0) or 0)
        missing = []
        for rec in records:
            num = rec.compat.get("num")
            if _is_num(num):
                last = max(last, num)
            else:
                missing.append(rec)
        self._last_num = last
        for rec in missing:
            self._number(rec)
        if missing:
            await asyncio.to_thread(self.data.save_serialized, self.data.changed_records(missing))

    def _number(self, rec: TorrentRecord) -> int:
        """Give ``rec`` the next Transmission id (``compat["num"]``), stable for the torrent's life:
        given when it is added (or, for an older data directory, at the start that finds it without
        one), saved with its record; the id of a removed torrent is never given again (``last_num``
        in the settings, raised at a removal). The first ``torrent-get`` of 10,000 torrents numbered
        and wrote all of them (its p99; issue 24)."""
        self._last_num += 1
        rec.compat["num"] = self._last_num
        return self._last_num

    def number(self, torrent_id: str) -> int:
        """The torrent's Transmission id (404 if none)."""
        rec = self._entry(torrent_id).rec
        num = rec.compat.get("num")
        if _is_num(num):
            return int(num)
        num = self._number(rec)  # the compat dict lost it (replaced by hand): given anew, kept
        self.data.save_record(rec)
        return num

    def _restore(self, rec: TorrentRecord) -> _Entry:
        """The entry of a saved torrent; in the error state (with the reason) if it cannot be loaded."""
        raw = self.data.metainfo(rec.id)
        if raw is None:
            if rec.magnet is not None:  # still waiting for its metadata
                return _Entry(rec, None)
            return _errored(rec, "cannot be restored: its .torrent file is missing")
        try:
            # A magnet's metadata has no BEP 52 piece layers: the session fetches them from peers
            # (or takes the ones it kept beside the resume data, session/hash_exchange.py).
            torrent = parse_torrent(raw, layers_optional=rec.metadata_only or rec.magnet is not None)
        except MetainfoError as exc:
            if rec.magnet is not None:  # fetch the metadata again
                log.warning("%s: saved metadata unusable (%s): fetching it again", rec.id, exc)
                return _Entry(rec, None)
            log.warning("saved torrent %s cannot be restored: %s", rec.id, exc)
            return _errored(rec, f"cannot be restored: {exc}")
        if torrent.swarm_hash.hex() != rec.id:
            return _errored(rec, "cannot be restored: its .torrent is another torrent")
        return _Entry(rec, torrent)

    async def close(self) -> None:
        """Stop everything; resume data and records are saved (a kill loses at most a few seconds)."""
        self.closing.set()
        self._watch_stop.set()  # watchfiles' thread stops at its next step
        for task in (self._auto_task, self._watch_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._auto_task = self._watch_task = None
        await self.privacy.close()
        for entry in self._entries.values():
            await self._cancel_tasks(entry)  # a move cut short is finished at the next start
        if self._restoring:  # closed while the saved torrents were starting
            self._restoring.clear()
            session_gate(self.session).release()
            if self._gc_paused:  # the GC is never left off
                self._gc_paused = False
                gc.enable()
        # Every other change of a record was saved when it was made: what is left is the progress of
        # the running torrents and the accounting (10,000 idle seeds: nothing to write, nothing to
        # serialize; issue 24).
        changed = []
        for entry in self._entries.values():
            tid = entry.rec.id
            if self._snapshot(entry) or tid in self._dirty or tid in self._dirty_time:
                changed.append(entry.rec)
        # the records that changed, in one disk job while the session closes (10,000 one by one on
        # the loop took seconds)
        saving = asyncio.ensure_future(
            asyncio.to_thread(self.data.save_serialized, self.data.changed_records(changed))
        )
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        # the cyclic GC's passes while thousands of torrents stop (their engine objects dying) were
        # a third of the close: it is off meanwhile
        paused = gc.isenabled() and len(self._entries) >= self.gc_batch
        if paused:
            gc.disable()
        try:
            await self.session.close()
        finally:
            if paused:
                gc.enable()
            await saving

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- adding --------------------------------------------------------------------------------

    def _save_path(self, save_path: str | None) -> Path:
        if save_path is None or save_path == "":
            return self.download_dir
        if not isinstance(save_path, str) or "\0" in save_path or len(save_path) > 4096:
            raise DaemonError("save_path must be a directory path")
        p = Path(save_path).expanduser()
        if not p.is_absolute():
            p = self.download_dir / p
        p = Path(os.path.normpath(p))
        if p.exists() and not p.is_dir():
            raise DaemonError(f"save_path {str(p)!r} is not a directory")
        return p

    async def add_torrent(
        self,
        data: bytes,
        *,
        save_path: str | None = None,
        paused: bool = False,
        trackers: list[str] | None = None,
        peers: list[tuple[str, int]] | None = None,
        priorities: list[int] | None = None,
        category: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Add a torrent from its metainfo bytes; it starts in the background (hashing existing data).
        ``category``: saved in the category's save path unless ``save_path`` is given (an unknown
        category is created, with no save path)."""
        if len(data) > MAX_TORRENT_BYTES:
            raise DaemonError(f"torrent file is larger than {MAX_TORRENT_BYTES} bytes", 413, "too_large")
        try:
            torrent = parse_torrent(data)
        except MetainfoError as exc:
            raise DaemonError(f"not a valid torrent: {exc}", 400, "bad_torrent") from None
        target = self._save_path(self._category_path(category, save_path))
        try:
            FileMap(torrent.info, target)  # every file path must stay inside the save path
        except StorageError as exc:
            raise DaemonError(f"unsafe torrent: {exc}", 400, "bad_torrent") from None
        tid = torrent.swarm_hash.hex()
        if tid in self._entries:
            raise DaemonError(f"torrent {tid} is already added", 409, "duplicate")
        rec = TorrentRecord(
            id=tid,
            name=torrent.info.name,
            save_path=str(target),
            paused=paused,
            priorities=self._file_priorities(torrent, priorities) if priorities is not None else None,
            added_at=time.time(),
            trackers=clean_trackers(trackers),
            peers=_clean_peers(peers),
            total_size=torrent.info.total_size,
            num_pieces=torrent.info.num_pieces,
        )
        self._label(rec, category, tags)
        self._number(rec)
        self.data.save_metainfo(tid, data)
        self.data.save_record(rec)
        entry = _Entry(rec, torrent)
        self._entries[tid] = entry
        if not paused:
            self._start(entry, held=self.queueing())
        else:
            entry.life = Lifecycle(State.PAUSED)
            entry.have = Bitfield(torrent.info.num_pieces)
        self._publish("added", entry)
        self.automation.poke()
        return self.status(entry)

    async def add_magnet(
        self,
        uri: str,
        *,
        save_path: str | None = None,
        paused: bool = False,
        trackers: list[str] | None = None,
        peers: list[tuple[str, int]] | None = None,
        category: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Add a BEP 9 magnet link; the engine fetches the metadata in the background."""
        try:
            magnet = parse_magnet(uri)
        except MetainfoError as exc:
            raise DaemonError(f"malformed magnet link: {exc}", 400, "bad_magnet") from None
        tid = magnet.swarm_hash.hex()
        if tid in self._entries:
            raise DaemonError(f"torrent {tid} is already added", 409, "duplicate")
        rec = TorrentRecord(
            id=tid,
            name=magnet.name or tid,
            save_path=str(self._save_path(self._category_path(category, save_path))),
            paused=paused,
            added_at=time.time(),
            trackers=clean_trackers(trackers),
            peers=_clean_peers([*(peers or []), *magnet.peers]),
            magnet=magnet.to_uri(),
        )
        self._label(rec, category, tags)
        self._number(rec)
        self.data.save_record(rec)
        entry = _Entry(rec, None, life=Lifecycle(State.PAUSED if paused else State.STOPPED))
        self._entries[tid] = entry
        if not paused:
            self._start(entry)
        self._publish("added", entry)
        self.automation.poke()
        return self.status(entry)

    async def add_path(self, path: str, **kw: Any) -> dict[str, Any]:
        """Add a .torrent file that is on the daemon's machine."""
        if not isinstance(path, str) or "\0" in path or not path:
            raise DaemonError("path must be a file path")
        p = Path(path).expanduser()
        try:
            data = await asyncio.to_thread(_read_regular_file, p, MAX_TORRENT_BYTES)
        except OSError as exc:
            raise DaemonError(f"cannot read {path}: {exc.strerror or exc}", 400, "no_such_file") from None
        return await self.add_torrent(data, **kw)

    async def add_from_index(self, index_url: str, name: str, **kw: Any) -> dict[str, Any]:
        """Look ``name`` (or a hash) up on a bitswarm index; add its .torrent (or magnet) with the
        peers the index lists."""
        from bitswarm.index.client import IndexClient, IndexClientError

        try:
            async with IndexClient(index_url, timeout=15.0) as idx:
                found = await idx.lookup(name)
                peers = [(p.ip, p.port) for p in found.peers if p.online]
                if found.has_torrent:
                    data = await idx.torrent(found.id)
                    return await self.add_torrent(data, peers=[*(kw.pop("peers", None) or []), *peers], **kw)
        except IndexClientError as exc:
            status = 404 if exc.status == 404 else 400
            raise DaemonError(f"index: {exc}", status, "index_error") from None
        if found.magnet:
            return await self.add_magnet(found.magnet, peers=[*(kw.pop("peers", None) or []), *peers], **kw)
        raise DaemonError(f"the index has neither a .torrent nor a magnet for {name!r}", 404, "not_found")

    # -- starting and stopping one torrent -----------------------------------------------------

    def _start(
        self, entry: _Entry, *, recheck: bool = False, paused: bool = False, held: bool = False
    ) -> None:
        """Queue the torrent for the session (``paused``: opened, checked and left paused; ``held``:
        the same, waiting for the automation's queue to release it). A magnet without metadata is
        never held before it has its metadata."""
        held = held and entry.torrent is not None
        entry.held = held
        entry.life.fire(Event.QUEUE)
        entry.error = None
        task = entry.task = asyncio.get_running_loop().create_task(
            self._run_start(entry, recheck, paused or held)
        )
        self._starting += 1
        task.add_done_callback(lambda t: self._started_one(entry, t))

    def _started_one(self, entry: _Entry, task: asyncio.Task[None]) -> None:
        """A start ended: the entry lets go of its task (a finished task is ~0.7 KiB). Once a large
        batch of starts is done (the daemon's start-up with thousands of torrents), the objects made
        so far leave the cyclic garbage collector's care: its full passes over half a gigabyte of
        engine objects were the list latency's p99 (issue 24)."""
        if entry.task is task:
            entry.task = None
        self._starting -= 1
        if task in self._restoring:
            self._restoring.discard(task)
            if not self._restoring:
                self._restored()
                return
        if self._starting == 0 and len(self._entries) >= self.gc_batch:
            gc.collect()
            gc.freeze()

    def _restored(self) -> None:
        """Every saved torrent's start ended: their first announces go out (spread), the automation
        runs, and the GC paused by :meth:`start` runs again, with the objects made so far frozen."""
        session_gate(self.session).release()
        self.automation.poke()
        if self._gc_paused:
            # no collection first: after 10,000 starts it found nothing unreachable and took 1.4 s
            self._gc_paused = False
            gc.freeze()
            gc.enable()

    async def _run_start(self, entry: _Entry, recheck: bool, paused: bool) -> None:
        rec = entry.rec
        if entry.torrent is None and rec.magnet is None:  # a saved torrent that could not be restored
            entry.life.fire(Event.FAIL)
            entry.error = entry.error or "cannot be restored: no metainfo and no magnet link"
            return
        restore = asyncio.current_task() in self._restoring and self.data.resume_file(rec.id).exists()
        async with self._restores if restore else self._starts:
            if recheck:
                with contextlib.suppress(FileNotFoundError):
                    self.data.resume_file(rec.id).unlink()
            entry.check = (0, 0)

            def progress(done: int, total: int) -> None:
                entry.check = (done, total)

            try:
                source: Torrent | str = entry.torrent if entry.torrent is not None else (rec.magnet or "")
                handle = await self.session.add(
                    source,
                    rec.save_path,
                    trackers=rec.trackers,
                    peers=rec.peers,
                    file_priorities=rec.priorities if entry.torrent is not None else None,
                    resume_dir=self.data.resume,
                    progress=progress,
                    lifecycle=entry.life,
                    paused=paused,
                )
            except (BitswarmError, OSError, ValueError) as exc:  # the engine fired ``fail``
                entry.error = str(exc)
                log.warning("%s: cannot start: %s", rec.name, exc)
                self._publish("error", entry, error=entry.error)
                return
        if entry.torrent is None:  # a magnet that got its metadata (BEP 9)
            entry.torrent = handle.torrent
            rec.name = handle.name
            raw = handle.torrent.raw or _metainfo_bytes(handle.torrent)
            rec.metadata_only = not handle.torrent.piece_layers
            rec.total_size, rec.num_pieces = handle.torrent.info.total_size, handle.torrent.info.num_pieces
            self.data.save_metainfo(rec.id, raw)
            self.data.save_record(rec)
        if handle.save_path != rec.save_path:  # a move cut short by a kill, finished on opening
            rec.save_path = handle.save_path
            self.data.save_record(rec)
        entry.handle = handle
        entry.have = None
        handle.set_rate_limits(download=rec.download_limit, upload=rec.upload_limit)
        if isinstance(rec.compat.get("super_seed"), bool):  # this torrent's own BEP 16 switch
            handle.set_super_seed(rec.compat["super_seed"])
        if paused and not entry.held and not rec.paused and entry.life.state is State.PAUSED:
            self._in_background(entry, self._guarded(entry, handle.resume()))  # released while checking
        self._publish("started", entry)
        if not self._restoring:  # the start-up batch pokes it once, at its end (10,000 ticks saved)
            self.automation.poke()

    async def _cancel_tasks(self, entry: _Entry) -> None:
        for task in (entry.task, entry.job):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        entry.task = entry.job = None

    async def _stop(self, entry: _Entry) -> None:
        """Take the torrent out of the session (data and resume data stay)."""
        await self._cancel_tasks(entry)
        handle, entry.handle = entry.handle, None
        if handle is not None:
            self._snapshot(entry)
            known = handle.known_peers()
            with contextlib.suppress(SessionError, StorageError):  # a failed final save: data stays
                await self.session.remove(handle)
            entry.rec.peers = _clean_peers([*entry.rec.peers, *known])[:200]
        self._load_have(entry)

    async def _opened(self, entry: _Entry) -> TorrentHandle:
        """The torrent's handle; one that is paused outside the session is opened (checked) paused
        first. 409 while it is being started, or when it cannot be opened."""
        if entry.handle is None and entry.life.state is State.PAUSED and entry.torrent is not None:
            self._start(entry, paused=True, held=entry.held)
            assert entry.task is not None
            await asyncio.shield(entry.task)
        if entry.handle is None:
            state = DISPLAY_NAME[entry.life.state]
            raise DaemonError(f"the torrent is {state}, not in the session", 409, "not_running")
        return entry.handle

    def _in_background(self, entry: _Entry, job: Coroutine[Any, Any, None]) -> None:
        """Run a recheck or move after the reply (the reply shows ``checking`` or ``moving``)."""
        task = entry.job = asyncio.get_running_loop().create_task(job)
        task.add_done_callback(lambda t: _let_go(entry, t))

    def _snapshot(self, entry: _Entry) -> bool:
        """Copy the running torrent's progress into its record; True if that changed it."""
        if entry.handle is None:
            return False
        st = entry.handle.status()
        rec = entry.rec
        before = (rec.progress, rec.done_size, rec.wanted_size)
        before_pieces = (rec.total_size, rec.pieces_done, rec.num_pieces)
        rec.progress, rec.done_size, rec.wanted_size = st.progress, st.done_size, st.wanted_size
        rec.total_size, rec.pieces_done, rec.num_pieces = st.total_size, st.pieces_done, st.num_pieces
        return before != (rec.progress, rec.done_size, rec.wanted_size) or before_pieces != (
            rec.total_size,
            rec.pieces_done,
            rec.num_pieces,
        )

    def _load_have(self, entry: _Entry) -> None:
        if entry.torrent is None:
            return
        n = entry.torrent.info.num_pieces
        data = load_resume(str(self.data.resume_file(entry.rec.id)))
        have = Bitfield(n)
        if data is not None and data.num_pieces == n:
            with contextlib.suppress(BitswarmError, ValueError):
                have = Bitfield.from_bytes(data.pieces, n)
        entry.have = have

    def _entry(self, torrent_id: str, *, usable: bool = False) -> _Entry:
        """The torrent's entry; ``usable``: refuse (409) one that could not be restored at start-up
        (it can only be looked at and removed)."""
        entry = self._entries.get(str(torrent_id).lower())
        if entry is None:
            raise _not_found(torrent_id)
        if usable and entry.torrent is None and entry.rec.magnet is None:
            reason = entry.error or "cannot be restored"
            raise DaemonError(f"{reason} (remove it and add it again)", 409, "unrestorable")
        return entry

    # -- operations ----------------------------------------------------------------------------

    async def pause(self, torrent_id: str) -> dict[str, Any]:
        """The engine closes the torrent's connections and keeps it, its peers and resume data; one
        that is still starting stops starting."""
        entry = self._entry(torrent_id, usable=True)
        async with entry.locked():
            entry.held = False
            if not entry.rec.paused:
                entry.rec.paused = True
                self.data.save_record(entry.rec)
                try:
                    await self._pause(entry)
                except LifecycleError as exc:
                    raise _refused(exc) from None
                self._publish("paused", entry)
        return self.status(entry)

    async def _pause(self, entry: _Entry) -> None:
        if entry.handle is not None:
            if entry.job is not None and not entry.job.done():
                await entry.job  # a recheck or move finishes first (the engine runs one at a time)
            await entry.handle.pause()
            self._snapshot(entry)
            self.data.save_record(entry.rec)
            return
        if entry.life.can(Event.PAUSE):
            entry.life.fire(Event.PAUSE)  # before the cancel: the cancelled add keeps it paused
        await self._cancel_tasks(entry)
        self._load_have(entry)

    async def resume(self, torrent_id: str) -> dict[str, Any]:
        """Resume a paused torrent (the engine dials the peers it knew); retry one in error."""
        entry = self._entry(torrent_id, usable=True)
        async with entry.locked():
            if entry.rec.paused or entry.life.state is State.ERROR:
                entry.rec.paused = False
                self.data.save_record(entry.rec)
                queued = self.queueing() and entry.life.state is not State.ERROR
                if entry.handle is not None and queued:  # waits in the queue (engine-paused)
                    entry.held = True
                elif entry.handle is not None:  # an error is rechecked first
                    self._in_background(entry, self._guarded(entry, entry.handle.resume()))
                elif entry.task is None or entry.task.done():
                    self._start(entry, held=queued)
                self._publish("resumed", entry)
                self.automation.poke()
        await asyncio.sleep(0)  # the resume has begun: the reply shows where it went
        return self.status(entry)

    async def remove(self, torrent_id: str, *, delete_data: bool = False) -> dict[str, Any]:
        entry = self._entry(torrent_id)
        async with entry.locked():
            if self._entries.get(entry.rec.id) is not entry:
                raise _not_found(torrent_id)
            await self._stop(entry)
            num = entry.rec.compat.get("num")
            if _is_num(num) and num > int(self.setting("last_num", 0) or 0):
                self.set_setting("last_num", num)  # never given again, even after a restart
            del self._entries[entry.rec.id]
            self._dirty.discard(entry.rec.id)
            self._dirty_time.discard(entry.rec.id)
            self.data.delete(entry.rec.id)
            if delete_data and entry.torrent is not None:
                await asyncio.to_thread(_delete_data, entry.torrent, entry.rec.save_path)
            self._publish("removed", entry, deleted_data=delete_data)
        return {"id": entry.rec.id, "removed": True, "deleted_data": delete_data}

    async def recheck(self, torrent_id: str) -> dict[str, Any]:
        """Hash every piece again in the background (the engine's recheck; peers are dialed again
        after it); a paused torrent stays paused. One still starting starts over without its resume
        data."""
        entry = self._entry(torrent_id, usable=True)
        if entry.torrent is None:
            raise DaemonError("the torrent has no metadata yet", 409, "no_metadata")
        async with entry.locked():
            if entry.handle is None and entry.life.state is not State.PAUSED:
                await self._cancel_tasks(entry)  # queued, checking or failed: start over, hashing all
                self._start(entry, recheck=True)
            else:
                handle = await self._opened(entry)

                def progress(done: int, total: int) -> None:
                    entry.check = (done, total)

                entry.check = (0, 0)
                self._in_background(entry, self._guarded(entry, handle.recheck(progress)))
            self._publish("rechecking", entry)
        await asyncio.sleep(0)  # the engine has fired ``check``: the reply shows it
        return self.status(entry)

    async def _guarded(self, entry: _Entry, job: Coroutine[Any, Any, None]) -> None:
        """A background control: a refusal or failure is logged and published (the engine keeps the
        torrent's error in its status)."""
        try:
            await job
        except BitswarmError as exc:
            log.warning("%s: %s", entry.rec.name, exc)
            self._publish("error", entry, error=str(exc))
        finally:
            if entry.handle is not None:
                self._snapshot(entry)
                self.data.save_record(entry.rec)

    async def move(self, torrent_id: str, save_path: str) -> dict[str, Any]:
        """Move the torrent's files to ``save_path`` in the background; it goes on seeding or
        downloading from there (the engine's ``move_storage``: atomic per file, and a move cut short
        by a kill is finished at the next start)."""
        entry = self._entry(torrent_id, usable=True)
        target = self._save_path(save_path)
        async with entry.locked():
            if entry.torrent is None:  # a magnet without metadata: nothing on disk yet
                if entry.handle is None and (entry.task is None or entry.task.done()):
                    entry.rec.save_path = str(target)
                    self.data.save_record(entry.rec)
                    return self.status(entry)
                raise DaemonError("the torrent is fetching its metadata", 409, "no_metadata")
            try:
                FileMap(entry.torrent.info, target)  # every file path must stay inside the new path
            except StorageError as exc:
                raise DaemonError(f"cannot move there: {exc}", 400, "bad_path") from None
            handle = await self._opened(entry)
            if not handle.lifecycle.can(Event.MOVE):
                raise _refused(LifecycleError(handle.state, Event.MOVE))
            self._in_background(entry, self._guarded(entry, self._run_move(entry, handle, target)))
            self._publish("moving", entry, save_path=str(target))
        await asyncio.sleep(0)  # the engine has fired ``move``: the reply shows ``moving``
        return self.status(entry)

    async def _run_move(self, entry: _Entry, handle: TorrentHandle, target: Path) -> None:
        await handle.move_storage(target)
        entry.rec.save_path = handle.save_path
        self.data.save_record(entry.rec)
        self._publish("moved", entry, save_path=entry.rec.save_path)

    def _file_priorities(self, torrent: Torrent, priorities: list[int]) -> list[int]:
        """API priorities (one per data file, pads hidden) → engine priorities (per ``info.files``)."""
        files = torrent.info.files
        data_idx = [i for i, f in enumerate(files) if not f.pad]
        if not isinstance(priorities, list) or len(priorities) != len(data_idx):
            raise DaemonError(f"give {len(data_idx)} priorities (one per file), got {_len(priorities)}")
        out = [0] * len(files)
        for k, p in zip(data_idx, priorities, strict=True):
            if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= MAX_PRIORITY:
                raise DaemonError(f"priorities are integers 0..{MAX_PRIORITY} (0: skip the file)")
            out[k] = p
        return out

    async def set_priorities(self, torrent_id: str, priorities: list[int]) -> dict[str, Any]:
        entry = self._entry(torrent_id, usable=True)
        if entry.torrent is None:
            raise DaemonError("the torrent has no metadata yet", 409, "no_metadata")
        prios = self._file_priorities(entry.torrent, priorities)
        async with entry.locked():
            entry.rec.priorities = prios
            self.data.save_record(entry.rec)
            if entry.handle is not None:  # live: the engine fetches what is wanted now
                await entry.handle.set_file_priorities(prios)
            elif entry.task is not None and not entry.task.done():  # starting: start with them
                await self._cancel_tasks(entry)
                self._start(entry)
            self._publish("priorities", entry)
        return self.details(entry.rec.id)

    async def set_limits(
        self, torrent_id: str, *, download: int | None = None, upload: int | None = None
    ) -> dict[str, Any]:
        entry = self._entry(torrent_id, usable=True)
        rec = entry.rec
        if download is not None:
            rec.download_limit = _rate(download)
        if upload is not None:
            rec.upload_limit = _rate(upload)
        self.data.save_record(rec)
        if entry.handle is not None:
            entry.handle.set_rate_limits(download=rec.download_limit, upload=rec.upload_limit)
        self._publish("limits", entry)
        return self.status(entry)

    def set_super_seed(self, torrent_id: str, value: bool | None) -> dict[str, Any]:
        """This torrent's BEP 16 super-seeding switch (None: the daemon's ``super_seed`` setting);
        kept in its record and applied at once when it runs."""
        entry = self._entry(torrent_id)
        if value is None:
            entry.rec.compat.pop("super_seed", None)
        else:
            entry.rec.compat["super_seed"] = value
        self.data.save_record(entry.rec)
        if entry.handle is not None:
            entry.handle.set_super_seed(value)
        self._publish("super_seed", entry)
        return self.status(entry)

    def global_limits(self) -> dict[str, int]:
        """The normal global limits (the alternative ones are in :meth:`settings`)."""
        return {
            "download_limit": int(self._settings.get("download_limit", 0) or 0),
            "upload_limit": int(self._settings.get("upload_limit", 0) or 0),
        }

    def set_global_limits(self, *, download: int | None = None, upload: int | None = None) -> dict[str, int]:
        if download is not None:
            self._settings["download_limit"] = _rate(download)
        if upload is not None:
            self._settings["upload_limit"] = _rate(upload)
        self.data.save_settings(self._settings)
        self.apply_rates(*self._rates_now())
        self.automation.rates_changed()
        limits = self.global_limits()
        self._broadcast({"event": "limits", **limits})
        return limits

    # -- views ---------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return list(self._entries)

    def status(self, entry: _Entry, positions: dict[str, int] | None = None) -> dict[str, Any]:
        rec = entry.rec
        out: dict[str, Any]
        if entry.handle is not None:
            out = dict(entry.handle.status().as_dict())
            out.pop("info_hash", None)
        else:
            out = {
                "name": rec.name,
                "state": DISPLAY_NAME[entry.life.state],
                "progress": rec.progress,
                "total_size": rec.total_size,
                "wanted_size": rec.wanted_size,
                "done_size": rec.done_size,
                "pieces_done": rec.pieces_done,
                "num_pieces": rec.num_pieces,
                "download_rate": 0.0,
                "upload_rate": 0.0,
                "downloaded": 0,
                "uploaded": 0,
                "peers": 0,
                "seeds": 0,
                "known_peers": 0,
                "eta": None,
                "error": entry.error,
                "redundant": 0,
                "waiting_reason": None,
            }
            if entry.torrent is not None and not rec.wanted_size:
                info = entry.torrent.info
                have = entry.have or Bitfield(info.num_pieces)
                out["pieces_done"] = have.count()
                out["num_pieces"] = info.num_pieces
                out["total_size"] = info.total_size
                done = sum(info.piece_size(i) for i in have.iter_set())
                out["done_size"], out["wanted_size"] = done, info.piece_space
                out["progress"] = done / info.piece_space if info.piece_space else 1.0
        if entry.life.state is State.ERROR and not out.get("error"):
            out["error"] = entry.error or "failed"
        done, total = entry.check
        out.update(
            id=rec.id,
            save_path=rec.save_path,
            added_at=rec.added_at,
            paused=rec.paused,
            download_limit=rec.download_limit,
            upload_limit=rec.upload_limit,
            check_progress=(done / total) if total else None,
            magnet=rec.magnet,
            queue_position=(positions or self._positions()).get(rec.id, 0),
            category=str(rec.compat.get("category", "") or ""),
            tags=list(rec.compat.get("tags", []) or []),
            # BEP 16: the switch (own, else the session's) and whether it is super-seeding now
            super_seed=(
                entry.handle.super_seed
                if entry.handle is not None
                else bool(rec.compat.get("super_seed", self.session.config.super_seed))
            ),
            super_seeding=entry.handle is not None and entry.handle.super_seeding,
            downloaded_ever=rec.downloaded_ever,
            uploaded_ever=rec.uploaded_ever,
            ratio=ratio_of(rec.uploaded_ever, rec.downloaded_ever, rec.wanted_size or rec.total_size),
            seeding_time=int(rec.seeding_seconds),
            goals=dict(rec.goals),
            goal_reached=rec.goal_reached,
            held=entry.held,
            stalled=self.automation.stalled(rec.id, self._stalled_minutes()),
        )
        if entry.held and out["state"] in ("paused", "stopped", "queued"):
            out["state"] = "queued"  # waiting for a slot of the automation's queue
        if out.get("eta") is not None and out["eta"] != out["eta"]:  # NaN never reaches JSON
            out["eta"] = None
        return out

    def peer_list(self, torrent_id: str) -> builtins.list[dict[str, object]]:
        """The torrent's connected peers (``details()["peer_list"]`` alone; empty outside the session)."""
        handle = self._entry(torrent_id).handle
        return handle.peers() if handle is not None else []

    def list(self) -> list[dict[str, Any]]:
        """Every torrent's status. The dicts are shared with the next calls: read them, never
        change them (each is rebuilt when something it shows changed, but its ``seeding_time`` is
        updated in place: copy one to keep it as it is; issue 24)."""
        return [shown.status for shown in self._shown_all()]

    def list_json(self, statuses: builtins.list[dict[str, Any]] | None = None) -> bytes:
        """:meth:`list` (or ``statuses``, a :meth:`list` of a moment ago) as a JSON array, from
        each torrent's cached JSON."""
        with gc_paused():
            if statuses is None:  # no look-up of each entry
                return b"[" + b",".join([_json_of(shown) for shown in self._shown_all()]) + b"]"
            parts = []
            for st in statuses:
                entry = self._entries.get(st["id"])
                shown = entry.shown if entry is not None else None
                if shown is None or shown.status is not st:  # rebuilt each time (busy), or gone
                    parts.append(_dumps(st))
                else:
                    parts.append(_json_of(shown))
            return b"[" + b",".join(parts) + b"]"

    def _shown_all(self) -> builtins.list[_Shown]:
        positions = self._positions()
        minutes = self._stalled_minutes()
        with gc_paused():
            return [self._shown(e, positions, minutes) for e in self._entries.values()]

    def _shown(self, entry: _Entry, positions: dict[str, int], minutes: float) -> _Shown:
        """The entry's status from its cache, rebuilt when any of what :meth:`status` reads
        changed (the engine's :meth:`~bitswarm.session.TorrentHandle.status_version`, the record,
        the entry, the queue position, the stall), always while the engine's status moves."""
        rec, handle, have = entry.rec, entry.handle, entry.have
        engine: tuple[object, ...] | None
        if handle is not None:
            engine = handle.status_version()
            if engine is None:  # peers, downloading or a rate: rebuilt every time
                entry.shown = None
                return _Shown((), self.status(entry, positions))
        else:
            engine = (entry.torrent, have, have.count() if have is not None else 0)
        # the record's fields the status reads, in one C call; the kept key holds copies of its
        # dicts (changed in place), so equal keys mean equal values
        fields = _RECORD_SHOWN(rec)
        key = (
            engine, handle, entry.life.state, entry.error, entry.check, entry.held,
            positions.get(rec.id, 0), self.automation.stalled(rec.id, minutes),
            self.session.config.super_seed, fields,
        )  # fmt: skip
        shown = entry.shown
        if shown is None or shown.key != key:
            key = (*key[:-1], copy.deepcopy(fields))
            shown = entry.shown = _Shown(key, self.status(entry, positions))
        else:  # the accounting adds seeding time to every seed: not a rebuild of each
            shown.status["seeding_time"] = int(rec.seeding_seconds)
        return shown

    def details(self, torrent_id: str, positions: dict[str, int] | None = None) -> dict[str, Any]:
        entry = self._entry(torrent_id)
        out = self.status(entry, positions)
        torrent = entry.torrent
        out["files"] = []
        out["trackers"] = []
        out["peer_list"] = []
        out["pieces"] = None
        if torrent is None:
            return out
        info = torrent.info
        handle = entry.handle
        have = handle.pieces() if handle is not None else (entry.have or Bitfield(info.num_pieces))
        prios = entry.rec.priorities or [1] * len(info.files)
        if handle is not None:
            prios = handle.file_priorities()
        fmap = FileMap(info, entry.rec.save_path)
        k = 0
        for i, f in enumerate(info.files):
            if f.pad:
                continue
            pieces = fmap.file_pieces(i) if f.length else range(0)
            got = sum(1 for p in pieces if have.get(p))
            mime = mimetypes.guess_type(f.path[-1] if f.path else info.name)[0] or ""
            out["files"].append(
                {
                    "index": k,
                    "path": f.path_str,
                    "length": f.length,
                    "priority": prios[i] if i < len(prios) else 1,
                    "progress": (got / len(pieces)) if len(pieces) else 1.0,
                    "mime": mime,
                    "media": mime.startswith(("video/", "audio/")),
                    "stream_url": f"/api/v1/torrents/{entry.rec.id}/files/{k}/stream",
                }
            )
            k += 1
        out["trackers"] = tracker_rows(handle, self._tiers(entry))
        if entry.handle is not None:
            out["peer_list"] = entry.handle.peers()
        out["pieces"] = have.to_bytes().hex()
        out["piece_length"] = info.piece_length
        out["info_hash_v1"] = torrent.info_hash_v1.hex() if torrent.info_hash_v1 else None
        out["info_hash_v2"] = torrent.info_hash_v2.hex() if torrent.info_hash_v2 else None
        out["private"] = info.private
        out["comment"] = torrent.comment
        if not out["magnet"]:
            with contextlib.suppress(Exception):
                out["magnet"] = magnet_from_torrent(torrent).to_uri()
        return out

    def _tiers(self, entry: _Entry) -> Tiers:
        if entry.handle is not None:
            return entry.handle.trackers
        torrent_tiers = _flat(entry.torrent.trackers) if entry.torrent is not None else []
        return [[u] for u in [*torrent_tiers, *entry.rec.trackers]]

    def trackers(self, torrent_id: str) -> dict[str, Any]:
        """Each tracker's last announce (result, peers, error, next announce), the DHT, the peers
        known and why a downloading torrent has no peer."""
        entry = self._entry(torrent_id)
        return tracker_report(entry.handle, self._tiers(entry))

    def handle(self, torrent_id: str) -> TorrentHandle:
        entry = self._entry(torrent_id)
        if entry.handle is None or entry.life.state in (State.PAUSED, State.ERROR):
            raise DaemonError("the torrent is not running (resume it first)", 409, "not_running")
        return entry.handle

    def stats(self, statuses: builtins.list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Totals over every torrent (``statuses``: a :meth:`list` of a moment ago, not built again)."""
        sts = self.list() if statuses is None else statuses
        dht = getattr(self.session, "dht", None)
        return {
            "version": __version__,
            "uptime": time.time() - self.started_at,
            "listen_port": self.session.port,
            "torrents": len(sts),
            "active": sum(1 for s in sts if s["state"] in _ACTIVE),
            "downloading": sum(1 for s in sts if s["state"] == "downloading"),
            "seeding": sum(1 for s in sts if s["state"] == "seeding"),
            "paused": sum(1 for s in sts if s["state"] == "paused"),
            "download_rate": sum(s["download_rate"] for s in sts),
            "upload_rate": sum(s["upload_rate"] for s in sts),
            "downloaded": sum(s["downloaded"] for s in sts),
            "uploaded": sum(s["uploaded"] for s in sts),
            "peers": sum(s["peers"] for s in sts),
            "dht": dht is not None,
            "encryption": self.session.config.encryption.value,  # MSE/PE policy (daemon.toml)
            "alt_speed_enabled": bool(self.automation_settings()["alt_speed_enabled"]),
            "queueing": self.queueing(),
            #: UPnP/NAT-PMP mapping state and the external address (session/reachability.py)
            "reachability": self.session.reachability.status(),
            #: the IP blocklist's counts and the proxy (privacy.py)
            "privacy": self.privacy.status(),
            "data_dir": str(self.data.root),
            "download_dir": str(self.download_dir),
            **self.global_limits(),
        }

    # -- automation: settings, queue, seeding goals, categories, tags (automation.py) -----------

    def automation_settings(self) -> dict[str, Any]:
        """Every setting of :data:`~bitswarm.daemon.automation.SPECS` (saved or default)."""
        return settings_view(self._settings)

    def settings(self) -> dict[str, Any]:
        """The settings page's view: every automation setting, categories, tags, the download dir,
        and the watch folder's last outcomes."""
        out = self.automation_settings()
        out["categories"] = self.categories()
        out["tags"] = self.tags()
        out["download_dir"] = str(self.download_dir)
        out["listen_port"] = self.session.port
        out["encryption"] = self.session.config.encryption.value
        out["transports"] = ", ".join(self.session.config.transports)
        out["holepunch"] = "on" if self.session.config.enable_holepunch else "off"
        pv = self.privacy.status()
        out["blocklist_status"] = pv["blocklist_error"] or (
            f"{pv['blocklist_rules']} rules, {pv['blocklist_ranges']} ranges, "
            f"{pv['blocklist_blocked']} refused" + (" (loading)" if pv["blocklist_loading"] else "")
        )
        out["watch_results"] = [
            {"file": r.path.name, "outcome": r.outcome, "detail": r.detail[:300]}
            for r in (self.watch.results if self.watch is not None else [])
        ]
        return out

    def update_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Validate and save ``changes`` (keys of SPECS), then apply them: limits and the schedule
        at once, the queue and the goals at the next tick (now), the watch folder restarted."""
        if not isinstance(changes, dict):
            raise DaemonError("settings must be an object")
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            try:
                checked[key] = check_setting(str(key), value)
            except SettingsError as exc:
                raise DaemonError(str(exc), 400, "bad_setting") from None
        for key in ("watch_dir", "watch_done_dir"):
            path = checked.get(key)
            if path and not Path(path).expanduser().is_absolute():
                raise DaemonError(f"{key} must be an absolute path", 400, "bad_setting")
        if checked.get("watch_category"):
            _check_category(checked["watch_category"])
        old = self.automation_settings()
        self._settings.update(checked)
        self.data.save_settings(self._settings)
        new = self.automation_settings()
        changed = {k for k in SPECS if old[k] != new[k]}
        if any(k.startswith("seed_") for k in changed):  # new goals: every seed is judged again
            for entry in self._entries.values():
                if entry.rec.goal_reached:
                    entry.rec.goal_reached = False
                    self.data.save_record(entry.rec)
        if any(k.startswith("watch_") for k in changed):
            self._configure_watch()
        if changed & BLOCKLIST_KEYS:
            self.privacy.configure(new)
        self.apply_rates(*self._rates_now())
        self.automation.rates_changed()
        self._broadcast({"event": "settings", "changed": sorted(changed)})
        return self.settings()

    def _stalled_minutes(self) -> float:
        value = self._settings.get("queue_stalled_minutes")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return float(SPECS["queue_stalled_minutes"].default)

    def queueing(self) -> bool:
        """Whether a queue limit is on (torrents then start held, the queue releases them in order)."""
        st = self.automation_settings()
        return bool(st["queue_downloads_enabled"] or st["queue_seeds_enabled"])

    def _rates_now(self) -> tuple[int, int]:
        st = self.automation_settings()
        if st["alt_speed_enabled"]:
            return int(st["alt_speed_down"]), int(st["alt_speed_up"])
        return int(st["download_limit"]), int(st["upload_limit"])

    def apply_rates(self, download: int, upload: int) -> None:
        """Set the session's global limits (the normal or the alternative ones)."""
        self.session.download_limiter.set_rate(download)
        self.session.upload_limiter.set_rate(upload)

    def set_alt_speed(self, enabled: bool) -> None:
        self._settings["alt_speed_enabled"] = enabled
        self.data.save_settings(self._settings)
        self._broadcast({"event": "alt_speed", "enabled": enabled})

    def views(self, ids: Iterable[str] | None = None) -> builtins.list[TorrentView]:
        """What the automation reads: every torrent in queue order (``ids``: those, in that
        order). Cheap per torrent: no status dictionary for one in the session (issue 24)."""
        out: builtins.list[TorrentView] = []
        positions: dict[str, int] | None = None
        for tid in self.queue_order() if ids is None else ids:
            entry = self._entries.get(tid)
            if entry is None:
                continue
            rec, handle = entry.rec, entry.handle
            if handle is not None:
                down, up, wanted, done = handle.totals()
                progress = done / wanted if wanted else 1.0
                size = wanted or (entry.torrent.info.total_size if entry.torrent is not None else 0)
            else:
                if positions is None:
                    positions = self._positions()
                st = self.status(entry, positions)
                down = up = 0
                progress = float(st["progress"] or 0.0)
                size = int(st["wanted_size"] or st["total_size"] or 0)
            usable = entry.torrent is not None or rec.magnet is not None
            state = handle.state if handle is not None else entry.life.state
            busy = entry.job is not None and not entry.job.done()
            out.append(
                TorrentView(
                    id=tid,
                    wanted=usable and not rec.paused and state is not State.ERROR,
                    complete=entry.torrent is not None and progress >= 1.0,
                    held=entry.held,
                    holdable=handle is not None and not busy and state in (State.DOWNLOADING, State.SEEDING),
                    seeding=handle is not None and state is State.SEEDING and not entry.held,
                    counters=(id(handle), down, up) if handle else _NONE,
                    uploaded_ever=rec.uploaded_ever,
                    downloaded_ever=rec.downloaded_ever,
                    size=size,
                    seeding_seconds=rec.seeding_seconds,
                    goals=rec.goals,
                    goal_reached=rec.goal_reached,
                )
            )
        return out

    def active_ids(self) -> builtins.list[str]:
        """Torrents whose counters may move now (connected to a peer, or downloading): the
        engine's set of busy torrents, not a scan of every torrent (issue 24)."""
        out = []
        for swarm_hash in busy_torrents(self.session):
            tid = swarm_hash.hex()
            entry = self._entries.get(tid)
            if entry is not None and entry.handle is not None:
                out.append(tid)
        return out

    def account(self, torrent_id: str, downloaded: int, uploaded: int, seeding_seconds: float) -> None:
        entry = self._entries.get(torrent_id)
        if entry is None:
            return
        rec = entry.rec
        rec.downloaded_ever += downloaded
        rec.uploaded_ever += uploaded
        rec.seeding_seconds += seeding_seconds
        if downloaded or uploaded:
            self._dirty.add(torrent_id)
        else:  # seeding time alone: 10,000 idle seeds must not rewrite 10,000 records every 30 s
            self._dirty_time.add(torrent_id)
        now = self.clock()
        if now - self._flushed_time >= 600.0:  # seeding time alone every 10 min (and at close)
            self._flushed_time = now
            self._dirty |= self._dirty_time
            self._dirty_time.clear()
        if now - self._flushed >= 30.0 and self._dirty:  # the totals every 30 s (and at close)
            self._flushed = now
            for tid in list(self._dirty):
                e = self._entries.get(tid)
                if e is not None:
                    self.data.save_record(e.rec)
            self._dirty.clear()

    async def hold(self, torrent_id: str) -> None:
        """The queue holds the torrent: the engine pauses it, it shows ``queued``."""
        entry = self._entries.get(torrent_id)
        if entry is None or entry.rec.paused:
            return
        async with entry.locked():
            entry.held = True
            if entry.handle is not None and entry.handle.state in (State.DOWNLOADING, State.SEEDING):
                await entry.handle.pause()
                self._snapshot(entry)
        self._publish("queued", entry)

    async def release(self, torrent_id: str) -> None:
        """The queue gives the torrent a slot: the engine resumes it (or starts it)."""
        entry = self._entries.get(torrent_id)
        if entry is None:
            return
        async with entry.locked():
            if not entry.held or entry.rec.paused:
                return
            entry.held = False
            if entry.handle is not None:
                if entry.handle.state is State.PAUSED:
                    self._in_background(entry, self._guarded(entry, entry.handle.resume()))
            elif entry.task is None or entry.task.done():
                self._start(entry)
            # else: still being opened (held): _run_start resumes it when it is open
        self._publish("dequeued", entry)

    async def goal_reached(self, torrent_id: str, action: str, reason: str) -> None:
        """A seeding goal was reached: pause the torrent, or remove it (its data stays)."""
        entry = self._entries.get(torrent_id)
        if entry is None:
            return
        entry.rec.goal_reached = True
        self.data.save_record(entry.rec)
        self._publish("goal_reached", entry, reason=reason, action=action)
        if action == "remove":
            await self.remove(torrent_id)
        else:
            await self.pause(torrent_id)

    async def set_goals(self, torrent_id: str, goals: dict[str, Any]) -> dict[str, Any]:
        """This torrent's seeding goals (automation.check_goals); a reached goal is judged again."""
        entry = self._entry(torrent_id)
        try:
            checked = check_goals(goals)
        except SettingsError as exc:
            raise DaemonError(str(exc), 400, "bad_setting") from None
        entry.rec.goals.update(checked)
        entry.rec.goal_reached = False
        self.data.save_record(entry.rec)
        self.automation.poke()
        return self.status(entry)

    def goals(self, torrent_id: str) -> dict[str, Any]:
        """The torrent's goals with the limits in force (``ratio_limit``/``time_minutes`` None: none)."""
        rec = self._entry(torrent_id).rec
        ratio, minutes = effective_goals(self.automation_settings(), rec.goals)
        return {"own": dict(rec.goals), "ratio_limit": ratio, "time_minutes": minutes}

    # queue order (kept in settings.json: ``queue_order``; torrents not in it follow, oldest first)

    def queue_order(self) -> builtins.list[str]:
        """Every torrent id in queue order."""
        ids = list(self._entries)
        known = set(ids)
        saved = [t for t in self._settings.get("queue_order", []) or [] if isinstance(t, str) and t in known]
        seen = set(saved)
        return saved + [t for t in ids if t not in seen]

    def positions(self) -> dict[str, int]:
        """Torrent id → queue position (0 first)."""
        return self._positions()

    def _positions(self) -> dict[str, int]:
        return {tid: i for i, tid in enumerate(self.queue_order())}

    def move_in_queue(self, torrent_ids: builtins.list[str], where: str) -> None:
        """``where``: top, up, down or bottom (the queue is applied at once)."""
        order = self.queue_order()
        chosen_set = set(torrent_ids)
        chosen = [t for t in order if t in chosen_set]
        if where == "top":
            order = chosen + [t for t in order if t not in chosen_set]
        elif where == "bottom":
            order = [t for t in order if t not in chosen_set] + chosen
        elif where in ("up", "down"):
            step = -1 if where == "up" else 1
            for tid in chosen if step < 0 else reversed(chosen):
                i = order.index(tid)
                j = i + step
                if 0 <= j < len(order) and order[j] not in chosen_set:
                    order[i], order[j] = order[j], order[i]
        else:
            raise DaemonError("where must be top, up, down or bottom")
        self.set_setting("queue_order", order)
        self.automation.poke()

    def set_queue_position(self, torrent_id: str, position: int) -> None:
        """Put the torrent at ``position`` (0 = first; past the end = last)."""
        tid = self._entry(torrent_id).rec.id
        order = [t for t in self.queue_order() if t != tid]
        order.insert(max(0, min(position, len(order))), tid)
        self.set_setting("queue_order", order)
        self.automation.poke()

    # categories ({name: save path} in settings.json; a torrent's in its record) and tags

    def categories(self) -> dict[str, str]:
        saved = self._settings.get("categories", {}) or {}
        return {str(k): str(v or "") for k, v in saved.items()} if isinstance(saved, dict) else {}

    def set_category_path(self, name: str, save_path: str = "") -> dict[str, str]:
        """Create the category ``name`` or change its save path ("" = the default download dir)."""
        _check_category(name)
        if save_path:
            save_path = str(self._save_path(save_path))
        cats = self.categories()
        cats[name] = save_path
        self.set_setting("categories", cats)
        return cats

    def remove_categories(self, names: builtins.list[str]) -> dict[str, str]:
        gone = set(names)
        cats = {k: v for k, v in self.categories().items() if k not in gone}
        self.set_setting("categories", cats)
        for entry in self._entries.values():
            if entry.rec.compat.get("category") in gone:
                entry.rec.compat["category"] = ""
                self.data.save_record(entry.rec)
        return cats

    def set_category(self, torrent_id: str, name: str) -> dict[str, Any]:
        """Put the torrent in category ``name`` ("" = none); 409 if there is no such category (its
        files stay where they are: move them with :meth:`move`)."""
        entry = self._entry(torrent_id)
        if name and name not in self.categories():
            raise DaemonError(f"no category {name!r} (create it first)", 409, "no_category")
        entry.rec.compat["category"] = name
        self.data.save_record(entry.rec)
        self._publish("category", entry, category=name)
        return self.status(entry)

    def tags(self) -> builtins.list[str]:
        saved = self._settings.get("tags", []) or []
        return sorted({str(t) for t in saved}) if isinstance(saved, list) else []

    def set_tags(self, torrent_id: str, tags: builtins.list[str]) -> dict[str, Any]:
        """The torrent's tags (replacing its old ones; new tags join the tag list)."""
        entry = self._entry(torrent_id)
        clean = _clean_tags(tags)
        entry.rec.compat["tags"] = clean
        self.data.save_record(entry.rec)
        if set(clean) - set(self.tags()):
            self.set_setting("tags", sorted({*self.tags(), *clean}))
        self._publish("tags", entry, tags=clean)
        return self.status(entry)

    def _category_path(self, category: str | None, save_path: str | None) -> str | None:
        """The save path of a torrent added in ``category`` (created when new) unless one is given."""
        if not category:
            return save_path
        _check_category(category)
        cats = self.categories()
        if category not in cats:
            self.set_setting("categories", {**cats, category: ""})
        return save_path or cats.get(category) or None

    def _label(self, rec: TorrentRecord, category: str | None, tags: builtins.list[str] | None) -> None:
        if category:
            rec.compat["category"] = category
        if tags:
            rec.compat["tags"] = _clean_tags(tags)
            self.set_setting("tags", sorted({*self.tags(), *rec.compat["tags"]}))

    # the watch folder

    def _configure_watch(self) -> None:
        """(Re)start the watch folder from the settings (``watch_dir`` empty: none)."""
        self._watch_stop.set()
        if self._watch_task is not None:
            self._watch_task.cancel()
        self._watch_task = None
        self.watch = None
        self.automation.extra = []
        st = self.automation_settings()
        if not st["watch_dir"]:
            return
        category = str(st["watch_category"]) or None
        paused = bool(st["watch_paused"])

        async def add_torrent(data: bytes) -> object:
            return await self.add_torrent(data, paused=paused, category=category)

        async def add_magnet(link: str) -> object:
            return await self.add_magnet(link, paused=paused, category=category)

        done = Path(st["watch_done_dir"]).expanduser() if st["watch_done_dir"] else None
        self.watch = WatchFolder(Path(st["watch_dir"]).expanduser(), add_torrent, add_magnet, done_dir=done)
        self.automation.extra = [self._scan_watch]
        self._watch_stop = asyncio.Event()
        job = self._run_watch(self.watch, self._watch_stop)
        self._watch_task = asyncio.get_running_loop().create_task(job)

    async def _scan_watch(self) -> None:
        if self.watch is not None:
            await self.watch.scan()

    async def _run_watch(self, watch: WatchFolder, stop: asyncio.Event) -> None:
        try:
            await watch.watch(self.automation.poke, stop)
        except (OSError, RuntimeError) as exc:  # the tick's scan still polls the folder
            log.warning("watch folder %s: %s (polled every second instead)", watch.folder, exc)

    # -- for the compatible APIs (transmission.py, qbittorrent.py) -----------------------------

    def record(self, torrent_id: str) -> TorrentRecord:
        """The torrent's saved record (``compat`` holds what the compatible APIs keep); 404 if none."""
        return self._entry(torrent_id).rec

    def row_inputs(
        self, torrent_id: str, *, peers: bool
    ) -> tuple[dict[str, Any], builtins.list[dict[str, Any]] | None]:
        """The record's ``compat`` and (``peers``) the connected peers (:meth:`peer_list`): what a
        compatible API's list row reads beside the status, in one look-up (issue 24)."""
        entry = self._entry(torrent_id)
        if not peers:
            return entry.rec.compat, None
        handle = entry.handle
        return entry.rec.compat, (handle.peers() if handle is not None else [])

    def save_record(self, torrent_id: str) -> None:
        self.data.save_record(self._entry(torrent_id).rec)

    def setting(self, key: str, default: Any = None) -> Any:
        return self._settings.get(key, default)

    def set_setting(self, key: str, value: Any) -> None:
        """Keep ``value`` in settings.json (it must be JSON)."""
        self._settings[key] = value
        self.data.save_settings(self._settings)

    async def reannounce(self, torrent_id: str) -> None:
        """Announce to the trackers now (and look the torrent up on the DHT); 409 unless running."""
        handle = self.handle(torrent_id)
        try:
            await handle.force_reannounce()
        except BitswarmError as exc:
            raise DaemonError(str(exc), 409, "not_running") from None

    # -- events --------------------------------------------------------------------------------

    def _publish(self, kind: str, entry: _Entry, **data: Any) -> None:
        self._broadcast({"event": kind, "id": entry.rec.id, "name": entry.rec.name, **data})

    def _broadcast(self, event: dict[str, Any]) -> None:
        for q in self._subscribers:
            if q.qsize() < 1000:
                q.put_nowait(event)

    async def _pump_events(self) -> None:
        async for ev in self.session.events():
            if ev.kind in FORWARDED_ENGINE_EVENTS:
                self._broadcast({"event": ev.kind, "id": ev.info_hash, "name": ev.name, **ev.data})
            if ev.kind == "torrent_completed":
                entry = self._entries.get(ev.info_hash)
                # a seed found complete at its start changes nothing (10,000 of them at start-up)
                if entry is not None and entry.handle is not None and self._snapshot(entry):
                    self.data.save_record(entry.rec)

    def _snapshot_event(self) -> dict[str, Any]:
        statuses = self.list()
        return {"event": "torrents", "torrents": statuses, "stats": self.stats(statuses)}

    async def events(self, interval: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        """Daemon and engine events as they happen, and a ``torrents`` snapshot (every status) at
        the start and every ``interval`` seconds. Ends when the daemon closes."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(q)
        try:
            yield self._snapshot_event()
            next_tick = time.monotonic() + interval
            while not self.closing.is_set():
                try:
                    ev = await asyncio.wait_for(q.get(), max(0.01, next_tick - time.monotonic()))
                    yield ev
                except TimeoutError:
                    pass
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + interval
                    yield self._snapshot_event()
        finally:
            self._subscribers.discard(q)


_NONE = (0, 0, 0)  #: a torrent outside the session has no counters


#: the API's JSON encoder, made once (``json.dumps`` with options makes one per call: a third of
#: the cost of a small row, one per torrent in a list; issue 24)
_ENCODE: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode
#: the same encoder's C part, made once: ``JSONEncoder.encode`` makes it again at every call, a
#: third of the time of a list row's JSON (10,000 rows per cold list; issue 24)
_C_MAKE_ENCODER: Final = getattr(json.encoder, "c_make_encoder", None)  # None without the C module
_C_ENCODE: Final[Callable[[object, int], Iterable[str]] | None] = (
    _C_MAKE_ENCODER(None, str, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)
    if _C_MAKE_ENCODER is not None
    else None
)


def _dumps(value: object) -> bytes:
    """The API's JSON: compact, no NaN, anything else as its ``str``."""
    if _C_ENCODE is not None and type(value) is dict:
        return "".join(_C_ENCODE(value, 0)).encode()
    return _ENCODE(value).encode()


def _split_at_seeding_time(status: dict[str, Any]) -> tuple[bytes, bytes]:
    """The status's JSON before and after the value of its (top-level) ``seeding_time``: the first
    ``,"seeding_time":`` (no string holds it unescaped; no dict before it in the status)."""
    data = _dumps(status)
    start = data.index(b',"seeding_time":') + len(b',"seeding_time":')
    return data[:start], data[start + len(b"%d" % status["seeding_time"]) :]


class RawJson:
    """JSON text kept as bytes, put into a reply as it is by :func:`dumps_with_raw`."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


#: stands for a :class:`RawJson` while the rest is dumped (random: no string of a reply matches it)
_RAW_MARK = f"raw-json-{secrets.token_hex(16)}-"


def dumps_with_raw(value: object) -> bytes:
    """The API's JSON of ``value`` with each :class:`RawJson` in it spliced in as it is."""
    raws: list[bytes] = []

    def default(obj: object) -> object:
        if isinstance(obj, RawJson):
            raws.append(obj.data)
            return f"{_RAW_MARK}{len(raws) - 1}"
        return str(obj)

    body = json.dumps(value, separators=(",", ":"), allow_nan=False, default=default).encode()
    for i, raw in enumerate(raws):
        body = body.replace(f'"{_RAW_MARK}{i}"'.encode(), raw, 1)
    return body


class RowCache:
    """The Transmission and qBittorrent lists' rows: per torrent the row last built from the
    daemon's cached status (the same dict object while it is valid) and a key of what else it read,
    and the row's JSON (issue 24)."""

    def __init__(self) -> None:
        self._rows: dict[str, list[Any]] = {}  #: id → [status, key, row, JSON or None]

    def get(self, tid: str, status: dict[str, Any], key: tuple[object, ...]) -> dict[str, Any] | None:
        """The row kept for ``tid`` if it was built from ``status`` with an equal ``key``."""
        hit = self._rows.get(tid)
        if hit is not None and hit[0] is status and hit[1] == key:
            row: dict[str, Any] = hit[2]
            return row
        return None

    def refresh(self, tid: str, row: dict[str, Any], field: str, value: object) -> None:
        """Set ``row[field]`` (a value that changes for every torrent at once, the seeding time),
        its JSON made again."""
        if row[field] != value:
            row[field] = value
            hit = self._rows.get(tid)
            if hit is not None and hit[2] is row:
                hit[3] = None

    def put(self, tid: str, status: dict[str, Any], key: tuple[object, ...], row: dict[str, Any]) -> None:
        self._rows[tid] = [status, key, row, None]

    def keep(self, tids: Iterable[str]) -> None:
        """Forget the torrents not in ``tids`` (removed)."""
        for gone in self._rows.keys() - set(tids):
            del self._rows[gone]

    def array(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> RawJson:
        """The JSON array of ``rows`` ((id, row) pairs), each kept row dumped once."""
        parts = []
        for tid, row in rows:
            hit = self._rows.get(tid)
            if hit is None or hit[2] is not row:
                parts.append(_dumps(row))
                continue
            if hit[3] is None:
                hit[3] = _dumps(row)
            parts.append(hit[3])
        return RawJson(b"[" + b",".join(parts) + b"]")


def _check_category(name: str) -> None:
    if (
        not isinstance(name, str) or not name or len(name) > 200 or name != name.strip()
        or name.startswith("/") or name.endswith("/") or "//" in name or "\\" in name
        or any(ord(ch) < 32 for ch in name)
    ):  # fmt: skip
        raise DaemonError(f"bad category name {str(name)[:80]!r}", 400, "bad_category")


def _clean_tags(tags: list[str]) -> list[str]:
    if not isinstance(tags, list):
        raise DaemonError("tags must be a list of strings")
    out: list[str] = []
    for t in tags:
        if not isinstance(t, str) or "," in t or len(t) > 200 or any(ord(ch) < 32 for ch in t):
            raise DaemonError(f"bad tag {str(t)[:80]!r}", 400, "bad_tag")
        t = t.strip()
        if t and t not in out:
            out.append(t)
    return out


def _rate(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1 << 40:
        raise DaemonError("rate limits are bytes per second, 0 (unlimited) to 2^40")
    return value


def _len(x: object) -> str:
    return str(len(x)) if isinstance(x, list) else type(x).__name__


def _flat(tiers: Any) -> list[str]:
    return [u for tier in tiers for u in tier]


def clean_trackers(trackers: list[str] | None) -> list[str]:
    out: list[str] = []
    for t in trackers or []:
        if not isinstance(t, str) or not t.startswith(("http://", "https://", "udp://")) or len(t) > 2048:
            raise DaemonError(f"bad tracker URL {t!r} (http://, https:// or udp://)")
        if t not in out:
            out.append(t)
    return out


def _clean_peers(peers: list[tuple[str, int]] | None) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for item in peers or []:
        try:
            host, port = item
        except (TypeError, ValueError):
            raise DaemonError(f"bad peer {item!r} (host and port)") from None
        if not isinstance(host, str) or not host or len(host) > 255 or isinstance(port, bool):
            raise DaemonError(f"bad peer host {host!r}")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise DaemonError(f"bad peer port {port!r}")
        if (host, port) not in out:
            out.append((host, port))
    return out


def parse_peer(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); DaemonError if malformed."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DaemonError(f"bad peer {text!r} (host:port)")
    return host, int(port)


def _metainfo_bytes(torrent: Torrent) -> bytes:
    """A .torrent for a torrent built from a magnet's metadata: the exact info bytes and trackers."""
    from bitswarm.bencode import encode

    tiers = [list(t) for t in torrent.trackers if t]
    head: dict[bytes, Any] = {}
    if tiers:
        head[b"announce"] = tiers[0][0].encode()
        head[b"announce-list"] = [[u.encode() for u in tier] for tier in tiers]
    body = encode(head)  # b"d...e": splice the raw info dict in before the final "e"
    return body[:-1] + b"4:info" + torrent.info.raw + b"e"


def _read_regular_file(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file (non-blocking open: no FIFO or device can hang us)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DaemonError(f"{path} is not a regular file (no such file)", 400, "no_such_file")
        if st.st_size > limit:
            raise DaemonError(f"{path} is larger than {limit} bytes", 413, "too_large")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise DaemonError(f"{path} is larger than {limit} bytes", 413, "too_large")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _delete_data(torrent: Torrent, save_path: str) -> None:
    info = torrent.info
    target = Path(save_path, info.name)
    if target.is_dir() and not info.single_file:
        shutil.rmtree(target, ignore_errors=True)
    elif target.is_file():
        target.unlink()
    with contextlib.suppress(OSError):
        Path(save_path, f".{torrent.swarm_hash.hex()}.parts").unlink()
