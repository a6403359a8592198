"""Test helper for tests/storage: build in-memory v1 / v2 / hybrid torrents from (path, bytes) lists.

Independent of the metainfo creator so storage tests pin the layout rules themselves: v1 files end to
end; hybrid with a BEP 47 pad entry before every non-empty file that is not piece-aligned; v2-only
with implicit gaps. Hashes via hashlib and bitswarm.metainfo.merkle.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from bitswarm.metainfo import FileEntry, InfoDict, Torrent
from bitswarm.metainfo.merkle import block_hashes, file_root, piece_layer

Spec = Sequence[tuple[str, bytes]]  # "dir/file" path, content


def build_torrent(
    files: Spec, piece_length: int = 16384, version: str = "v1", name: str = "t", single: bool = False
) -> tuple[Torrent, bytes]:
    """The Torrent and the zero-filled piece space (pads/gaps as zeros) it hashes."""
    entries: list[FileEntry] = []
    space = bytearray()
    layers: dict[bytes, bytes] = {}
    npad = 0
    for path, data in files:
        if data and len(space) % piece_length and version != "v1":
            gap = piece_length - len(space) % piece_length
            if version == "hybrid":
                entries.append(FileEntry((".pad", str(npad)), gap, len(space), attr="p"))
                npad += 1
            space += bytes(gap)
        root = None
        if data and version != "v1":
            leaves = block_hashes(data)
            root = file_root(leaves, piece_length)
            if len(data) > piece_length:
                layers[root] = b"".join(piece_layer(leaves, piece_length))
        parts = (path,) if single else tuple(path.split("/"))
        entries.append(FileEntry(parts, len(data), len(space), pieces_root=root))
        space += data
    pieces = None
    if version != "v2":
        pieces = b"".join(
            hashlib.sha1(space[i : i + piece_length]).digest() for i in range(0, len(space), piece_length)
        )
    raw = b"test-info:" + name.encode() + version.encode() + hashlib.sha1(bytes(space)).digest()
    info = InfoDict(
        name=name,
        piece_length=piece_length,
        files=tuple(entries),
        single_file=single,
        pieces=pieces,
        meta_version=None if version == "v1" else 2,
        private=False,
        source=None,
        raw=raw,
    )
    torrent = Torrent(
        info=info,
        info_hash_v1=None if version == "v2" else hashlib.sha1(raw).digest(),
        info_hash_v2=None if version == "v1" else hashlib.sha256(raw).digest(),
        piece_layers=layers,
    )
    return torrent, bytes(space)


def piece(space: bytes, torrent: Torrent, index: int) -> bytearray:
    pl = torrent.info.piece_length
    return bytearray(space[index * pl : index * pl + torrent.info.piece_size(index)])


def data_of(torrent: Torrent, space: bytes, i: int) -> bytes:
    f = torrent.info.files[i]
    return space[f.offset : f.offset + f.length]


def file_path(save: str | os.PathLike[str], torrent: Torrent, i: int) -> str:
    f = torrent.info.files[i]
    if torrent.info.single_file:
        return os.path.join(save, *f.path)
    return os.path.join(save, torrent.info.name, *f.path)


def blob(n: int, seed: int) -> bytes:
    """Deterministic incompressible-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:n])
