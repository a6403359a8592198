"""What the Transmission RPC and the qBittorrent Web API share: adding from a URL, magnet, path or
metainfo, the per-torrent state they keep in the record's ``compat`` dict, and small conversions."""

from __future__ import annotations

import time
from typing import Any

from bitswarm.daemon._core import MAX_TORRENT_BYTES, Daemon, DaemonError
from bitswarm.session.lifecycle import DISPLAY_NAME, State

#: ``state`` (as the daemon shows it) → the lifecycle state.
STATE_OF: dict[str, State] = {name: state for state, name in DISPLAY_NAME.items()}


async def add_source(daemon: Daemon, source: str, *, save_path: str | None, paused: bool) -> dict[str, Any]:
    """Add a magnet link, an http(s) URL of a .torrent, or a .torrent path on the daemon's machine."""
    source = source.strip()
    if source.lower().startswith("magnet:"):
        return await daemon.add_magnet(source, save_path=save_path, paused=paused)
    if source.lower().startswith(("http://", "https://")):
        data = await fetch_torrent(source)
        return await daemon.add_torrent(data, save_path=save_path, paused=paused)
    return await daemon.add_path(source, save_path=save_path, paused=paused)


async def fetch_torrent(url: str) -> bytes:
    """A .torrent downloaded from ``url`` (at most MAX_TORRENT_BYTES, 30 s)."""
    import httpx

    try:
        async with (
            httpx.AsyncClient(timeout=30.0, follow_redirects=True) as client,
            client.stream("GET", url) as resp,
        ):
            if resp.status_code != 200:
                raise DaemonError(f"{url}: HTTP {resp.status_code}", 400, "bad_torrent")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_TORRENT_BYTES:
                    raise DaemonError(f"{url}: larger than {MAX_TORRENT_BYTES} bytes", 413, "too_large")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise DaemonError(f"cannot fetch {url}: {exc}", 400, "bad_torrent") from None


def compat(daemon: Daemon, torrent_id: str) -> dict[str, Any]:
    """The torrent's ``compat`` dict (change it, then :func:`save`)."""
    return daemon.record(torrent_id).compat


def save(daemon: Daemon, torrent_id: str) -> None:
    daemon.save_record(torrent_id)


def number(daemon: Daemon, torrent_id: str) -> int:
    """The torrent's stable integer id (Transmission's ``id``): given when it is added, kept in its
    record (:meth:`Daemon.number`)."""
    return daemon.number(torrent_id)


def queue_order(daemon: Daemon) -> list[str]:
    """Every torrent id in queue order (the daemon's queue; new torrents at the end)."""
    return daemon.queue_order()


def move_in_queue(daemon: Daemon, torrent_ids: list[str], where: str) -> None:
    """``where``: top, up, down or bottom."""
    daemon.move_in_queue(torrent_ids, where)


def ratio(uploaded: int, downloaded: int) -> float:
    """Transmission's ``tr_getRatio``: -1 when nothing moved, -2 (infinite) with nothing downloaded."""
    if downloaded > 0:
        return uploaded / downloaded
    return -1.0 if uploaded == 0 else -2.0


def file_name(torrent_name: str, path: str, count: int) -> str:
    """A file's name as both originals show it: the torrent's directory first (multi-file)."""
    return path if count == 1 and path == torrent_name else f"{torrent_name}/{path}"


def now() -> int:
    return int(time.time())
