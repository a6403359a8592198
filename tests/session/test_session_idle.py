"""Idle torrents cost nothing per second (issue 24): the busy set the daemon's automation reads."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.torrent import busy_torrents


def config() -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, transports="tcp", enable_dht=False)  # type: ignore[arg-type]


def make_torrent(root: Path) -> tuple[Path, Torrent]:
    root.mkdir(parents=True, exist_ok=True)
    f = root / "data.bin"
    f.write_bytes(random.Random(7).randbytes(100_000))
    return f, parse_torrent(create_torrent(f, version="v1", piece_length=32768))


async def eventually(check: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_a_seed_without_peers_is_not_busy_a_download_and_a_connected_seed_are(tmp_path: Path) -> None:
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, f.parent)
        busy = busy_torrents(seeder)
        await asyncio.sleep(0.1)
        assert t.swarm_hash not in busy  # seeding alone: nothing runs for it each second
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        assert t.swarm_hash in busy_torrents(leecher) or hl.status().progress == 1.0
        await eventually(lambda: t.swarm_hash in busy)  # the leecher connected: the seed is busy
        await hl.wait_complete(timeout=20)
        await leecher.remove(hl)
        await eventually(lambda: t.swarm_hash not in busy)  # the peer left: idle again
        assert t.swarm_hash not in busy_torrents(leecher)


def torrent_tasks(name: str) -> set[str]:
    """The names of the running tasks of torrent ``name`` (its loops are named ``<kind>-<name>``)."""
    names = {task.get_name() for task in asyncio.all_tasks() if not task.done()}
    return {n for n in names if n.endswith(f"-{name}")}


async def test_an_idle_seed_holds_no_task_its_loops_run_while_a_peer_is_connected(tmp_path: Path) -> None:
    """Issue 24: 10,000 idle seeds in one daemon held ~4 tasks each (connect, choke, housekeeping,
    the tracker's sleep). An idle seed holds none; a peer starts the choke and housekeeping loops
    and they end when it leaves."""
    f, t = make_torrent(tmp_path / "seed")
    name = t.info.name
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, f.parent)
        await eventually(lambda: not torrent_tasks(name))  # saved its resume data once, then nothing
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await eventually(lambda: t.swarm_hash in busy_torrents(seeder))
        rt = seeder.lookup(t.swarm_hash)
        assert rt is not None
        assert {"choke", "housekeeping"} <= set(rt._loops)  # the seeder's own (the leecher has its own)
        await hl.wait_complete(timeout=20)
        await leecher.remove(hl)
        await eventually(lambda: not torrent_tasks(name))  # the peer left: no task again


def test_the_per_torrent_engine_objects_have_no_instance_dict() -> None:
    """Issue 24: an instance dict is ~1.5 KiB; the per-torrent classes are slotted."""
    from bitswarm.session.torrent import TorrentRuntime
    from bitswarm.storage import Storage

    for cls in (TorrentRuntime, Storage):
        assert "__slots__" in vars(cls) and "__dict__" not in dir(cls), cls
