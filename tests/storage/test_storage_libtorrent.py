"""Interop: torrents made by libtorrent (its own pad-file and v2 alignment layout) recheck as fully
valid from the source files, and copy piece by piece into byte-identical files."""

from __future__ import annotations

import os

import pytest
from storage_testlib import blob

from bitswarm.metainfo import parse_torrent
from bitswarm.storage import Storage

lt = pytest.importorskip("libtorrent")


def lt_torrent(src: str, flags: int, piece_length: int) -> bytes:
    ct = lt.create_torrent(lt.list_files(src), piece_length, flags)
    lt.set_piece_hashes(ct, os.path.dirname(src))
    return bytes(lt.bencode(ct.generate()))


@pytest.mark.interop
@pytest.mark.parametrize("flavour", ["v1", "v2", "hybrid", "hybrid-canonical"])
async def test_libtorrent_made_torrent_round_trips(tmp_path, flavour) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src" / "pack"
    (src / "sub").mkdir(parents=True)
    sizes = {"a.bin": 50001, "sub/b.bin": 16384, "sub/c.bin": 3, "z.bin": 99999}
    for i, (name, size) in enumerate(sizes.items()):
        (src / name).write_bytes(blob(size, 10 + i))
    flags = {
        "v1": lt.create_torrent.v1_only,
        "v2": lt.create_torrent.v2_only,
        "hybrid": 0,  # libtorrent's default pads after every file, the last one included
        "hybrid-canonical": lt.create_torrent.canonical_files_no_tail_padding,
    }[flavour]
    torrent = parse_torrent(lt_torrent(str(src), flags, 32768))
    assert torrent.version == flavour.split("-")[0]
    async with Storage(torrent, tmp_path / "src") as seed:
        assert seed.have.all(), f"{seed.have} of libtorrent's pieces verified"
        async with Storage(torrent, tmp_path / "dst") as leech:
            for i in range(torrent.info.num_pieces):
                assert await leech.write_piece(i, bytearray(await seed.read_piece(i)))
    for name in sizes:
        assert (tmp_path / "dst" / "pack" / name).read_bytes() == (src / name).read_bytes()
    assert not (tmp_path / "dst" / "pack" / ".pad").exists()  # BEP 47 padding never hits the disk
