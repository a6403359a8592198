"""BEP 40 canonical peer priority (the BEP's test vectors) and canonical peer addresses."""

from __future__ import annotations

import pytest

from bitswarm.dht.bep42 import crc32c
from bitswarm.session.peer_priority import (
    canonical_address,
    canonical_ip,
    ip_family,
    peer_priority,
    sort_by_priority,
)


def test_bep40_vectors() -> None:
    # BEP 40, "Test vectors"
    assert peer_priority(("123.213.32.10", 0), ("98.76.54.32", 0)) == 0xEC2D7224
    assert peer_priority(("98.76.54.32", 0), ("123.213.32.10", 0)) == 0xEC2D7224  # symmetric
    assert peer_priority(("123.213.32.10", 0), ("123.213.32.234", 0)) == 0x99568189


def test_masks_follow_the_shared_prefix() -> None:
    # different /16: FF.FF.55.55 on both
    a, b = bytes([123, 213, 32 & 0x55, 10 & 0x55]), bytes([98, 76, 54 & 0x55, 32 & 0x55])
    assert peer_priority(("123.213.32.10", 1), ("98.76.54.32", 2)) == crc32c(min(a, b) + max(a, b))
    # same /16: FF.FF.FF.55
    a, b = bytes([10, 1, 2, 3 & 0x55]), bytes([10, 1, 7, 9 & 0x55])
    assert peer_priority(("10.1.2.3", 1), ("10.1.7.9", 2)) == crc32c(a + b)
    # same /24: the whole address
    assert peer_priority(("10.1.2.3", 1), ("10.1.2.9", 2)) == crc32c(bytes([10, 1, 2, 3, 10, 1, 2, 9]))


def test_same_ip_uses_the_ports() -> None:
    expected = crc32c((80).to_bytes(2, "big") + (6881).to_bytes(2, "big"))
    assert peer_priority(("127.0.0.1", 6881), ("127.0.0.1", 80)) == expected
    assert peer_priority(("127.0.0.1", 80), ("127.0.0.1", 6881)) == expected


def test_ipv6_masks() -> None:
    base = bytes([0xFF] * 6 + [0x55] * 10)
    a = bytes.fromhex("20010db8000100000000000000000001")
    b = bytes.fromhex("20010db8000200000000000000000002")
    ma, mb = (bytes(x & m for x, m in zip(v, base, strict=True)) for v in (a, b))
    assert peer_priority(("2001:db8:1::1", 1), ("2001:db8:2::2", 1)) == crc32c(min(ma, mb) + max(ma, mb))
    # same /48: FFFF:FFFF:FFFF:FF55:...
    c = bytes.fromhex("20010db80001ab000000000000000003")
    d = bytes.fromhex("20010db80001cd000000000000000004")
    m48 = bytes([0xFF] * 7 + [0x55] * 9)
    mc, md = (bytes(x & m for x, m in zip(v, m48, strict=True)) for v in (c, d))
    assert peer_priority(("2001:db8:1:ab00::3", 1), ("2001:db8:1:cd00::4", 1)) == crc32c(
        min(mc, md) + max(mc, md)
    )
    # a v4-mapped address is its IPv4 address
    assert peer_priority(("::ffff:123.213.32.10", 0), ("98.76.54.32", 0)) == 0xEC2D7224


def test_not_an_ip() -> None:
    with pytest.raises(ValueError):
        peer_priority(("example.org", 1), ("1.2.3.4", 1))


def test_canonical_ip() -> None:
    assert canonical_ip("::ffff:127.0.0.1") == "127.0.0.1"
    assert canonical_ip("::FFFF:7f00:1") == "127.0.0.1"
    assert canonical_ip("2001:0db8:0000::0001") == "2001:db8::1"
    assert canonical_ip("fe80::1%eth0") == "fe80::1%eth0"
    assert canonical_ip("198.51.100.7") == "198.51.100.7"
    assert canonical_ip("tracker.example") == "tracker.example"
    assert canonical_address(("::ffff:10.0.0.1", 6881)) == ("10.0.0.1", 6881)
    assert ip_family("::ffff:10.0.0.1") == 4
    assert ip_family("2001:db8::1") == 6
    assert ip_family("10.0.0.1") == 4
    assert ip_family("example.org") is None


def test_sort_by_priority() -> None:
    own = {4: ("123.213.32.10", 6881)}
    peers = [("98.76.54.32", 1), ("123.213.32.234", 1), ("2001:db8::1", 1), ("peer.example", 1)]
    ranked = sort_by_priority(peers, own)
    # 0xEC2D7224 > 0x99568189; addresses without an own address of their family keep their order last
    assert ranked == [("98.76.54.32", 1), ("123.213.32.234", 1), ("2001:db8::1", 1), ("peer.example", 1)]
    assert sort_by_priority(peers, own, reverse=False)[:2] == [("123.213.32.234", 1), ("98.76.54.32", 1)]
