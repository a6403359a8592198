"""IP blocklists: the P2P plaintext and DAT (eMule ``ipfilter.dat``) formats, sans-I/O.

The formats Transmission and qBittorrent load, one rule a line:

* **P2P** (PeerGuardian plaintext): ``Some organization:1.2.3.0-1.2.3.255``. The name may itself
  contain colons: the range is what follows the last one. IPv4 only (an IPv6 range's colons make
  the format ambiguous; qBittorrent and Transmission read IPv4 only too).
* **DAT** (eMule, ``ipfilter.dat``): ``001.002.003.000 - 001.002.003.255 , 000 , Some organization``.
  The second field is an access level: as in qBittorrent, a rule whose level is above 127 *allows*
  its range and is skipped (Transmission ignores the level). Leading zeros are allowed in IPv4
  octets; IPv6 addresses are allowed on both ends (``2001:db8:: - 2001:db8::ffff , 0 , name``).
* **CIDR**, as Transmission also reads: ``1.2.3.0/24`` or ``2001:db8::/32``, and a bare address.

Blank lines and lines starting with ``#`` or ``//`` are comments; other lines that parse in no
format are counted in :attr:`Blocklist.skipped` (lists in the wild carry some). Gzip-compressed
data (by its magic bytes) is decompressed here, bounded by ``max_size``.

:class:`Blocklist` keeps each family's ranges sorted and merged, and answers :meth:`Blocklist.blocks`
with one binary search. IPv4-mapped IPv6 addresses are looked up as IPv4. Loading from a file or a
URL (I/O) is :mod:`bitswarm.session.blocklist_source`.
"""

from __future__ import annotations

import ipaddress
import zlib
from bisect import bisect_right
from collections.abc import Iterable
from typing import Literal

from bitswarm.errors import BitswarmError

#: Largest (decompressed) blocklist accepted, in bytes: the big public lists are ~10-30 MiB as text.
MAX_SIZE = 256 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class BlocklistError(BitswarmError):
    """A blocklist that cannot be read: not text, corrupt gzip, too large, or no rule in it."""


