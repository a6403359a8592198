"""Unit tests of the tracker server's swarm store and fast query parser (no sockets)."""

from __future__ import annotations

import os
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.tracker._common import TrackerProtocolError
from bitswarm.tracker.http_codec import parse_announce_query
from bitswarm.tracker.server.query import parse_announce
from bitswarm.tracker.server.state import BUCKET_MAX, MemoryStore, PeerRecord, split

IH = bytes(range(20))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def v4(i: int, port: int = 6881) -> bytes:
    return bytes([10, 0, i >> 8, i & 255]) + port.to_bytes(2, "big")


def pid(i: int) -> bytes:
    return b"-BS0001-" + i.to_bytes(12, "big")


def test_seeders_leechers_and_no_self_in_reply() -> None:
    store = MemoryStore(ttl=100)
    assert store.announce(IH, v4(1), pid(1), False, 2, 50) == (0, 1, b"")
    s, lc, peers = store.announce(IH, v4(2), pid(2), True, 2, 50)
    assert (s, lc, peers) == (1, 1, v4(1))
    s, lc, peers = store.announce(IH, v4(1), pid(1), False, 0, 50)
    assert (s, lc, peers) == (1, 1, v4(2))


def test_seeders_get_no_seeders() -> None:
    store = MemoryStore(ttl=100)
    for i in range(5):
        store.announce(IH, v4(i), pid(i), True, 2, 50)
    store.announce(IH, v4(9), pid(9), False, 2, 50)
    _, _, peers = store.announce(IH, v4(0), pid(0), True, 0, 50)
    assert peers == v4(9)


def test_numwant_and_random_window_in_big_swarm() -> None:
    store = MemoryStore(ttl=100)
    size = 2 * BUCKET_MAX + 500  # several buckets
    for i in range(size):
        store.announce(IH, v4(i, 6881 + i % 7), pid(i), i % 5 == 0, 2, 0)
    assert len(store.swarms[IH].tables[0]) > 1
    everyone = {v4(i, 6881 + i % 7) for i in range(size)}
    seeders = {v4(i, 6881 + i % 7) for i in range(0, size, 5)}
    seen: set[bytes] = set()
    for _ in range(40):
        _, lc, blob = store.announce(IH, v4(1, 6882), pid(1), False, 0, 50)
        peers = split(blob, 6)
        assert lc == size - len(seeders)
        assert len(peers) == 50 and len(set(peers)) == 50 and v4(1, 6882) not in peers
        assert set(peers) <= everyone
        seen |= set(peers)
    assert len(seen) > 400  # windows start at random offsets, seeders included
    _, _, blob = store.announce(IH, v4(0, 6881), pid(0), True, 0, 300)
    peers = split(blob, 6)
    assert len(set(peers)) == 300 and not set(peers) & seeders  # a seeder gets leechers only
    # every record is still findable after the splits
    assert dict(store.peer_ids(IH, b"".join(sorted(everyone)), 6)) == {
        v4(i, 6881 + i % 7): pid(i) for i in range(size)
    }


def test_stopped_removes_and_completed_counts_once() -> None:
    store = MemoryStore(ttl=100)
    store.announce(IH, v4(1), pid(1), False, 2, 50)
    store.announce(IH, v4(1), pid(1), True, 1, 50)
    store.announce(IH, v4(1), pid(1), True, 1, 50)  # repeated "completed": not a new download
    assert store.scrape(IH) == (1, 1, 0)
    assert store.announce(IH, v4(1), pid(1), True, 3, 50) == (0, 0, b"")
    assert store.scrape(IH) == (0, 1, 0)
    assert store.take_dirty() == {IH: 1}


def test_ipv4_and_ipv6_are_separate_families() -> None:
    store = MemoryStore(ttl=100)
    six = b"\x20\x01" + bytes(13) + b"\x01" + (6881).to_bytes(2, "big")
    store.announce(IH, six, pid(6), False, 2, 50)
    s, lc, peers = store.announce(IH, v4(1), pid(1), False, 2, 50)
    assert (s, lc, peers) == (0, 2, b"")
    _, _, peers = store.announce(IH, six, pid(6), False, 0, 50)
    assert peers == b""
    six2 = six[:-3] + b"\x02" + six[-2:]
    _, _, peers = store.announce(IH, six2, pid(7), False, 2, 50)
    assert peers == six
    assert store.peer_ids(IH, peers, 18) == [(six, pid(6))]


def test_expiry_by_bounded_sweep() -> None:
    clock = Clock()
    store = MemoryStore(ttl=60, clock=clock)
    for i in range(300):
        store.announce(bytes([i % 3]) * 20, v4(i), pid(i), i % 2 == 0, 2, 0)
    clock.now += 30
    store.announce(b"\0" * 20, v4(0), pid(0), True, 0, 0)  # refreshes one peer
    clock.now += 40
    removed = 0
    for _ in range(10):  # bounded budget: several calls finish the pass
        removed += store.sweep(budget=50)
    assert removed == 299
    assert store.counts() == (1, 1, 0)


