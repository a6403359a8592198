"""``--preallocate full``: a download onto a disk that is too small stops before it starts, with one
line and exit code 1; a bad mode is a usage error (2); on a disk with room the files are allocated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.storage.test_storage_preallocate import small_fs

BW = [sys.executable, "-m", "bitswarm"]
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    yield from small_fs(tmp_path / "tiny")


def make_torrent(tmp_path: Path, size: int) -> Path:
    (tmp_path / "big.bin").write_bytes(os.urandom(size))
    args = [*BW, "create", "big.bin", "-o", "big.torrent", "-q"]
    subprocess.run(args, cwd=tmp_path, check=True, timeout=60)
    return tmp_path / "big.torrent"


def download(torrent: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BW, "download", str(torrent), "-o", str(out), "--port", "0", "--host", "127.0.0.1", "--no-dht",
         "--metadata-timeout", "5", *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_disk_too_small_fails_before_the_download(tmp_path: Path, tiny: Path) -> None:
    torrent = make_torrent(tmp_path, 2 * 1024 * 1024)
    done = download(torrent, tiny, "--preallocate", "full")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswarm: error: ")
    assert "not enough disk space" in lines[0]
    assert not (tiny / "big.bin").exists()


def test_bad_mode_is_a_usage_error(tmp_path: Path) -> None:
    torrent = make_torrent(tmp_path, 1000)
    done = download(torrent, tmp_path / "out", "--preallocate", "zeros")
    assert done.returncode == 2
    assert "--preallocate must be sparse or full" in done.stderr


def test_full_allocates_then_downloads(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torrent = make_torrent(src, 600_000)
    seed = subprocess.Popen(
        [*BW, "seed", str(torrent), "-d", str(src), "--port", "0", "--host", "127.0.0.1", "--no-dht",
         "--json", "--preallocate", "full"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert seed.stdout is not None
        port = None
        for line in seed.stdout:
            if '"seeding"' in line:
                port = json.loads(line)["port"]
                break
        assert port is not None
        done = download(torrent, tmp_path / "out", "--preallocate", "full", "--peer", f"127.0.0.1:{port}")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out" / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    finally:
        seed.terminate()
        seed.wait(10)
