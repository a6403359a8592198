"""``bitswarm info`` and ``bitswarm magnet``: human and JSON output, magnets, clean errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bitswarm.bencode import encode
from bitswarm.cli import main

PL = 16384


def _v1_torrent(path: Path) -> tuple[Path, bytes]:
    a, b = b"A" * 20000, b"B" * 5
    info = {
        b"name": b"pkg",
        b"piece length": PL,
        b"private": 1,
        b"files": [
            {b"length": len(a), b"path": [b"dir", b"a.bin"]},
            {b"length": 0, b"path": [b"empty"]},
            {b"length": len(b), b"path": [b"b[x].txt"]},
        ],
        b"pieces": b"".join(hashlib.sha1((a + b)[i : i + PL]).digest() for i in range(0, len(a + b), PL)),
    }
    top = {
        b"info": info,
        b"announce-list": [[b"http://t1/announce"], [b"udp://t2:80"]],
        b"url-list": [b"http://ws/"],
        b"comment": b"a comment",
        b"created by": b"tests",
        b"creation date": 1700000000,
    }
    path.write_bytes(encode(top))
    return path, hashlib.sha1(encode(info)).digest()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ei:
        main(list(argv))
    out, err = capsys.readouterr()
    code = ei.value.code
    return (0 if code is None else int(code)), out, err


def test_info_json_torrent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, h1 = _v1_torrent(tmp_path / "x.torrent")
    code, out, err = _run(capsys, "info", "--json", str(p))
    assert code == 0 and err == ""
    assert out.count("\n") == 1
    obj = json.loads(out)
    assert obj == {
        "name": "pkg",
        "version": "v1",
        "info_hash_v1": h1.hex(),
        "info_hash_v2": None,
        "total_size": 20005,
        "piece_length": PL,
        "num_pieces": 2,
        "files": [
            {"path": "dir/a.bin", "size": 20000},
            {"path": "empty", "size": 0},
            {"path": "b[x].txt", "size": 5},
        ],
        "trackers": [["http://t1/announce"], ["udp://t2:80"]],
        "web_seeds": ["http://ws/"],
        "private": True,
        "comment": "a comment",
        "created_by": "tests",
        "creation_date": 1700000000,
        "magnet": f"magnet:?xt=urn:btih:{h1.hex()}&dn=pkg&tr=http%3A%2F%2Ft1%2Fannounce"
        "&tr=udp%3A%2F%2Ft2%3A80&ws=http%3A%2F%2Fws%2F",
    }


def test_info_human_torrent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, h1 = _v1_torrent(tmp_path / "x.torrent")
    code, out, _ = _run(capsys, "info", str(p))
    assert code == 0
    for needle in (
        h1.hex(),
        "pkg",
        "a.bin",
        "b[x].txt",
        "http://t1/announce",
        "http://ws/",
        "a comment",
        "yes",
    ):
        assert needle in out, needle


def test_magnet_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, h1 = _v1_torrent(tmp_path / "x.torrent")
    code, out, _ = _run(capsys, "magnet", str(p))
    assert code == 0
    assert out.startswith(f"magnet:?xt=urn:btih:{h1.hex()}&dn=pkg&tr=") and out.count("\n") == 1


def test_info_magnet_json_and_human(capsys: pytest.CaptureFixture[str]) -> None:
    h1, h2 = "ab" * 20, "cd" * 32
    uri = f"magnet:?xt=urn:btih:{h1}&xt=urn:btmh:1220{h2}&dn=hello&tr=http://t/a&x.pe=1.2.3.4:5"
    code, out, _ = _run(capsys, "info", "--json", uri)
    assert code == 0
    obj = json.loads(out)
    assert (obj["name"], obj["version"], obj["info_hash_v1"], obj["info_hash_v2"]) == (
        "hello",
        "hybrid",
        h1,
        h2,
    )
    assert obj["trackers"] == [["http://t/a"]]
    for key in ("total_size", "piece_length", "num_pieces", "files", "private", "comment", "creation_date"):
        assert obj[key] is None
    assert obj["magnet"].startswith(f"magnet:?xt=urn:btih:{h1}&xt=urn:btmh:1220{h2}&dn=hello")
    code, out, _ = _run(capsys, "info", uri)
    assert code == 0 and h2 in out and "1.2.3.4:5" in out


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: d / "missing.torrent", "No such file"),
        (lambda d: d, "directory"),
        (lambda d: (d / "t.torrent", (d / "t.torrent").write_bytes(b"d4:infod4:name"))[0], "bencode"),
        (lambda d: (d / "t.torrent", (d / "t.torrent").write_bytes(b"d4:infoi1ee"))[0], "info"),
        (
            lambda d: (
                d / "t.torrent",
                (d / "t.torrent").write_bytes(
                    encode(
                        {b"info": {b"name": b"..", b"length": 1, b"piece length": PL, b"pieces": bytes(20)}}
                    )
                ),
            )[0],
            "info.name",
        ),
    ],
    ids=["missing", "directory", "truncated", "info-int", "traversal"],
)
def test_bad_torrent_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, needle
) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path)
    for cmd in (["info"], ["info", "--json"], ["magnet"]):
        code, out, err = _run(capsys, *cmd, str(path))
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("bitswarm: error: ") and needle in err, err


def test_bad_magnet_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "info", "magnet:?xt=urn:btih:nothex")
    assert code == 2 and out == "" and err.count("\n") == 1 and "magnet.xt" in err


def test_subprocess_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.torrent"
    bad.write_bytes(b"d4:infod6:lengthi-5e4:name1:x12:piece lengthi16384e6:pieces0:ee")
    r = subprocess.run(
        [sys.executable, "-m", "bitswarm", "info", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and r.stdout == ""
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and "info.length" in r.stderr


def test_hybrid_from_libtorrent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lt = pytest.importorskip("libtorrent")
    d = tmp_path / "c"
    (d / "s").mkdir(parents=True)
    (d / "s" / "f").write_bytes(b"x" * 50000)
    (d / "g").write_bytes(b"y" * 10)
    ct = lt.create_torrent(lt.list_files(str(d)), PL, 0)
    lt.set_piece_hashes(ct, str(tmp_path))
    raw = bytes(lt.bencode(ct.generate()))
    (tmp_path / "h.torrent").write_bytes(raw)
    ih = lt.torrent_info(raw).info_hashes()
    code, out, _ = _run(capsys, "info", "--json", str(tmp_path / "h.torrent"))
    obj = json.loads(out)
    assert code == 0 and obj["version"] == "hybrid"
    assert obj["info_hash_v1"] == ih.v1.to_bytes().hex() and obj["info_hash_v2"] == ih.v2.to_bytes().hex()
    assert obj["files"] == [{"path": "g", "size": 10}, {"path": "s/f", "size": 50000}]  # no pad files
