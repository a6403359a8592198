"""Preallocation: sparse files by default, ``full`` allocates every wanted file with
``posix_fallocate`` and refuses a disk that is too small before anything is written (checked on a
1 MiB tmpfs mounted by the test; we are root in CI)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.storage.storage_testlib import build_torrent
from tests.testtools import skip_missing

from bitswarm.storage import DiskSpaceError, Storage, StorageError
from bitswarm.storage._prealloc import check_space, free_bytes

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024


def small_fs(path: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the test (unmounted after)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        skip_missing("root", "mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        skip_missing("mount -t tmpfs", done.stderr.strip())
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    yield from small_fs(tmp_path / "tiny")


def blocks(path: Path) -> int:
    return os.stat(path).st_blocks * 512


async def test_sparse_is_the_default_and_allocates_nothing(tmp_path: Path) -> None:
    t, _ = build_torrent([("a.bin", bytes(300_000)), ("b.bin", bytes(200_000))], piece_length=32768)
    async with Storage(t, tmp_path) as st:
        assert st.preallocate == "sparse"
    assert (tmp_path / "t" / "a.bin").stat().st_size == 300_000
    assert blocks(tmp_path / "t" / "a.bin") == 0


async def test_full_allocates_wanted_files_only(tmp_path: Path) -> None:
    t, _ = build_torrent([("a.bin", bytes(300_000)), ("b.bin", bytes(200_000))], piece_length=32768)
    async with Storage(t, tmp_path, preallocate="full", priorities=[1, 0]) as st:
        assert st.preallocate == "full"
    assert blocks(tmp_path / "t" / "a.bin") >= 300_000
    assert not (tmp_path / "t" / "b.bin").exists()


async def test_full_keeps_existing_data_and_fills_holes(tmp_path: Path) -> None:
    t, _ = build_torrent([("a.bin", bytes(300_000))], piece_length=32768)
    async with Storage(t, tmp_path):
        pass  # sparse first
    f = tmp_path / "t" / "a.bin"
    with open(f, "r+b") as fh:
        fh.seek(100_000)
        fh.write(b"kept")
    async with Storage(t, tmp_path, preallocate="full"):
        pass
    assert blocks(f) >= 300_000
    assert f.read_bytes()[100_000:100_004] == b"kept"


async def test_full_on_a_disk_too_small_fails_before_writing(tiny: Path) -> None:
    t, _ = build_torrent([("a.bin", bytes(700_000)), ("b.bin", bytes(700_000))], piece_length=32768)
    with pytest.raises(DiskSpaceError) as err:
        async with Storage(t, tiny, preallocate="full"):
            pass
    assert err.value.need == 1_400_000 and err.value.free <= MiB
    assert "not enough disk space" in str(err.value) and isinstance(err.value, StorageError)
    assert not (tiny / "t").exists()  # nothing created
    # the same torrent with one file skipped fits (only selected files count)
    async with Storage(t, tiny, preallocate="full", priorities=[1, 0]) as st:
        assert blocks(tiny / "t" / "a.bin") >= 700_000
        # selecting the other one later is refused the same way, and changes nothing
        with pytest.raises(DiskSpaceError):
            await st.set_file_priorities([1, 1])
        assert st.priorities == [1, 0]
        assert not (tiny / "t" / "b.bin").exists()
    # sparse mode opens it (the disk fills up later, if ever)
    async with Storage(t, tiny / "sparse"):
        pass


def test_check_space_counts_what_is_allocated(tiny: Path) -> None:
    free = free_bytes(str(tiny / "not" / "yet"))  # an ancestor that exists is asked
    assert 0 < free <= MiB
    f = tiny / "x.bin"
    f.write_bytes(bytes(600_000))
    check_space([(str(f), 600_000)], str(tiny))  # already allocated: needs nothing more
    with pytest.raises(DiskSpaceError):
        check_space([(str(tiny / "y.bin"), 600_000)], str(tiny))


def test_bad_mode_is_a_storage_error(tmp_path: Path) -> None:
    t, _ = build_torrent([("a.bin", bytes(10))])
    with pytest.raises(StorageError, match="sparse or full"):
        Storage(t, tmp_path, preallocate="zeros")  # type: ignore[arg-type]
