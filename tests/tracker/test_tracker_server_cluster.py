"""ClusterStore (sans-I/O): the deltas one tracker instance publishes and another merges, with an
injected clock."""

from __future__ import annotations

from bitswarm.tracker.server.cluster import ClusterStore
from bitswarm.tracker.server.state import EVENT_COMPLETED, EVENT_NONE, EVENT_STARTED, EVENT_STOPPED, split

IH = bytes(range(20))
P1 = b"\x0a\0\0\1\x1a\xe1"
P2 = b"\x0a\0\0\2\x1a\xe1"
P3 = b"\x0a\0\0\3\x1a\xe1"
V6 = b"\x20\x01" + b"\0" * 13 + b"\1\x1a\xe1"
TTL = 100


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pair(clock: Clock, **kw: float) -> tuple[ClusterStore, ClusterStore]:
    return (
        ClusterStore(TTL, sync_every=1.0, clock=clock, **kw),
        ClusterStore(TTL, sync_every=1.0, clock=clock, **kw),
    )


def ship(src: ClusterStore, dst: ClusterStore, age: int = 0) -> None:
    peers, done = src.take_deltas()
    dst.merge(peers, age)
    dst.merge_completed(done)


def lives_exactly(store: ClusterStore, clock: Clock, seconds: float, count: int) -> None:
    """After ``seconds`` more the store still holds ``count`` peers of IH; one second later none."""
    clock.now += seconds
    store.sweep(10_000)
    assert store.scrape(IH) == (0, 0, count)
    clock.now += 1
    store.sweep(10_000)
    assert store.scrape(IH) == (0, 0, 0)


def peers_of(store: ClusterStore, addr: bytes, seeder: bool = False) -> set[bytes]:
    _, _, blob = store.announce(IH, addr, b"x" * 20, seeder, EVENT_NONE, 50)
    return set(split(blob, len(addr)))


def test_a_peer_announced_to_one_instance_is_answered_by_the_other() -> None:
    clock = Clock()
    a, b = pair(clock)
    a.announce(IH, P1, b"1" * 20, True, EVENT_STARTED, 50)
    a.announce(IH, V6, b"6" * 20, False, EVENT_STARTED, 50)
    assert b.scrape(IH) == (0, 0, 0)
    ship(a, b)
    assert peers_of(b, P2) == {P1}
    assert b.scrape(IH) == (1, 0, 2)  # A's seeder and IPv6 leecher, B's own leecher P2
    assert b.peer_ids(IH, P1, 6) == [(P1, b"1" * 20)]
    ship(b, a)
    assert a.scrape(IH) == (1, 0, 2)
    # records went one way each: nothing echoes back
    ship(a, b)
    assert b.scrape(IH) == (1, 0, 2)


def test_stop_and_moves_propagate_but_spare_a_peer_that_also_announces_here() -> None:
    clock = Clock()
    a, b = pair(clock)
    a.announce(IH, P1, b"1" * 20, False, EVENT_STARTED, 50)
    a.announce(IH, P2, b"2" * 20, False, EVENT_STARTED, 50)
    ship(a, b)
    assert b.scrape(IH) == (0, 0, 2)
    a.announce(IH, P1, b"1" * 20, True, EVENT_COMPLETED, 50)  # a move to seeder, counted completed
    a.announce(IH, P2, b"2" * 20, False, EVENT_STOPPED, 50)
    b.announce(IH, P2, b"2" * 20, False, EVENT_NONE, 50)  # P2 now announces to B as well
    ship(a, b)
    assert b.scrape(IH) == (1, 1, 1)  # P1 seeder, completed 1, P2 kept (B's own)
    b.announce(IH, P3, b"3" * 20, False, EVENT_STARTED, 50)
    ship(b, a)
    assert a.scrape(IH) == (1, 1, 2)  # B's P2 and P3 come back to A; completed not doubled


def test_remote_copies_expire_later_than_own_peers_and_own_expiry_propagates() -> None:
    clock = Clock()
    a, b = pair(clock, refresh_every=40.0)
    assert b.remote_ttl == TTL + 40 + 2
    a.announce(IH, P1, b"1" * 20, False, EVENT_STARTED, 50)
    ship(a, b)
    clock.now += TTL + 1
    a.sweep(10_000)
    b.sweep(10_000)
    assert a.scrape(IH) == (0, 0, 0)
    assert b.scrape(IH) == (0, 0, 1)  # a copy outlives the owner's entry by up to refresh_every
    ship(a, b)  # A publishes the expiry
    assert b.scrape(IH) == (0, 0, 0)
    # an owner that vanished without a word: the copy expires after remote_ttl
    a.announce(IH, P2, b"2" * 20, False, EVENT_STARTED, 50)
    ship(a, b)
    lives_exactly(b, clock, b.remote_ttl, 1)


