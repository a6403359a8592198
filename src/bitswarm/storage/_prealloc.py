"""Preallocation: files created sparse (the default) or fully allocated up front.

``sparse``: a new file is truncated to its size; blocks are allocated as pieces arrive (fast to
start, may fragment, a full disk shows up as ENOSPC in the middle of a download).
``full``: every wanted file is allocated with ``posix_fallocate`` when the torrent opens (in the
disk thread pool, never on the event loop), after checking with ``statvfs`` that the filesystem has
room for all of them: a disk that is too small is a :class:`DiskSpaceError` before any download
starts. Existing data is never touched (``posix_fallocate`` only allocates the holes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal, get_args

from bitswarm.storage._filemap import StorageError

Preallocation = Literal["sparse", "full"]
PREALLOCATION_MODES: tuple[str, ...] = get_args(Preallocation)


class DiskSpaceError(StorageError):
    """The filesystem has less free space than the selected files still need (``--preallocate
    full``). ``need`` and ``free`` are bytes; ``path`` is the save directory."""

    def __init__(self, need: int, free: int, path: str) -> None:
        super().__init__(
            f"not enough disk space in {path}: the selected files need {_size(need)} more, "
            f"{_size(free)} free",
            path=path,
        )
        self.need = need
        self.free = free


def check_mode(mode: str) -> Preallocation:
    """``mode`` as a :data:`Preallocation`; ValueError names the accepted ones."""
    if mode == "sparse":
        return "sparse"
    if mode == "full":
        return "full"
    raise ValueError(f"preallocation must be {' or '.join(PREALLOCATION_MODES)}, not {mode!r}")


def allocated_bytes(path: str) -> int:
    """Bytes a file already occupies on disk (0 when it does not exist)."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def free_bytes(path: str) -> int:
    """Bytes an unprivileged process may still allocate on the filesystem holding ``path`` (or its
    nearest existing ancestor: the save directory may not exist yet)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def check_space(files: Iterable[tuple[str, int]], save_path: str) -> None:
    """Raise :class:`DiskSpaceError` unless the filesystem of ``save_path`` can hold every
    ``(path, length)`` fully allocated (what each already occupies counts as there)."""
    need = sum(max(0, length - allocated_bytes(path)) for path, length in files)
    if need == 0:
        return
    try:
        free = free_bytes(save_path)
    except OSError as exc:
        raise StorageError(f"cannot check free space in {save_path}: {exc.strerror or exc}") from exc
    if need > free:
        raise DiskSpaceError(need, free, save_path)


def fallocate(fd: int, length: int) -> None:
    """Allocate ``length`` bytes of an open file (the holes only; data stays). Blocking."""
    if length > 0:
        os.posix_fallocate(fd, 0, length)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
