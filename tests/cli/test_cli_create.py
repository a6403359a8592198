"""``bitswarm create``: writes the torrent, reports its hashes (human and JSON), refuses to overwrite,
one-line errors with exit code 2."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bitswarm.bencode import decode, decode_full
from bitswarm.cli import main
from bitswarm.cli._create import parse_size


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ei:
        main(list(argv))
    out, err = capsys.readouterr()
    code = ei.value.code
    return (0 if code is None else int(code)), out, err


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "pkg"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"A" * 40_000)
    (d / "sub" / "b.txt").write_bytes(b"hello")
    (d / "sub" / "empty").write_bytes(b"")
    return d


def _hashes(raw: bytes) -> tuple[str, str]:
    start, end = decode_full(raw).spans[b"info"]
    return hashlib.sha1(raw[start:end]).hexdigest(), hashlib.sha256(raw[start:end]).hexdigest()


def test_create_json_hybrid_default(tmp_path: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.torrent"
    code, stdout, err = _run(
        capsys,
        "create", str(src), "-o", str(out), "--tracker", "http://t1/a", "--tracker", "udp://t2:80",
        "--web-seed", "http://ws/", "--private", "--comment", "hi", "--source", "S",
        "--piece-size", "16k", "--json",
    )  # fmt: skip
    assert code == 0 and err == ""
    assert stdout.count("\n") == 1
    obj = json.loads(stdout)
    raw = out.read_bytes()
    h1, h2 = _hashes(raw)
    assert obj == {
        "out": str(out),
        "name": "pkg",
        "version": "hybrid",
        "info_hash_v1": h1,
        "info_hash_v2": h2,
        "piece_length": 16384,
        "num_pieces": 4,  # a.bin: 3 pieces (padded), sub/b.txt: 1
        "total_size": 40_005,
        "num_files": 3,
    }
    meta = decode(raw)
    assert meta[b"announce-list"] == [[b"http://t1/a"], [b"udp://t2:80"]]  # each --tracker its own tier
    assert meta[b"url-list"] == b"http://ws/" and meta[b"comment"] == b"hi"
    assert meta[b"info"][b"private"] == 1 and meta[b"info"][b"source"] == b"S"
    assert meta[b"info"][b"meta version"] == 2 and b"pieces" in meta[b"info"]


@pytest.mark.parametrize(
    ("flag", "v1", "v2"), [("--v1", True, False), ("--v2", False, True), ("--hybrid", True, True)]
)
def test_create_versions(
    tmp_path: Path, src: Path, capsys: pytest.CaptureFixture[str], flag: str, v1: bool, v2: bool
) -> None:
    out = tmp_path / "o.torrent"
    code, stdout, _ = _run(capsys, "create", str(src), "-o", str(out), flag, "--json")
    assert code == 0
    obj = json.loads(stdout)
    h1, h2 = _hashes(out.read_bytes())
    assert obj["info_hash_v1"] == (h1 if v1 else None)
    assert obj["info_hash_v2"] == (h2 if v2 else None)
    assert obj["version"] == flag[2:]


def test_create_human_output(tmp_path: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.torrent"
    code, stdout, _ = _run(capsys, "create", str(src), "-o", str(out))
    assert code == 0
    h1, h2 = _hashes(out.read_bytes())
    assert str(out) in stdout and h1 in stdout and h2 in stdout


def test_create_refuses_to_overwrite(tmp_path: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.torrent"
    out.write_bytes(b"precious")
    code, stdout, err = _run(capsys, "create", str(src), "-o", str(out))
    assert code == 2 and stdout == ""
    assert err.startswith("bitswarm: error:") and "--force" in err and err.count("\n") == 1
    assert out.read_bytes() == b"precious"
    code, _, _ = _run(capsys, "create", str(src), "-o", str(out), "--force", "--v1")
    assert code == 0 and decode(out.read_bytes())[b"info"][b"name"] == b"pkg"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing-dir"], "no such file"),
        (["SRC", "--piece-size", "1000"], "power of two"),
        (["SRC", "--piece-size", "lots"], "not a size"),
        (["SRC", "--v1", "--v2"], "choose one"),
        (["EMPTY"], "no files"),
    ],
)
def test_create_errors(
    tmp_path: Path, src: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    (tmp_path / "empty").mkdir()
    subst = {"SRC": str(src), "EMPTY": str(tmp_path / "empty"), "missing-dir": str(tmp_path / "missing")}
    out = tmp_path / "o.torrent"
    code, stdout, err = _run(capsys, "create", *[subst.get(a, a) for a in args], "-o", str(out))
    assert code == 2 and stdout == ""
    assert err.startswith("bitswarm: error:") and needle in err and err.count("\n") == 1
    assert not out.exists()


def test_parse_size() -> None:
    assert parse_size("262144") == 262144
    assert parse_size("256k") == parse_size("256KiB") == parse_size("256 KB") == 262144
    assert parse_size("4M") == 4 << 20


def test_create_console_script(tmp_path: Path, src: Path) -> None:
    """The real entry point in a subprocess: exit codes and streams."""
    out = tmp_path / "o.torrent"
    cmd = [sys.executable, "-m", "bitswarm", "create", str(src), "-o", str(out), "--json"]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["info_hash_v1"] == _hashes(out.read_bytes())[0]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.startswith("bitswarm: error:") and again.stderr.count("\n") == 1
