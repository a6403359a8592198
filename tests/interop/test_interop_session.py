"""The peer engine against real clients on loopback: libtorrent (PyPI) and aria2 (Debian).

libtorrent is driven directly (peers connected by address); aria2 finds peers through a real
opentracker, as it has no way to be handed a peer address.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.session import Session, SessionConfig
from realclients import Aria2, libtorrent_peer, opentracker, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

LT_SETTINGS = {"out_enc_policy": 2, "in_enc_policy": 2}  # pe_settings: disabled (no MSE/PE yet)


def config() -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, min_announce_interval=1.0)


def make_content(root: Path, multi: bool, seed: int = 1) -> Path:
    rng = random.Random(seed)
    if multi:
        d = root / "pack"
        for rel, size in {"x/a.bin": 700_000, "x/y/b.bin": 123_457, "empty": 0, "c.bin": 1_300_000}.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(rng.randbytes(size))
        return d
    f = root / "single.bin"
    root.mkdir(parents=True, exist_ok=True)
    f.write_bytes(rng.randbytes(2_500_000))
    return f


def same_content(a: Path, b: Path) -> bool:
    def digest(p: Path) -> dict[str, str]:
        if p.is_file():
            return {"": hashlib.sha256(p.read_bytes()).hexdigest()}
        return {
            str(q.relative_to(p)): hashlib.sha256(q.read_bytes()).hexdigest()
            for q in sorted(p.rglob("*"))
            if q.is_file() and not q.name.startswith(".")
        }

    return digest(a) == digest(b)


CASES = [("v1", False), ("v1", True), ("hybrid", False), ("hybrid", True)]


@pytest.mark.parametrize(("version", "multi"), CASES)
async def test_libtorrent_seeds_bitswarm_downloads(
    tmp_path: Path, version: TorrentVersion, multi: bool
) -> None:
    content = make_content(tmp_path / "lt", multi)
    data = create_torrent(content, version=version, piece_length=65536)
    with libtorrent_peer(**LT_SETTINGS) as lt_peer:
        h = lt_peer.add(data, content.parent)
        await asyncio.to_thread(lt_peer.wait_seeding, h, 30)
        async with Session(config()) as s:
            hl = await s.add(parse_torrent(data), tmp_path / "bw", peers=[("127.0.0.1", lt_peer.port)])
            await hl.wait_complete(timeout=60)
    assert same_content(content, tmp_path / "bw" / content.name)


@pytest.mark.parametrize(("version", "multi"), CASES)
async def test_bitswarm_seeds_libtorrent_downloads(
    tmp_path: Path, version: TorrentVersion, multi: bool
) -> None:
    content = make_content(tmp_path / "bw", multi)
    data = create_torrent(content, version=version, piece_length=65536)
    async with Session(config()) as s:
        await s.add(parse_torrent(data), content.parent)
        with libtorrent_peer(**LT_SETTINGS) as lt_peer:
            h = lt_peer.add(data, tmp_path / "lt")
            lt_peer.connect(h, s.port)
            await asyncio.to_thread(lt_peer.wait_seeding, h, 60)
    assert same_content(content, tmp_path / "lt" / content.name)


@pytest.mark.parametrize("multi", [False, True])
async def test_aria2_seeds_bitswarm_downloads_via_opentracker(tmp_path: Path, multi: bool) -> None:
    content = make_content(tmp_path / "aria", multi)
    t = parse_torrent(create_torrent(content, version="v1", piece_length=65536))
    with opentracker([t.swarm_hash]) as tracker:
        data = create_torrent(content, version="v1", piece_length=65536, trackers=[[tracker.announce_http]])
        torrent_file = tmp_path / "a.torrent"
        torrent_file.write_bytes(data)
        aria = Aria2(torrent_file, content.parent, seed=True)
        try:
            async with Session(config()) as s:
                h = await s.add(parse_torrent(data), tmp_path / "bw")
                await h.wait_complete(timeout=90)
        finally:
            aria.close()
    assert same_content(content, tmp_path / "bw" / content.name)


@pytest.mark.parametrize("multi", [False, True])
async def test_bitswarm_seeds_aria2_downloads_via_opentracker(tmp_path: Path, multi: bool) -> None:
    content = make_content(tmp_path / "bw", multi)
    t = parse_torrent(create_torrent(content, version="v1", piece_length=65536))
    with opentracker([t.swarm_hash]) as tracker:
        data = create_torrent(content, version="v1", piece_length=65536, trackers=[[tracker.announce_udp]])
        torrent_file = tmp_path / "b.torrent"
        torrent_file.write_bytes(data)
        async with Session(config()) as s:
            h = await s.add(parse_torrent(data), content.parent)
            wait_for(lambda: h.status().state == "seeding", 10, "bitswarm to seed")
            # aria2 announces over HTTP only to this tracker URL list; give it the HTTP one
            data_http = create_torrent(
                content, version="v1", piece_length=65536, trackers=[[tracker.announce_http]]
            )
            assert parse_torrent(data_http).swarm_hash == t.swarm_hash
            (tmp_path / "c.torrent").write_bytes(data_http)
            aria = Aria2(tmp_path / "c.torrent", tmp_path / "aria", seed=False)
            try:
                code = await asyncio.to_thread(aria.wait, 90)
            finally:
                aria.close()
        assert code == 0
    assert same_content(content, tmp_path / "aria" / content.name)
