"""Storage against torrents made by the real creator and parser (v1, v2, hybrid): recheck a source
tree, copy it piece by piece into a fresh directory, and get identical files."""

from __future__ import annotations

import os

import pytest
from storage_testlib import blob

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.storage import Storage


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
async def test_copy_through_storage(tmp_path, version) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src" / "pack"
    (src / "d").mkdir(parents=True)
    sizes = {"a": 70000, "d/b": 16384, "d/c": 1, "e": 0, "f": 200000}
    for i, (name, size) in enumerate(sizes.items()):
        (src / name).write_bytes(blob(size, i))
    torrent = parse_torrent(create_torrent(src, version=version, piece_length=32768, creation_date=None))
    async with Storage(torrent, tmp_path / "src") as seed:
        assert seed.have.all()  # every source piece verified from disk
        async with Storage(torrent, tmp_path / "dst") as leech:
            for i in range(torrent.info.num_pieces):
                assert await leech.write_piece(i, bytearray(await seed.read_piece(i)))
            assert leech.have.all()
    for name in sizes:
        assert (tmp_path / "dst" / "pack" / name).read_bytes() == (src / name).read_bytes()
    assert not os.path.exists(tmp_path / "dst" / "pack" / ".pad")
