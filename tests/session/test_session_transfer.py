"""Whole-session transfers on loopback: bitswarm ↔ bitswarm, many swarms, a corrupting peer."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import struct
from pathlib import Path

import pytest

from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.session import Session, SessionConfig
from bitswarm.session.clock import ManualClock
from bitswarm.wire import (
    NEED_DATA,
    Bitfield,
    Handshake,
    HandshakeHeader,
    PeerConnection,
    PieceLayout,
    Request,
    Reserved,
    Unchoke,
)

pytestmark = pytest.mark.timeout(90)


def config(**kw: object) -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, **kw)  # type: ignore[arg-type]


def make_tree(root: Path, files: dict[str, int], seed: int = 0) -> Path:
    rng = random.Random(seed)
    for rel, size in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))
    return root


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".bitswarm" not in p.parts and not p.name.endswith(".parts")
    }


def torrent_for(path: Path, version: TorrentVersion = "v1", piece_length: int | None = None) -> Torrent:
    return parse_torrent(create_torrent(path, version=version, piece_length=piece_length))


@pytest.mark.parametrize("version", ["v1", "hybrid", "v2"])
async def test_bitswarm_to_bitswarm_multifile(tmp_path: Path, version: TorrentVersion) -> None:
    src = make_tree(
        tmp_path / "seed" / "album",
        {"a/one.bin": 300_000, "a/b/two.bin": 70_000, "empty.txt": 0, "three.bin": 1_000_001},
    )
    t = torrent_for(src, version, 32768)
    async with Session(config()) as seeder, Session(config()) as leecher:
        hs = await seeder.add(t, tmp_path / "seed")
        assert hs.status().state == "seeding"
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await hl.wait_complete(timeout=60)
        st = hl.status()
        assert st.progress == 1.0 and st.pieces_done == st.num_pieces
    assert digest_tree(tmp_path / "leech" / "album") == digest_tree(src)


async def test_leecher_becomes_seeder_for_a_third_peer(tmp_path: Path) -> None:
    """A → B, then A leaves; C gets everything from B (leecher→seeder)."""
    src = make_tree(tmp_path / "a", {"f.bin": 600_000})
    t = torrent_for(src / "f.bin")
    async with Session(config()) as b, Session(config()) as c:
        async with Session(config()) as a:
            await a.add(t, src)
            hb = await b.add(t, tmp_path / "b", peers=[("127.0.0.1", a.port)])
            await hb.wait_complete(timeout=60)
        assert hb.status().state == "seeding"
        hc = await c.add(t, tmp_path / "c", peers=[("127.0.0.1", b.port)])
        await hc.wait_complete(timeout=60)
    assert (tmp_path / "c" / "f.bin").read_bytes() == (src / "f.bin").read_bytes()


async def test_one_session_three_swarms_at_once(tmp_path: Path) -> None:
    torrents = []
    for i in range(3):
        src = make_tree(tmp_path / f"s{i}", {f"file{i}.bin": 400_000 + i}, seed=i)
        torrents.append(torrent_for(src / f"file{i}.bin"))
    async with Session(config()) as s0, Session(config()) as s1, Session(config()) as s2:
        seeders = [s0, s1, s2]
        for i, (s, t) in enumerate(zip(seeders, torrents, strict=True)):
            await s.add(t, tmp_path / f"s{i}")
        async with Session(config()) as leecher:
            handles = [
                await leecher.add(t, tmp_path / "down", peers=[("127.0.0.1", s.port)])
                for s, t in zip(seeders, torrents, strict=True)
            ]
            await asyncio.gather(*(h.wait_complete(timeout=60) for h in handles))
    for i in range(3):
        assert (tmp_path / "down" / f"file{i}.bin").read_bytes() == (
            tmp_path / f"s{i}" / f"file{i}.bin"
        ).read_bytes()


@pytest.mark.slow
async def test_one_session_seeds_fifty_torrents(tmp_path: Path) -> None:
    torrents = []
    for i in range(50):
        src = make_tree(tmp_path / "seed", {f"t{i:02d}.bin": 40_000 + i * 7}, seed=i)
        torrents.append(torrent_for(src / f"t{i:02d}.bin"))
    async with Session(config()) as seeder, Session(config()) as leecher:
        for t in torrents:
            await seeder.add(t, tmp_path / "seed")
        assert len(seeder.torrents) == 50
        handles = [
            await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)]) for t in torrents
        ]
        await asyncio.gather(*(h.wait_complete(timeout=80) for h in handles))
    assert digest_tree(tmp_path / "leech") == digest_tree(tmp_path / "seed")


async def test_resume_after_clean_restart_skips_verified_pieces(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed", {"r.bin": 2_000_000})
    t = torrent_for(src / "r.bin", piece_length=32768)
    async with Session(config()) as seeder:
        await seeder.add(t, src)
        async with Session(config(download_rate_limit=400_000)) as leecher:
            h = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
            for _ in range(400):
                if h.status().pieces_done >= 10:
                    break
                await asyncio.sleep(0.05)
            first_done = h.status().pieces_done
            assert 0 < first_done < t.info.num_pieces
        async with Session(config()) as leecher2:
            h2 = await leecher2.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
            assert h2.status().pieces_done >= first_done  # taken from resume data, not downloaded
            await h2.wait_complete(timeout=60)
            downloaded = h2.status().downloaded
    assert (tmp_path / "leech" / "r.bin").read_bytes() == (src / "r.bin").read_bytes()
    assert downloaded <= t.info.total_size - first_done * 32768 + 32768 * 8


async def test_rejects_duplicate_torrent_and_bad_source(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "s", {"x.bin": 10_000})
    t = torrent_for(src / "x.bin")
    async with Session(config()) as s:
        await s.add(t, src)
        with pytest.raises(Exception, match="already"):
            await s.add(t, src)
        with pytest.raises(Exception, match="magnet"):
            await s.add("magnet:?xt=urn:btih:" + "a" * 40, tmp_path)


# ---------------------------------------------------------------------------------------------
# A malicious peer: speaks the protocol correctly but answers every request with garbage.


class _CorruptSeeder(asyncio.Protocol):
    def __init__(self, torrent: Torrent, served: list[int]) -> None:
        self.t = torrent
        self.codec = PeerConnection(PieceLayout.from_info(torrent.info))
        self.served = served
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.codec.receive_data(data)
        assert self.transport is not None
        while True:
            try:
                ev = self.codec.next_event()
            except Exception:
                self.transport.close()
                return
            if ev is NEED_DATA or not hasattr(ev, "__class__"):
                return
            if isinstance(ev, HandshakeHeader):
                out = self.codec.send(Handshake(self.t.swarm_hash, b"-XX0000-" + os.urandom(12), Reserved()))
                n = self.t.info.num_pieces
                bits = bytearray(b"\xff" * ((n + 7) // 8))
                if n % 8:
                    bits[-1] = (0xFF << (8 - n % 8)) & 0xFF
                out += self.codec.send(Bitfield(bytes(bits))) + self.codec.send(Unchoke())
                self.transport.write(out)
            elif isinstance(ev, Request):
                self.served.append(ev.length)
                header = struct.pack(">IBII", 9 + ev.length, 7, ev.index, ev.begin)
                self.transport.write(header + os.urandom(ev.length))
            elif ev.__class__.__name__ == "ConnectionClosed":
                return


async def test_corrupt_peer_is_banned_and_download_completes(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed", {"c.bin": 1_500_000})
    t = torrent_for(src / "c.bin", piece_length=65536)
    served: list[int] = []
    loop = asyncio.get_running_loop()
    bad = await loop.create_server(
        lambda: _CorruptSeeder(t, served), "127.0.0.2" if _has_127_0_0_2() else "127.0.0.1", 0
    )
    bad_addr = bad.sockets[0].getsockname()[:2]
    events: list[str] = []
    try:
        async with Session(config()) as honest, Session(config()) as leecher:
            await honest.add(t, src)

            async def watch() -> None:
                async for ev in leecher.events():
                    events.append(ev.kind)

            watcher = loop.create_task(watch())
            # the corrupt peer first, alone: it must be caught and banned
            h = await leecher.add(t, tmp_path / "leech", peers=[bad_addr])
            for _ in range(200):
                if "peer_banned" in events:
                    break
                await asyncio.sleep(0.05)
            assert "peer_banned" in events and "hash_failed" in events
            h.add_peer("127.0.0.1", honest.port)
            await h.wait_complete(timeout=60)
            watcher.cancel()
    finally:
        bad.close()
    assert served, "the corrupt peer was never asked for data"
    assert (tmp_path / "leech" / "c.bin").read_bytes() == (src / "c.bin").read_bytes()


def _has_127_0_0_2() -> bool:
    import socket

    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


async def test_a_new_address_is_dialed_at_once_not_at_the_next_tick(tmp_path: Path) -> None:
    """Addresses from a tracker reply (here: added later) wake the connect loop: with the leecher's
    clock standing still (no periodic pass ever comes), it still connects and completes."""
    src = make_tree(tmp_path / "a", {"f.bin": 200_000})
    t = torrent_for(src / "f.bin")
    async with Session(config()) as a, Session(config(), clock=ManualClock()) as b:
        await a.add(t, src)
        hb = await b.add(t, tmp_path / "b")
        await asyncio.sleep(0)  # the connect loop has made its first (empty) pass and waits
        hb.add_peer("127.0.0.1", a.port)
        await hb.wait_complete(timeout=30)
    assert (tmp_path / "b" / "f.bin").read_bytes() == (src / "f.bin").read_bytes()
