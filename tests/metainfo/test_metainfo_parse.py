"""Parsing valid v1 / v2 / hybrid .torrent files into the shared model (BEP 3, 12, 19, 27, 47, 52)."""

from __future__ import annotations

import hashlib

import pytest
from metainfo_testlib import data, hybrid_info, torrent_bytes, v1_info, v2_info

from bitswarm.bencode import decode, encode
from bitswarm.metainfo import MetainfoError, load_torrent, merkle, parse_info, parse_torrent

PL = 16384


def test_v1_single_file() -> None:
    payload = data(40000)
    raw = torrent_bytes(v1_info(payload, name="a.bin"), announce=b"http://t/announce")
    t = parse_torrent(raw)
    info_raw = encode(v1_info(payload, name="a.bin"))
    assert t.info_hash_v1 == hashlib.sha1(info_raw).digest()
    assert t.info_hash_v2 is None and t.version == "v1"
    assert t.info.raw == info_raw and t.raw == raw
    assert t.info.single_file
    assert [(f.path, f.length, f.offset) for f in t.info.files] == [(("a.bin",), 40000, 0)]
    assert t.info.num_pieces == 3 and t.info.piece_size(2) == 40000 - 2 * PL
    assert t.info.piece_hash_v1(1) == hashlib.sha1(payload[PL : 2 * PL]).digest()
    assert t.trackers == [["http://t/announce"]]
    assert t.info.meta_version is None and t.piece_layers == {}


def test_v1_multi_file_and_top_level_fields() -> None:
    files = [(("x", "a"), data(100, 1)), (("empty",), b""), (("x", "b"), data(20000, 2))]
    info = v1_info(files, name="dir", private=1, source=b"SRC")
    raw = torrent_bytes(
        info,
        **{
            "announce": b"http://ignored/announce",
            "announce-list": [[b"http://a/1", b"", b"udp://b:80"], [], [b"http://c/2"]],
            "url-list": b"http://seed/",
            "comment": b"hello",
            "created by": b"test 1.0",
            "creation date": 1700000000,
            "nodes": [[b"router.example", 6881], [b"1.2.3.4", 1]],
        },
    )
    t = parse_torrent(raw)
    assert not t.info.single_file and t.name == "dir"
    assert [(f.path, f.length, f.offset) for f in t.info.files] == [
        (("x", "a"), 100, 0),
        (("empty",), 0, 100),
        (("x", "b"), 20000, 100),
    ]
    assert t.info.total_size == 20100 and t.info.num_pieces == 2
    assert t.trackers == [["http://a/1", "udp://b:80"], ["http://c/2"]]  # BEP 12 wins, empties dropped
    assert t.url_list == ["http://seed/"]
    assert t.info.private and t.info.source == "SRC"
    assert (t.comment, t.created_by, t.creation_date) == ("hello", "test 1.0", 1700000000)
    assert t.nodes == [("router.example", 6881), ("1.2.3.4", 1)]


def test_url_list_as_list_and_no_trackers() -> None:
    t = parse_torrent(torrent_bytes(v1_info(b"abc"), **{"url-list": [b"http://a/", b"", b"http://b/"]}))
    assert t.url_list == ["http://a/", "http://b/"] and t.trackers == []


def test_empty_announce_list_falls_back_to_announce() -> None:
    t = parse_torrent(torrent_bytes(v1_info(b"abc"), **{"announce": b"http://a/", "announce-list": [[b""]]}))
    assert t.trackers == [["http://a/"]]


def test_private_only_when_one() -> None:
    assert not parse_torrent(torrent_bytes(v1_info(b"abc", private=0))).info.private
    assert not parse_torrent(torrent_bytes(v1_info(b"abc"))).info.private


def test_utf8_variants_preferred() -> None:
    info = v1_info([(("a",), b"xy")], name="legacy")
    info[b"name.utf-8"] = "naïve".encode()
    info[b"files"][0][b"path.utf-8"] = ["ünï".encode()]
    t = parse_torrent(torrent_bytes(info))
    assert t.name == "naïve" and t.info.files[0].path == ("ünï",)


def test_non_power_of_two_v1_piece_length_is_accepted() -> None:
    # BEP 3 only says "almost always a power of two"; libtorrent accepts any positive length for v1.
    t = parse_torrent(torrent_bytes(v1_info(data(50000), pl=20000)))
    assert t.info.piece_length == 20000 and t.info.num_pieces == 3


def test_v2_multi_file_layout_roots_and_layers() -> None:
    files = [
        (("a.bin",), data(40000, 1)),
        (("e", "z"), b""),
        (("empty",), b""),
        (("sub", "b"), data(100, 2)),
        (("sub", "c"), data(70000, 3)),
    ]
    info, layers = v2_info(list(reversed(files)), name="d")  # dict order does not matter: keys are sorted
    raw = torrent_bytes(info, layers)
    t = parse_torrent(raw)
    assert t.version == "v2" and t.info_hash_v1 is None
    assert t.info_hash_v2 == hashlib.sha256(encode(info)).digest()
    assert t.info.pieces is None and t.info.meta_version == 2
    got = [(f.path, f.length, f.offset) for f in t.info.files]
    assert got == [
        (("a.bin",), 40000, 0),
        (("e", "z"), 0, 40000),
        (("empty",), 0, 40000),
        (("sub", "b"), 100, 3 * PL),  # non-empty files start on a piece boundary
        (("sub", "c"), 70000, 4 * PL),
    ]
    assert t.info.num_pieces == 4 + 5
    for f, (_, payload) in zip(t.info.files, files, strict=True):
        want = merkle.file_root(merkle.block_hashes(payload), PL) if payload else None
        assert f.pieces_root == want
    assert set(t.piece_layers) == {t.info.files[0].pieces_root, t.info.files[4].pieces_root}
    assert not t.info.single_file


