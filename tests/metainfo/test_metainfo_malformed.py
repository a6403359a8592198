"""Malformed .torrent files: every one is rejected with a MetainfoError naming the offending field."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from metainfo_testlib import data, hybrid_info, torrent_bytes, v1_info, v2_info

from bitswarm.bencode import encode
from bitswarm.metainfo import MetainfoError, check_piece_layers, parse_info, parse_torrent

PL = 16384
Top = dict[bytes, Any]


def _v1_multi() -> Top:
    files = [(("a",), data(100, 1)), (("d", "b"), data(20000, 2)), (("d", "c"), data(10, 3))]
    return {b"info": v1_info(files, name="m"), b"announce": b"http://t/a"}


def _v1_single() -> Top:
    return {b"info": v1_info(data(30000), name="s")}


def _v2() -> Top:
    info, layers = v2_info([(("a",), data(40000, 1)), (("d", "b"), data(100, 2))], name="v")
    return {b"info": info, b"piece layers": layers}


def _hybrid() -> Top:
    info, layers = hybrid_info([(("a",), data(40000, 1)), (("d", "b"), data(100, 2))], name="h")
    return {b"info": info, b"piece layers": layers}


def _set(path: list[Any], value: Any) -> Callable[[Top], None]:
    def mutate(top: Top) -> None:
        node: Any = top
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Callable[[Top], None]:
    def mutate(top: Top) -> None:
        node: Any = top
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]

    return mutate


def _v2_root(top: Top) -> bytes:
    return bytes(top[b"info"][b"file tree"][b"a"][b""][b"pieces root"])


def _bad_layer(top: Top, layer: bytes) -> None:
    top[b"piece layers"] = {_v2_root(top): layer}


IN, F, T = b"info", b"files", b"file tree"

CASES: list[tuple[str, Callable[[], Top], Callable[[Top], None], str]] = [
    # traversal and unsafe path components
    ("dotdot", _v1_multi, _set([IN, F, 1, b"path"], [b"..", b"etc", b"passwd"]), "info.files[1].path[0]"),
    ("dot", _v1_multi, _set([IN, F, 0, b"path"], [b"."]), "info.files[0].path[0]"),
    ("empty comp", _v1_multi, _set([IN, F, 2, b"path"], [b"d", b""]), "info.files[2].path[1]"),
    ("absolute", _v1_multi, _set([IN, F, 0, b"path"], [b"/etc/passwd"]), "info.files[0].path[0]"),
    ("slash", _v1_multi, _set([IN, F, 0, b"path"], [b"a/b"]), "info.files[0].path[0]"),
    ("backslash", _v1_multi, _set([IN, F, 0, b"path"], [b"..\\x"]), "info.files[0].path[0]"),
    ("nul", _v1_multi, _set([IN, F, 0, b"path"], [b"a\x00b"]), "info.files[0].path[0]"),
    ("drive", _v1_multi, _set([IN, F, 0, b"path"], [b"C:", b"x"]), "info.files[0].path[0]"),
    ("empty path", _v1_multi, _set([IN, F, 0, b"path"], []), "info.files[0].path"),
    ("no path", _v1_multi, _delete([IN, F, 0, b"path"]), "info.files[0].path"),
    ("utf8 path bad", _v1_multi, _set([IN, F, 0, b"path.utf-8"], [b".."]), "info.files[0].path.utf-8[0]"),
    ("name dotdot", _v1_single, _set([IN, b"name"], b".."), "info.name"),
    ("name slash", _v1_single, _set([IN, b"name"], b"../x"), "info.name"),
    ("name empty", _v1_single, _set([IN, b"name"], b""), "info.name"),
    ("no name", _v1_single, _delete([IN, b"name"]), "info.name"),
    ("v2 dotdot", _v2, lambda t: t[IN][T].update({b"..": t[IN][T].pop(b"d")}), "info.file tree['..']"),
    (
        "symlink escape",
        _v1_multi,
        _set([IN, F, 0, b"symlink path"], [b"..", b"x"]),
        "info.files[0].symlink path",
    ),
    # duplicates and file/directory clashes
    ("duplicate path", _v1_multi, _set([IN, F, 2, b"path"], [b"d", b"b"]), "info.files[2].path"),
    ("file is dir", _v1_multi, _set([IN, F, 0, b"path"], [b"d"]), "info.files[0].path"),
    # lengths, piece length, pieces
    ("negative length", _v1_multi, _set([IN, F, 1, b"length"], -1), "info.files[1].length"),
    ("huge length", _v1_single, _set([IN, b"length"], 1 << 60), "info.length"),
    ("str length", _v1_multi, _set([IN, F, 0, b"length"], b"100"), "info.files[0].length"),
    ("no length", _v1_multi, _delete([IN, F, 0, b"length"]), "info.files[0].length"),
    ("both forms", _v1_multi, _set([IN, b"length"], 5), "info"),
    ("neither form", _v1_single, _delete([IN, b"length"]), "info.files"),
    ("no files", _v1_multi, _set([IN, F], []), "info.files"),
    ("files not list", _v1_multi, _set([IN, F], b"x"), "info.files"),
    ("file not dict", _v1_multi, _set([IN, F, 0], [1]), "info.files[0]"),
    ("zero piece length", _v1_single, _set([IN, b"piece length"], 0), "info.piece length"),
    ("negative piece length", _v1_single, _set([IN, b"piece length"], -16384), "info.piece length"),
    ("huge piece length", _v1_single, _set([IN, b"piece length"], 1 << 40), "info.piece length"),
    ("str piece length", _v1_single, _set([IN, b"piece length"], b"16384"), "info.piece length"),
    ("no piece length", _v1_single, _delete([IN, b"piece length"]), "info.piece length"),
    ("v2 non-pow2", _v2, _set([IN, b"piece length"], 3 * 16384), "info.piece length"),
    ("v2 small piece", _v2, _set([IN, b"piece length"], 8192), "info.piece length"),
    ("hybrid non-pow2", _hybrid, _set([IN, b"piece length"], 20000), "info.piece length"),
    ("pieces not x20", _v1_single, lambda t: t[IN].update({b"pieces": t[IN][b"pieces"][:-1]}), "info.pieces"),
    (
        "pieces too few",
        _v1_single,
        lambda t: t[IN].update({b"pieces": t[IN][b"pieces"][:-20]}),
        "info.pieces",
    ),
    ("pieces too many", _v1_single, lambda t: t[IN].update({b"pieces": t[IN][b"pieces"] * 2}), "info.pieces"),
    ("pieces int", _v1_single, _set([IN, b"pieces"], 5), "info.pieces"),
    ("no pieces", _v1_single, _delete([IN, b"pieces"]), "info.pieces"),
    ("too many pieces", _v1_single, _set([IN, b"length"], (1 << 24) * 16384 + 1), "info.piece length"),
    # wrong types elsewhere
    ("info not dict", _v1_single, _set([IN], [1, 2]), "info"),
    ("no info", _v1_single, _delete([IN]), "info"),
    ("private str", _v1_single, _set([IN, b"private"], b"1"), "info.private"),
    ("source int", _v1_single, _set([IN, b"source"], 7), "info.source"),
    ("attr int", _v1_multi, _set([IN, F, 0, b"attr"], 1), "info.files[0].attr"),
    ("mtime str", _v1_multi, _set([IN, F, 0, b"mtime"], b"x"), "info.files[0].mtime"),
    ("announce int", _v1_single, _set([b"announce"], 1), "announce"),
    ("announce-list str", _v1_single, _set([b"announce-list"], b"http://x"), "announce-list"),
    ("tier str", _v1_single, _set([b"announce-list"], [b"http://x"]), "announce-list[0]"),
    ("tracker int", _v1_single, _set([b"announce-list"], [[b"http://x", 3]]), "announce-list[0][1]"),
    ("url-list int", _v1_single, _set([b"url-list"], 5), "url-list"),
    ("url-list item", _v1_single, _set([b"url-list"], [b"http://a", [b"x"]]), "url-list[1]"),
    ("comment int", _v1_single, _set([b"comment"], 5), "comment"),
    ("created by list", _v1_single, _set([b"created by"], []), "created by"),
    ("creation date str", _v1_single, _set([b"creation date"], b"2024"), "creation date"),
    ("nodes bad", _v1_single, _set([b"nodes"], [[b"h"]]), "nodes[0]"),
    ("nodes port", _v1_single, _set([b"nodes"], [[b"h", 70000]]), "nodes[0][1]"),
    # v2 structure
    ("meta version 3", _v2, _set([IN, b"meta version"], 3), "info.meta version"),
    ("meta version str", _v2, _set([IN, b"meta version"], b"2"), "info.meta version"),
    ("no file tree", _v2, _delete([IN, T]), "info.file tree"),
    ("file tree list", _v2, _set([IN, T], []), "info.file tree"),
    ("empty file tree", _v2, _set([IN, T], {}), "info.file tree"),
    ("leaf not dict", _v2, _set([IN, T, b"a", b""], 5), "info.file tree['a']"),
    ("leaf extra key", _v2, _set([IN, T, b"a", b"x"], {b"": {b"length": 0}}), "info.file tree['a']"),
    ("v2 no length", _v2, _delete([IN, T, b"a", b"", b"length"]), "info.file tree['a'].length"),
    ("v2 neg length", _v2, _set([IN, T, b"d", b"b", b"", b"length"], -5), "info.file tree['d']['b'].length"),
    ("no pieces root", _v2, _delete([IN, T, b"a", b"", b"pieces root"]), "info.file tree['a'].pieces root"),
    (
        "short root",
        _v2,
        _set([IN, T, b"a", b"", b"pieces root"], b"x" * 31),
        "info.file tree['a'].pieces root",
    ),
    # piece layers
    ("no piece layers", _v2, _delete([b"piece layers"]), "piece layers"),
    ("piece layers list", _v2, _set([b"piece layers"], []), "piece layers"),
    ("layer missing", _v2, _set([b"piece layers"], {}), "piece layers"),
    ("layer not x32", _v2, lambda t: _bad_layer(t, bytes(95)), "piece layers"),
    ("layer wrong count", _v2, lambda t: _bad_layer(t, bytes(64)), "piece layers"),
    ("layer mismatch", _v2, lambda t: _bad_layer(t, bytes(96)), "piece layers"),
    ("layer not bytes", _v2, lambda t: t.update({b"piece layers": {_v2_root(t): 5}}), "piece layers"),
    ("hybrid layer mismatch", _hybrid, lambda t: _bad_layer(t, bytes(96)), "piece layers"),
    # hybrid consistency
    ("hybrid length differs", _hybrid, _set([IN, T, b"d", b"b", b"", b"length"], 101), "info.file tree"),
    ("hybrid path differs", _hybrid, lambda t: t[IN][T].update({b"e": t[IN][T].pop(b"d")}), "info.file tree"),
    (
        "hybrid extra v1 file",
        _hybrid,
        lambda t: t[IN][F].append({b"length": 0, b"path": [b"z"]}),
        "info.file tree",
    ),
    ("hybrid unaligned", _hybrid, lambda t: t[IN][F].pop(1), "info.files[1]"),
]


@pytest.mark.parametrize(("base", "mutate", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_rejected_with_field(
    base: Callable[[], Top], mutate: Callable[[Top], None], field: str
) -> None:
    top = base()
    parse_torrent(encode(top))  # the unmutated torrent is valid
    top = copy.deepcopy(top)
    mutate(top)
    with pytest.raises(MetainfoError) as ei:
        parse_torrent(encode(top))
    assert ei.value.field is not None
    assert ei.value.field.startswith(field), (ei.value.field, str(ei.value))
    assert str(ei.value).startswith(ei.value.field + ": ")


def test_top_level_not_a_dict() -> None:
    for raw in (b"le", b"i5e", b"4:spam"):
        with pytest.raises(MetainfoError) as ei:
            parse_torrent(raw)
        assert ei.value.field == "torrent"


@pytest.mark.parametrize("base", [_v1_multi, _v2, _hybrid])
def test_every_truncation_is_rejected(base: Callable[[], Top]) -> None:
    raw = encode(base())
    step = max(1, len(raw) // 300)
    for n in [*range(0, len(raw), step), len(raw) - 1]:
        with pytest.raises(MetainfoError) as ei:
            parse_torrent(raw[:n])
        assert ei.value.field == "bencode"


def test_trailing_garbage_rejected() -> None:
    with pytest.raises(MetainfoError) as ei:
        parse_torrent(encode(_v1_single()) + b"x")
    assert ei.value.field == "bencode" and "byte" in str(ei.value)


def test_parse_info_rejects_non_dict_and_garbage() -> None:
    with pytest.raises(MetainfoError):
        parse_info(b"le")
    with pytest.raises(MetainfoError):
        parse_info(b"d4:name")


def test_check_piece_layers_rejects_wrong_type() -> None:
    info, _ = v2_info([(("a",), data(40000))])
    parsed, _, _ = parse_info(encode(info))
    with pytest.raises(MetainfoError) as ei:
        check_piece_layers(parsed, [b"x"])
    assert ei.value.field == "piece layers"


def test_too_many_files_is_rejected_before_work() -> None:
    # A file list that claims huge counts is refused by its limits, not by exhausting memory.
    info = v1_info(b"x")
    info[b"length"] = 1 << 51
    with pytest.raises(MetainfoError) as ei:
        parse_torrent(torrent_bytes(info))
    assert ei.value.field == "info.length"


def test_corpus_files_are_rejected() -> None:
    corpus = Path(__file__).parent / "corpus"
    files = sorted(corpus.glob("*.torrent"))
    assert files, "corpus is empty"
    for p in files:
        expected = p.stem.split("__", 1)[1].replace("_", " ") if "__" in p.stem else None
        with pytest.raises(MetainfoError) as ei:
            parse_torrent(p.read_bytes())
        if expected is not None:
            assert ei.value.field is not None and ei.value.field.startswith(expected), (p.name, str(ei.value))


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_metainfo_error(raw: bytes) -> None:
    with contextlib.suppress(MetainfoError):
        parse_torrent(raw)


_VALID = [encode(b()) for b in (_v1_multi, _v1_single, _v2, _hybrid)]


@given(st.sampled_from(_VALID), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
def test_mutated_torrents_raise_only_metainfo_error(raw: bytes, edits: list[tuple[int, int]]) -> None:
    buf = bytearray(raw)
    for pos, byte in edits:
        buf[pos % len(buf)] = byte
    try:
        t = parse_torrent(bytes(buf))
    except MetainfoError:
        return
    assert t.info.num_pieces >= 0
