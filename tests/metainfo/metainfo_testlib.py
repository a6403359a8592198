"""Independent builders of v1 / v2 / hybrid info dicts for the metainfo tests.

Written straight from BEP 3 / 47 / 52 with hashlib and the merkle helpers, so the parser tests do not
depend on bitswarm's own torrent creator.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bitswarm.bencode import encode
from bitswarm.metainfo import merkle

Files = list[tuple[tuple[str, ...], bytes]]


def _v1_pieces(blob: bytes, pl: int) -> bytes:
    return b"".join(hashlib.sha1(blob[i : i + pl]).digest() for i in range(0, len(blob), pl))


def _tree_and_layers(files: Files, pl: int) -> tuple[dict[bytes, Any], dict[bytes, bytes]]:
    tree: dict[bytes, Any] = {}
    layers: dict[bytes, bytes] = {}
    for path, data in files:
        node = tree
        for comp in path[:-1]:
            node = node.setdefault(comp.encode(), {})
        leaf: dict[bytes, Any] = {b"length": len(data)}
        if data:
            leaves = merkle.block_hashes(data)
            leaf[b"pieces root"] = merkle.file_root(leaves, pl)
            if len(data) > pl:
                layers[leaf[b"pieces root"]] = b"".join(merkle.piece_layer(leaves, pl))
        node[path[-1].encode()] = {b"": leaf}
    return tree, layers


def v1_info(files: Files | bytes, name: str = "t", pl: int = 16384, **extra: Any) -> dict[bytes, Any]:
    """A BEP 3 info dict: single-file when ``files`` is bytes, else multi-file in the given order."""
    info: dict[bytes, Any] = {b"name": name.encode(), b"piece length": pl}
    if isinstance(files, bytes):
        info[b"length"] = len(files)
        info[b"pieces"] = _v1_pieces(files, pl)
    else:
        info[b"files"] = [{b"length": len(d), b"path": [c.encode() for c in p]} for p, d in files]
        info[b"pieces"] = _v1_pieces(b"".join(d for _, d in files), pl)
    info.update({k.encode() if isinstance(k, str) else k: v for k, v in extra.items()})
    return info


def v2_info(files: Files, name: str = "t", pl: int = 16384) -> tuple[dict[bytes, Any], dict[bytes, bytes]]:
    """A BEP 52 v2-only info dict and its piece layers."""
    tree, layers = _tree_and_layers(files, pl)
    return {b"name": name.encode(), b"piece length": pl, b"meta version": 2, b"file tree": tree}, layers


def hybrid_info(
    files: Files, name: str = "t", pl: int = 16384, single: bool = False
) -> tuple[dict[bytes, Any], dict[bytes, bytes]]:
    """A BEP 52 hybrid info dict (BEP 47 pad files after every file but the last) and its piece layers."""
    files = sorted(files, key=lambda f: [c.encode() for c in f[0]])
    tree, layers = _tree_and_layers(files, pl)
    info: dict[bytes, Any] = {
        b"name": name.encode(),
        b"piece length": pl,
        b"meta version": 2,
        b"file tree": tree,
    }
    if single:
        ((_, data),) = files
        info[b"length"] = len(data)
        info[b"pieces"] = _v1_pieces(data, pl)
        return info, layers
    entries: list[dict[bytes, Any]] = []
    blob = bytearray()
    for n, (path, data) in enumerate(files):
        entries.append({b"length": len(data), b"path": [c.encode() for c in path]})
        blob += data
        gap = -len(blob) % pl
        if gap and n != len(files) - 1:
            entries.append({b"attr": b"p", b"length": gap, b"path": [b".pad", str(gap).encode()]})
            blob += bytes(gap)
    info[b"files"] = entries
    info[b"pieces"] = _v1_pieces(bytes(blob), pl)
    return info, layers


def torrent_bytes(info: dict[bytes, Any], layers: dict[bytes, bytes] | None = None, **top: Any) -> bytes:
    """A whole .torrent (``top`` keys given with ``_`` for spaces or dashes as needed by the caller)."""
    d: dict[bytes, Any] = {b"info": info}
    if layers:
        d[b"piece layers"] = layers
    d.update({k.encode() if isinstance(k, str) else k: v for k, v in top.items()})
    return encode(d)


def data(n: int, seed: int = 0) -> bytes:
    """``n`` deterministic pseudo-random bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:n])
