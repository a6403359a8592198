"""Routing table: splitting around our id, node states, eviction, replacement cache, IP limits."""

from __future__ import annotations

import random

from bitswarm.dht.routing import BAD, GOOD, QUESTIONABLE, RoutingTable

OWN = bytes(20)  # all zeros: bucket i holds ids whose first set bit is bit i


def id_with_prefix_len(cpl: int, rng: random.Random) -> bytes:
    """A random id sharing exactly ``cpl`` leading bits with OWN (zeros)."""
    value = (1 << (159 - cpl)) | rng.getrandbits(159 - cpl)
    return value.to_bytes(20, "big")


def addr(i: int) -> tuple[str, int]:
    return f"{1 + i // 250}.{i % 250}.{(i * 7) % 250}.9", 6881


def test_far_bucket_does_not_split_near_bucket_does() -> None:
    rng = random.Random(1)
    t = RoutingTable(OWN)
    # 20 nodes in the far half (cpl 0): the first bucket splits once, then the far half is capped at k.
    far = [id_with_prefix_len(0, rng) for _ in range(20)]
    results = [t.heard(nid, addr(i), 0.0, responded=True) for i, nid in enumerate(far)]
    assert results.count("added") == 8 and results.count("replacement") == 12
    assert len(t.buckets) == 2 and len(t.buckets[0].entries) == 8
    # nodes close to us keep splitting the last bucket
    for i in range(40):
        cpl = 1 + i // 8
        t.heard(id_with_prefix_len(cpl, rng), addr(100 + i), 0.0, responded=True)
    assert len(t.buckets) >= 6
    for idx, b in enumerate(t.buckets[:-1]):
        assert len(b.entries) <= 8
        for e in b.entries:
            assert t.bucket_index(e.id_int) == idx
            assert 160 - (e.id_int ^ t.own_int).bit_length() == idx


def test_only_responders_enter_main_buckets() -> None:
    rng = random.Random(2)
    t = RoutingTable(OWN)
    nid = id_with_prefix_len(3, rng)
    assert t.heard(nid, addr(1), 0.0, responded=False) == "replacement"
    assert len(t) == 0 and not t.in_main(nid)
    assert nid in [e.id for e in t.unconfirmed_candidates()]
    # it answers a ping: now it moves in
    assert t.heard(nid, addr(1), 1.0, responded=True) == "added"
    assert t.in_main(nid) and len(t) == 1


def test_node_states_follow_the_15_minute_rule() -> None:
    t = RoutingTable(OWN)
    nid = id_with_prefix_len(0, random.Random(3))
    t.heard(nid, addr(1), 0.0, responded=True)
    e = t.get(nid)
    assert e is not None
    assert t.state(e, 899.0) == GOOD
    assert t.state(e, 901.0) == QUESTIONABLE
    t.heard(nid, addr(1), 1000.0, responded=False)  # it queried us: good again (it answered before)
    assert t.state(e, 1001.0) == GOOD
    t.failed(nid, addr(1), 1002.0)
    assert t.state(e, 1003.0) == GOOD
    t.failed(nid, addr(1), 1004.0)
    assert t.state(e, 1005.0) == BAD
    t.heard(nid, addr(1), 1006.0, responded=True)  # an answer resets the failure count
    assert t.state(e, 1007.0) == GOOD


def test_eviction_pings_questionable_then_replaces_failed_nodes() -> None:
    rng = random.Random(4)
    t = RoutingTable(OWN)
    # fill the (unsplittable after one split) far bucket
    t.heard(id_with_prefix_len(5, rng), addr(99), 0.0, responded=True)  # forces split depth
    old = [id_with_prefix_len(0, rng) for _ in range(8)]
    for i, nid in enumerate(old):
        t.heard(nid, addr(i), 0.0, responded=True)
    assert all(t.in_main(n) for n in old)
    newcomer = id_with_prefix_len(0, rng)
    # all good: the newcomer waits in the replacement cache and nobody needs a ping
    assert t.heard(newcomer, addr(50), 10.0, responded=True) == "replacement"
    assert t.questionable_in_bucket(newcomer, 10.0) == []
    # 20 minutes later the old ones are questionable: ping them (once, not again right away)
    to_ping = t.questionable_in_bucket(newcomer, 1200.0)
    assert sorted(e.id for e in to_ping) == sorted(old)
    assert t.questionable_in_bucket(newcomer, 1201.0) == []
    # seven answer, one does not (twice): it turns bad and the confirmed newcomer takes its slot
    for i, nid in enumerate(old[1:], 1):
        t.heard(nid, addr(i), 1202.0, responded=True)
    t.failed(old[0], addr(0), 1203.0)
    assert t.in_main(old[0])
    t.failed(old[0], addr(0), 1204.0)
    assert not t.in_main(old[0]) and t.get(old[0]) is None
    assert t.in_main(newcomer)


