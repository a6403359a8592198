"""Interop: torrents made by libtorrent and mktorrent parse in bitswarm with the same info-hashes,
files and piece counts as libtorrent reads them; magnet links agree with libtorrent's both ways."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from bitswarm.metainfo import Torrent, load_torrent, magnet_from_torrent, parse_magnet, parse_torrent
from testtools import require_tool

lt = pytest.importorskip("libtorrent")

pytestmark = pytest.mark.interop

FLAGS = {"v1": "v1_only", "v2": "v2_only", "hybrid": None}


def _blob(n: int, seed: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d/%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


def _make_tree(root: Path, layout: str) -> Path:
    """A content path under ``root``: one file, or a directory with empty files and nested dirs."""
    if layout == "single-small":
        p = root / "one.bin"
        p.write_bytes(_blob(1000, 1))
        return p
    if layout == "single-big":
        p = root / "big.iso"
        p.write_bytes(_blob(200_000, 2))
        return p
    d = root / "content"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "emptydir-not-listed").mkdir()
    (d / "a.bin").write_bytes(_blob(40_000, 3))
    (d / "empty").write_bytes(b"")
    (d / "sub" / "b.txt").write_bytes(_blob(100, 4))
    (d / "sub" / "deeper" / "c.dat").write_bytes(_blob(70_000, 5))
    (d / "sub" / "deeper" / "zero").write_bytes(b"")
    run = d / "run.sh"
    run.write_bytes(b"#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    return d


def _lt_torrent(content: Path, version: str, piece_size: int) -> bytes:
    entries = lt.list_files(str(content))
    flag = FLAGS[version]
    ct = lt.create_torrent(entries, piece_size, getattr(lt.create_torrent, flag) if flag else 0)
    ct.add_tracker("http://tracker.example/announce", 0)
    ct.add_tracker("udp://backup.example:6969", 1)
    ct.add_url_seed("http://seed.example/files/")
    ct.set_comment("made by libtorrent")
    ct.set_creator("interop test")
    lt.set_piece_hashes(ct, str(content.parent))
    return bytes(lt.bencode(ct.generate()))


def _lt_view(
    raw: bytes,
) -> tuple[bytes | None, bytes | None, list[tuple[str, int, bool]], int, dict[str, bytes]]:
    ti = lt.torrent_info(raw)
    ih = ti.info_hashes()
    fs = ti.layout()
    prefix = ti.name() + "/"
    files = []
    roots = {}
    for i in range(fs.num_files()):
        if fs.file_flags(i) & fs.flag_pad_file:
            continue
        path = fs.file_path(i).replace(os.sep, "/")
        path = path.removeprefix(prefix)
        files.append((path, fs.file_size(i), bool(fs.file_flags(i) & fs.flag_executable)))
        if ih.has_v2() and fs.file_size(i):
            roots[path] = fs.root(i).to_bytes()
    v1 = ih.v1.to_bytes() if ih.has_v1() else None
    v2 = ih.v2.to_bytes() if ih.has_v2() else None
    return v1, v2, files, ti.num_pieces(), roots


def _check_against_lt(t: Torrent, raw: bytes) -> None:
    v1, v2, files, num_pieces, roots = _lt_view(raw)
    assert t.info_hash_v1 == v1
    assert t.info_hash_v2 == v2
    assert [(f.path_str, f.length, "x" in f.attr) for f in t.info.data_files] == files
    assert t.info.num_pieces == num_pieces
    for f in t.info.data_files:
        if f.length and v2 is not None:
            assert f.pieces_root == roots[f.path_str]


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
@pytest.mark.parametrize("layout", ["single-small", "single-big", "multi"])
@pytest.mark.parametrize("piece_size", [16384, 65536])
def test_libtorrent_made_torrents(tmp_path: Path, version: str, layout: str, piece_size: int) -> None:
    content = _make_tree(tmp_path, layout)
    raw = _lt_torrent(content, version, piece_size)
    t = parse_torrent(raw)
    assert t.version == version
    _check_against_lt(t, raw)
    assert t.info.single_file == layout.startswith("single")
    assert t.trackers == [["http://tracker.example/announce"], ["udp://backup.example:6969"]]
    assert t.url_list == ["http://seed.example/files/"]
    assert (t.comment, t.created_by) == ("made by libtorrent", "interop test")
    if version != "v1":
        assert all(len(layer) % 32 == 0 for layer in t.piece_layers.values())
        big = [f for f in t.info.data_files if f.length > piece_size]
        assert {f.pieces_root for f in big} == set(t.piece_layers)
    # data lands where libtorrent puts it: every data file's offset in the piece space agrees
    fs = lt.torrent_info(raw).layout()
    lt_offsets = [fs.file_offset(i) for i in range(fs.num_files()) if not fs.file_flags(i) & fs.flag_pad_file]
    ours = [f.offset for f in t.info.data_files]
    for (f, a), b in zip(zip(t.info.data_files, ours, strict=True), lt_offsets, strict=True):
        if f.length:
            assert a == b, f.path_str


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_magnets_agree_with_libtorrent(tmp_path: Path, version: str) -> None:
    raw = _lt_torrent(_make_tree(tmp_path, "multi"), version, 16384)
    t = parse_torrent(raw)
    ti = lt.torrent_info(raw)
    theirs = parse_magnet(lt.make_magnet_uri(ti))
    assert (theirs.info_hash_v1, theirs.info_hash_v2) == (t.info_hash_v1, t.info_hash_v2)
    assert theirs.name == t.name
    ours = magnet_from_torrent(t).to_uri()
    p = lt.parse_magnet_uri(ours)
    ih = p.info_hashes
    assert (ih.v1.to_bytes() if ih.has_v1() else None) == t.info_hash_v1
    assert (ih.v2.to_bytes() if ih.has_v2() else None) == t.info_hash_v2
    assert p.name == t.name
    assert list(p.trackers) == [u for tier in t.trackers for u in tier]
    extra = parse_magnet(ours + "&x.pe=%5B::1%5D:6881&x.pe=127.0.0.1:7000&dn=a+b")
    q = lt.parse_magnet_uri(extra.to_uri())
    assert sorted(q.peers) == sorted([("::1", 6881), ("127.0.0.1", 7000)]) and q.name == "a b"


@pytest.mark.parametrize("layout", ["single-big", "multi"])
def test_mktorrent_made_torrents(tmp_path: Path, layout: str) -> None:
    mk = require_tool("mktorrent")
    content = _make_tree(tmp_path, layout)
    out = tmp_path / "out.torrent"
    subprocess.run(
        [mk, "-a", "http://t/announce", "-a", "http://t2/announce", "-c", "hi", "-p", "-l", "15",
         "-w", "http://ws/", "-o", str(out), str(content)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    t = load_torrent(out)
    raw = out.read_bytes()
    _check_against_lt(t, raw)
    assert t.version == "v1" and t.info.piece_length == 1 << 15
    assert t.info.private and t.comment == "hi"
    assert t.trackers == [["http://t/announce"], ["http://t2/announce"]]  # one -a per tier
    assert t.url_list == ["http://ws/"]
