"""Parallel piece hashing for torrent creation (BEP 3 SHA-1 pieces, BEP 52 SHA-256 merkle pieces).

Files are streamed through a small, fixed pool of preallocated ``bytearray`` chunks (``readinto``,
never a whole file in memory); each filled chunk is hashed by a worker thread. ``hashlib`` releases
the GIL on buffers of 2 KiB or more, so SHA-1 and SHA-256 over 16 KiB blocks and whole pieces run on
every core while the main thread reads the next chunk (``readinto`` releases the GIL too).

Two layouts:

* v1 (:func:`hash_v1`): the files are one concatenated stream, pieces cross file boundaries.
* v2 / hybrid (:func:`hash_aligned`): every non-empty file starts on a piece boundary, so a piece
  belongs to exactly one file. Each piece yields its BEP 52 piece-layer node (merkle root over its
  16 KiB blocks, padded with zero leaves) and, for hybrid, its SHA-1 over the same bytes read once,
  zero-padded to a whole piece (the BEP 47 padding file that follows) unless it is the torrent's
  last piece.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from bitswarm.metainfo._model import MetainfoError
from bitswarm.metainfo.merkle import BLOCK_SIZE, file_root, merkle_root

#: Target size of one read chunk; a chunk is always a whole number of pieces.
CHUNK_TARGET = 4 * 1024 * 1024

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file on disk to hash: its absolute ``path`` and the ``length`` seen by the directory walk."""

    path: str
    length: int