def test_bad_node_is_replaced_by_a_new_responder() -> None:
    rng = random.Random(5)
    t = RoutingTable(OWN)
    t.heard(id_with_prefix_len(5, rng), addr(99), 0.0, responded=True)
    old = [id_with_prefix_len(0, rng) for _ in range(8)]
    for i, nid in enumerate(old):
        t.heard(nid, addr(i), 0.0, responded=True)
    t.failed(old[3], addr(3), 1.0)
    t.failed(old[3], addr(3), 2.0)  # bad, no replacement available: stays until someone better shows up
    assert t.in_main(old[3])
    newcomer = id_with_prefix_len(0, rng)
    assert t.heard(newcomer, addr(60), 3.0, responded=True) == "added"
    assert t.in_main(newcomer) and not t.in_main(old[3])


def test_replacement_cache_is_bounded() -> None:
    rng = random.Random(6)
    t = RoutingTable(OWN)
    t.heard(id_with_prefix_len(5, rng), addr(999), 0.0, responded=True)
    for i in range(40):
        t.heard(id_with_prefix_len(0, rng), addr(i), 0.0, responded=i < 8)
    assert len(t.buckets[0].entries) == 8
    assert len(t.buckets[0].replacements) == 8


def test_ip_and_subnet_limits_per_bucket() -> None:
    rng = random.Random(7)
    t = RoutingTable(OWN)
    a = id_with_prefix_len(0, rng)
    b = id_with_prefix_len(0, rng)
    c = id_with_prefix_len(0, rng)
    d = id_with_prefix_len(0, rng)
    assert t.heard(a, ("8.8.8.8", 1000), 0.0, responded=True) == "added"
    assert t.heard(b, ("8.8.8.8", 1001), 0.0, responded=True) == "rejected"  # same IP
    assert t.heard(c, ("8.8.8.77", 1000), 0.0, responded=True) == "rejected"  # same /24
    assert t.heard(d, ("8.8.9.1", 1000), 0.0, responded=True) == "added"
    # the same address with another id is a conflict while the first one is alive
    e = id_with_prefix_len(0, rng)
    assert t.heard(e, ("8.8.8.8", 1000), 0.0, responded=True) == "conflict"
    # id moving to another address is ignored (possible spoof)
    assert t.heard(a, ("9.9.9.9", 1), 0.0, responded=True) == "conflict"
    # IPv6: /64
    t6 = RoutingTable(OWN)
    assert t6.heard(a, ("2001:db8:0:1::1", 1), 0.0, responded=True) == "added"
    assert t6.heard(b, ("2001:db8:0:1::2", 1), 0.0, responded=True) == "rejected"
    assert t6.heard(c, ("2001:db8:0:2::1", 1), 0.0, responded=True) == "added"
    # local addresses are exempt (LAN mode)
    lan = RoutingTable(OWN)
    for i in range(5):
        assert lan.heard(id_with_prefix_len(0, rng), ("127.0.0.1", 2000 + i), 0.0, responded=True) == "added"
    # and the limits can be switched off
    free = RoutingTable(OWN, restrict_ips=False)
    assert free.heard(a, ("8.8.8.8", 1), 0.0, responded=True) == "added"
    assert free.heard(b, ("8.8.8.8", 2), 0.0, responded=True) == "added"


def test_closest_matches_brute_force() -> None:
    rng = random.Random(8)
    own = rng.randbytes(20)
    t = RoutingTable(own)
    for i in range(400):
        t.heard(rng.randbytes(20), addr(i), 0.0, responded=True)
    entries = list(t.entries())
    assert 40 <= len(entries) < 400
    for _ in range(20):
        target = rng.randbytes(20)
        tv = int.from_bytes(target, "big")
        want = sorted(entries, key=lambda e: e.id_int ^ tv)[:8]
        assert t.closest(target, 8, 0.0) == want


def test_random_id_in_bucket_and_stale_refresh() -> None:
    rng = random.Random(9)
    own = rng.randbytes(20)
    t = RoutingTable(own, now=0.0)
    for i in range(300):
        t.heard(rng.randbytes(20), addr(i), 0.0, responded=True)
    for idx in range(len(t.buckets)):
        for _ in range(5):
            rid = t.random_id_in_bucket(idx, rng)
            assert t.bucket_index(int.from_bytes(rid, "big")) == idx
    assert t.stale_buckets(100.0) == []
    assert t.stale_buckets(901.0) == list(range(len(t.buckets)))
    t.touch_bucket(0, 901.0)
    assert 0 not in t.stale_buckets(902.0)