def _ipv4(text: str) -> int | None:
    """``1.2.3.4`` (octets may have leading zeros, as in DAT files) as an int, or None."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part.isdigit() or len(part) > 3:
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def _address(text: str) -> tuple[int, int] | None:
    """(family, int) of an IPv4 or IPv6 address (IPv4-mapped IPv6 as IPv4), or None."""
    text = text.strip()
    v4 = _ipv4(text)
    if v4 is not None:
        return 4, v4
    if ":" not in text:
        return None
    try:
        addr = ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return None
    if addr.ipv4_mapped is not None:
        return 4, int(addr.ipv4_mapped)
    return 6, int(addr)


Range = tuple[int, int, int]  # (family, first, last)


def _range(first: str, last: str) -> Range | None:
    a, b = _address(first), _address(last)
    if a is None or b is None or a[0] != b[0]:
        return None
    lo, hi = sorted((a[1], b[1]))  # a reversed range is read as the range it spans
    return a[0], lo, hi


def _cidr(text: str) -> Range | None:
    text = text.strip()
    addr, slash, bits = text.partition("/")
    parsed = _address(addr)
    if parsed is None:
        return None
    family, value = parsed
    width = 32 if family == 4 else 128
    if not slash:
        return family, value, value
    if not bits.isdigit() or int(bits) > width or (family == 4 and ":" in addr and int(bits) < 96):
        return None
    n = int(bits) - (96 if family == 4 and ":" in addr else 0)  # ::ffff:1.2.3.0/120
    host = width - n
    first = value >> host << host
    return family, first, first | ((1 << host) - 1)


def parse_line(line: str) -> Range | Literal[False] | None:
    """One line: its (family, first, last) range; None for a comment, a blank line or a DAT rule that
    allows its range (access level above 127); False for a line in no known format."""
    line = line.strip()
    if not line or line.startswith(("#", "//")):
        return None
    if "," in line:  # DAT: range , level , name (a P2P name may hold commas: tried next)
        fields = line.split(",", 2)
        first, dash, last = fields[0].partition("-")
        level = fields[1].strip() if len(fields) > 1 else "0"
        if dash and level.isdigit():
            rule = _range(first, last)
            if rule is not None:
                return None if int(level) > 127 else rule
    if " - " in line:  # a DAT rule without level and name
        first, _, last = line.partition(" - ")
        rule = _range(first, last)
        if rule is not None:
            return rule
    colon = line.rfind(":")
    if colon >= 0 and "-" in line[colon:]:  # P2P: name:first-last
        first, _, last = line[colon + 1 :].partition("-")
        rule = _range(first, last)
        if rule is not None and rule[0] == 4:
            return rule
    if "-" in line and ":" not in line:  # a bare IPv4 range
        first, _, last = line.partition("-")
        if (rule := _range(first, last)) is not None:
            return rule
    return _cidr(line) or False


def decompress(data: bytes, *, max_size: int = MAX_SIZE) -> bytes:
    """``data`` itself, or its gzip decompression (by the magic bytes), at most ``max_size`` bytes."""
    if not data.startswith(_GZIP_MAGIC):
        if len(data) > max_size:
            raise BlocklistError(f"blocklist larger than {max_size} bytes")
        return data
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise BlocklistError(f"corrupt gzip blocklist: {exc}") from None
    if len(out) > max_size or d.unconsumed_tail:
        raise BlocklistError(f"blocklist larger than {max_size} bytes once decompressed")
    if not d.eof:
        raise BlocklistError("corrupt gzip blocklist: truncated")
    return out


def _merge(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    ranges.sort()
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi in ranges:
        if ends and lo <= ends[-1] + 1:  # overlapping or adjacent: one range
            if hi > ends[-1]:
                ends[-1] = hi
        else:
            starts.append(lo)
            ends.append(hi)
    return starts, ends


class Blocklist:
    """Blocked IP ranges of both families, merged and sorted; :meth:`blocks` is a binary search.

    ``rules`` is the number of rules read (before merging), ``skipped`` the lines in no known
    format, ``blocked`` the connections and addresses refused so far (the session counts them)."""

    def __init__(self, ranges: Iterable[Range] = (), *, skipped: int = 0) -> None:
        by_family: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        rules = 0
        for family, lo, hi in ranges:
            by_family[family].append((lo, hi))
            rules += 1
        self.rules = rules
        self.skipped = skipped
        self.blocked = 0
        self._starts4, self._ends4 = _merge(by_family[4])
        self._starts6, self._ends6 = _merge(by_family[6])

    @classmethod
    def parse(cls, data: bytes | str, *, max_size: int = MAX_SIZE) -> Blocklist:
        """A blocklist from the text (or gzip'd text) of a P2P, DAT or CIDR list; lines of the three
        formats may be mixed. BlocklistError when nothing in it is a rule but some lines are not
        comments (not a blocklist), or it is not UTF-8/Latin-1 text."""
        if isinstance(data, bytes):
            raw = decompress(data, max_size=max_size)
            if b"\x00" in raw[:4096]:
                raise BlocklistError("not a text blocklist (binary data)")
            text = raw.decode("utf-8", errors="replace")
        else:
            text = data
        ranges: list[Range] = []
        skipped = 0
        for line in text.splitlines():
            rule = parse_line(line)
            if rule is False:
                skipped += 1
            elif rule is not None:
                ranges.append(rule)
        if not ranges and skipped:
            raise BlocklistError(f"no blocklist rule found ({skipped} lines in no known format)")
        return cls(ranges, skipped=skipped)

    @property
    def ranges(self) -> int:
        """Merged ranges held (both families)."""
        return len(self._starts4) + len(self._starts6)

    def __len__(self) -> int:
        return self.rules

    def blocks(self, ip: str) -> bool:
        """Is ``ip`` (an IPv4 or IPv6 literal) in a blocked range? A host name is never blocked."""
        parsed = _address(ip)
        if parsed is None:
            return False
        family, value = parsed
        starts, ends = (self._starts4, self._ends4) if family == 4 else (self._starts6, self._ends6)
        i = bisect_right(starts, value) - 1
        return i >= 0 and value <= ends[i]

    def check(self, ip: str) -> bool:
        """:meth:`blocks`, counting a refusal in :attr:`blocked`."""
        if self.blocks(ip):
            self.blocked += 1
            return True
        return False
