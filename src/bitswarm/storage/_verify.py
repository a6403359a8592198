"""Piece hash checks: v1 SHA-1 (BEP 3) and v2 SHA-256 merkle (BEP 52). Pure, thread-safe functions.

``hashlib`` releases the GIL for inputs above 2 KiB, so several disk workers hash in parallel.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bitswarm.metainfo import Torrent
from bitswarm.metainfo.merkle import BLOCK_SIZE, block_hashes, merkle_root
from bitswarm.storage._filemap import FileMap, StorageError


class MissingLayer(StorageError):
    """A v2-only piece cannot be checked yet: its file's BEP 52 piece layer is not known."""


@dataclass(frozen=True, slots=True)
class V2Check:
    """How to check one piece against BEP 52 hashes: the file's bytes at ``[start, start+length)`` of
    the piece buffer, padded with zero leaves to ``width`` leaves (None: next power of two)."""

    start: int
    length: int
    width: int | None
    expected: bytes


def check_hashes(torrent: Torrent) -> bool:
    """Raise :class:`StorageError` for a torrent without piece hashes; True if it has v2 ones."""
    has_v2 = torrent.info_hash_v2 is not None and torrent.info.meta_version == 2
    if torrent.info.pieces is None and not has_v2:
        raise StorageError("torrent has neither v1 piece hashes nor v2 roots")
    return has_v2


class PieceHasher:
    """Knows the expected hashes of every piece of one torrent."""

    #: no instance dict: one per torrent (10,000 torrents in one daemon: issue 24)
    __slots__ = ("fmap", "layers", "per_piece", "pieces_v1", "torrent", "use_v1", "use_v2")

    def __init__(self, torrent: Torrent, fmap: FileMap, *, verify_v2_in_hybrid: bool = True) -> None:
        self.torrent = torrent
        self.fmap = fmap
        info = torrent.info
        self.pieces_v1 = info.pieces
        has_v2 = check_hashes(torrent)
        self.use_v1 = info.pieces is not None
        self.use_v2 = has_v2 and (not self.use_v1 or verify_v2_in_hybrid)
        self.per_piece = info.piece_length // BLOCK_SIZE
        self.layers: dict[bytes, bytes] = dict(torrent.piece_layers)

    def set_piece_layer(self, pieces_root: bytes, layer: bytes) -> None:
        """Add a BEP 52 piece layer learnt later (e.g. via hash requests after a magnet link)."""
        if len(layer) % 32:
            raise StorageError("piece layer length is not a multiple of 32")
        self.layers[pieces_root] = bytes(layer)

    def v2_check(self, index: int) -> V2Check | None:
        """The BEP 52 check for piece ``index``, or None when it cannot be done (hybrid only)."""
        exts = self.fmap.piece_extents(index)
        if len(exts) != 1:
            if self.use_v1:
                return None
            raise StorageError(f"v2 piece {index} does not map to exactly one file")
        e = exts[0]
        f = self.fmap.files[e.file_index]
        if f.pieces_root is None:
            if self.use_v1:
                return None
            raise StorageError(f"file {f.path_str!r} has no pieces root")
        pl = self.fmap.piece_length
        if f.length <= pl:
            return V2Check(e.buf_offset, e.length, None, f.pieces_root)
        layer = self.layers.get(f.pieces_root)
        k = e.file_offset // pl
        if layer is None or len(layer) < (k + 1) * 32:
            if self.use_v1:
                return None
            raise MissingLayer(f"no piece layer for file {f.path_str!r} (piece {index})")
        return V2Check(e.buf_offset, e.length, self.per_piece, layer[k * 32 : k * 32 + 32])

    def check(self, index: int, buf: bytes | bytearray | memoryview) -> bool:
        """True when ``buf`` (the whole piece, padding/gap bytes zero) matches the torrent's hashes."""
        if self.use_v1:
            assert self.pieces_v1 is not None
            if hashlib.sha1(buf).digest() != self.pieces_v1[index * 20 : index * 20 + 20]:
                return False
        if self.use_v2:
            try:
                c = self.v2_check(index)
            except MissingLayer:
                return False  # not verifiable (yet): the piece is not counted as ours
            if c is not None:
                mv = memoryview(buf)[c.start : c.start + c.length]
                if merkle_root(block_hashes(mv), c.width) != c.expected:
                    return False
        return True