def test_refresh_keeps_the_copies_of_a_peer_that_keeps_announcing_alive() -> None:
    """A plain re-announce is not in the journal; the rolling refresh republishes own live peers
    (never copies) once per refresh_every, so the copy elsewhere lives as long as the peer."""
    clock = Clock()
    a, b = pair(clock, refresh_every=4.0)
    a.announce(IH, P1, b"1" * 20, False, EVENT_STARTED, 50)
    ship(a, b)
    for _ in range(3 * TTL):  # one sync a second for 3 TTLs, P1 re-announcing to A every 10 s
        clock.now += 1
        if int(clock.now) % 10 == 0:
            a.announce(IH, P1, b"1" * 20, False, EVENT_NONE, 50)
        ship(a, b)
        peers, _ = b.take_deltas()
        assert P1 not in peers  # B never republishes a copy
        b.sweep(10_000)
        assert b.scrape(IH) == (0, 0, 1)


def test_published_ages_and_load_age_shorten_the_copy_life() -> None:
    clock = Clock()
    a, b = pair(clock, refresh_every=4.0)
    a.announce(IH, P1, b"1" * 20, False, EVENT_STARTED, 50)
    clock.now += 30
    peers, _ = a.take_deltas()  # the journal entry (age 0) and the refresh record (age 30)
    c = ClusterStore(TTL, sync_every=1.0, refresh_every=4.0, clock=clock)
    c.merge(peers[: len(peers) // 2], b.remote_ttl + 1)  # the journal record, far too old: skipped
    assert c.scrape(IH) == (0, 0, 0)
    b.merge(peers[len(peers) // 2 :], 60)  # the refresh record, read 60 s after it was written
    lives_exactly(b, clock, b.remote_ttl - 90, 1)


def test_a_copy_announced_here_becomes_own_and_is_republished() -> None:
    clock = Clock()
    a, b = pair(clock, refresh_every=1.0)
    a.announce(IH, P1, b"1" * 20, False, EVENT_STARTED, 50)
    ship(a, b)
    peers, _ = b.take_deltas()
    assert P1 not in peers
    b.announce(IH, P1, b"1" * 20, False, EVENT_NONE, 50)
    peers, _ = b.take_deltas()
    assert P1 in peers


def test_completed_counts_add_up_across_instances() -> None:
    clock = Clock()
    a, b = pair(clock)
    b.load_completed({IH: 5})
    a.load_completed({IH: 5})
    a.announce(IH, P1, b"1" * 20, True, EVENT_COMPLETED, 50)
    b.announce(IH, P2, b"2" * 20, True, EVENT_COMPLETED, 50)
    ship(a, b)
    ship(b, a)
    assert a.scrape(IH)[1] == b.scrape(IH)[1] == 7
    ship(a, b)
    ship(b, a)
    assert a.scrape(IH)[1] == b.scrape(IH)[1] == 7


def test_malformed_blob_tail_is_ignored() -> None:
    clock = Clock()
    a, b = pair(clock)
    a.announce(IH, P1, b"1" * 20, False, EVENT_STARTED, 50)
    peers, _ = a.take_deltas()
    assert b.merge(peers + b"\x00\x01\x02") >= 1
    assert b.scrape(IH) == (0, 0, 1)


def test_the_refresh_pass_republishes_each_peer_once_per_refresh_period() -> None:
    """Few swarms (here one of 10 peers) are not republished at every sync: a pass over all own
    peers takes about refresh_every, whatever the swarm count."""
    clock = Clock()
    a = ClusterStore(TTL, sync_every=1.0, refresh_every=10.0, clock=clock)
    other = bytes(20)
    for n in range(10):
        a.announce(IH, bytes((10, 0, 1, n, 0x1A, 0xE1)), b"p" * 20, False, EVENT_STARTED, 0)
    a.announce(other, P1, b"1" * 20, False, EVENT_STARTED, 0)
    a.take_deltas()  # the joins (and the first share)
    sent = 0
    for _ in range(40):
        clock.now += 1
        peers, _ = a.take_deltas()
        sent += len(peers) // 51  # IPv4 records of 51 bytes
    assert 30 <= sent <= 60  # 4 passes of 11 peers, not 40 × 11
