"""Shared helpers of the tests of the daemon's Transmission and qBittorrent APIs: a daemon and a
local bitswarm seeder of a three-file torrent whose only tracker is dead (so the test tells the
daemon where the seeder is, as a tracker would)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon_testlib import Running, make_content, running_daemon, seeder, wait_for

from bitswarm.daemon import Daemon
from bitswarm.metainfo import Torrent, create_torrent, parse_torrent
from bitswarm.session import Session

DEAD_TRACKER = "http://127.0.0.1:9/announce"


@dataclass
class Swarm:
    run: Running
    seed: Session
    content: Path  #: the seeder's directory ``album`` (3 files)
    torrent: Torrent
    data: bytes  #: the .torrent's bytes
    torrent_file: Path
    tmp: Path

    @property
    def daemon(self) -> Daemon:
        return self.run.daemon

    @property
    def port(self) -> int:
        return int(self.run.url.rsplit(":", 1)[1])

    @property
    def tid(self) -> str:
        return self.torrent.swarm_hash.hex()

    def status(self, tid: str | None = None) -> dict[str, Any]:
        return self.daemon.details(tid or self.tid)

    def state(self, tid: str | None = None) -> str:
        return str(self.status(tid)["state"])

    async def connect_seeder(self) -> None:
        """Once the torrent runs, give it the seeder's address (its tracker is dead)."""
        handle = await wait_for(lambda: _running_handle(self.daemon, self.tid))
        handle.add_peer("127.0.0.1", self.seed.port)


def _running_handle(daemon: Daemon, tid: str) -> Any:
    try:
        return daemon.handle(tid)
    except Exception:
        return None


def same_tree(src: Path, dst: Path) -> bool:
    """Every file under ``src`` is under ``dst`` with the same bytes."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    return bool(files) and all(
        (dst / p.relative_to(src)).is_file() and (dst / p.relative_to(src)).read_bytes() == p.read_bytes()
        for p in files
    )


@contextlib.asynccontextmanager
async def swarm_of(tmp: Path) -> AsyncIterator[Swarm]:
    content = make_content(tmp / "seed", "album", files=3, size=200_000)
    data = create_torrent(content, version="v1", piece_length=32768, trackers=[[DEAD_TRACKER]])
    torrent = parse_torrent(data)
    tfile = tmp / "album.torrent"
    tfile.write_bytes(data)
    async with seeder(content, torrent) as (seed, _h), running_daemon(tmp / "daemon") as run:
        yield Swarm(run, seed, content, torrent, data, tfile, tmp)


@contextlib.asynccontextmanager
async def magnet_seeder(tmp: Path) -> AsyncIterator[tuple[Path, Torrent, str]]:
    """A second seeder (directory ``single``, 2 files) and a magnet link naming it (``x.pe``): the
    daemon gets the metadata and the data from it."""
    content = make_content(tmp / "seed2", "single", files=2, size=60_000, seed=9)
    torrent = parse_torrent(create_torrent(content, version="v1", piece_length=16384))
    async with seeder(content, torrent) as (seed, _h):
        assert torrent.info_hash_v1 is not None
        yield (
            content,
            torrent,
            f"magnet:?xt=urn:btih:{torrent.info_hash_v1.hex()}&dn=single&x.pe=127.0.0.1:{seed.port}",
        )
