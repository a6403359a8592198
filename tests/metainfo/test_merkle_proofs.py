"""BEP 52 merkle proofs: a range of a layer with its uncle hashes, checked against the pieces root."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.metainfo.merkle import (
    BLOCK_SIZE,
    MerkleLayers,
    ProofError,
    block_hashes,
    file_root,
    file_tree_height,
    full_proof_layers,
    pad_hash,
    piece_height,
    piece_layer,
    verify_hashes,
)
from bitswarm.wire import uncle_count


def _file(blocks: int, seed: int = 0) -> bytes:
    return b"".join(hashlib.sha256(bytes([seed, i % 256, i // 256])).digest() * 512 for i in range(blocks))


def test_layers_root_is_the_pieces_root() -> None:
    pl = 4 * BLOCK_SIZE
    data = _file(21)[: 21 * BLOCK_SIZE - 100]  # 6 pieces, the last one short
    leaves = block_hashes(data)
    layer = piece_layer(leaves, pl)
    tree = MerkleLayers(layer, piece_height(pl), file_tree_height(len(data)))
    assert tree.root == file_root(leaves, pl)
    assert tree.layer(piece_height(pl))[6:] == [pad_hash(2)] * 2  # padded to 8 nodes of height 2


@given(st.integers(2, 70), st.integers(0, 3), st.data())
def test_every_allowed_range_proves_out(pieces: int, log_len: int, data: st.DataObject) -> None:
    ph = 2  # 4 blocks per piece
    height = file_tree_height(pieces * 4 * BLOCK_SIZE)
    layer = [hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(pieces)]
    tree = MerkleLayers(layer, ph, height)
    width = 1 << (height - ph)
    length = min(1 << log_len, width)
    index = data.draw(st.integers(0, width // length - 1)) * length
    proofs = full_proof_layers(height, ph)
    got = tree.hashes(ph, index, length, proofs)
    assert len(got) == length + uncle_count(length, proofs)  # the wire codec's count agrees
    assert verify_hashes(tree.root, height, ph, index, length, proofs, got) == got[:length]
    # any flipped hash, base or uncle, breaks the proof
    k = data.draw(st.integers(0, len(got) - 1))
    bad = list(got)
    bad[k] = bytes(32) if got[k] != bytes(32) else b"\x01" * 32
    with pytest.raises(ProofError):
        verify_hashes(tree.root, height, ph, index, length, proofs, bad)
    # the same hashes claimed for another position fail too (unless that range holds the same nodes,
    # e.g. two ranges of padding)
    other = (index + length) % width
    if tree.layer(ph)[other : other + length] != got[:length]:
        with pytest.raises(ProofError):
            verify_hashes(tree.root, height, ph, other, length, proofs, got)


def test_bep52_example_counts() -> None:
    # 512 piece hashes of a 2048-piece file: 9 layers implied, 2 uncles to the root
    ph, height = 2, 2 + 11
    tree = MerkleLayers([bytes([i % 256]) * 32 for i in range(2048)], ph, height)
    proofs = full_proof_layers(height, ph)
    assert proofs == 10
    got = tree.hashes(ph, 1024, 512, proofs)
    assert len(got) == 512 + 2
    assert got[512] == tree.layer(ph + 9)[3]  # sibling of the range's subtree root (node 2)
    assert got[513] == tree.layer(ph + 10)[0]


@pytest.mark.parametrize(
    ("base", "index", "length", "proofs", "match"),
    [
        (2, 1, 2, 0, "multiple"),
        (2, 0, 3, 0, "power of two"),
        (2, 8, 2, 0, "runs past"),
        (1, 0, 2, 0, "not held"),
        (2, 0, 2, 9, "above the root"),
    ],
)
def test_bad_ranges_are_refused(base: int, index: int, length: int, proofs: int, match: str) -> None:
    tree = MerkleLayers([b"a" * 32] * 5, 2, 5)  # 8 nodes at height 2
    with pytest.raises(ProofError, match=match):
        tree.hashes(base, index, length, proofs)


def test_short_proof_cannot_be_verified() -> None:
    tree = MerkleLayers([b"a" * 32] * 8, 2, 5)
    got = tree.hashes(2, 0, 2, 1)  # stops below the root
    with pytest.raises(ProofError, match="stops at layer"):
        verify_hashes(tree.root, 5, 2, 0, 2, 1, got)
