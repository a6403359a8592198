"""Creating .torrent files: v1 (BEP 3), v2 (BEP 52) and hybrid (BEP 52 upgrade path + BEP 47 padding).

Layout, as libtorrent's ``create_torrent`` with ``canonical_files_no_tail_padding`` lays it out (the
result is byte-for-byte the same info dictionary for the same files, piece length and flags):

* Files are ordered by path, compared component by component as bytes: the iteration order of the
  BEP 52 ``file tree`` (a bencoded dict sorts its keys). v1 torrents use the same order.
* v1: the files are concatenated, no padding.
* v2: only the ``file tree``; every non-empty file starts on a piece boundary (implicit gap).
* hybrid: the ``files`` list describes the same data in the same order, with a BEP 47 padding file
  (``path`` ``[".pad", "<N>"]``, ``attr`` ``"p"``) inserted before every non-empty file that would
  not start on a piece boundary; so there is never padding after the last file, nor after an empty
  file at the end.
* Single file path → single-file form: ``length`` in the v1 part, ``file tree`` = ``{name: {"": …}}``.
* Empty files: listed with ``length`` 0 and, in the file tree, no ``pieces root``.
* ``piece layers`` (v2, hybrid): one entry per distinct ``pieces root`` of a file larger than one piece.

Tracker tiers (BEP 12): ``announce`` is the first URL; ``announce-list`` is written when there is more
than one URL. Web seeds (BEP 19): ``url-list``, a string for one URL, else a list.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bitswarm.bencode import encode
from bitswarm.metainfo._hashing import Progress, SourceFile, hash_aligned, hash_v1
from bitswarm.metainfo._model import MetainfoError, TorrentVersion

MIN_PIECE_LENGTH = 16 * 1024
MAX_AUTO_PIECE_LENGTH = 16 * 1024 * 1024
#: Largest piece length accepted from the caller (libtorrent refuses more than 128 MiB).
MAX_PIECE_LENGTH = 128 * 1024 * 1024
#: :func:`auto_piece_length` picks the smallest piece length giving at most this many pieces.
TARGET_MAX_PIECES = 2048


class _Now(enum.Enum):
    NOW = "now"


#: Default of ``creation_date``: the current time.
NOW: Literal[_Now.NOW] = _Now.NOW


def auto_piece_length(total_size: int) -> int:
    """Piece length for ``total_size`` bytes of data.

    Rule: the smallest power of two, at least 16 KiB, that splits the data into at most
    :data:`TARGET_MAX_PIECES` (2048) pieces, capped at 16 MiB. So between 1024 and 2048 pieces from
    32 MiB up to 32 GiB of data, fewer below (16 KiB pieces), more above (16 MiB pieces).
    """
    if total_size < 0:
        raise ValueError("total_size must not be negative")
    length = MIN_PIECE_LENGTH
    while length < MAX_AUTO_PIECE_LENGTH and -(-total_size // length) > TARGET_MAX_PIECES:
        length *= 2
    return length


@dataclass(frozen=True, slots=True)
class _InputFile:
    """One file going into the torrent: its path inside the torrent and where to read it."""

    path: tuple[str, ...]  #: components below the torrent root (single file: ``(name,)``)
    source: SourceFile

    @property
    def length(self) -> int:
        return self.source.length

    @property
    def sort_key(self) -> tuple[bytes, ...]:
        return tuple(c.encode() for c in self.path)


@dataclass(frozen=True, slots=True)
class CreatedTorrent:
    """A torrent made by :func:`make_torrent`: the file's bytes and the facts a caller reports."""

    data: bytes  #: the complete .torrent file
    info_hash_v1: bytes | None  #: SHA-1 of the bencoded ``info`` (v1, hybrid)
    info_hash_v2: bytes | None  #: SHA-256 of the bencoded ``info`` (v2, hybrid)
    name: str
    piece_length: int
    num_pieces: int
    total_size: int  #: bytes of data (padding excluded)
    num_files: int  #: data files (padding excluded)


