"""Resume data: what a restart needs to skip re-hashing a torrent.

One small bencoded file per torrent::

    {"bitswarm-resume": 1, "info-hash": <20 bytes>, "num-pieces": N, "pieces": <bitfield bytes>,
     "files": [[size, mtime_ns] | [] for every entry of info.files], "parts": [size, mtime_ns] | [],
     "priorities": [int, ...]}

An empty ``[]`` stands for a padding entry or a file that is not on disk. It is written atomically
(temp file, fsync, ``os.replace``), so a crash leaves either the old or the new file, never a torn one.
Reading never raises for bad content: :func:`load_resume` returns None and the caller re-checks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass

from bitswarm.bencode import BencodeError, decode, encode

FORMAT_VERSION = 1

FileStat = tuple[int, int] | None  #: (size, mtime_ns) of a file on disk, None when absent/not applicable


@dataclass(frozen=True, slots=True)
class ResumeData:
    """What a torrent's resume file holds (see :func:`load_resume`)."""

    info_hash: bytes
    num_pieces: int
    pieces: bytes  #: BEP 3 bitfield bytes of the verified pieces
    files: tuple[FileStat, ...]  #: per entry of ``info.files``
    parts: FileStat  #: the ``.parts`` side file
    priorities: tuple[int, ...]

    def encode(self) -> bytes:
        def st(s: FileStat) -> list[int]:
            return [] if s is None else [s[0], s[1]]

        return encode(
            {
                b"bitswarm-resume": FORMAT_VERSION,
                b"info-hash": self.info_hash,
                b"num-pieces": self.num_pieces,
                b"pieces": self.pieces,
                b"files": [st(s) for s in self.files],
                b"parts": st(self.parts),
                b"priorities": list(self.priorities),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> ResumeData | None:
        """Parse resume data; None when it is corrupt or from another format version."""
        try:
            d = decode(data)
        except BencodeError:
            return None
        try:
            if not isinstance(d, dict) or d.get(b"bitswarm-resume") != FORMAT_VERSION:
                return None
            ih, n, pieces = d[b"info-hash"], d[b"num-pieces"], d[b"pieces"]
            if not (isinstance(ih, bytes) and isinstance(n, int) and isinstance(pieces, bytes)):
                return None

            def st(v: object) -> FileStat:
                if v == []:
                    return None
                if (
                    isinstance(v, list)
                    and len(v) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
                ):
                    return (v[0], v[1])
                raise ValueError("bad file stat")

            files = tuple(st(v) for v in d[b"files"])
            parts = st(d[b"parts"])
            prios = d[b"priorities"]
            if not isinstance(prios, list) or not all(isinstance(p, int) for p in prios):
                return None
            return cls(ih, n, pieces, files, parts, tuple(prios))
        except (KeyError, TypeError, ValueError):
            return None


def load_resume(path: str) -> ResumeData | None:
    """Read resume data from ``path``; None when it is missing, unreadable or corrupt."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(64 << 20)
    except OSError:
        return None
    return ResumeData.decode(data)


def save_resume_file(path: str, data: ResumeData, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + fsync + os.replace)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # unique per write: two saves of one torrent may overlap (an old Storage closing while a new one
    # for the same torrent saves); each replaces atomically with complete data, the last one wins
    tmp = f"{path}.tmp.{os.getpid()}.{secrets.token_hex(4)}"
    blob = data.encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        # a failed write (disk full) or rename leaves no temp file behind; the old record stays
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