def test_snapshot_round_trip_keeps_age() -> None:
    clock = Clock()
    store = MemoryStore(ttl=60, clock=clock)
    store.announce(IH, v4(1), pid(1), True, 2, 0)
    clock.now += 10
    records = list(store.peers())
    assert records == [PeerRecord(IH, v4(1), pid(1), True, 10)]
    other = MemoryStore(ttl=60, clock=clock)
    assert other.restore(records) == 1
    assert other.scrape(IH) == (1, 0, 0)
    clock.now += 51
    other.sweep(1000)
    assert other.counts() == (0, 0, 0)


def test_peer_ids_for_dictionary_replies() -> None:
    store = MemoryStore(ttl=60)
    store.announce(IH, v4(1), pid(1), True, 2, 0)
    assert store.peer_ids(IH, v4(1) + v4(2), 6) == [(v4(1), pid(1))]


# ------------------------------------------------------------------------------ fast query parser


def _query(info_hash: bytes, peer_id: bytes, **extra: str) -> bytes:
    parts = [
        f"info_hash={quote_from_bytes(info_hash, safe='')}",
        f"peer_id={quote_from_bytes(peer_id, safe='')}",
    ]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return "&".join(parts).encode()


def _codec(query: bytes) -> tuple[object, ...] | str:
    try:
        r = parse_announce_query(query)
    except TrackerProtocolError:
        return "error"
    return (
        *(r.info_hash, r.peer_id, r.port, r.left, int(r.event), r.compact, r.no_peer_id, r.numwant, r.ip),
        *(r.ipv4, r.ipv6),
    )


def _fast(query: bytes) -> tuple[object, ...] | str:
    try:
        return tuple(parse_announce(query))
    except TrackerProtocolError:
        return "error"


def test_fast_parser_common_query() -> None:
    q = _query(IH, pid(1), port="6881", uploaded="0", downloaded="0", left="5", compact="1", event="started")
    assert _fast(q) == (IH, pid(1), 6881, 5, 2, True, False, None, None, None, None) == _codec(q)
    q6 = q + b"&ipv6=2001%3Adb8%3A%3A7&ipv4=198.18.0.9:7000"  # BEP 7, as clients encode it
    assert _fast(q6)[-2:] == ("198.18.0.9:7000", "2001:db8::7") and _fast(q6) == _codec(q6)


_param = st.sampled_from(
    [
        *("port", "uploaded", "downloaded", "left", "compact", "numwant", "event", "key", "ip", "no_peer_id"),
        *("x", "ipv4", "ipv6"),  # BEP 7
    ]
)
_value = st.one_of(
    st.integers(-5, 2**64).map(str),
    st.sampled_from(["started", "stopped", "completed", "empty", "", "bogus", "1", "0", "%41", "1.2.3.4"]),
    st.sampled_from(["2001%3Adb8%3A%3A1", "%FF", "%", "%zz", "[::1]:5", "a" * 257, "%41" * 100]),
    st.text(max_size=12),
)


@given(
    ih=st.one_of(st.binary(min_size=20, max_size=20), st.binary(max_size=25)),
    peer=st.one_of(st.binary(min_size=20, max_size=20), st.binary(max_size=25)),
    params=st.lists(st.tuples(_param, _value), max_size=10),
    junk=st.sampled_from(["", "&", "&&", "&noequals", "?"]),
)
def test_fast_parser_agrees_with_codec(
    ih: bytes, peer: bytes, params: list[tuple[str, str]], junk: str
) -> None:
    parts = [f"info_hash={quote_from_bytes(ih, safe='')}", f"peer_id={quote_from_bytes(peer, safe='')}"]
    parts += [f"{k}={quote_from_bytes(v.encode(), safe='%') if v.isascii() else v}" for k, v in params]
    query = ("&".join(parts) + junk).encode("utf-8")
    assert _fast(query) == _codec(query)


@given(st.binary(max_size=300))
def test_fast_parser_garbage_raises_only_protocol_error(data: bytes) -> None:
    assert _fast(data) == _codec(data)


def test_binary_key_is_ignored_like_aria2c_sends_it() -> None:
    q = _query(IH, pid(1), port="1", uploaded="0", downloaded="0", left="0", key="%91%7D%90%03")
    assert parse_announce(q).port == 1


def test_fast_parser_rejects_over_long_query() -> None:
    q = _query(IH, pid(1), port="1", uploaded="0", downloaded="0", left="0", pad="x" * 9000)
    with pytest.raises(TrackerProtocolError):
        parse_announce(q)


def test_fast_parser_random_hashes_cache_bounded() -> None:
    for _ in range(100):
        h = os.urandom(20)
        q = _query(h, pid(1), port="1", uploaded="0", downloaded="0", left="0")
        assert parse_announce(q).info_hash == h
