"""BEP 33 DHT scrapes: the 256-byte bloom filters ``BFsd`` (seeds) and ``BFpe`` (peers).

A node that stores announces answers ``get_peers`` with ``scrape=1`` with one filter of the IPs of
the seeds and one of the other peers it holds for the info-hash; the asking side ORs the filters of
every node of its lookup and estimates the set sizes. The filter is exactly the BEP's: m = 2048 bits,
k = 2, the indices are the first two little-endian 16-bit words of SHA-1(IP) modulo m, IPs only (4 or
16 bytes, no port). Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable

from bitswarm.dht.krpc import BLOOM_BYTES, KRPCError

__all__ = ["BLOOM_BYTES", "ScrapeBloom", "estimate"]

_M = BLOOM_BYTES * 8
_K = 2


class ScrapeBloom:
    """One BEP 33 bloom filter."""

    __slots__ = ("bits",)

    def __init__(self, data: bytes | bytearray | None = None) -> None:
        if data is not None and len(data) != BLOOM_BYTES:
            raise KRPCError(f"a BEP 33 bloom filter is {BLOOM_BYTES} bytes, not {len(data)}")
        self.bits = bytearray(data) if data is not None else bytearray(BLOOM_BYTES)

    @classmethod
    def of(cls, ips: Iterable[str]) -> ScrapeBloom:
        bloom = cls()
        for ip in ips:
            bloom.insert(ip)
        return bloom

    def insert(self, ip: str) -> None:
        """Add an IPv4 or IPv6 address (text form; an IPv4-mapped IPv6 address counts as IPv4)."""
        self.insert_packed(_packed(ip))

    def insert_packed(self, packed: bytes) -> None:
        h = hashlib.sha1(packed).digest()
        for index in ((h[0] | h[1] << 8) % _M, (h[2] | h[3] << 8) % _M):
            self.bits[index >> 3] |= 1 << (index & 7)

    def __contains__(self, ip: str) -> bool:
        h = hashlib.sha1(_packed(ip)).digest()
        return all(
            self.bits[i >> 3] & (1 << (i & 7)) for i in ((h[0] | h[1] << 8) % _M, (h[2] | h[3] << 8) % _M)
        )

    def update(self, other: ScrapeBloom | bytes | bytearray) -> None:
        """Union with another filter (bitwise OR)."""
        data = other.bits if isinstance(other, ScrapeBloom) else other
        if len(data) != BLOOM_BYTES:
            raise KRPCError(f"a BEP 33 bloom filter is {BLOOM_BYTES} bytes, not {len(data)}")
        bits = self.bits
        for i, b in enumerate(data):
            bits[i] |= b

    def estimate(self) -> float:
        return estimate(self.bits)

    def __bytes__(self) -> bytes:
        return bytes(self.bits)


def estimate(bloom: bytes | bytearray) -> float:
    """The BEP's estimate of how many IPs a filter holds:
    ``log(c / m) / (k * log(1 - 1/m))`` with ``c = min(m - 1, zero bits)``."""
    zeros = _M - int.from_bytes(bloom, "big").bit_count()
    c = max(1, min(_M - 1, zeros))  # a full filter (0 zero bits) would be log(0): saturated
    return math.log(c / _M) / (_K * math.log(1 - 1 / _M))


def _packed(ip: str) -> bytes:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.packed
