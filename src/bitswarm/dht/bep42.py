"""BEP 42 (DHT security extension): node ids tied to the external IP, plus address classification.

A node id is *compliant* when its first 21 bits equal the first 21 bits of
``crc32c((ip & mask) | (r << 29 or 61))`` and its last byte carries ``r`` in its low 3 bits. Local
addresses (RFC 1918, link-local, loopback and their IPv6 counterparts) are exempt.

CRC32C (Castagnoli) is computed here with a small table-driven function: neither ``crc32c`` nor
``google-crc32c`` is a dependency, and the input is only 4 or 8 bytes.
"""

from __future__ import annotations

import ipaddress
import random
from functools import lru_cache
from typing import Final

__all__ = [
    "crc32c",
    "generate_node_id",
    "is_local_address",
    "is_valid_node_id",
    "node_id_prefix",
]

_POLY: Final = 0x82F63B78  # Castagnoli, reflected


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE: Final = _make_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``; ``crc32c(b"123456789") == 0xE3069283``."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_V4_MASK: Final = bytes([0x03, 0x0F, 0x3F, 0xFF])
_V6_MASK: Final = bytes([0x01, 0x03, 0x07, 0x0F, 0x1F, 0x3F, 0x7F, 0xFF])

_LOCAL_V4: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8")
)
_LOCAL_V6: Final = tuple(ipaddress.IPv6Network(n) for n in ("fc00::/7", "fe80::/10", "::1/128"))


@lru_cache(maxsize=1 << 16)
def is_local_address(host: str) -> bool:
    """True for the BEP 42 exempt blocks: private, link-local and loopback (IPv4 and IPv6)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            return any(ip in n for n in _LOCAL_V6)
    return any(ip in n for n in _LOCAL_V4)


@lru_cache(maxsize=1 << 14)
def node_id_prefix(host: str, r: int) -> int:
    """The CRC32C a compliant id's top 21 bits are taken from (``r`` in 0..7)."""
    packed = ipaddress.ip_address(host).packed
    if len(packed) == 4:
        masked = bytearray(a & m for a, m in zip(packed, _V4_MASK, strict=True))
    else:
        masked = bytearray(a & m for a, m in zip(packed[:8], _V6_MASK, strict=True))
    masked[0] |= (r & 7) << 5
    return crc32c(bytes(masked))


def generate_node_id(host: str, rng: random.Random, r: int | None = None) -> bytes:
    """A random node id that is BEP 42-compliant for external address ``host``."""
    rand = rng.randrange(256) if r is None else r
    crc = node_id_prefix(host, rand & 7)
    tail = rng.randbytes(17)
    first = bytes([(crc >> 24) & 0xFF, (crc >> 16) & 0xFF, ((crc >> 8) & 0xF8) | (tail[0] & 7)])
    return first + tail[1:17] + bytes([rand & 0xFF])


def is_valid_node_id(node_id: bytes, host: str) -> bool:
    """BEP 42 check of ``node_id`` against the address it was seen from; local addresses always pass."""
    if len(node_id) != 20:
        return False
    if is_local_address(host):
        return True
    try:
        crc = node_id_prefix(host, node_id[19] & 7)
    except ValueError:
        return False
    prefix = (node_id[0] << 24) | (node_id[1] << 16) | (node_id[2] << 8)
    return (prefix ^ crc) & 0xFFFFF800 == 0