@dataclass(frozen=True, slots=True)
class AlignedHashes:
    """Result of :func:`hash_aligned`, indexed like the input files (empty files get empty values)."""

    piece_nodes: list[list[bytes]]  #: per file: BEP 52 piece-layer hashes (one per piece of the file)
    roots: list[bytes | None]  #: per file: BEP 52 ``pieces root`` (None for an empty file)
    sha1_pieces: bytes | None  #: hybrid only: the v1 ``pieces`` string (padding included)


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _chunk_size(piece_length: int) -> int:
    return max(piece_length, CHUNK_TARGET // piece_length * piece_length)


def _open(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise MetainfoError(f"cannot read {path}: {exc.strerror or exc}") from None
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):  # advisory only
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return fd


def _read_exact(fd: int, mv: memoryview, path: str) -> None:
    """Fill ``mv`` from ``fd``; a file that got shorter since the walk is an error."""
    pos = 0
    n = len(mv)
    while pos < n:
        try:
            got = os.readv(fd, [mv[pos:]])
        except OSError as exc:
            raise MetainfoError(f"cannot read {path}: {exc.strerror or exc}") from None
        if got == 0:
            raise MetainfoError(f"{path} got shorter while hashing")
        pos += got


class _Pipeline:
    """Bounded read-ahead: at most ``buffers`` chunks are in flight; results are consumed in order."""

    def __init__(self, chunk: int, threads: int, total: int, progress: Progress | None) -> None:
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bitswarm-hash")
        self.free: list[bytearray] = [bytearray(chunk) for _ in range(threads + 2)]
        self.pending: deque[tuple[Future[object], bytearray, int, Callable[[object], None]]] = deque()
        self.done = 0
        self.total = total
        self.progress = progress

    def buffer(self) -> bytearray:
        if not self.free:
            self._finish_oldest()
        return self.free.pop()

    def submit(
        self, buf: bytearray, nbytes: int, work: Callable[[], object], store: Callable[[object], None]
    ) -> None:
        self.pending.append((self.pool.submit(work), buf, nbytes, store))

    def _finish_oldest(self) -> None:
        fut, buf, nbytes, store = self.pending.popleft()
        store(fut.result())
        self.free.append(buf)
        self.done += nbytes
        if self.progress is not None:
            self.progress(self.done, self.total)

    def drain(self) -> None:
        while self.pending:
            self._finish_oldest()

    def close(self) -> None:
        for fut, *_ in self.pending:
            fut.cancel()
        self.pool.shutdown(wait=True)


def _sha1_pieces(mv: memoryview, piece_length: int) -> list[bytes]:
    sha1 = hashlib.sha1
    return [sha1(mv[i : i + piece_length]).digest() for i in range(0, len(mv), piece_length)]


def hash_v1(
    files: Sequence[SourceFile],
    piece_length: int,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> bytes:
    """The BEP 3 ``pieces`` string of ``files`` concatenated (no padding)."""
    total = sum(f.length for f in files)
    num_pieces = -(-total // piece_length)
    out: list[bytes] = [b""] * num_pieces
    chunk = _chunk_size(piece_length)
    pipe = _Pipeline(chunk, threads or default_threads(), total, progress)
    try:
        buf = pipe.buffer()
        fill = 0
        first_piece = 0

        def flush(buf: bytearray, fill: int, first_piece: int) -> None:
            mv = memoryview(buf)[:fill]

            def store(res: object, first: int = first_piece) -> None:
                assert isinstance(res, list)
                out[first : first + len(res)] = res

            pipe.submit(buf, fill, lambda: _sha1_pieces(mv, piece_length), store)

        for f in files:
            if f.length == 0:
                continue
            fd = _open(f.path)
            try:
                left = f.length
                while left:
                    n = min(left, chunk - fill)
                    _read_exact(fd, memoryview(buf)[fill : fill + n], f.path)
                    fill += n
                    left -= n
                    if fill == chunk:
                        flush(buf, fill, first_piece)
                        first_piece += chunk // piece_length
                        buf = pipe.buffer()
                        fill = 0
                _check_eof(fd, f.path)
            finally:
                os.close(fd)
        if fill:
            flush(buf, fill, first_piece)
        pipe.drain()
    finally:
        pipe.close()
    return b"".join(out)


def _check_eof(fd: int, path: str) -> None:
    if os.read(fd, 1):
        raise MetainfoError(f"{path} grew while hashing")


def _aligned_work(
    mv: memoryview, piece_length: int, small_file: bool, sha1_pad_to: int
) -> tuple[list[bytes], list[bytes]]:
    """Piece-layer nodes (and, if ``sha1_pad_to`` ≥ 0, SHA-1 pieces) of one chunk of one file.

    ``small_file``: the file is shorter than a piece, so its single node is the root over its blocks
    padded to the next power of two, not to a whole piece (BEP 52). ``sha1_pad_to``: length the
    chunk's bytes are zero-extended to before SHA-1 (-1: no v1 hashes).
    """
    sha256 = hashlib.sha256
    per_piece = piece_length // BLOCK_SIZE
    nodes: list[bytes] = []
    n = len(mv)
    for start in range(0, n, piece_length):
        end = min(start + piece_length, n)
        leaves = [sha256(mv[i : i + BLOCK_SIZE]).digest() for i in range(start, end, BLOCK_SIZE)]
        # a file shorter than a piece: its only node is padded to the next power of two (BEP 52)
        nodes.append(file_root(leaves, piece_length) if small_file else merkle_root(leaves, per_piece))
    sha1s: list[bytes] = []
    if sha1_pad_to >= 0:
        base = mv.obj
        assert isinstance(base, bytearray)
        if sha1_pad_to > n:
            base[n:sha1_pad_to] = bytes(sha1_pad_to - n)
        sha1s = _sha1_pieces(memoryview(base)[: max(n, sha1_pad_to)], piece_length)
    return nodes, sha1s


def hash_aligned(
    files: Sequence[SourceFile],
    piece_length: int,
    *,
    v1: bool,
    threads: int | None = None,
    progress: Progress | None = None,
) -> AlignedHashes:
    """BEP 52 piece layers and roots of every file, each file starting on a piece boundary.

    With ``v1`` (hybrid torrents), also the SHA-1 of every piece of the same piece space: a file's
    last piece is zero-padded to ``piece_length`` (the BEP 47 padding file after it) unless no
    non-empty file follows it.
    """
    if piece_length < BLOCK_SIZE or piece_length & (piece_length - 1):
        raise MetainfoError("piece length must be a power of two of at least 16 KiB", "piece length")
    total = sum(f.length for f in files)
    nodes: list[list[bytes]] = [[] for _ in files]
    sha1_out: list[list[bytes]] = [[] for _ in files]
    last_nonempty = max((i for i, f in enumerate(files) if f.length), default=-1)
    chunk = _chunk_size(piece_length)
    pipe = _Pipeline(chunk, threads or default_threads(), total, progress)
    try:
        for idx, f in enumerate(files):
            if f.length == 0:
                continue
            small = f.length < piece_length
            pad_tail = v1 and idx != last_nonempty
            fd = _open(f.path)
            try:
                left = f.length
                while left:
                    n = min(left, chunk)
                    buf = pipe.buffer()
                    mv = memoryview(buf)[:n]
                    _read_exact(fd, mv, f.path)
                    left -= n
                    if not v1:
                        pad_to = -1
                    elif pad_tail and n % piece_length:
                        pad_to = n + piece_length - n % piece_length
                    else:
                        pad_to = n

                    def work(
                        mv: memoryview = mv, small: bool = small, pad_to: int = pad_to
                    ) -> tuple[list[bytes], list[bytes]]:
                        return _aligned_work(mv, piece_length, small, pad_to)

                    def store(res: object, idx: int = idx) -> None:
                        assert isinstance(res, tuple)
                        nodes[idx].extend(res[0])
                        sha1_out[idx].extend(res[1])

                    pipe.submit(buf, n, work, store)
                _check_eof(fd, f.path)
            finally:
                os.close(fd)
        pipe.drain()
    finally:
        pipe.close()

    per_piece = piece_length // BLOCK_SIZE
    roots: list[bytes | None] = []
    for f, layer in zip(files, nodes, strict=True):
        if f.length == 0:
            roots.append(None)
        elif len(layer) == 1:
            roots.append(layer[0])
        else:
            roots.append(merkle_root(layer, leaf_height=per_piece.bit_length() - 1))
    sha1 = b"".join(b"".join(p) for p in sha1_out) if v1 else None
    return AlignedHashes(nodes, roots, sha1)
