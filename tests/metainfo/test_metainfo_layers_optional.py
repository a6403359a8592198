"""``parse_torrent(..., layers_optional=True)``: a v2 or hybrid .torrent made of a magnet's metadata
(BEP 9: the info dictionary, no BEP 52 piece layers) loads with no layers; layers that are present are
still checked (issue 16: the daemon restores magnet-added torrents from such files)."""

from __future__ import annotations

import pytest
from metainfo_testlib import data, hybrid_info, torrent_bytes, v2_info

from bitswarm.metainfo import MetainfoError, parse_torrent

FILES = [(("a.bin",), data(100_000, 1)), (("b.bin",), data(50_000, 2))]


@pytest.mark.parametrize("make", [hybrid_info, v2_info], ids=["hybrid", "v2"])
def test_metadata_without_layers(make) -> None:  # type: ignore[no-untyped-def]
    info, layers = make(FILES)
    bare = torrent_bytes(info)
    with pytest.raises(MetainfoError, match="missing the layer"):
        parse_torrent(bare)
    t = parse_torrent(bare, layers_optional=True)
    assert t.piece_layers == {} and t.info_hash_v2 is not None
    assert [f.path_str for f in t.info.data_files] == ["a.bin", "b.bin"]
    # the full .torrent parses the same either way
    full = torrent_bytes(info, layers)
    assert parse_torrent(full, layers_optional=True).piece_layers == parse_torrent(full).piece_layers
    # present but wrong layers are still refused
    bad = {root: b"\0" * len(layer) for root, layer in layers.items()}
    with pytest.raises(MetainfoError, match="does not hash to its pieces root"):
        parse_torrent(torrent_bytes(info, bad), layers_optional=True)
