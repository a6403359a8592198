"""Choker: tit-for-tat slots, optimistic rotation, seed mode, snubbing."""

from __future__ import annotations

import random

from bitswarm.session.choker import Choker, PeerRates


def peers(n: int, **kw: object) -> list[PeerRates]:
    return [
        PeerRates(key=i, interested=True, download_rate=float(i), upload_rate=float(n - i), **kw)  # type: ignore[arg-type]
        for i in range(n)
    ]


def test_leecher_unchokes_best_downloaders_plus_one_optimistic() -> None:
    c = Choker(4, rng=random.Random(3))
    chosen = c.rechoke(peers(10), seeding=False)
    assert len(chosen) == 4
    assert {9, 8, 7} <= chosen
    assert c.optimistic in chosen and c.optimistic not in {9, 8, 7}


def test_seed_goes_round_robin_least_served_first() -> None:
    ps = [PeerRates(key=i, interested=True, download_rate=0.0, upload_rate=float(i), uploaded=1000 * (10 - i))
          for i in range(10)]  # fmt: skip
    chosen = Choker(4, rng=random.Random(1)).rechoke(ps, seeding=True)
    assert {9, 8, 7} <= chosen  # sent the least so far, whatever their rate


def test_a_seed_has_its_own_slot_count() -> None:
    """``seed_slots``: a seed unchokes that many (no tit-for-tat to keep), a leecher ``slots``."""
    ps = peers(20)
    c = Choker(4, seed_slots=16, rng=random.Random(3))
    assert len(c.rechoke(ps, seeding=True)) == 16
    assert len(c.rechoke(ps, seeding=False)) == 4
    assert Choker(4).seed_slots == 4  # unset: the same as a leecher


def test_not_interested_never_unchoked_and_snubbed_skipped() -> None:
    ps = peers(6)
    ps[5] = PeerRates(5, interested=False, download_rate=100.0, upload_rate=0.0)
    ps[4] = PeerRates(4, interested=True, download_rate=50.0, upload_rate=0.0, snubbed=True)
    c = Choker(3, rng=random.Random(0))
    for _ in range(6):
        chosen = c.rechoke(ps, seeding=False)
        assert 5 not in chosen
        assert {3, 2} <= chosen


def test_optimistic_rotates_every_third_round() -> None:
    c = Choker(2, rng=random.Random(7))
    seen = []
    for _ in range(30):
        c.rechoke(peers(20), seeding=False)
        seen.append(c.optimistic)
    assert all(seen[i] == seen[i - i % 3] for i in range(30))
    assert len(set(seen)) > 3


def test_few_peers_all_unchoked() -> None:
    assert Choker(4).rechoke(peers(2), seeding=False) == {0, 1}
