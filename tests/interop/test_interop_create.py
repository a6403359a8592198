"""Torrents made by bitswarm, checked by real implementations: libtorrent loads them with the same
info-hashes, files and piece count, and verifies the data against our SHA-1 pieces and BEP 52 merkle
roots / piece layers (a full recheck must end seeding); libtorrent's and mktorrent's own creators
produce the same info dictionary for the same data and settings.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bitswarm.bencode import decode, decode_full, encode
from bitswarm.metainfo._create import make_torrent
from testtools import require_tool

lt = pytest.importorskip("libtorrent")

pytestmark = pytest.mark.interop

KIB = 1024


def _body(n: int, seed: int) -> bytes:
    return (hashlib.sha256(b"%d" % seed).digest() * (n // 32 + 1))[:n]


#: nested dirs, empty files, sizes around piece and block boundaries; no name is a prefix of a
#: sibling followed by a character below "/", so every creator orders the files the same way.
MULTI = {
    "alpha.bin": 100_000,
    "docs/empty.txt": 0,
    "docs/readme.txt": 1_234,
    "media/deep/er/clip.bin": 300_001,
    "media/deep/zero": 0,
    "media/exact.bin": 64 * KIB,
    "omega.bin": 16 * KIB + 3,
}


def make_data(root: Path, kind: str) -> Path:
    if kind == "single":
        path = root / "single.bin"
        path.write_bytes(_body(500_000, 7))
        return path
    path = root / "multi"
    for i, (rel, n) in enumerate(MULTI.items()):
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_body(n, i))
    return path


def new_session() -> Any:
    return lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
        }
    )


def check_with_libtorrent(ti: Any, save_path: Path, timeout: float = 20.0) -> Any:
    """Add ``ti`` over existing data, wait (bounded) for libtorrent's torrent_checked_alert; the status."""
    ses = new_session()
    params = lt.add_torrent_params()
    params.ti = ti
    params.save_path = str(save_path)
    handle = ses.add_torrent(params)
    deadline = time.monotonic() + timeout
    checked = False
    while not checked and time.monotonic() < deadline:
        ses.wait_for_alert(100)
        checked = any(isinstance(a, lt.torrent_checked_alert) for a in ses.pop_alerts())
    assert checked, f"libtorrent did not finish checking within {timeout} s"
    status = handle.status()
    ses.pause()
    return status


def data_paths(ti: Any) -> list[str]:
    fs = ti.layout()
    return [
        fs.file_path(i).replace(os.sep, "/")
        for i in range(fs.num_files())
        if not fs.file_flags(i) & lt.file_storage.flag_pad_file
    ]


@pytest.mark.parametrize("kind", ["single", "multi"])
@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_libtorrent_loads_and_verifies(tmp_path: Path, version: str, kind: str) -> None:
    src = make_data(tmp_path, kind)
    made = make_torrent(src, version=version, piece_length=32 * KIB, trackers=[["http://127.0.0.1:1/a"]])  # type: ignore[arg-type]
    start, end = decode_full(made.data).spans[b"info"]
    raw_info = made.data[start:end]

    ti = lt.torrent_info(made.data)
    hashes = ti.info_hashes()
    if version != "v2":
        assert hashes.v1.to_bytes() == made.info_hash_v1 == hashlib.sha1(raw_info).digest()
    else:
        assert not hashes.has_v1()
    if version != "v1":
        assert hashes.v2.to_bytes() == made.info_hash_v2 == hashlib.sha256(raw_info).digest()
    else:
        assert not hashes.has_v2()
    assert bytes(ti.info_section()) == raw_info
    assert ti.num_pieces() == made.num_pieces
    if version != "v1":  # libtorrent's view of every file's merkle root is ours
        tree = decode(raw_info)[b"file tree"]
        fs = ti.layout()
        for i in range(fs.num_files()):
            if fs.file_size(i) and not fs.file_flags(i) & lt.file_storage.flag_pad_file:
                node = tree
                for comp in fs.file_path(i).split(os.sep)[1 if kind == "multi" else 0 :]:
                    node = node[comp.encode()]
                assert fs.root(i).to_bytes() == node[b""][b"pieces root"]
                assert fs.file_offset(i) % (32 * KIB) == 0
    assert ti.piece_length() == 32 * KIB
    if kind == "single":
        assert data_paths(ti) == ["single.bin"]
    else:
        assert data_paths(ti) == [f"multi/{rel}" for rel in MULTI]

    status = check_with_libtorrent(ti, tmp_path)
    assert status.state == lt.torrent_status.seeding, status.state
    assert status.num_pieces == made.num_pieces
    assert status.errc.value() == 0


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_libtorrent_rejects_corrupted_data(tmp_path: Path, version: str) -> None:
    """The recheck above is real: one flipped byte costs exactly the piece holding it."""
    src = make_data(tmp_path, "multi")
    made = make_torrent(src, version=version, piece_length=32 * KIB)  # type: ignore[arg-type]
    victim = src / "media/deep/er/clip.bin"
    body = bytearray(victim.read_bytes())
    body[200_000] ^= 0xFF
    victim.write_bytes(body)
    status = check_with_libtorrent(lt.torrent_info(made.data), tmp_path)
    assert status.state != lt.torrent_status.seeding
    assert status.num_pieces == made.num_pieces - 1


def _libtorrent_create(src: Path, version: str, piece_length: int) -> bytes:
    # libtorrent keeps directory order for v1-only torrents: give it the files sorted
    files = sorted(lt.list_files(str(src)), key=lambda e: [c.encode() for c in e.filename.split(os.sep)])
    flags = {
        "v1": lt.create_torrent.v1_only,
        "v2": lt.create_torrent.v2_only,
        "hybrid": lt.create_torrent.canonical_files_no_tail_padding,
    }[version]
    ct = lt.create_torrent(files, piece_length, flags)
    lt.set_piece_hashes(ct, str(src.parent))
    return bytes(lt.bencode(ct.generate()))


@pytest.mark.parametrize("kind", ["single", "multi"])
@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_same_info_dict_as_libtorrent_create_torrent(tmp_path: Path, version: str, kind: str) -> None:
    src = make_data(tmp_path, kind)
    ours = decode(make_torrent(src, version=version, piece_length=16 * KIB).data)  # type: ignore[arg-type]
    theirs = decode(_libtorrent_create(src, version, 16 * KIB))
    assert encode(ours[b"info"]) == encode(theirs[b"info"])
    assert ours.get(b"piece layers") == theirs.get(b"piece layers")


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_same_v1_info_hash_as_mktorrent(tmp_path: Path, kind: str) -> None:
    mktorrent = require_tool("mktorrent")
    src = make_data(tmp_path, kind)
    out = tmp_path / "mk.torrent"
    subprocess.run(
        [mktorrent, "-l", "15", "-o", str(out), str(src)], check=True, capture_output=True, timeout=60
    )
    theirs = out.read_bytes()
    start, end = decode_full(theirs).spans[b"info"]
    made = make_torrent(src, version="v1", piece_length=32 * KIB)
    assert made.info_hash_v1 == hashlib.sha1(theirs[start:end]).digest()
