"""Bitfield: BEP 3 layout, spare-bit checks, O(1) count, first-missing scans, set operations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.storage import Bitfield, BitfieldError


def test_layout_and_basics() -> None:
    bf = Bitfield(10)
    bf.set(0)
    bf.set(9)
    assert bf.to_bytes() == b"\x80\x40"
    assert bf.count() == 2 and not bf.all() and bf.any()
    assert bf.first_missing() == 1 and bf.first_set(1) == 9 and bf.first_missing(9) is None
    bf.clear(0)
    assert bf.count() == 1 and not bf[0]
    with pytest.raises(IndexError):
        bf.set(10)
    full = Bitfield(10, full=True)
    assert full.all() and full.to_bytes() == b"\xff\xc0" and full.first_missing() is None
    assert Bitfield(0).all() and Bitfield(0).first_missing() is None


def test_from_bytes_rejects_bad_input() -> None:
    with pytest.raises(BitfieldError):
        Bitfield.from_bytes(b"\xff", 10)  # too short
    with pytest.raises(BitfieldError):
        Bitfield.from_bytes(b"\xff\xe0", 10)  # spare bit set
    with pytest.raises(ValueError):  # also a ValueError for callers that catch that
        Bitfield.from_bytes(b"\x00\x00\x00", 10)
    assert Bitfield.from_bytes(b"\xff\xc0", 10).all()


@given(st.integers(0, 300).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, max(n - 1, 0))))))
def test_model(args: tuple[int, set[int]]) -> None:
    n, bits = args
    bits = {b for b in bits if b < n}
    bf = Bitfield.from_indices(n, bits)
    assert bf.count() == len(bits)
    assert list(bf.iter_set()) == sorted(bits)
    missing = sorted(set(range(n)) - bits)
    assert list(bf.iter_missing()) == missing
    assert bf.first_missing() == (missing[0] if missing else None)
    for start in (0, 1, 7, 8, n // 2, n - 1, n):
        exp = next((i for i in missing if i >= start), None)
        assert bf.first_missing(start) == exp
    again = Bitfield.from_bytes(bf.to_bytes(), n)
    assert again == bf and again.count() == bf.count()
    assert bf.all() == (len(bits) == n)


@given(
    st.integers(1, 100).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)), st.sets(st.integers(0, n - 1)))
    )
)
def test_set_operations(args: tuple[int, set[int], set[int]]) -> None:
    n, a, b = args
    fa, fb = Bitfield.from_indices(n, a), Bitfield.from_indices(n, b)
    assert list((fa & fb).iter_set()) == sorted(a & b)
    assert list((fa | fb).iter_set()) == sorted(a | b)
    assert list((fa - fb).iter_set()) == sorted(a - b)
    assert (fa - fb).count() == len(a - b)
    assert fa.has_any_not_in(fb) == bool(a - b)
    c = fa.copy()
    c.set_all()
    assert c.all() and fa.count() == len(a)
