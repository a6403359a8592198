"""``bitswarm share/seed/download`` as subprocesses: embedded tracker, errors, --json lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BW = [sys.executable, "-m", "bitswarm"]


def _lines_until(proc: subprocess.Popen[str], want: str, timeout: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, object]] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            msg = json.loads(line)
            seen.append(msg)
            if msg.get("event") == want:
                return seen
    raise AssertionError(f"no {want!r} line within {timeout} s: {seen}")


@pytest.mark.timeout(90)
def test_share_with_embedded_tracker_then_download_through_it(tmp_path: Path) -> None:
    src = tmp_path / "src" / "movie.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(700_000))
    torrent = tmp_path / "movie.torrent"
    share = subprocess.Popen(
        [*BW, "share", str(src), "-o", str(torrent), "--port", "0", "--host", "127.0.0.1",
         "--embed-tracker", "127.0.0.1:0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        seen = _lines_until(share, "seeding", 30)
        tracker = next(m for m in seen if m["event"] == "tracker")["announce"]
        shared = next(m for m in seen if m["event"] == "shared")
        assert str(shared["magnet"]).startswith("magnet:?xt=urn:btih:")
        info = json.loads(subprocess.run([*BW, "info", str(torrent), "--json"], capture_output=True,
                                         text=True, check=True).stdout)  # fmt: skip
        assert info["trackers"] == [[tracker]]  # the embedded tracker is the announce URL
        out = tmp_path / "out"
        done = subprocess.run(
            [*BW, "download", str(torrent), "-o", str(out), "--port", "0", "--host", "127.0.0.1", "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        events = [json.loads(x)["event"] for x in done.stdout.splitlines() if x.startswith("{")]
        assert "piece_verified" in events and "torrent_completed" in events
        assert (out / "movie.bin").read_bytes() == src.read_bytes()
    finally:
        share.terminate()
        share.wait(10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["download", "missing.torrent", "-o", "x"], "No such file"),
        (["download", "t.torrent", "-o", "x", "--peer", "nonsense"], "HOST:PORT"),
        (["download", "magnet:?xt=urn:btih:" + "a" * 40, "-o", "x", "--no-dht", "--port", "0"], "magnet"),
        (["seed", "t.torrent", "--data", "nowhere"], "does not"),
        (["seed", "t.torrent", "--data", ".", "--embed-tracker", "host:99999"], "HOST:PORT"),
        (["share", "nothing-here"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    subprocess.run([*BW, "create", "f.bin", "-o", "t.torrent", "-q"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    proc = subprocess.run([*BW, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswarm: error:") and message in lines[0]


def test_every_command_has_help() -> None:
    listing = subprocess.run([*BW, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("create", "info", "magnet", "download", "seed", "share", "demo", "tracker"):
        assert cmd in listing
        proc = subprocess.run([*BW, cmd, "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "Usage" in proc.stdout
