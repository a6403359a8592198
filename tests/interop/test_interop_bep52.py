"""BEP 52 hash exchange against libtorrent (PyPI) on loopback: v2-only and hybrid magnet links both
ways. The info dictionary of a magnet has no piece layers, so the downloader must fetch them with hash
requests and check them against each file's pieces root before it can verify a v2 piece."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from bitswarm.metainfo import magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.session import Session, SessionConfig
from realclients import libtorrent_peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

LT_SETTINGS = {"out_enc_policy": 2, "in_enc_policy": 2}  # plaintext, as the other libtorrent tests
PL = 32768  # two 16 KiB blocks per piece: the piece layer is not the leaf layer
#: libtorrent's pex_lt_v2 flag (pex_flags.hpp: bit 7) with its default connect_peer flags: it dials
#: a hybrid torrent's peer with the v2 info-hash, so it asks that peer for hashes
PEX_LT_V2 = 0x80 | 13


def config() -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1", listen_port=0, enable_dht=False, encryption="off", transports="tcp"
    )


def make_content(root: Path, seed: int = 3) -> Path:
    """Three files longer than a piece (one spans more than 512 pieces: two hash ranges), a short one
    that needs no piece layer."""
    rng = random.Random(seed)
    d = root / "pack"
    for rel, size in {"a.bin": 600 * PL + 77, "sub/b.bin": 9 * PL, "c.bin": 3 * PL - 1, "d.txt": 999}.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(rng.randbytes(size))
    return d


def same_tree(a: Path, b: Path) -> None:
    for p in a.rglob("*"):
        if p.is_file():
            assert (b / p.relative_to(a)).read_bytes() == p.read_bytes(), p


def magnet(data: bytes, version: TorrentVersion) -> str:
    t = parse_torrent(data)
    m = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[])
    if version == "v2":
        assert m.info_hash_v1 is None
    return m.to_uri()


@pytest.mark.parametrize("version", ["v2", "hybrid"])
async def test_libtorrent_seeds_bitswarm_downloads_magnet(tmp_path: Path, version: TorrentVersion) -> None:
    content = make_content(tmp_path / "lt")
    data = create_torrent(content, version=version, piece_length=PL)
    t = parse_torrent(data)
    assert len(t.piece_layers) == 3
    with libtorrent_peer(**LT_SETTINGS) as lt_peer:
        h = lt_peer.add(data, content.parent)
        await asyncio.to_thread(lt_peer.wait_seeding, h, 30)
        async with Session(config()) as s:
            hb = await s.add(
                magnet(data, version),
                tmp_path / "bw",
                peers=[("127.0.0.1", lt_peer.port)],
                metadata_timeout=30,
            )
            assert not hb.torrent.piece_layers  # the info dictionary alone
            await hb.wait_complete(timeout=90)
            ex = hb._rt.hashes.exchange
            # every layer came from libtorrent, proved against the pieces roots: the same as the file's
            assert ex.complete and ex.fetched == 3 and ex.layers == t.piece_layers and not ex.bad_answers
    same_tree(content, tmp_path / "bw" / "pack")


@pytest.mark.parametrize("version", ["v2", "hybrid"])
async def test_bitswarm_seeds_libtorrent_downloads_magnet(tmp_path: Path, version: TorrentVersion) -> None:
    content = make_content(tmp_path / "bw")
    data = create_torrent(content, version=version, piece_length=PL)
    async with Session(config()) as s:
        hb = await s.add(parse_torrent(data), content.parent)
        with libtorrent_peer(**LT_SETTINGS) as lt_peer:
            lt = lt_peer.lt
            params = lt.parse_magnet_uri(magnet(data, version))
            params.save_path = str(tmp_path / "lt")
            params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
            h = lt_peer.session.add_torrent(params)
            h.connect_peer(("127.0.0.1", s.port), 0, PEX_LT_V2)
            await asyncio.to_thread(lt_peer.wait_seeding, h, 90)
        ex = hb._rt.hashes.exchange
        # libtorrent fetched the piece layers from us (it has no other peer)
        assert ex.served >= 3 and ex.rejected == 0
    same_tree(content, tmp_path / "lt" / "pack")
