"""Unit tests of torrent creation (v1, v2, hybrid) against an independent, naive reference.

The reference below recomputes everything from the raw bytes the test wrote: SHA-1 over the
concatenated (and, for hybrid, zero-padded) data, and BEP 52 merkle trees built as full binary trees
over zero-padded leaves, without :mod:`bitswarm.metainfo.merkle`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.bencode import decode, decode_full
from bitswarm.metainfo import MetainfoError
from bitswarm.metainfo._create import auto_piece_length, create_torrent, make_torrent
from bitswarm.metainfo._hashing import SourceFile, hash_aligned, hash_v1

KIB = 1024
BLOCK = 16 * KIB


# ---------------------------------------------------------------- naive reference


def _tree_root(leaves: list[bytes]) -> bytes:
    """Root of a full binary tree over ``leaves`` (its length a power of two)."""
    while len(leaves) > 1:
        leaves = [hashlib.sha256(leaves[i] + leaves[i + 1]).digest() for i in range(0, len(leaves), 2)]
    return leaves[0]


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def _leaves(data: bytes) -> list[bytes]:
    return [hashlib.sha256(data[i : i + BLOCK]).digest() for i in range(0, len(data), BLOCK)]


def ref_root(data: bytes) -> bytes:
    leaves = _leaves(data)
    return _tree_root(leaves + [bytes(32)] * (_pow2(len(leaves)) - len(leaves)))


def ref_layer(data: bytes, piece_length: int) -> bytes:
    per = piece_length // BLOCK
    out = b""
    for p in range(0, len(data), piece_length):
        leaves = _leaves(data[p : p + piece_length])
        out += _tree_root(leaves + [bytes(32)] * (per - len(leaves)))
    return out


def ref_sha1(stream: bytes, piece_length: int) -> bytes:
    return b"".join(
        hashlib.sha1(stream[i : i + piece_length]).digest() for i in range(0, len(stream), piece_length)
    )


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def data(n: int, seed: int = 0) -> bytes:
    return (hashlib.sha256(b"%d" % seed).digest() * (n // 32 + 1))[:n] if n else b""


def ordered(files: dict[str, bytes]) -> list[tuple[str, bytes]]:
    return sorted(files.items(), key=lambda kv: [c.encode() for c in kv[0].split("/")])


def check_against_reference(meta: dict[bytes, Any], files: dict[str, bytes], version: str, plen: int) -> None:
    """Every hash and every layout rule of ``meta`` against the naive reference."""
    info = meta[b"info"]
    assert info[b"piece length"] == plen
    order = ordered(files)
    if version != "v1":
        assert info[b"meta version"] == 2
        layers = meta[b"piece layers"]
        expect_layers = {}
        for rel, body in order:
            node = info[b"file tree"]
            for comp in rel.split("/"):
                node = node[comp.encode()]
            assert set(node) == {b""}
            leaf = node[b""]
            assert leaf[b"length"] == len(body)
            if body:
                assert leaf[b"pieces root"] == ref_root(body)
                if len(body) > plen:
                    expect_layers[ref_root(body)] = ref_layer(body, plen)
            else:
                assert b"pieces root" not in leaf
        assert layers == expect_layers
    else:
        assert b"file tree" not in info and b"piece layers" not in meta and b"meta version" not in info
    if version == "v2":
        assert b"pieces" not in info and b"files" not in info
        return
    # the v1 part: the files list (or length) and the SHA-1 of the piece stream
    stream = b""
    listed = []
    if b"files" in info:
        for entry in info[b"files"]:
            path = "/".join(c.decode() for c in entry[b"path"])
            if entry.get(b"attr") == b"p":
                assert version == "hybrid"
                assert path == f".pad/{entry[b'length']}"
                assert 0 < entry[b"length"] < plen
                stream += bytes(entry[b"length"])
                continue
            assert b"attr" not in entry
            body = files[path]
            if version == "hybrid" and body:
                assert len(stream) % plen == 0, f"{path} does not start on a piece boundary"
            listed.append(path)
            stream += body
        assert listed == [rel for rel, _ in order]
        assert info[b"files"][-1].get(b"attr") != b"p", "padding after the last file"
    else:
        ((rel, body),) = order
        assert info[b"length"] == len(body)
        stream = body
    assert info[b"pieces"] == ref_sha1(stream, plen)


# ---------------------------------------------------------------- auto piece length


def test_auto_piece_length_rule() -> None:
    assert auto_piece_length(0) == 16 * KIB
    assert auto_piece_length(1) == 16 * KIB
    assert auto_piece_length(2048 * 16 * KIB) == 16 * KIB
    assert auto_piece_length(2048 * 16 * KIB + 1) == 32 * KIB
    assert auto_piece_length(1 << 30) == 512 * KIB  # 2048 pieces
    assert auto_piece_length(4 << 30) == 2 * 1024 * KIB
    assert auto_piece_length(1 << 50) == 16 * 1024 * KIB  # clamped
    with pytest.raises(ValueError):
        auto_piece_length(-1)


@given(st.integers(min_value=0, max_value=1 << 45))
def test_auto_piece_length_properties(size: int) -> None:
    plen = auto_piece_length(size)
    assert 16 * KIB <= plen <= 16 * 1024 * KIB and plen & (plen - 1) == 0
    pieces = -(-size // plen)
    if plen < 16 * 1024 * KIB:
        assert pieces <= 2048
    if plen > 16 * KIB:
        assert -(-size // (plen // 2)) > 2048  # the smallest such length
    if 32 << 20 < size <= 32 << 30:
        assert 1024 < pieces <= 2048


# ---------------------------------------------------------------- layouts

MULTI = {
    "a/x": data(5, 1),
    "a.txt": data(100_000, 2),
    "sub/big": data(200_000, 3),
    "sub/empty": b"",
    "sub/deep/exact": data(32 * KIB, 4),
    "z": data(16 * KIB + 1, 5),
}


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
@pytest.mark.parametrize("plen", [16 * KIB, 64 * KIB])
def test_multi_file_layout(tmp_path: Path, version: str, plen: int) -> None:
    write_tree(tmp_path / "d", MULTI)
    raw = create_torrent(tmp_path / "d", version=version, piece_length=plen)  # type: ignore[arg-type]
    meta = decode(raw)
    assert meta[b"info"][b"name"] == b"d"
    check_against_reference(meta, MULTI, version, plen)


def test_hybrid_padding_exact(tmp_path: Path) -> None:
    files = {"a": data(10), "b": b"", "c": data(BLOCK), "d": data(3), "e": b""}
    write_tree(tmp_path / "t", files)
    info = decode(create_torrent(tmp_path / "t", piece_length=BLOCK))[b"info"]
    layout = [(e[b"path"], e[b"length"], e.get(b"attr")) for e in info[b"files"]]
    assert layout == [
        ([b"a"], 10, None),
        ([b"b"], 0, None),  # padding goes before the next non-empty file, not after an empty one
        ([b".pad", b"16374"], 16374, b"p"),
        ([b"c"], BLOCK, None),  # already aligned: no padding
        ([b"d"], 3, None),
        ([b"e"], 0, None),  # nothing after the last data: no tail padding
    ]
    assert len(info[b"pieces"]) == 3 * 20


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
@pytest.mark.parametrize("size", [1, BLOCK - 1, BLOCK, 3 * BLOCK + 7, 4 * BLOCK])
def test_single_file(tmp_path: Path, version: str, size: int) -> None:
    body = data(size, size)
    (tmp_path / "one.bin").write_bytes(body)
    made = make_torrent(tmp_path / "one.bin", version=version, piece_length=2 * BLOCK)  # type: ignore[arg-type]
    meta = decode(made.data)
    info = meta[b"info"]
    check_against_reference(meta, {"one.bin": body}, version, 2 * BLOCK)
    assert b"files" not in info
    if version != "v1":
        assert set(info[b"file tree"]) == {b"one.bin"}
    assert made.num_pieces == -(-size // (2 * BLOCK))
    assert made.total_size == size and made.num_files == 1


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_info_hashes_are_over_the_info_span(tmp_path: Path, version: str) -> None:
    write_tree(tmp_path / "d", MULTI)
    made = make_torrent(tmp_path / "d", version=version)  # type: ignore[arg-type]
    full = decode_full(made.data)
    start, end = full.spans[b"info"]
    raw_info = made.data[start:end]
    assert made.info_hash_v1 == (hashlib.sha1(raw_info).digest() if version != "v2" else None)
    assert made.info_hash_v2 == (hashlib.sha256(raw_info).digest() if version != "v1" else None)
    assert made.piece_length == auto_piece_length(sum(map(len, MULTI.values())))


def test_nested_order_is_component_wise(tmp_path: Path) -> None:
    files = {"a.txt": data(3), "a/x": data(4), "a/b/c": data(5), "A": data(1), "a-b": data(2), "ä": data(6)}
    write_tree(tmp_path / "n", files)
    info = decode(create_torrent(tmp_path / "n", version="v1"))[b"info"]
    paths = [b"/".join(e[b"path"]).decode() for e in info[b"files"]]
    assert paths == ["A", "a/b/c", "a/x", "a-b", "a.txt", "ä"]


def test_top_level_fields(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(data(1000))
    meta = decode(
        create_torrent(
            tmp_path / "f",
            trackers=[["http://t1/a", "http://t1b/a"], ["udp://t2:80"]],
            web_seeds=["http://ws/"],
            private=True,
            comment="hello",
            created_by="me",
            creation_date=1234,
            source="SRC",
        )
    )
    assert meta[b"announce"] == b"http://t1/a"
    assert meta[b"announce-list"] == [[b"http://t1/a", b"http://t1b/a"], [b"udp://t2:80"]]
    assert meta[b"url-list"] == b"http://ws/"
    assert meta[b"comment"] == b"hello" and meta[b"created by"] == b"me" and meta[b"creation date"] == 1234
    assert meta[b"info"][b"private"] == 1 and meta[b"info"][b"source"] == b"SRC"

    bare = decode(
        create_torrent(tmp_path / "f", trackers=[["http://only/"]], created_by=None, creation_date=None)
    )
    assert bare[b"announce"] == b"http://only/"
    assert not {b"announce-list", b"url-list", b"comment", b"created by", b"creation date"} & set(bare)
    assert not {b"private", b"source"} & set(bare[b"info"])
    two_seeds = decode(create_torrent(tmp_path / "f", web_seeds=["http://a/", "http://b/"]))
    assert two_seeds[b"url-list"] == [b"http://a/", b"http://b/"]
    assert isinstance(decode(create_torrent(tmp_path / "f"))[b"creation date"], int)


def test_threads_do_not_change_the_result(tmp_path: Path) -> None:
    write_tree(tmp_path / "d", MULTI)
    for version in ("v1", "v2", "hybrid"):
        one = create_torrent(tmp_path / "d", version=version, threads=1, creation_date=None)  # type: ignore[arg-type]
        four = create_torrent(tmp_path / "d", version=version, threads=4, creation_date=None)  # type: ignore[arg-type]
        assert one == four


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_progress_is_monotone_and_ends_at_total(tmp_path: Path, version: str) -> None:
    # larger than one 4 MiB read chunk, several files, so progress is reported many times
    files = {"big": data(9 * 1024 * KIB + 5, 1), "e": b"", "mid": data(300 * KIB, 2)}
    write_tree(tmp_path / "p", files)
    calls: list[tuple[int, int]] = []
    create_torrent(
        tmp_path / "p",
        version=version,
        piece_length=64 * KIB,
        progress=lambda d, t: calls.append((d, t)),  # type: ignore[arg-type]
    )
    total = sum(map(len, files.values()))
    assert len(calls) >= 3
    assert all(t == total for _, t in calls)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and dones[-1] == total and dones[0] > 0


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=70_000), min_size=1, max_size=5),
    plen=st.sampled_from([16 * KIB, 32 * KIB]),
    version=st.sampled_from(["v1", "v2", "hybrid"]),
)
def test_random_file_sets_match_reference(sizes: list[int], plen: int, version: str) -> None:
    files = {f"dir{i % 2}/f{i}": data(n, i) for i, n in enumerate(sizes)}
    if not any(sizes):
        files["dir0/nonempty"] = data(1)
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp) / "r", files)
        meta = decode(create_torrent(Path(tmp) / "r", version=version, piece_length=plen, threads=2))  # type: ignore[arg-type]
    check_against_reference(meta, files, version, plen)


def test_round_trip_through_the_parser(tmp_path: Path) -> None:
    parse = pytest.importorskip("bitswarm.metainfo._parse").parse_torrent
    write_tree(tmp_path / "d", MULTI)
    for version in ("v1", "v2", "hybrid"):
        made = make_torrent(tmp_path / "d", version=version, piece_length=16 * KIB)  # type: ignore[arg-type]
        t = parse(made.data)
        assert t.version == version
        assert (t.info_hash_v1, t.info_hash_v2) == (made.info_hash_v1, made.info_hash_v2)
        assert t.info.num_pieces == made.num_pieces
        assert [f.path_str for f in t.info.data_files] == [rel for rel, _ in ordered(MULTI)]
        for f in t.info.data_files:
            if version != "v1" and f.length:
                assert f.offset % (16 * KIB) == 0


# ---------------------------------------------------------------- errors


def test_error_missing_path(tmp_path: Path) -> None:
    with pytest.raises(MetainfoError, match="no such file"):
        create_torrent(tmp_path / "nope")


def test_error_no_files(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub" / "deeper").mkdir(parents=True)
    with pytest.raises(MetainfoError, match="no files"):
        create_torrent(tmp_path / "empty")


def test_error_only_empty_files(tmp_path: Path) -> None:
    write_tree(tmp_path / "z", {"a": b"", "b/c": b""})
    with pytest.raises(MetainfoError, match="empty"):
        create_torrent(tmp_path / "z")


@pytest.mark.parametrize("bad", [0, 1000, 8 * KIB, 48 * KIB, 256 * 1024 * KIB])
def test_error_bad_piece_length(tmp_path: Path, bad: int) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(MetainfoError, match="power of two") as exc:
        create_torrent(tmp_path / "f", piece_length=bad)
    assert exc.value.field == "piece length"


def test_error_bad_version_and_threads(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(MetainfoError, match="version"):
        create_torrent(tmp_path / "f", version="v3")  # type: ignore[arg-type]
    with pytest.raises(MetainfoError, match="threads"):
        create_torrent(tmp_path / "f", threads=0)


def test_error_broken_symlink_and_special_file(tmp_path: Path) -> None:
    write_tree(tmp_path / "d", {"ok": b"x"})
    (tmp_path / "d" / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(MetainfoError, match="cannot stat"):
        create_torrent(tmp_path / "d")
    (tmp_path / "d" / "dangling").unlink()
    os.mkfifo(tmp_path / "d" / "fifo")
    with pytest.raises(MetainfoError, match="not a regular file"):
        create_torrent(tmp_path / "d")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_error_unreadable_file(tmp_path: Path) -> None:  # pragma: no cover - CI runs as a user
    write_tree(tmp_path / "d", {"secret": b"x"})
    (tmp_path / "d" / "secret").chmod(0)
    with pytest.raises(MetainfoError, match="cannot read"):
        create_torrent(tmp_path / "d")


def test_error_unreadable_directory_entry(tmp_path: Path) -> None:
    # a path the walk can see but not open: a directory where a file is expected to be readable
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x")
    with pytest.raises(MetainfoError, match="cannot read"):
        hash_v1([SourceFile(str(tmp_path / "d"), 10)], 16 * KIB)


def test_symlinks_followed_but_loops_refused(tmp_path: Path) -> None:
    write_tree(tmp_path / "real", {"f": data(10)})
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link").symlink_to(tmp_path / "real")
    (tmp_path / "d" / "file").symlink_to(tmp_path / "real" / "f")
    info = decode(create_torrent(tmp_path / "d", version="v1"))[b"info"]
    assert [e[b"path"] for e in info[b"files"]] == [[b"file"], [b"link", b"f"]]
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "d")
    with pytest.raises(MetainfoError, match="loop"):
        create_torrent(tmp_path / "d")


def test_file_changing_size_while_hashing(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(data(1000))
    with pytest.raises(MetainfoError, match="shorter"):
        hash_v1([SourceFile(str(tmp_path / "f"), 2000)], 16 * KIB)
    with pytest.raises(MetainfoError, match="grew"):
        hash_aligned([SourceFile(str(tmp_path / "f"), 500)], 16 * KIB, v1=True)
