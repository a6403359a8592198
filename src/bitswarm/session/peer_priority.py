"""Peer addresses in one canonical form, and BEP 40 canonical peer priority.

A dual-stack socket (``::`` with ``IPV6_V6ONLY`` off) sees IPv4 peers as IPv4-mapped IPv6 addresses
(``::ffff:198.51.100.7``); :func:`canonical_ip` turns those back into IPv4 and writes IPv6 in its
compressed form, so one peer has one key wherever peers are keyed, compared, banned or shown.

BEP 40: both ends of a connection compute the same number from their two addresses,
``crc32c(sort(masked(a), masked(b)))`` (the two ports, 2 bytes each, when the IPs are equal). A
client dials the candidates of highest priority first and, over its connection limit, drops the
peer of lowest priority: two clients agree on which connections to keep, so a swarm converges to a
stable, well-mixed mesh instead of churning. The mask keeps the leading bytes two addresses share
plus one, at least the first 2 bytes of IPv4 (6 of IPv6), and ``0x55`` of each byte after them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from bitswarm.dht.bep42 import crc32c

__all__ = [
    "canonical_address",
    "canonical_ip",
    "ip_family",
    "peer_priority",
    "sort_by_priority",
]

Address = tuple[str, int]


@lru_cache(maxsize=4096)
def canonical_ip(host: str) -> str:
    """``host`` as peers are keyed: IPv4-mapped IPv6 as IPv4, IPv6 compressed (a zone id kept),
    anything else (a host name) unchanged."""
    if ":" not in host:
        return host
    addr, pct, zone = host.partition("%")
    try:
        ip = ipaddress.IPv6Address(addr)
    except ValueError:
        return host
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return ip.compressed + pct + zone


def canonical_address(addr: tuple[str, int]) -> Address:
    """(:func:`canonical_ip` of the host, port)."""
    return canonical_ip(addr[0]), addr[1]


def ip_family(host: str) -> int | None:
    """4 or 6 for an IP literal (an IPv4-mapped one is 4), None for a host name."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return 4
    return ip.version


def _packed(host: str) -> bytes:
    ip = ipaddress.ip_address(canonical_ip(host).partition("%")[0])
    return ip.packed


def _mask(packed: bytes, keep: int) -> bytes:
    return packed[:keep] + bytes(b & 0x55 for b in packed[keep:])


def peer_priority(a: Address, b: Address) -> int:
    """The BEP 40 canonical priority of the connection between ``a`` and ``b`` (symmetric; a
    32-bit number, higher is preferred). ValueError when a host is not an IP literal."""
    pa, pb = _packed(a[0]), _packed(b[0])
    if pa == pb:
        ports = sorted(p.to_bytes(2, "big") for p in (a[1], b[1]))
        return crc32c(ports[0] + ports[1])
    if len(pa) == len(pb):
        shared = next((i for i, (x, y) in enumerate(zip(pa, pb, strict=True)) if x != y), len(pa))
        keep = min(len(pa), max(2 if len(pa) == 4 else 6, shared + 1))
        ma, mb = _mask(pa, keep), _mask(pb, keep)
    else:  # different families: BEP 40 says nothing; each gets its family's widest mask
        ma, mb = _mask(pa, 2 if len(pa) == 4 else 6), _mask(pb, 2 if len(pb) == 4 else 6)
    lo, hi = sorted((ma, mb))
    return crc32c(lo + hi)


def sort_by_priority(
    addresses: Iterable[Address], own: dict[int, Address], *, reverse: bool = True
) -> list[Address]:
    """``addresses`` by BEP 40 priority against our own address of their family (``own``: family ->
    (IP, listen port)), highest first (``reverse`` False: lowest first). An address whose family has
    no known own address, or that is not an IP literal, keeps its place after the ranked ones."""
    ranked: list[tuple[int, int, Address]] = []
    rest: list[Address] = []
    for i, addr in enumerate(addresses):
        fam = ip_family(addr[0])
        mine = own.get(fam) if fam is not None else None
        if mine is None:
            rest.append(addr)
            continue
        prio = peer_priority(mine, addr)
        ranked.append((-prio if reverse else prio, i, addr))
    ranked.sort()
    return [a for _, _, a in ranked] + rest
