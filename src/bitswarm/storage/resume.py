"""Resume data: what a restart needs to skip re-hashing a torrent.

One small bencoded file per torrent::

    {"bitswarm-resume": 1, "info-hash": <20 bytes>, "num-pieces": N, "pieces": <bitfield bytes>,
     "files": [[size, mtime_ns] | [] for every entry of info.files], "parts": [size, mtime_ns] | [],
     "priorities": [int, ...], "move-from": <path>, "move-to": <path>}

``move-from``/``move-to`` are there only while ``Storage.move`` runs: a torrent whose resume data
has them was killed mid-move, and its next open finishes the move first (``files`` describe the
files as they were before it started; a move keeps sizes and mtimes).

An empty ``[]`` stands for a padding entry or a file that is not on disk. It is written atomically
(temp file, fsync, ``os.replace``), so a crash leaves either the old or the new file, never a torn one.
Reading never raises for bad content: :func:`load_resume` returns None and the caller re-checks.

Symbolic links: the resume directory (by default ``.bitswarm`` inside the download directory, where
anyone who can write there could plant a link) is opened with ``O_NOFOLLOW`` and every file in it is
reached through that directory's descriptor, so resume data never lands outside it. A symlink (or a
non-directory) at the resume directory raises :class:`ResumePathError`; a symlink at a resume file is
not followed (reading ignores it, writing replaces the link itself).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from dataclasses import dataclass

from bitswarm.bencode import BencodeError, decode, encode
from bitswarm.storage._filemap import PathEscapeError

#: Largest resume (or cached info dictionary) file read.
MAX_RESUME_FILE = 64 << 20


class ResumePathError(PathEscapeError):
    """The resume directory is a symbolic link or not a directory: bitswarm will not follow it, as
    resume data would be written wherever it points."""


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
    #: a move in progress (``Storage.move``): from this save path to that one
    move: tuple[str, str] | None = None

    def encode(self) -> bytes:
        def st(s: FileStat) -> list[int]:
            return [] if s is None else [s[0], s[1]]

        out: dict[bytes, object] = {
            b"bitswarm-resume": FORMAT_VERSION,
            b"info-hash": self.info_hash,
            b"num-pieces": self.num_pieces,
            b"pieces": self.pieces,
            b"files": [st(s) for s in self.files],
            b"parts": st(self.parts),
            b"priorities": list(self.priorities),
        }
        if self.move is not None:
            out[b"move-from"], out[b"move-to"] = (os.fsencode(p) for p in self.move)
        return encode(out)

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
            move: tuple[str, str] | None = None
            if b"move-from" in d or b"move-to" in d:
                src, dst = d[b"move-from"], d[b"move-to"]
                if not (isinstance(src, bytes) and isinstance(dst, bytes)):
                    return None
                move = (os.fsdecode(src), os.fsdecode(dst))
            return cls(ih, n, pieces, files, parts, tuple(prios), move)
        except (KeyError, TypeError, ValueError):
            return None


def _open_dir(directory: str, *, create: bool) -> int | None:
    """A descriptor of ``directory``, never through a symlink at its last component (None: it does not
    exist and ``create`` is false). With ``create`` its parents are made as needed."""
    directory = os.path.abspath(directory)  # no trailing slash: O_NOFOLLOW applies to the last name
    if create:
        os.makedirs(os.path.dirname(directory), exist_ok=True)
        with contextlib.suppress(FileExistsError):  # already there (or a link: refused just below)
            os.mkdir(directory)
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:
            mode = os.lstat(directory).st_mode
        except OSError:
            raise exc from None
        if stat.S_ISLNK(mode):
            raise ResumePathError(
                f"resume directory {directory} is a symbolic link; refusing to follow it (resume data "
                "must stay in the download directory): remove the link"
            ) from None
        if not stat.S_ISDIR(mode):
            raise ResumePathError(f"resume directory {directory} is not a directory") from None
        raise


def make_resume_dir(directory: str) -> None:
    """Create the resume directory (and its parents) if needed; :class:`ResumePathError` when it is a
    symbolic link or not a directory."""
    fd = _open_dir(directory, create=True)
    assert fd is not None
    os.close(fd)


def read_resume_file(path: str) -> bytes | None:
    """The bytes of a file in a resume directory (at most :data:`MAX_RESUME_FILE`); None when it is
    missing, unreadable or itself a symbolic link. :class:`ResumePathError` when the directory is a
    symbolic link or not a directory."""
    directory, name = os.path.split(os.path.abspath(path))
    dfd = _open_dir(directory, create=False)
    if dfd is None:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        with open(fd, "rb") as fh:
            return fh.read(MAX_RESUME_FILE)
    except OSError:
        return None


def write_resume_file(path: str, blob: bytes, *, fsync: bool = True) -> None:
    """Write ``blob`` to ``path`` atomically (temp file in the same directory + fsync + rename), all
    through the directory's descriptor (see :func:`read_resume_file` for symbolic links)."""
    directory, name = os.path.split(os.path.abspath(path))
    dfd = _open_dir(directory, create=True)
    assert dfd is not None
    try:
        same = _same_content(dfd, name, blob, fsync=fsync)
    except BaseException:
        os.close(dfd)
        raise
    if same:  # a seed's close, or its check finding it complete: 10,000 rewrites saved (issue 24)
        os.close(dfd)  # (left open, 10,000 seeds ran the daemon out of descriptors)
        return
    # unique per write: two saves of one torrent may overlap (an old Storage closing while a new one
    # for the same torrent saves); each replaces atomically with complete data, the last one wins
    tmp = f"{name}.tmp.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd
        )
        try:
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a link, never follows it
        except BaseException:
            # a failed write (disk full) or rename leaves no temp file behind; the old record stays
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        if fsync:
            with contextlib.suppress(OSError):
                os.fsync(dfd)
    finally:
        os.close(dfd)


def _same_content(dfd: int, name: str, blob: bytes, *, fsync: bool) -> bool:
    """Does ``name`` (in the directory ``dfd``, not a symbolic link) hold exactly ``blob``? Then it
    is made durable (``fsync``) and need not be written again."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_size != len(blob):
            return False
        chunks = []
        left = len(blob)
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                return False
            chunks.append(chunk)
            left -= len(chunk)
        if b"".join(chunks) != blob:
            return False
        if fsync:
            os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def load_resume(path: str) -> ResumeData | None:
    """Read resume data from ``path``; None when it is missing, unreadable or corrupt.
    :class:`ResumePathError` when its directory is a symbolic link."""
    data = read_resume_file(path)
    return None if data is None else ResumeData.decode(data)


def save_resume_file(path: str, data: ResumeData, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_resume_file`)."""
    write_resume_file(path, data.encode(), fsync=fsync)