def _check_name(name: str, where: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise MetainfoError(f"file name is not valid UTF-8: {where!r}") from None
    return name


def _walk(root: str) -> tuple[str, list[_InputFile], bool]:
    """(torrent name, files in torrent order, single-file form) for the path ``root``."""
    root = os.path.abspath(root)
    name = os.path.basename(root)
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise MetainfoError(f"no such file or directory: {root}") from None
    except OSError as exc:
        raise MetainfoError(f"cannot stat {root}: {exc.strerror or exc}") from None
    if not name:
        raise MetainfoError(f"cannot make a torrent of {root!r}: it has no name")
    _check_name(name, root)
    if stat.S_ISREG(st.st_mode):
        return name, [_InputFile((name,), SourceFile(root, st.st_size))], True
    if not stat.S_ISDIR(st.st_mode):
        raise MetainfoError(f"not a regular file or directory: {root}")

    files: list[_InputFile] = []

    def walk(dirpath: str, rel: tuple[str, ...], ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            names = os.listdir(dirpath)
        except OSError as exc:
            raise MetainfoError(f"cannot list {dirpath}: {exc.strerror or exc}") from None
        for entry in names:
            full = os.path.join(dirpath, entry)
            _check_name(entry, full)
            try:
                est = os.stat(full)  # follows symlinks: their targets are part of the torrent
            except OSError as exc:
                raise MetainfoError(f"cannot stat {full}: {exc.strerror or exc}") from None
            if stat.S_ISDIR(est.st_mode):
                key = (est.st_dev, est.st_ino)
                if key in ancestors:
                    raise MetainfoError(f"symbolic link loop: {full}")
                walk(full, (*rel, entry), ancestors | {key})
            elif stat.S_ISREG(est.st_mode):
                files.append(_InputFile((*rel, entry), SourceFile(full, est.st_size)))
            else:
                raise MetainfoError(f"not a regular file or directory: {full}")

    walk(root, (), frozenset({(st.st_dev, st.st_ino)}))
    if not files:
        raise MetainfoError(f"no files to put in a torrent under {root}")
    files.sort(key=lambda f: f.sort_key)
    return name, files, False


def _file_tree(files: Sequence[_InputFile], roots: Sequence[bytes | None]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for f, root in zip(files, roots, strict=True):
        node = tree
        for comp in f.path:
            node = node.setdefault(comp, {})
        leaf: dict[str, Any] = {"length": f.length}
        if root is not None:
            leaf["pieces root"] = root
        node[""] = leaf
    return tree


def _v1_files(files: Sequence[_InputFile], piece_length: int, pad: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset = 0
    for f in files:
        if pad and f.length and offset % piece_length:
            gap = piece_length - offset % piece_length
            out.append({"attr": "p", "length": gap, "path": [".pad", str(gap)]})
            offset += gap
        out.append({"length": f.length, "path": list(f.path)})
        offset += f.length
    return out


def _piece_space(files: Sequence[_InputFile], piece_length: int, version: TorrentVersion) -> int:
    """End of the last file in the one piece space (padding / v2 gaps included)."""
    if version == "v1":
        return sum(f.length for f in files)
    offset = 0
    for f in files:
        if f.length and offset % piece_length:
            offset += piece_length - offset % piece_length
        offset += f.length
    return offset


def make_torrent(
    path: str | os.PathLike[str],
    *,
    version: TorrentVersion = "hybrid",
    piece_length: int | None = None,
    trackers: Sequence[Sequence[str]] | None = None,
    web_seeds: Sequence[str] | None = None,
    private: bool = False,
    comment: str | None = None,
    created_by: str | None = "bitswarm 0.1.0",
    creation_date: int | Literal[_Now.NOW] | None = NOW,
    source: str | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
) -> CreatedTorrent:
    """Like :func:`create_torrent`, also returning the info-hashes and piece facts."""
    if version not in ("v1", "v2", "hybrid"):
        raise MetainfoError(f"unknown torrent version {version!r} (v1, v2 or hybrid)", "version")
    if piece_length is not None and (
        piece_length < MIN_PIECE_LENGTH
        or piece_length & (piece_length - 1)
        or piece_length > MAX_PIECE_LENGTH
    ):
        raise MetainfoError(
            f"must be a power of two from 16 KiB to 128 MiB, got {piece_length}", "piece length"
        )
    if threads is not None and threads < 1:
        raise MetainfoError(f"threads must be at least 1, got {threads}", "threads")
    tiers = [[str(u) for u in tier if u] for tier in (trackers or [])]
    tiers = [t for t in tiers if t]

    name, files, single = _walk(os.fspath(path))
    total = sum(f.length for f in files)
    if total == 0:
        raise MetainfoError(f"nothing to hash: every file under {os.path.abspath(path)} is empty")
    plen = piece_length if piece_length is not None else auto_piece_length(total)
    sources = [f.source for f in files]

    info: dict[str, Any] = {"name": name, "piece length": plen}
    piece_layers: dict[bytes, bytes] = {}
    if version == "v1":
        info["pieces"] = hash_v1(sources, plen, threads=threads, progress=progress)
    else:
        hashed = hash_aligned(sources, plen, v1=version == "hybrid", threads=threads, progress=progress)
        info["meta version"] = 2
        info["file tree"] = _file_tree(files, hashed.roots)
        for f, root, layer in zip(files, hashed.roots, hashed.piece_nodes, strict=True):
            if root is not None and f.length > plen:
                piece_layers[root] = b"".join(layer)
        if hashed.sha1_pieces is not None:
            info["pieces"] = hashed.sha1_pieces
    if version != "v2":
        if single:
            info["length"] = files[0].length
        else:
            info["files"] = _v1_files(files, plen, pad=version == "hybrid")
    if private:
        info["private"] = 1
    if source:
        info["source"] = source

    top: dict[str, Any] = {"info": info}
    if tiers:
        top["announce"] = tiers[0][0]
        if sum(len(t) for t in tiers) > 1:
            top["announce-list"] = tiers
    if web_seeds:
        seeds = [str(u) for u in web_seeds]
        top["url-list"] = seeds[0] if len(seeds) == 1 else seeds
    if comment:
        top["comment"] = comment
    if created_by:
        top["created by"] = created_by
    if creation_date is NOW:
        top["creation date"] = int(time.time())
    elif creation_date is not None:
        top["creation date"] = int(creation_date)
    if version != "v1":
        top["piece layers"] = piece_layers

    info_raw = encode(info)
    data = encode(top)
    assert info_raw in data
    return CreatedTorrent(
        data=data,
        info_hash_v1=hashlib.sha1(info_raw).digest() if version != "v2" else None,
        info_hash_v2=hashlib.sha256(info_raw).digest() if version != "v1" else None,
        name=name,
        piece_length=plen,
        num_pieces=-(-_piece_space(files, plen, version) // plen),
        total_size=total,
        num_files=len(files),
    )


def create_torrent(
    path: str | os.PathLike[str],
    *,
    version: TorrentVersion = "hybrid",
    piece_length: int | None = None,
    trackers: Sequence[Sequence[str]] | None = None,
    web_seeds: Sequence[str] | None = None,
    private: bool = False,
    comment: str | None = None,
    created_by: str | None = "bitswarm 0.1.0",
    creation_date: int | Literal[_Now.NOW] | None = NOW,
    source: str | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
) -> bytes:
    """Hash the file or directory at ``path`` and return the bytes of a .torrent for it.

    ``version``: ``"v1"`` (BEP 3), ``"v2"`` (BEP 52) or ``"hybrid"`` (both, BEP 47 padding).
    ``piece_length``: a power of two from 16 KiB to 128 MiB; default :func:`auto_piece_length`.
    ``trackers``: BEP 12 tiers. ``web_seeds``: BEP 19 URLs. ``private``: BEP 27 flag.
    ``source``: ``info.source`` (changes the info-hash; private trackers use it).
    ``creation_date``: POSIX seconds, default now, None to leave it out.
    ``progress(done, total)``: called from the calling thread after each hashed chunk; ``done``
    grows monotonically and ends at ``total`` (bytes of data).
    ``threads``: hashing threads, default one per usable core.

    Raises :class:`MetainfoError` for a missing path, no files, only empty files, an unreadable or
    special file, a symbolic-link loop, a non-UTF-8 name or a bad piece length.
    """
    return make_torrent(
        path,
        version=version,
        piece_length=piece_length,
        trackers=trackers,
        web_seeds=web_seeds,
        private=private,
        comment=comment,
        created_by=created_by,
        creation_date=creation_date,
        source=source,
        progress=progress,
        threads=threads,
    ).data


__all__ = ["NOW", "CreatedTorrent", "auto_piece_length", "create_torrent", "make_torrent"]
