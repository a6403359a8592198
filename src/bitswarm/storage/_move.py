"""Moving a torrent's files to another directory (``Storage.move``), one file at a time.

Each file moves atomically: a rename within one filesystem; across filesystems a copy to a temporary
name next to the destination, fsync, rename over the destination, then the source is deleted. The
source stays the truth until it is gone, so a move killed at any point is finished by running it
again: a file whose source still exists is (re)moved, one whose source is gone has arrived. The
temporary copy of an interrupted cross-filesystem move is overwritten by the next attempt. A file
already at the destination path is replaced (libtorrent's ``always_replace_files``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable

from bitswarm.storage._io import storage_error

Rename = Callable[[str, str], None]

#: Suffix of the temporary copy of a file moving across filesystems.
MOVE_TMP_SUFFIX = ".bitswarm-move"


def move_file(src: str, dst: str, *, rename: Rename = os.rename) -> bool:
    """Move ``src`` to ``dst`` atomically (see the module); False when ``src`` is not there (moved
    already, or never created). ``rename`` is injectable so tests can take the cross-filesystem
    path on one filesystem. Raises :class:`~bitswarm.storage.StorageError`."""
    if not os.path.lexists(src):
        return False
    try:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        rename(src, dst)
        return True
    except FileNotFoundError:
        return False  # gone meanwhile
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise storage_error(exc, "moving", src) from exc
    tmp = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}{MOVE_TMP_SUFFIX}")
    try:
        shutil.copy2(src, tmp)  # data, then mode and times (ns): resume data stays valid
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dst)
        _fsync_dir(os.path.dirname(dst))
        os.unlink(src)
    except OSError as exc:
        raise storage_error(exc, "moving", src) from exc
    return True


def remove_empty_dirs(top: str, stop: str) -> None:
    """Remove ``top`` and its parents below ``stop`` while they are empty (best effort)."""
    top, stop = os.path.abspath(top), os.path.abspath(stop)
    with contextlib.suppress(OSError):
        for root, _dirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(root)
    while top != stop and top.startswith(stop + os.sep):
        try:
            os.rmdir(top)
        except OSError:
            return
        top = os.path.dirname(top)


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
