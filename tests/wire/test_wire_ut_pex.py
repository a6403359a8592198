"""BEP 11 ut_pex: compact IPv4/IPv6 codec with flags, limits, garbage, and the per-recipient tracker."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.bencode import decode, encode
from bitswarm.wire import LocalWireError
from bitswarm.wire.ut_pex import (
    FLAG_PREFERS_ENCRYPTION,
    FLAG_REACHABLE,
    FLAG_SEED,
    FLAG_UTP,
    MAX_PEX_ENTRIES,
    ExtensionProtocolError,
    PexMessage,
    PexPeer,
    PexTracker,
    decode_pex_message,
    encode_pex_message,
)

V4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
# IPv4-mapped IPv6 addresses are sent as IPv4 (test_mapped_address_goes_in_added), so not here
V6 = st.builds(lambda n: ipaddress.IPv6Address(n).compressed, st.integers(0, 2**128 - 1)).filter(
    lambda a: ipaddress.IPv6Address(a).ipv4_mapped is None
)
PORT = st.integers(1, 65535)
PEER = st.builds(PexPeer, st.one_of(V4, V6), PORT, st.integers(0, 255))
ADDR = st.tuples(st.one_of(V4, V6), PORT)


def test_compact_layout_and_flags() -> None:
    msg = PexMessage(
        added=(
            PexPeer("10.0.0.1", 6881, FLAG_PREFERS_ENCRYPTION | FLAG_REACHABLE),
            PexPeer("2001:db8::1", 51413, FLAG_SEED | FLAG_UTP),
        ),
        dropped=(("192.168.1.2", 1), ("::1", 258)),
    )
    payload = encode_pex_message(msg)
    d = decode(payload)
    assert d[b"added"] == bytes([10, 0, 0, 1, 0x1A, 0xE1])
    assert d[b"added.f"] == b"\x11"
    assert d[b"added6"] == ipaddress.IPv6Address("2001:db8::1").packed + (51413).to_bytes(2, "big")
    assert d[b"added6.f"] == b"\x06"
    assert d[b"dropped"] == bytes([192, 168, 1, 2, 0, 1])
    assert d[b"dropped6"] == bytes(15) + b"\x01\x01\x02"
    assert decode_pex_message(payload) == msg


def test_mapped_address_goes_in_added() -> None:
    msg = PexMessage(added=(PexPeer("::ffff:10.0.0.1", 6881, 0),), dropped=(("::ffff:10.0.0.2", 1),))
    d = decode(encode_pex_message(msg))
    assert d[b"added"] == bytes([10, 0, 0, 1, 0x1A, 0xE1]) and not d.get(b"added6")
    assert d[b"dropped"] == bytes([10, 0, 0, 2, 0, 1]) and not d.get(b"dropped6")


def test_empty_message_has_v4_keys() -> None:
    assert encode_pex_message(PexMessage()) == b"d5:added0:7:added.f0:7:dropped0:e"
    assert decode_pex_message(b"de") == PexMessage()


@given(
    added=st.lists(PEER, max_size=MAX_PEX_ENTRIES, unique_by=lambda p: (p.ip, p.port)),
    dropped=st.lists(ADDR, max_size=MAX_PEX_ENTRIES, unique=True),
)
def test_round_trip(added: list[PexPeer], dropped: list[tuple[str, int]]) -> None:
    keys = {p.address for p in added}
    dropped = [a for a in dropped if a not in keys]
    msg = PexMessage(tuple(added), tuple(dropped))
    out = decode_pex_message(encode_pex_message(msg))
    v4_first = sorted(msg.added, key=lambda p: ":" in p.ip)  # the codec groups IPv4 before IPv6
    assert out.added == tuple(v4_first)
    assert out.dropped == tuple(sorted(msg.dropped, key=lambda a: ":" in a[0]))


def test_lenient_where_harmless() -> None:
    c1, c2 = bytes([1, 2, 3, 4, 0, 80]), bytes([5, 6, 7, 8, 0, 81])
    # flags of the wrong length are ignored, duplicates removed, port 0 skipped
    msg = decode_pex_message(encode({b"added": c1 + c2 + c1 + bytes(6), b"added.f": b"\x01"}))
    assert msg.added == (PexPeer("1.2.3.4", 80, 0), PexPeer("5.6.7.8", 81, 0))
    msg = decode_pex_message(encode({b"added": c1, b"added.f": b"\x02", b"x": [1, {b"y": 2}]}))
    assert msg.added == (PexPeer("1.2.3.4", 80, FLAG_SEED),)
    # a contact both added and dropped is ignored on both sides
    msg = decode_pex_message(encode({b"added": c1 + c2, b"dropped": c2}))
    assert msg == PexMessage(added=(PexPeer("1.2.3.4", 80, 0),))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"le",
        b"5:added",
        encode({b"added": b"\x01\x02\x03\x04\x00"}),  # not a multiple of 6
        encode({b"added6": bytes(17)}),  # not a multiple of 18
        encode({b"dropped": bytes(7)}),
        encode({b"dropped6": bytes(19)}),
        encode({b"added": 5}),  # not a string
        encode({b"added.f": [1]}),
        encode({b"added": bytes([1, 1, 1, 1, 0, 1]) * (MAX_PEX_ENTRIES + 1)}),
        encode({b"dropped": bytes([1, 1, 1, 1, 0, 1]) * (MAX_PEX_ENTRIES + 1)}),
        b"d5:added0:ed",  # trailing bytes after the dictionary
        b"d7:dropped0:5:added0:e",  # unsorted keys
        encode({b"x": b"y" * 20000}),  # over the payload limit
    ],
)
def test_garbage_raises_typed_error(payload: bytes) -> None:
    with pytest.raises(ExtensionProtocolError):
        decode_pex_message(payload)


def test_combined_v4_v6_limit() -> None:
    ok = {b"added": b"".join(bytes([1, 1, 1, i, 0, 1]) for i in range(150))}
    assert len(decode_pex_message(encode(ok)).added) == 150
    too_many = {**ok, b"added6": b"".join(bytes(15) + bytes([i, 0, 1]) for i in range(51))}
    with pytest.raises(ExtensionProtocolError):
        decode_pex_message(encode(too_many))


@given(st.binary(max_size=200))
def test_fuzz_only_typed_error(payload: bytes) -> None:
    try:
        msg = decode_pex_message(payload)
    except ExtensionProtocolError:
        return
    assert not set(msg.dropped) & {p.address for p in msg.added}
    assert decode_pex_message(encode_pex_message(msg)) == msg


KEYS = st.sampled_from([b"added", b"added6", b"dropped", b"dropped6", b"added.f", b"added6.f"])


@given(st.dictionaries(KEYS, st.binary(max_size=80)))
def test_fuzz_structured(d: dict[bytes, bytes]) -> None:
    try:
        msg = decode_pex_message(encode(d))
    except ExtensionProtocolError:
        assert any(len(v) % (6 if k in (b"added", b"dropped") else 18) for k, v in d.items() if b"." not in k)
        return
    assert decode_pex_message(encode_pex_message(msg)) == msg


def test_local_errors() -> None:
    with pytest.raises(LocalWireError):
        encode_pex_message(PexMessage(added=(PexPeer("not-an-ip", 1),)))
    with pytest.raises(LocalWireError):
        encode_pex_message(PexMessage(added=(PexPeer("1.2.3.4", 0),)))
    with pytest.raises(LocalWireError):
        encode_pex_message(PexMessage(added=(PexPeer("1.2.3.4", 1, 256),)))
    with pytest.raises(LocalWireError):
        encode_pex_message(PexMessage(added=(PexPeer("1.2.3.4", 1),), dropped=(("1.2.3.4", 1),)))
    with pytest.raises(LocalWireError):
        encode_pex_message(PexMessage(dropped=tuple(("1.2.3.4", p) for p in range(1, MAX_PEX_ENTRIES + 2))))


# --- tracker --------------------------------------------------------------------------------------


def peers(*ports: int, flags: int = 0) -> list[PexPeer]:
    return [PexPeer("10.0.0.1", p, flags) for p in ports]


def test_tracker_diffs_and_rate_limit() -> None:
    t = PexTracker()
    m = t.next_message("R", peers(1, 2, 3), now=0.0)
    assert m == PexMessage(added=tuple(peers(1, 2, 3)))
    assert t.next_message("R", peers(1, 2, 4), now=59.9) is None  # one message per 60 s
    m = t.next_message("R", peers(1, 2, 4), now=60.0)
    assert m == PexMessage(added=tuple(peers(4)), dropped=(("10.0.0.1", 3),))
    assert t.next_message("R", peers(1, 2, 4), now=200.0) is None  # nothing changed
    # a peer that came and went between two messages is never mentioned
    assert t.next_message("R", peers(1, 2, 4, 5), now=210.0) == PexMessage(added=tuple(peers(5)))
    assert t.advertised("R") == {("10.0.0.1", p) for p in (1, 2, 4, 5)}
    assert t.next_message("R", peers(1, 2, 4, 5), now=300.0) is None
    # another recipient has its own timeline and is not told about itself
    m = t.next_message("S", peers(1, 2, 4, 5), now=300.0, exclude=[("10.0.0.1", 2)])
    assert m == PexMessage(added=tuple(peers(1, 4, 5)))
    t.forget("R")
    assert t.advertised("R") == set()
    assert t.next_message("R", peers(1), now=301.0) == PexMessage(added=tuple(peers(1)))


def test_tracker_caps_and_carries_over() -> None:
    t = PexTracker(interval=10.0)
    m = t.next_message("R", peers(*range(1, 121)), now=0.0)
    assert m is not None and len(m.added) == 50
    m = t.next_message("R", peers(*range(1, 121)), now=10.0)
    assert m is not None and [p.port for p in m.added] == list(range(51, 101))
    m = t.next_message("R", peers(*range(101, 200)), now=20.0)
    assert m is not None
    assert [p.port for p in m.added] == list(range(101, 121)) + list(range(121, 151))
    assert len(m.dropped) == 50
    assert not {p.address for p in m.added} & set(m.dropped)
    payload = encode_pex_message(m)  # what the tracker builds always encodes
    assert decode_pex_message(payload) == m
    m = t.next_message("R", peers(*range(101, 200)), now=30.0)
    assert m is not None and len(m.dropped) == 50 and len(m.added) == 49
    assert t.advertised("R") == {("10.0.0.1", p) for p in range(101, 200)}


def test_tracker_normalizes_and_dedupes() -> None:
    t = PexTracker()
    m = t.next_message(
        "R",
        [PexPeer("2001:DB8:0:0::1", 5), PexPeer("2001:db8::1", 5, FLAG_SEED), PexPeer("1.2.3.4", 6)],
        now=0.0,
        exclude=[("1.2.3.4", 6)],
    )
    assert m == PexMessage(added=(PexPeer("2001:db8::1", 5, 0),))
