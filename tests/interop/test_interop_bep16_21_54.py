"""BEP 16 super-seeding, BEP 21 partial seeds and BEP 54 lt_donthave against libtorrent (PyPI).

* a libtorrent leecher completes from a bitswarm super-seed, which it never sees holding every
  piece until the end (no bitfield: pieces are offered a few at a time);
* libtorrent sees a bitswarm partial seed as ``upload_only`` and not as a seed; bitswarm sees a
  libtorrent partial seed the same way and downloads the pieces it has;
* a libtorrent seed in seed mode whose piece fails its check sends ``lt_donthave``: bitswarm drops
  the piece from that peer's set and from the availability; the other way round, libtorrent drops
  the piece from its view of a bitswarm seed-mode seed whose piece failed.

v1 torrents: the BEP 52 handshake bits are not what these tests are about.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest
from tests.session.test_session_messages import RawPeer

import testtools
from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.wire import Handshake, Interested, Request, Reserved, Unchoke
from realclients import libtorrent_peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

LT_SETTINGS = {"out_enc_policy": 2, "in_enc_policy": 2}  # plaintext both ways
PIECE = 65536


def config(**kw: Any) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1", listen_port=0, encryption="off", enable_dht=False, transports=("tcp",), **kw
    )


def two_files(root: Path) -> Path:
    base = root / "two"
    base.mkdir(parents=True)
    rng = random.Random(1)
    (base / "a.bin").write_bytes(rng.randbytes(8 * PIECE))
    (base / "b.bin").write_bytes(rng.randbytes(8 * PIECE))
    return base


async def until(check: Any, timeout: float, what: str) -> None:
    await testtools.until(check, timeout=timeout, interval=0.1, what=what)


async def test_libtorrent_leecher_completes_from_a_bitswarm_super_seed(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    src.mkdir()
    (src / "f.bin").write_bytes(random.Random(2).randbytes(16 * PIECE))
    data = create_torrent(src / "f.bin", version="v1", piece_length=PIECE)
    async with Session(config(super_seed=True, upload_rate_limit=512 * 1024)) as s:
        await s.add(parse_torrent(data), src)
        with libtorrent_peer(**LT_SETTINGS) as lt_peer:
            h = lt_peer.add(data, tmp_path / "lt")
            lt_peer.connect(h, s.port)
            seen: list[int] = []

            def done() -> bool:
                seen.extend(sum(p.pieces) for p in h.get_peer_info())
                return bool(h.status().is_seeding)

            await until(done, 60, "libtorrent to complete")
    assert seen and min(seen) < 16, seen  # our pieces appeared a few at a time
    assert (tmp_path / "lt" / "f.bin").read_bytes() == (src / "f.bin").read_bytes()


async def test_libtorrent_sees_a_bitswarm_partial_seed_as_upload_only(tmp_path: Path) -> None:
    base = two_files(tmp_path / "src")
    data = create_torrent(base, version="v1", piece_length=PIECE)
    save = tmp_path / "bw"
    (save / "two").mkdir(parents=True)
    (save / "two" / "a.bin").write_bytes((base / "a.bin").read_bytes())
    async with Session(config()) as s:
        hb = await s.add(parse_torrent(data), save, file_priorities=[1, 0])
        assert hb.status().state == "seeding"
        with libtorrent_peer(**LT_SETTINGS) as lt_peer:
            lt = lt_peer.lt
            h = lt_peer.add(data, tmp_path / "lt")
            lt_peer.connect(h, s.port)
            flags: list[int] = []

            def seen() -> bool:
                flags.extend(int(p.flags) for p in h.get_peer_info())
                return bool(flags)

            await until(seen, 20, "libtorrent to connect")
            await until(lambda: h.status().progress >= 0.5, 30, "libtorrent to get a.bin")
    assert flags[-1] & int(lt.peer_info.upload_only)
    assert not flags[-1] & int(lt.peer_info.seed)


async def test_bitswarm_sees_a_libtorrent_partial_seed_as_upload_only(tmp_path: Path) -> None:
    base = two_files(tmp_path / "src")
    data = create_torrent(base, version="v1", piece_length=PIECE)
    ltsave = tmp_path / "ltp"
    (ltsave / "two").mkdir(parents=True)
    (ltsave / "two" / "a.bin").write_bytes((base / "a.bin").read_bytes())
    with libtorrent_peer(**LT_SETTINGS) as lt_peer:
        lt = lt_peer.lt
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(lt.bdecode(data))
        params.save_path = str(ltsave)
        params.file_priorities = [1, 0]
        params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)  # see realclients
        lh = lt_peer.session.add_torrent(params)
        await until(lambda: lh.status().is_finished, 20, "libtorrent to check a.bin")
        async with Session(config()) as s:
            h = await s.add(parse_torrent(data), tmp_path / "bw", peers=[("127.0.0.1", lt_peer.port)])
            rt = h._rt

            def partial_seen() -> bool:
                return any(p.upload_only for p in rt.peers.values())

            await until(partial_seen, 20, "bitswarm to see upload_only")
            (peer,) = rt.peers.values()
            assert not peer.is_seed and peer.has is not None and peer.has.count() == 8
            await until(lambda: h.status().pieces_done == 8, 30, "bitswarm to get a.bin from it")
    assert (tmp_path / "bw" / "two" / "a.bin").read_bytes() == (base / "a.bin").read_bytes()


async def test_libtorrent_lt_donthave_reaches_bitswarm(tmp_path: Path) -> None:
    src = tmp_path / "lt"
    src.mkdir()
    good = random.Random(3).randbytes(8 * PIECE)
    (src / "f.bin").write_bytes(good)
    data = create_torrent(src / "f.bin", version="v1", piece_length=PIECE)
    bad = bytearray(good)
    bad[2 * PIECE + 5] ^= 0xFF
    (src / "f.bin").write_bytes(bytes(bad))
    with libtorrent_peer(**LT_SETTINGS) as lt_peer:
        lt_peer.add(data, src, seed_mode=True)  # trusts the file; checks each piece when asked
        async with Session(config()) as s:
            h = await s.add(parse_torrent(data), tmp_path / "bw", peers=[("127.0.0.1", lt_peer.port)])
            rt = h._rt

            def dropped() -> bool:
                peers = list(rt.peers.values())
                return bool(peers) and peers[0].has is not None and not peers[0].has.get(2)

            await until(dropped, 30, "libtorrent's lt_donthave for piece 2")
            (peer,) = rt.peers.values()
            assert not peer.is_seed and rt.picker.availability[2] == 0
            await until(lambda: h.status().pieces_done == 7, 30, "the other pieces")
    assert not h.pieces().get(2)


async def test_bitswarm_lt_donthave_reaches_libtorrent(tmp_path: Path) -> None:
    """A bitswarm seed in seed mode whose piece 2 is bad on disk: a scripted peer asks for it, the
    check fails, and libtorrent (downloading the other file, slowly, so it is still connected) hears
    ``lt_donthave``: piece 2 leaves its view of our pieces and we are no seed to it any more."""

    base = two_files(tmp_path / "src")
    data = create_torrent(base, version="v1", piece_length=PIECE)
    t = parse_torrent(data)
    with open(base / "a.bin", "r+b") as f:
        f.seek(2 * PIECE + 9)
        f.write(b"bad")
    async with Session(config()) as s:
        await s.add(t, base.parent, seed_mode=True)
        with libtorrent_peer(**LT_SETTINGS, download_rate_limit=32768) as lt_peer:
            lt = lt_peer.lt
            params = lt.add_torrent_params()
            params.ti = lt.torrent_info(lt.bdecode(data))
            params.save_path = str(tmp_path / "lt")
            params.file_priorities = [0, 1]  # b.bin only: it never asks for piece 2 itself
            params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)  # see realclients
            h = lt_peer.session.add_torrent(params)
            h.connect_peer(("127.0.0.1", s.port))
            await until(lambda: bool(h.get_peer_info()), 20, "libtorrent to connect")
            assert all(h.get_peer_info()[0].pieces) and h.get_peer_info()[0].flags & lt.peer_info.seed
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            asker = RawPeer(t, reader, writer)
            try:
                asker.send(Handshake(t.swarm_hash, b"-XX0000-" + os.urandom(12), Reserved.make(fast=True)))
                while not isinstance(await asker.next(), Handshake):
                    pass
                asker.send(Interested())
                while not isinstance(await asker.next(), Unchoke):
                    pass
                asker.send(Request(2, 0, 16384))

                def dropped() -> bool:
                    info = h.get_peer_info()
                    return bool(info) and not info[0].pieces[2]

                await until(dropped, 20, "libtorrent to hear lt_donthave for piece 2")
            finally:
                writer.close()
            (info,) = h.get_peer_info()
            assert sum(info.pieces) == 15 and not info.flags & lt.peer_info.seed
