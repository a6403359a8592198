"""Map the torrent's piece space onto files (BEP 3 concatenation, BEP 47 padding, BEP 52 alignment).

Every :class:`~bitswarm.metainfo.FileEntry` sits at ``offset`` in one piece space. A byte range of
that space is cut into :class:`Extent` s, one per data file it touches. Padding files (BEP 47,
``attr`` ``p``) and the implicit gaps of v2-only torrents (BEP 52) produce no extent: those bytes are
zeros that live nowhere on disk.
"""

from __future__ import annotations

import os
import sys
from bisect import bisect_right
from dataclasses import dataclass

from bitswarm.errors import BitswarmError
from bitswarm.metainfo import InfoDict


class StorageError(BitswarmError):
    """A disk operation failed or a torrent cannot be stored safely.

    ``path`` names the file involved (when there is one) and ``errno`` carries the OS error number
    (e.g. ``errno.ENOSPC`` for a full disk). A failed write never marks a piece as had, so the
    torrent stays resumable after the cause is fixed.
    """

    def __init__(self, message: str, *, path: str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno


class PathEscapeError(StorageError):
    """A file path of the torrent would resolve outside the save directory (``..``, absolute, symlink)."""


@dataclass(frozen=True, slots=True)
class Extent:
    """The part of one data file covered by a byte range of the piece space."""

    file_index: int  #: index into ``InfoDict.files`` (padding entries included)
    file_offset: int  #: first byte inside the file
    length: int
    buf_offset: int  #: where these bytes start in the range's buffer
    space_offset: int  #: absolute offset in the piece space (also the offset in the ``.parts`` file)


_BAD_CHARS = ("/", "\\", "\0")


def _check_component(part: str, what: str) -> None:
    if part in ("", ".", "..") or any(c in part for c in _BAD_CHARS) or os.path.isabs(part):
        raise PathEscapeError(f"unsafe path component {part!r} in {what}")


class FileMap:
    """Piece ↔ file geometry of one torrent below ``save_path``. Pure computation, no I/O except
    :meth:`check_paths`, which resolves symlinks."""

    #: no instance dict: one file map per torrent (10,000 torrents in one daemon: issue 24)
    __slots__ = (
        "_ends",
        "_idx",
        "_starts",
        "files",
        "info",
        "num_pieces",
        "paths",
        "piece_length",
        "piece_space",
        "save_path",
    )

    def __init__(self, info: InfoDict, save_path: str | os.PathLike[str]) -> None:
        self.info = info
        self.piece_length = info.piece_length
        self.num_pieces = info.num_pieces
        self.piece_space = info.piece_space
        # one string for the torrents saved in one directory (10,000 in a daemon's: issue 24)
        self.save_path = sys.intern(os.path.abspath(os.fspath(save_path)))
        self.files = info.files
        # Data files with bytes, sorted by offset, for bisecting a range into extents (tuples: a
        # list of one entry is ~90 bytes, a tuple ~50; one file map per torrent, issue 24).
        idx: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        prev_end = 0
        for i, f in enumerate(info.files):
            if f.length < 0 or f.offset < 0:
                raise StorageError(f"file {f.path_str!r} has a negative length or offset")
            if f.offset < prev_end:
                raise StorageError(f"file {f.path_str!r} overlaps the previous file in the piece space")
            prev_end = f.offset + f.length
            if f.pad or f.length == 0:
                continue
            idx.append(i)
            starts.append(f.offset)
            ends.append(f.offset + f.length)
        self._idx = tuple(idx)
        self._starts = tuple(starts)
        self._ends = tuple(ends)
        self.paths: tuple[str | None, ...] = tuple(None if f.pad else self._join(f.path) for f in info.files)

    def _join(self, path: tuple[str, ...]) -> str:
        what = "/".join(path)
        if not path:
            raise PathEscapeError("empty file path")
        for part in path:
            _check_component(part, what)
        if self.info.single_file:
            return os.path.join(self.save_path, *path)
        _check_component(self.info.name, "torrent name")
        return os.path.join(self.save_path, self.info.name, *path)

    def check_paths(self) -> None:
        """Defence in depth: every file path, symlinks resolved, must stay inside ``save_path``."""
        root = os.path.realpath(self.save_path)
        for p in self.paths:
            if p is None:
                continue
            real = os.path.realpath(p)
            if os.path.commonpath([root, real]) != root or real == root:
                raise PathEscapeError(f"path {p!r} resolves outside the save directory {root!r}", path=p)

    # -- geometry ----------------------------------------------------------------------------------

    def piece_size(self, index: int) -> int:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range")
        return min(self.piece_length, self.piece_space - index * self.piece_length)

    def extents(self, start: int, length: int) -> list[Extent]:
        """Extents of the piece-space range ``[start, start + length)``, in order."""
        end = start + length
        out: list[Extent] = []
        k = bisect_right(self._starts, start) - 1
        if k < 0:
            k = 0
        starts, ends, idx = self._starts, self._ends, self._idx
        n = len(starts)
        while k < n and starts[k] < end:
            s, e = starts[k], ends[k]
            if e > start:
                a = max(s, start)
                b = min(e, end)
                out.append(Extent(idx[k], a - s, b - a, a - start, a))
            k += 1
        return out

    def piece_extents(self, index: int) -> list[Extent]:
        return self.extents(index * self.piece_length, self.piece_size(index))

    def block_extents(self, index: int, begin: int, length: int) -> list[Extent]:
        size = self.piece_size(index)
        if begin < 0 or length < 0 or begin + length > size:
            raise StorageError(f"range {begin}+{length} outside piece {index} of {size} bytes")
        return self.extents(index * self.piece_length + begin, length)

    def piece_holes(self, index: int) -> list[tuple[int, int]]:
        """``(begin, length)`` runs of piece ``index`` that belong to no file (BEP 47 padding, BEP 52
        gaps): zeros that need not be requested from peers; leave them zero in the piece buffer."""
        holes: list[tuple[int, int]] = []
        pos = 0
        for e in self.piece_extents(index):
            if e.buf_offset > pos:
                holes.append((pos, e.buf_offset - pos))
            pos = e.buf_offset + e.length
        size = self.piece_size(index)
        if pos < size:
            holes.append((pos, size - pos))
        return holes

    def file_pieces(self, file_index: int) -> range:
        """Pieces that hold bytes of file ``file_index`` (empty for empty and padding files)."""
        f = self.files[file_index]
        if f.pad or f.length == 0:
            return range(0)
        return range(f.offset // self.piece_length, (f.offset + f.length - 1) // self.piece_length + 1)

    def piece_files(self, index: int) -> list[int]:
        return [e.file_index for e in self.piece_extents(index)]