def test_v2_single_file() -> None:
    info, layers = v2_info([(("only.iso",), data(100000))], name="only.iso", pl=32768)
    t = parse_torrent(torrent_bytes(info, layers))
    assert t.info.single_file and t.info.files[0].path == ("only.iso",)
    assert t.info.num_pieces == 4


def test_v2_file_of_exactly_one_piece_needs_no_layer() -> None:
    info, layers = v2_info([(("a",), data(PL))])
    assert layers == {}
    assert parse_torrent(torrent_bytes(info)).info.files[0].length == PL


def test_hybrid_multi_file() -> None:
    files = [(("b",), data(20000, 1)), (("a",), data(100, 2)), (("c", "d"), b""), (("c", "e"), data(5, 3))]
    info, layers = hybrid_info(files, name="h")
    t = parse_torrent(torrent_bytes(info, layers))
    raw_info = encode(info)
    assert t.version == "hybrid"
    assert t.info_hash_v1 == hashlib.sha1(raw_info).digest()
    assert t.info_hash_v2 == hashlib.sha256(raw_info).digest()
    assert t.swarm_hash == t.info_hash_v1
    assert [f.path for f in t.info.data_files] == [("a",), ("b",), ("c", "d"), ("c", "e")]
    assert any(f.pad for f in t.info.files)
    for f in t.info.data_files:
        assert f.length == 0 or f.offset % PL == 0
        assert (f.pieces_root is None) == (f.length == 0)
    assert t.info.num_pieces == len(t.info.pieces or b"") // 20 == 1 + 2 + 1


def test_hybrid_single_file() -> None:
    info, layers = hybrid_info([(("s.bin",), data(50000))], name="s.bin", single=True)
    t = parse_torrent(torrent_bytes(info, layers))
    assert t.version == "hybrid" and t.info.single_file
    assert t.info.files[0].pieces_root is not None and len(t.piece_layers) == 1


def test_bep47_attributes_and_legacy_padding() -> None:
    info = v1_info([(("run.sh",), b"#!"), (("_____padding_file_0",), bytes(10)), (("link",), b"")], name="p")
    info[b"files"][0][b"attr"] = b"xh"
    info[b"files"][0][b"mtime"] = 1234
    info[b"files"][2][b"attr"] = b"l"
    info[b"files"][2][b"symlink path"] = [b"run.sh"]
    t = parse_torrent(torrent_bytes(info))
    run, pad, link = t.info.files
    assert run.attr == "xh" and run.mtime == 1234 and not run.pad
    assert pad.pad and pad not in t.info.data_files
    assert link.symlink_path == ("run.sh",)
    assert t.info.total_size == 2


def test_unsorted_and_duplicate_keys_hash_over_original_bytes() -> None:
    pieces = hashlib.sha1(b"abc").digest()
    # info keys out of order plus a duplicate 'name': a re-encoding would differ from these bytes.
    raw_info = b"d6:lengthi3e4:name1:a4:name1:b12:piece lengthi16384e6:pieces20:" + pieces + b"e"
    raw = b"d4:info" + raw_info + b"8:announce3:x:ye"
    t = parse_torrent(raw)
    assert t.info_hash_v1 == hashlib.sha1(raw_info).digest()
    assert t.info.raw == raw_info
    assert t.name == "a"  # first occurrence wins, as in libtorrent
    assert encode(decode(raw_info, strict=False)) != raw_info


def test_parse_info_matches_parse_torrent() -> None:
    info, layers = hybrid_info([(("a",), data(3000)), (("b",), data(70000, 5))])
    t = parse_torrent(torrent_bytes(info, layers))
    parsed, h1, h2 = parse_info(encode(info))
    assert (h1, h2) == (t.info_hash_v1, t.info_hash_v2)
    assert parsed == t.info


def test_load_torrent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "x.torrent"
    p.write_bytes(torrent_bytes(v1_info(b"hello")))
    assert load_torrent(p).info.total_size == 5
    assert load_torrent(str(p)).name == "t"
    with pytest.raises(OSError):
        load_torrent(tmp_path / "missing.torrent")


def test_bencode_errors_become_metainfo_errors() -> None:
    with pytest.raises(MetainfoError) as ei:
        parse_torrent(b"d4:info")
    assert ei.value.field == "bencode" and "byte 7" in str(ei.value)


def test_v2_empty_file_sits_at_end_of_previous_data() -> None:
    # A trailing empty file must not stretch the piece space to the next piece boundary.
    info, layers = v2_info([(("a",), data(100)), (("z",), b"")])
    t = parse_torrent(torrent_bytes(info, layers))
    assert [(f.path, f.offset) for f in t.info.files] == [(("a",), 0), (("z",), 100)]
    assert t.info.piece_space == 100 and t.info.num_pieces == 1 and t.info.piece_size(0) == 100
