"""BEP 10 extended handshake: decode -> encode gives the input bytes back, whatever the known keys hold."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.bencode import encode
from bitswarm.wire import ExtendedHandshake

KNOWN = [b"v", b"p", b"reqq", b"yourip", b"ipv4", b"ipv6", b"metadata_size"]
values = st.one_of(
    st.integers(-2, 70000),
    st.binary(max_size=17),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.binary(max_size=3), st.integers(0, 3), max_size=2),
)
handshakes = st.dictionaries(st.sampled_from([*KNOWN, b"e", b"upload_only", b"zz"]), values, max_size=8).map(
    lambda d: {b"m": {b"ut_pex": 1, b"ut_metadata": 0}, **d}
)


def valid(key: bytes, value: Any) -> bool:
    """Whether the typed field takes it (BEP 10's types and ranges)."""
    if key == b"v":
        return isinstance(value, bytes)
    if key == b"p":
        return isinstance(value, int) and 0 < value < 65536
    if key in (b"reqq", b"metadata_size"):
        return isinstance(value, int) and value >= 0
    if key == b"yourip":
        return isinstance(value, bytes) and len(value) in (4, 16)
    if key == b"ipv4":
        return isinstance(value, bytes) and len(value) == 4
    if key == b"ipv6":
        return isinstance(value, bytes) and len(value) == 16
    return False


@given(handshakes)
def test_decode_encode_gives_the_bytes_back(d: dict[bytes, Any]) -> None:
    payload = encode(d)
    hs = ExtendedHandshake.decode_payload(payload)
    assert hs.encode_payload() == payload
    assert hs.m == {"ut_pex": 1, "ut_metadata": 0}
    for key, value in d.items():
        if key == b"m":
            continue
        # a well-known key with the right type is typed; anything else is kept raw in ``extra``
        assert (key in hs.extra) != valid(key, value), key
        if key in hs.extra:
            assert hs.extra[key] == value


@pytest.mark.parametrize(
    ("key", "value", "field", "typed"),
    [
        (b"v", b"bitswarm 1", "client", "bitswarm 1"),
        (b"p", 6881, "port", 6881),
        (b"p", 0, "port", None),
        (b"p", 65536, "port", None),
        (b"reqq", 0, "reqq", 0),
        (b"reqq", -1, "reqq", None),
        (b"metadata_size", 5, "metadata_size", 5),
        (b"yourip", bytes([10, 0, 0, 1]), "yourip", ipaddress.IPv4Address("10.0.0.1")),
        (b"yourip", bytes(5), "yourip", None),
        (b"ipv4", bytes(16), "ipv4", None),
        (b"ipv6", bytes(15) + b"\x01", "ipv6", ipaddress.IPv6Address("::1")),
        (b"ipv6", b"x", "ipv6", None),
    ],
)
def test_each_well_known_key(key: bytes, value: Any, field: str, typed: object) -> None:
    hs = ExtendedHandshake.decode_payload(encode({b"m": {}, key: value}))
    assert getattr(hs, field) == typed
    assert (key in hs.extra) == (typed is None)
