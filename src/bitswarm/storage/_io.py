"""Blocking file helpers run on disk worker threads: an LRU cache of open fds, full pread/pwrite."""

from __future__ import annotations

import errno as errno_mod
import os
import stat
import threading
from collections import OrderedDict

from bitswarm.storage._filemap import StorageError
from bitswarm.storage.resume import FileStat


def storage_error(exc: OSError, action: str, path: str) -> StorageError:
    """Map an OSError to a :class:`StorageError` that names the file (ENOSPC spelled out)."""
    if exc.errno == errno_mod.ENOSPC:
        msg = f"disk full (ENOSPC) while {action} {path}"
    elif exc.errno == errno_mod.EDQUOT:
        msg = f"disk quota exceeded (EDQUOT) while {action} {path}"
    else:
        msg = f"{exc.strerror or exc} while {action} {path}"
    return StorageError(msg, path=path, errno=exc.errno)


def stat_file(path: str) -> FileStat:
    """(size, mtime_ns) of a regular file, None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error(exc, "checking", path) from exc
    if not stat.S_ISREG(st.st_mode):
        raise StorageError(f"{path} exists and is not a regular file", path=path)
    return (st.st_size, st.st_mtime_ns)


def pwrite_all(fd: int, data: memoryview, offset: int, path: str) -> None:
    try:
        while data:
            n = os.pwrite(fd, data, offset)
            data = data[n:]
            offset += n
    except OSError as exc:
        raise storage_error(exc, "writing", path) from exc


def pread_into(fd: int, buf: memoryview, offset: int, path: str) -> None:
    """Fill ``buf`` from ``offset``; bytes past the end of the file read as zeros (sparse/short file)."""
    got = 0
    size = len(buf)
    try:
        while got < size:
            n = os.preadv(fd, [buf[got:]], offset + got)
            if n == 0:
                buf[got:] = bytes(size - got)
                return
            got += n
    except OSError as exc:
        raise storage_error(exc, "reading", path) from exc


class FdCache:
    """Open file descriptors keyed by file index, LRU-evicted above ``max_open`` (pinned ones never).

    Thread-safe: :meth:`acquire` pins the fd until the matching :meth:`release`.
    """

    def __init__(self, max_open: int = 256) -> None:
        self.max_open = max(1, max_open)
        self._lock = threading.Lock()
        self._fds: OrderedDict[int, list[int]] = OrderedDict()  # key -> [fd, pins]

    def acquire(self, key: int, path: str, *, create: bool) -> int | None:
        """A pinned fd for ``path`` (read-write, or read-only when writing is not permitted), or None
        when the file does not exist and ``create`` is false."""
        with self._lock:
            entry = self._fds.get(key)
            if entry is not None:
                entry[1] += 1
                self._fds.move_to_end(key)
                return entry[0]
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            try:
                fd = os.open(path, flags, 0o644)
            except PermissionError:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            if not create:
                return None
            raise storage_error(exc, "opening", path) from exc
        except OSError as exc:
            raise storage_error(exc, "opening", path) from exc
        with self._lock:
            entry = self._fds.get(key)
            if entry is not None:  # another worker opened it meanwhile
                os.close(fd)
                entry[1] += 1
                return entry[0]
            self._fds[key] = [fd, 1]
            self._evict()
        return fd

    def release(self, key: int) -> None:
        with self._lock:
            entry = self._fds.get(key)
            if entry is not None:
                entry[1] -= 1
                if len(self._fds) > self.max_open:
                    self._evict()

    def _evict(self) -> None:
        if len(self._fds) <= self.max_open:
            return
        for key in list(self._fds):
            entry = self._fds[key]
            if entry[1] == 0:
                del self._fds[key]
                os.close(entry[0])
                if len(self._fds) <= self.max_open:
                    return

    def forget(self, key: int) -> None:
        """Close ``key``'s fd if it is not pinned (after the file was moved or deleted)."""
        with self._lock:
            entry = self._fds.get(key)
            if entry is not None and entry[1] == 0:
                del self._fds[key]
                os.close(entry[0])

    def fsync_all(self) -> None:
        """fsync every open fd (pinned ones included: fsync is safe alongside pwrite)."""
        with self._lock:
            fds = [e[0] for e in self._fds.values()]
            for e in self._fds.values():
                e[1] += 1  # pin while syncing outside the lock
            keys = list(self._fds)
        try:
            for fd in fds:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise StorageError(f"fsync failed: {exc}", errno=exc.errno) from exc
        finally:
            for k in keys:
                self.release(k)

    def close_all(self, *, fsync: bool = False) -> None:
        with self._lock:
            entries = list(self._fds.values())
            self._fds.clear()
        first_error: OSError | None = None
        for fd, _ in entries:
            try:
                if fsync:
                    os.fsync(fd)
            except OSError as exc:
                first_error = first_error or exc
            finally:
                os.close(fd)
        if first_error is not None:
            raise StorageError(f"fsync failed: {first_error}", errno=first_error.errno)

    def pinned(self) -> bool:
        """Is an fd in use (between :meth:`acquire` and :meth:`release`)?"""
        with self._lock:
            return any(entry[1] for entry in self._fds.values())

    def __len__(self) -> int:
        return len(self._fds)
