"""The :class:`Session`: many torrents on one listen port, one event loop, one disk pool.

    async with Session(SessionConfig(listen_port=0)) as session:
        handle = await session.add("file.torrent", save_path="downloads")
        await handle.wait_complete()

Incoming connections are routed to a torrent by the info-hash in the peer's handshake. Events
(``torrent_added``, ``peer_connected``, ``piece_verified``, ``torrent_completed``, ``hash_failed``,
``peer_banned``, ``torrent_error``, ``torrent_removed``) are published to every :meth:`events`
subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitswarm.errors import BitswarmError
from bitswarm.metainfo import Torrent, load_torrent, parse_torrent
from bitswarm.session.config import SessionConfig
from bitswarm.session.ratelimit import RateLimiter
from bitswarm.session.torrent import TorrentHandle, TorrentRuntime, TorrentStatus
from bitswarm.tracker.client import normalize_tracker_url

if TYPE_CHECKING:
    from bitswarm.session.peer import PeerProtocol

log = logging.getLogger("bitswarm.session")


class SessionError(BitswarmError):
    """A session-level failure: duplicate torrent, bad source, not started ..."""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One thing that happened, for progress displays and the daemon's event stream."""

    kind: str
    info_hash: str
    name: str
    data: dict[str, Any] = field(default_factory=dict)


class Session:
    """A BitTorrent client and server at once: downloads and seeds any number of torrents."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self.peer_id = self.config.peer_id
        self._server: asyncio.Server | None = None
        self.port = self.config.listen_port
        self._torrents: dict[bytes, TorrentRuntime] = {}
        self._aliases: dict[bytes, TorrentRuntime] = {}
        self._connections: set[PeerProtocol] = set()
        self._subscribers: list[asyncio.Queue[SessionEvent]] = []
        self._disk_pool = ThreadPoolExecutor(self.config.disk_workers, thread_name_prefix="bitswarm-disk")
        self.download_limiter = RateLimiter(self.config.download_rate_limit)
        self.upload_limiter = RateLimiter(self.config.upload_rate_limit)
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start listening for peers (``listen_port`` 0 picks a free port: see :attr:`port`)."""
        from bitswarm.session.peer import PeerProtocol

        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: PeerProtocol(self, None, outgoing=False),
                self.config.listen_host,
                self.config.listen_port,
                reuse_address=True,
                backlog=128,
            )
        except OSError as exc:
            raise SessionError(
                f"cannot listen on {self.config.listen_host}:{self.config.listen_port}: {exc.strerror}"
            ) from None
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info("listening on %s:%d", self.config.listen_host, self.port)

    async def close(self) -> None:
        """Stop every torrent (``stopped`` announces, resume data saved) and the listener."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(rt.stop() for rt in self._torrents.values()), return_exceptions=True)
        for conn in list(self._connections):
            conn.close("session closing")
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._disk_pool.shutdown(wait=True)

    # -- torrents ------------------------------------------------------------------------------

    async def add(
        self,
        source: str | os.PathLike[str] | bytes | Torrent,
        save_path: str | os.PathLike[str],
        *,
        trackers: list[str] | None = None,
        peers: list[tuple[str, int]] | None = None,
        file_priorities: list[int] | None = None,
        resume_dir: str | os.PathLike[str] | None = None,
        seed_mode: bool = False,
        sequential: bool = False,
        use_torrent_trackers: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> TorrentHandle:
        """Add a torrent (a .torrent path, its bytes, or a parsed :class:`Torrent`) and start it.

        ``save_path`` is the directory that holds (or will hold) the torrent's content. Resume data
        goes to ``resume_dir`` (default: ``save_path/.bitswarm``). ``seed_mode`` trusts existing
        files with the right sizes and verifies each piece before its first upload.
        """
        if self._server is None:
            await self.start()
        torrent = _load_source(source)
        if torrent.swarm_hash in self._torrents:
            raise SessionError(f"torrent {torrent.swarm_hash.hex()} is already in the session")
        tiers: list[list[str]] = []
        if use_torrent_trackers:
            tiers = [list(t) for t in torrent.trackers if t]
        for url in trackers or []:
            tiers.append([normalize_tracker_url(url)])
        tiers = [[normalize_tracker_url(u) for u in tier] for tier in tiers]
        save = os.fspath(save_path)
        rdir = os.fspath(resume_dir) if resume_dir is not None else os.path.join(save, ".bitswarm")
        os.makedirs(rdir, exist_ok=True)
        resume_path = os.path.join(rdir, f"{torrent.swarm_hash.hex()}.resume")
        rt = TorrentRuntime(
            self,
            torrent,
            save,
            resume_path=resume_path,
            trackers=tiers,
            peers=list(peers or []),
            priorities=file_priorities,
            seed_mode=seed_mode,
            sequential=sequential,
        )
        self._torrents[torrent.swarm_hash] = rt
        for alias in (torrent.info_hash_v1, torrent.info_hash_v2_short):
            if alias is not None:
                self._aliases[alias] = rt
        try:
            await rt.start(progress=progress)
        except BaseException:
            self._forget(rt)
            with contextlib.suppress(Exception):
                await rt.storage.close()
            raise
        self._emit("torrent_added", rt)
        return TorrentHandle(rt)

    async def remove(self, handle: TorrentHandle, *, delete_data: bool = False) -> None:
        """Stop a torrent and forget it; ``delete_data`` also deletes its files."""
        rt = self._torrents.get(handle.info_hash)
        if rt is None:
            raise SessionError("torrent is not in this session")
        await rt.stop()
        self._forget(rt)
        if delete_data:
            info = rt.info
            target = Path(rt.save_path, info.name)
            if target.is_dir() and not info.single_file:
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists():
                target.unlink()
        self._emit("torrent_removed", rt)

    def _forget(self, rt: TorrentRuntime) -> None:
        self._torrents.pop(rt.swarm_hash, None)
        for k in [k for k, v in self._aliases.items() if v is rt]:
            del self._aliases[k]

    def _lookup(self, info_hash: bytes) -> TorrentRuntime | None:
        return self._aliases.get(info_hash) or self._torrents.get(info_hash)

    @property
    def torrents(self) -> list[TorrentHandle]:
        return [TorrentHandle(rt) for rt in self._torrents.values()]

    def status(self) -> list[TorrentStatus]:
        return [rt.status() for rt in self._torrents.values()]

    # -- events --------------------------------------------------------------------------------

    def _emit(self, kind: str, rt: TorrentRuntime, **data: Any) -> None:
        if not self._subscribers:
            return
        ev = SessionEvent(kind, rt.swarm_hash.hex(), rt.info.name, data)
        for q in self._subscribers:
            if q.qsize() < 10_000:
                q.put_nowait(ev)

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Every event from now on, until the consumer stops iterating."""
        q: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._subscribers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.remove(q)


def _load_source(source: str | os.PathLike[str] | bytes | Torrent) -> Torrent:
    if isinstance(source, Torrent):
        return source
    if isinstance(source, bytes | bytearray):
        return parse_torrent(bytes(source))
    text = os.fspath(source)
    if text.startswith("magnet:"):
        raise SessionError("magnet links need the DHT and metadata exchange, which are not available yet")
    return load_torrent(text)
