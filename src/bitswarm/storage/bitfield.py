"""A compact piece bitfield (BEP 3 ``bitfield`` message layout: bit 7 of byte 0 is piece 0).

Used for our own verified pieces and for every peer's pieces, so the hot operations are cheap:
``count`` is O(1) (kept up to date on every change), ``first_missing``/``first_set`` scan in C via
``re`` over the bytes, and the set operations work on whole big integers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from bitswarm.errors import BitswarmError

_NOT_FULL = re.compile(b"[^\xff]")
_NOT_EMPTY = re.compile(b"[^\x00]")


class BitfieldError(BitswarmError, ValueError):
    """Bytes do not form a valid bitfield of the expected length (wrong size or spare bits set)."""


class Bitfield:
    """``length`` bits backed by a ``bytearray``; spare bits in the last byte are always zero."""

    __slots__ = ("_bits", "_count", "_length")

    def __init__(self, length: int, *, full: bool = False) -> None:
        if length < 0:
            raise ValueError("bitfield length must be >= 0")
        self._length = length
        nbytes = (length + 7) >> 3
        if full and length:
            self._bits = bytearray(b"\xff" * nbytes)
            spare = nbytes * 8 - length
            if spare:
                self._bits[-1] = (0xFF << spare) & 0xFF
            self._count = length
        else:
            self._bits = bytearray(nbytes)
            self._count = 0

    # -- construction / serialisation -------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, length: int) -> Bitfield:
        """Parse a BEP 3 bitfield of ``length`` pieces. Raises :class:`BitfieldError` when the byte
        count is wrong or a spare bit at the end is set."""
        nbytes = (length + 7) >> 3
        if len(data) != nbytes:
            raise BitfieldError(f"bitfield has {len(data)} bytes, expected {nbytes} for {length} pieces")
        spare = nbytes * 8 - length
        if spare and data[-1] & ((1 << spare) - 1):
            raise BitfieldError("bitfield has spare bits set past the last piece")
        bf = cls(0)
        bf._length = length
        bf._bits = bytearray(data)
        bf._count = int.from_bytes(bf._bits, "big").bit_count()
        return bf

    @classmethod
    def from_indices(cls, length: int, indices: Iterable[int]) -> Bitfield:
        bf = cls(length)
        for i in indices:
            bf.set(i)
        return bf

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    def as_int(self) -> int:
        """The bits as one integer, piece 0 the highest of ``8 * ceil(length / 8)`` bits (the
        bytes read big-endian): set operations against other piece sets in one C call."""
        return int.from_bytes(self._bits, "big")

    def copy(self) -> Bitfield:
        bf = Bitfield(0)
        bf._length = self._length
        bf._bits = bytearray(self._bits)
        bf._count = self._count
        return bf

    # -- single bits -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._length

    def _check(self, index: int) -> None:
        if not 0 <= index < self._length:
            raise IndexError(f"piece {index} out of range 0..{self._length - 1}")

    def get(self, index: int) -> bool:
        self._check(index)
        return bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    __getitem__ = get

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < self._length and self.get(index)

    def set(self, index: int, value: bool = True) -> None:
        """Set (or with ``value=False`` clear) bit ``index``."""
        self._check(index)
        byte, mask = index >> 3, 0x80 >> (index & 7)
        old = self._bits[byte]
        if value:
            if not old & mask:
                self._bits[byte] = old | mask
                self._count += 1
        elif old & mask:
            self._bits[byte] = old & ~mask
            self._count -= 1

    def clear(self, index: int) -> None:
        self.set(index, False)

    def set_all(self, value: bool = True) -> None:
        fresh = Bitfield(self._length, full=value)
        self._bits, self._count = fresh._bits, fresh._count

    # -- whole-field queries -----------------------------------------------------------------------

    def count(self) -> int:
        """Number of set bits, O(1)."""
        return self._count

    def all(self) -> bool:
        return self._count == self._length

    def any(self) -> bool:
        return self._count > 0

    def first_missing(self, start: int = 0) -> int | None:
        """Lowest clear bit at or after ``start``, or None."""
        return self._scan(_NOT_FULL, start, False)

    def first_set(self, start: int = 0) -> int | None:
        """Lowest set bit at or after ``start``, or None."""
        return self._scan(_NOT_EMPTY, start, True)

    def _scan(self, pattern: re.Pattern[bytes], start: int, want: bool) -> int | None:
        if start < 0:
            start = 0
        if start >= self._length:
            return None
        byte = start >> 3
        bits = self._bits
        while True:
            m = pattern.search(bits, byte)
            if m is None:
                return None
            byte = m.start()
            value = bits[byte] if want else ~bits[byte] & 0xFF
            for bit in range(8):
                i = (byte << 3) | bit
                if i >= self._length:
                    return None
                if i >= start and value & (0x80 >> bit):
                    return i
            byte += 1

    def iter_set(self) -> Iterator[int]:
        i = self.first_set()
        while i is not None:
            yield i
            i = self.first_set(i + 1)

    def iter_missing(self) -> Iterator[int]:
        i = self.first_missing()
        while i is not None:
            yield i
            i = self.first_missing(i + 1)

    # -- set operations (same length required) -----------------------------------------------------

    def _other_int(self, other: Bitfield) -> int:
        if other._length != self._length:
            raise ValueError(f"bitfield lengths differ: {self._length} vs {other._length}")
        return int.from_bytes(other._bits, "big")

    def _from_int(self, value: int) -> Bitfield:
        bf = Bitfield(0)
        bf._length = self._length
        bf._bits = bytearray(value.to_bytes(len(self._bits), "big"))
        bf._count = value.bit_count()
        return bf

    def __and__(self, other: Bitfield) -> Bitfield:
        return self._from_int(int.from_bytes(self._bits, "big") & self._other_int(other))

    def __or__(self, other: Bitfield) -> Bitfield:
        return self._from_int(int.from_bytes(self._bits, "big") | self._other_int(other))

    def __sub__(self, other: Bitfield) -> Bitfield:
        """Bits set here and clear in ``other`` (e.g. ``peer_has - we_have``)."""
        return self._from_int(int.from_bytes(self._bits, "big") & ~self._other_int(other))

    def has_any_not_in(self, other: Bitfield) -> bool:
        """True when some bit set here is clear in ``other`` (interest: ``peer.has_any_not_in(ours)``)."""
        return bool(int.from_bytes(self._bits, "big") & ~self._other_int(other))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bitfield):
            return NotImplemented
        return self._length == other._length and self._bits == other._bits

    def __repr__(self) -> str:
        return f"Bitfield({self._count}/{self._length})"
