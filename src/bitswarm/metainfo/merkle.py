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


# --------------------------------------------------------------------------------------------------
# BEP 52 hash exchange: proofs (uncle hashes) for a range of one layer, and their verification.
#
# Heights count up from the 16 KiB block leaves (height 0); a file's tree has ``tree_height(blocks)``
# layers above its leaves, its ``pieces root`` at the top. A request names ``length`` nodes of one
# layer (``base``) from ``index`` on; with ``length`` a power of two and ``index`` a multiple of it,
# the range is a whole subtree whose root stands at ``base + log2(length)``, and each ancestor of
# that subtree root needs exactly one uncle (its sibling) on the way to the file's root.


def tree_height(num_leaves: int) -> int:
    """Layers above the leaves of a tree over ``num_leaves`` leaves padded to a power of two."""
    return (_next_pow2(num_leaves)).bit_length() - 1


def file_tree_height(length: int) -> int:
    """Height of the tree of a file of ``length`` bytes (> 0): its root's height above the blocks."""
    return tree_height(-(-length // BLOCK_SIZE))


def piece_height(piece_length: int) -> int:
    """Height of the piece layer above the 16 KiB block leaves."""
    return (piece_length // BLOCK_SIZE).bit_length() - 1


def _uncles_needed(length: int, proof_layers: int) -> int:
    # the first log2(length) - 1 proof layers are implied by the base hashes (BEP 52)
    return max(0, proof_layers - (_next_pow2(length).bit_length() - 2))


class ProofError(ValueError):
    """A hash range cannot be served or does not prove out (bad range, wrong hashes)."""


class MerkleLayers:
    """Every layer of one file's tree from a known layer (``base_height``, e.g. the piece layer) up
    to the root, each padded to the full width with :func:`pad_hash` nodes. Serves BEP 52 ranges
    with their uncle hashes (:meth:`hashes`)."""

    def __init__(self, nodes: Sequence[bytes], base_height: int, height: int) -> None:
        if height < base_height:
            raise ValueError("the tree is lower than its base layer")
        width = 1 << (height - base_height)
        if len(nodes) > width:
            raise ValueError(f"{len(nodes)} nodes do not fit a layer of {width}")
        self.base_height = base_height
        self.height = height
        layer = list(nodes) + [pad_hash(base_height)] * (width - len(nodes))
        self.layers: list[list[bytes]] = [layer]
        sha = hashlib.sha256
        while len(layer) > 1:
            layer = [sha(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
            self.layers.append(layer)

    @property
    def root(self) -> bytes:
        return self.layers[-1][0]

    def layer(self, height: int) -> list[bytes]:
        """The (padded) nodes at ``height``."""
        return self.layers[height - self.base_height]

    def hashes(self, base: int, index: int, length: int, proof_layers: int) -> list[bytes]:
        """The ``length`` nodes of layer ``base`` from ``index``, then the uncle hashes of
        ``proof_layers`` proof layers, lowest first (a BEP 52 ``hashes`` payload).

        :class:`ProofError` when the range is not one BEP 52 allows (``length`` a power of two,
        ``index`` a multiple of it, inside the layer) or asks for proof layers above the root."""
        if not self.base_height <= base <= self.height:
            raise ProofError(f"layer {base} is not held (held: {self.base_height}..{self.height})")
        if length < 1 or length & (length - 1) or index % length:
            raise ProofError("length must be a power of two and index a multiple of it")
        layer = self.layer(base)
        if index + length > len(layer):
            raise ProofError(f"range {index}+{length} runs past the layer's {len(layer)} nodes")
        uncles = _uncles_needed(length, proof_layers)
        top = base + length.bit_length() - 1  # height of the range's subtree root
        if top + uncles > self.height:
            raise ProofError(f"{proof_layers} proof layers reach above the root")
        out = layer[index : index + length]
        node = index // length
        for k in range(uncles):
            out.append(self.layer(top + k)[(node >> k) ^ 1])
        return out


def verify_hashes(
    root: bytes, height: int, base: int, index: int, length: int, proof_layers: int, hashes: Sequence[bytes]
) -> list[bytes]:
    """Check a BEP 52 ``hashes`` answer against a file's ``root`` (its tree ``height`` high).

    ``hashes`` is the base range followed by the uncles. The proof must reach the root (the range's
    subtree root plus one uncle per layer above it). Returns the ``length`` base hashes; raises
    :class:`ProofError` when the range is malformed or the hashes do not lead to ``root``."""
    if length < 1 or length & (length - 1) or index % length:
        raise ProofError("length must be a power of two and index a multiple of it")
    if not 0 <= base <= height or index + length > 1 << (height - base):
        raise ProofError(f"range {index}+{length} at layer {base} is outside the tree")
    uncles = _uncles_needed(length, proof_layers)
    if len(hashes) != length + uncles:
        raise ProofError(f"{len(hashes)} hashes for {length} + {uncles} uncles")
    top = base + length.bit_length() - 1
    if top + uncles != height:
        raise ProofError(f"the proof stops at layer {top + uncles}, the root is at {height}")
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ProofError("a hash is not 32 bytes")
    got = list(hashes[:length])
    node = merkle_root(got, length, base) if length > 1 else got[0]
    pos = index // length
    sha = hashlib.sha256
    for k, uncle in enumerate(hashes[length:]):
        node = sha(uncle + node).digest() if (pos >> k) & 1 else sha(node + uncle).digest()
    if node != root:
        raise ProofError("the hashes do not lead to the pieces root")
    return got


def full_proof_layers(height: int, base: int) -> int:
    """``proof layers`` to ask for so that an answer about layer ``base`` proves out all the way to
    the root of a tree ``height`` high, whatever the range's length (what :func:`verify_hashes`
    needs; libtorrent's largest allowed value)."""
    return max(0, height - base - 1)
