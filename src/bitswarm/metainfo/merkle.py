"""BEP 52 merkle trees: SHA-256 over 16 KiB blocks, padded to a power of two with zero leaves.

A file's ``pieces root`` is the root over all its 16 KiB block hashes (the last block may be short;
it is hashed as it is). Leaves past the end of the file are 32 zero bytes, so a node that covers only
padding is the hash of a subtree of zero leaves (:func:`pad_hash`), never plain zeros above the
leaves. The ``piece layers`` entry of a file larger than one piece is the layer whose nodes each
cover ``piece_length`` bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

BLOCK_SIZE = 16 * 1024
HASH_SIZE = 32
_ZERO = bytes(HASH_SIZE)
_pad_cache: list[bytes] = [_ZERO]


def pad_hash(height: int) -> bytes:
    """Root of a subtree of ``2**height`` zero leaves."""
    while len(_pad_cache) <= height:
        h = _pad_cache[-1]
        _pad_cache.append(hashlib.sha256(h + h).digest())
    return _pad_cache[height]


def block_hashes(data: bytes | memoryview) -> list[bytes]:
    """SHA-256 of each 16 KiB block of ``data`` (the last block may be shorter)."""
    mv = memoryview(data)
    sha = hashlib.sha256
    return [sha(mv[i : i + BLOCK_SIZE]).digest() for i in range(0, len(mv), BLOCK_SIZE)]


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def merkle_root(leaves: Sequence[bytes], width: int | None = None, leaf_height: int = 0) -> bytes:
    """Root over ``leaves`` padded to ``width`` (a power of two, default the next one ≥ len(leaves)).

    ``leaf_height`` says how high the given nodes already stand above the 16 KiB block leaves, so the
    padding nodes are :func:`pad_hash` of that height (use it to go from a piece layer to the root).
    """
    n = len(leaves)
    if width is None:
        width = _next_pow2(n)
    if width < n or width & (width - 1):
        raise ValueError("width must be a power of two covering every leaf")
    if n == 0:
        return pad_hash(leaf_height + width.bit_length() - 1)
    layer = list(leaves)
    height = leaf_height
    sha = hashlib.sha256
    while width > 1:
        if len(layer) % 2:
            layer.append(pad_hash(height))
        layer = [sha(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
        width //= 2
        height += 1
    return layer[0]


def piece_layer(leaves: Sequence[bytes], piece_length: int) -> list[bytes]:
    """The piece-layer hashes of a file from its block ``leaves`` (each piece padded with zero leaves)."""
    per_piece = piece_length // BLOCK_SIZE
    return [merkle_root(leaves[i : i + per_piece], per_piece) for i in range(0, len(leaves), per_piece)]


def file_root(leaves: Sequence[bytes], piece_length: int) -> bytes:
    """A file's ``pieces root`` from its block leaves (BEP 52). Empty files have no root."""
    if not leaves:
        raise ValueError("an empty file has no pieces root")
    per_piece = piece_length // BLOCK_SIZE
    if len(leaves) <= per_piece:
        return merkle_root(leaves)
    layer = piece_layer(leaves, piece_length)
    return merkle_root(layer, leaf_height=per_piece.bit_length() - 1)
