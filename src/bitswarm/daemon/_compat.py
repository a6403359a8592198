"""What the Transmission RPC and the qBittorrent Web API share: adding from a URL, magnet, path or
metainfo, the per-torrent state they keep in the record's ``compat`` dict, and small conversions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bitswarm.daemon._core import MAX_TORRENT_BYTES, Daemon, DaemonError
from bitswarm.daemon._store import TorrentRecord
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
    """The torrent's stable integer id (Transmission's ``id``): given once, kept in its record."""
    c = compat(daemon, torrent_id)
    num = c.get("num")
    if isinstance(num, int) and not isinstance(num, bool):
        return num
    last = int(daemon.setting("last_num", 0) or 0)
    for tid in daemon.ids():
        other = compat(daemon, tid).get("num")
        if isinstance(other, int):
            last = max(last, other)
    c["num"] = last + 1
    daemon.set_setting("last_num", last + 1)
    save(daemon, torrent_id)
    return last + 1


def _assign_numbers(daemon: Daemon, torrent_ids: list[str]) -> list[TorrentRecord]:
    """Give every torrent of ``torrent_ids`` without one its :func:`number` (one scan, one settings
    write, before the records: a number is never given twice); the records to save."""
    wanted, missing = set(torrent_ids), []
    last = int(daemon.setting("last_num", 0) or 0)
    for tid in daemon.ids():
        num = compat(daemon, tid).get("num")
        if isinstance(num, int) and not isinstance(num, bool):
            last = max(last, num)
        elif tid in wanted:
            missing.append(tid)
    if not missing:
        return []
    for tid in missing:
        last += 1
        compat(daemon, tid)["num"] = last
    daemon.set_setting("last_num", last)
    return [daemon.record(tid) for tid in missing]


def number_all(daemon: Daemon, torrent_ids: list[str]) -> None:
    """Give every torrent of ``torrent_ids`` without one its :func:`number` at once, the records
    written in one batch (a first ``torrent-get`` of 10,000 torrents took seconds one by one)."""
    recs = _assign_numbers(daemon, torrent_ids)
    if recs:
        daemon.data.save_serialized(daemon.data.changed_records(recs))


async def number_all_async(daemon: Daemon, torrent_ids: list[str]) -> None:
    """:func:`number_all` with the records written by a disk thread (the first ``torrent-get`` of
    10,000 torrents wrote 10,000 records on the event loop; issue 24)."""
    recs = _assign_numbers(daemon, torrent_ids)
    if recs:
        await asyncio.to_thread(daemon.data.save_serialized, daemon.data.changed_records(recs))


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
