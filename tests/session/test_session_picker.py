"""Piece picker: rarest first, partial first, sequential, deadlines, priorities, end-game."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from bitswarm.session.picker import BLOCK_SIZE, PiecePicker, pick_rank

PIECE = 4 * BLOCK_SIZE


def make(num: int = 8, last: int = PIECE, seed: int = 1) -> PiecePicker:
    return PiecePicker(num, lambda i: last if i == num - 1 else PIECE, rng=random.Random(seed))


def everything(_i: int) -> bool:
    return True


def test_rarest_first() -> None:
    p = make()
    p.peer_has_all()
    for i in (0, 1, 2, 3, 5, 6, 7):
        p.peer_has(i)  # piece 4 is the rarest
    reqs = p.pick("a", everything, 4)
    assert {r.index for r in reqs} == {4}
    assert [r.begin for r in reqs] == [0, BLOCK_SIZE, 2 * BLOCK_SIZE, 3 * BLOCK_SIZE]


def test_random_tie_breaks_differ_between_pickers() -> None:
    firsts = {make(64, seed=s).pick("a", everything, 1)[0].index for s in range(20)}
    assert len(firsts) > 5


def test_partial_pieces_first_and_only_what_peer_has() -> None:
    p = make()
    p.peer_has_all()
    first = p.pick("a", lambda i: i == 3, 2)
    assert {r.index for r in first} == {3}
    nxt = p.pick("b", everything, 2)
    assert {r.index for r in nxt} == {3}  # finish the started piece before opening another
    assert {r.begin for r in first}.isdisjoint({r.begin for r in nxt})


def test_last_piece_short_block() -> None:
    p = make(num=2, last=BLOCK_SIZE + 100)
    p.peer_has_all()
    reqs = p.pick("a", lambda i: i == 1, 10)
    assert [(r.begin, r.length) for r in reqs] == [(0, BLOCK_SIZE), (BLOCK_SIZE, 100)]


def test_sequential_and_deadlines() -> None:
    p = make()
    p.peer_has_all()
    p.sequential = True
    assert [r.index for r in p.pick("a", everything, 5)] == [0, 0, 0, 0, 1]
    p.set_deadline(6, 1.0)
    p.set_deadline(5, 0.5)
    assert [r.index for r in p.pick("a", everything, 8)] == [5] * 4 + [6] * 4


def test_priority_zero_never_picked_and_completion_ignores_it() -> None:
    p = make(num=3)
    p.peer_has_all()
    p.set_priority(1, 0)
    picked = {r.index for r in p.pick("a", everything, 100)}
    assert picked == {0, 2}
    p.set_have(0)
    p.set_have(2)
    assert p.is_complete()
    assert p.missing == 1


def test_received_completes_piece_and_rejects_unexpected_blocks() -> None:
    p = make(num=1)
    p.peer_has_all()
    reqs = p.pick("a", everything, 4)
    assert p.received("a", 0, 12345) is None  # misaligned
    assert p.block_wanted(0, reqs[0].begin)
    for r in reqs[:-1]:
        assert p.received("a", r.index, r.begin) == (False, set())
    assert not p.block_wanted(0, reqs[0].begin)
    assert p.received("a", 0, reqs[0].begin) is None  # duplicate
    assert p.received("a", 0, reqs[-1].begin) == (True, set())


def test_peer_lost_frees_blocks_for_others() -> None:
    p = make(num=1)
    p.peer_has_all()
    assert len(p.pick("a", everything, 4)) == 4
    p.peer_lost("a")
    assert p.requested_from("a") == []
    assert not p.in_endgame()  # the blocks are free again, not duplicates
    assert len(p.pick("b", everything, 4)) == 4


def test_hash_failure_resets_piece() -> None:
    p = make(num=1)
    p.peer_has_all()
    for r in p.pick("a", everything, 4):
        p.received("a", r.index, r.begin)
    p.piece_failed(0)
    assert len(p.pick("b", everything, 4)) == 4


def test_endgame_duplicates_and_cancels() -> None:
    p = make(num=1)
    p.peer_has_all()
    a = p.pick("a", everything, 4)
    assert p.in_endgame()
    b = p.pick("b", everything, 4)
    assert sorted((r.index, r.begin) for r in b) == sorted((r.index, r.begin) for r in a)
    assert p.pick("b", everything, 4) == []  # never twice to the same peer
    assert p.received("a", 0, 0) == (False, {"b"})


@given(st.integers(1, 20), st.integers(1, 5 * BLOCK_SIZE), st.integers(0, 2**32), st.integers(1, 6))
def test_simulated_download_always_completes(num: int, last: int, seed: int, peers: int) -> None:
    """Random peers with random piece sets pick, lose and receive blocks; the download completes."""
    rng = random.Random(seed)
    p = PiecePicker(num, lambda i: last if i == num - 1 else PIECE, rng=rng)
    sets = [{i for i in range(num) if rng.random() < 0.6} for _ in range(peers)]
    sets[0] = set(range(num))
    for s in sets:
        p.peer_bitfield([1 if i in s else 0 for i in range(num)])
    pending: dict[int, list[tuple[int, int]]] = {k: [] for k in range(peers)}
    for _ in range(10_000):
        if p.is_complete():
            break
        k = rng.randrange(peers)
        for r in p.pick(k, sets[k].__contains__, rng.randint(1, 8)):
            assert r.index in sets[k] and not p.have[r.index]
            pending[k].append((r.index, r.begin))
        if pending[k] and rng.random() < 0.1:
            p.peer_lost(k)
            pending[k].clear()
            continue
        for index, begin in pending[k]:
            result = p.received(k, index, begin)
            if result is not None and result[0]:
                p.piece_passed(index)
        pending[k].clear()
    assert p.is_complete()


def test_pick_piece_takes_only_that_piece() -> None:
    p = make(num=8)
    p.peer_has_all()
    reqs = p.pick_piece("a", 5, 3)
    assert [(r.index, r.begin) for r in reqs] == [(5, 0), (5, BLOCK_SIZE), (5, 2 * BLOCK_SIZE)]
    assert [r.begin for r in p.pick_piece("b", 5, 10)] == [3 * BLOCK_SIZE]  # the block left
    assert p.pick_piece("b", 5, 10) == []  # all requested
    p.set_have(6)
    assert p.pick_piece("a", 6, 4) == []  # had
    p.set_priority(7, 0)
    assert p.pick_piece("a", 7, 4) == []  # not wanted


def _mask(num: int, pieces: set[int]) -> int:
    from bitswarm.storage.bitfield import Bitfield

    return Bitfield.from_indices(num, pieces).as_int()


@given(
    st.integers(1, 300),
    st.integers(0, 2**32),
    st.lists(
        st.tuples(st.sampled_from(["pick", "have", "got", "lost", "prio", "fail"]), st.integers(0, 10**6))
    ),
)
def test_pick_with_mask_matches_pick_by_callback(num: int, seed: int, ops: list[tuple[str, int]]) -> None:
    """The bitmask fast path (few or many candidates) chooses exactly what the per-piece callback
    path chooses, through verified, started, cancelled, failed and skipped pieces."""
    rng = random.Random(seed)
    a, b = make(num, seed=seed), make(num, seed=seed)
    peers = {
        name: {i for i in range(num) if rng.random() < frac}
        for name, frac in (("x", 0.02), ("y", 0.5), ("z", 1.0))
    }
    for p in (a, b):
        for pieces in peers.values():
            p.peer_bitfield([1 if i in pieces else 0 for i in range(num)])
    for op, arg in ops:
        name = "xyz"[arg % 3]
        index = arg % num
        if op == "pick":
            count = 1 + arg % 40
            got_a = a.pick(name, peers[name].__contains__, count)
            got_b = b.pick(name, peers[name].__contains__, count, peer_mask=_mask(num, peers[name]))
            assert got_a == got_b
        elif op == "have":
            a.set_have(index)
            b.set_have(index)
        elif op == "got":
            for p in (a, b):
                for idx, begin in p.requested_from(name)[:3]:
                    p.received(name, idx, begin)
        elif op == "lost":
            a.peer_lost(name)
            b.peer_lost(name)
        elif op == "prio":
            a.set_priority(index, arg % 2)
            b.set_priority(index, arg % 2)
        else:
            a.piece_failed(index)
            b.piece_failed(index)
        assert a.wants_from(peers[name].__contains__) == b.wants_mask(_mask(num, peers[name]))


def test_mask_path_never_touches_the_callback() -> None:
    p = make(64)
    p.peer_bitfield([1 if i in (5, 9) else 0 for i in range(64)])

    def boom(_i: int) -> bool:
        raise AssertionError("the callback was used")

    got = p.pick("a", boom, 8, peer_mask=_mask(64, {5, 9}))
    assert {r.index for r in got} == {5, 9}
    assert p.pick("a", boom, 8, peer_mask=_mask(64, {5, 9})) == []  # both started, nothing fresh
    assert not p.wants_mask(_mask(64, set())) and p.wants_mask(_mask(64, {5}))


# -- priorities 1-7 (libtorrent's weighting: pick_rank) -----------------------------------------


def picked_order(p: PiecePicker) -> list[int]:
    """Indices in the order rarest-first opens them, one piece per pick."""
    out: list[int] = []
    while True:
        reqs = p.pick(f"peer{len(out)}", everything, p.num_blocks(0))
        if not reqs:
            return out
        out.append(reqs[0].index)
        for r in reqs:
            p.received(f"peer{len(out) - 1}", r.index, r.begin)
        p.piece_passed(reqs[0].index)


def test_single_source_priorities_strictly_ordered() -> None:
    """One seeder (every piece equally available): higher priority pieces are all picked first."""
    p = make(num=14)
    p.peer_has_all()
    prios = [1, 7, 2, 4, 3, 5, 6, 1, 7, 2, 4, 3, 5, 6]
    for i, pr in enumerate(prios):
        p.set_priority(i, pr)
    order = picked_order(p)
    assert [prios[i] for i in order] == sorted(prios, reverse=True)


def test_priority_weighs_against_rarity() -> None:
    """libtorrent's proportional share: 4–6 count half the peers, 1–3 break ties within a level,
    7 ignores rarity."""
    p = make(num=6)
    avail = [1, 2, 4, 9, 3, 9]
    prios = [1, 3, 4, 7, 1, 2]
    for i, (a, pr) in enumerate(zip(avail, prios, strict=True)):
        for _ in range(a):
            p.peer_has(i)
        p.set_priority(i, pr)
    # ranks: 7 → 0; (4, avail 4) → 2*4+3 = 11; (1, avail 1) → 7; (3, avail 2) → 9;
    # (1, avail 3) → 15; (2, avail 9) → 38
    assert picked_order(p) == [3, 0, 1, 2, 4, 5]


def test_pick_rank_levels() -> None:
    assert pick_rank(100, 7) == 0 < pick_rank(1, 6) < pick_rank(1, 4) < pick_rank(1, 3) < pick_rank(1, 1)
    assert pick_rank(1, 3) < pick_rank(1, 2) < pick_rank(1, 1) < pick_rank(2, 3)
    assert pick_rank(4, 4) == pick_rank(2, 1)  # priority 4 counts half the peers


def test_priorities_through_the_mask_path() -> None:
    """The few-candidates path (peer mask) follows the same weighted order."""
    p = make(num=10)
    p.peer_has_all()
    for i in range(10):
        p.set_priority(i, 1 if i < 8 else 6)
    mask = ((1 << 10) - 1) << 6  # all ten pieces, BEP 3 layout in 16 bits
    first = p.pick("a", everything, 4, peer_mask=mask)  # a whole piece each
    second = p.pick("b", everything, 4, peer_mask=mask)
    assert first[0].index in (8, 9) and second[0].index in (8, 9) and first[0].index != second[0].index


def test_sequential_highest_priority_level_first() -> None:
    p = make(num=6)
    p.peer_has_all()
    p.sequential = True
    p.set_priority(4, 5)
    p.set_priority(2, 5)
    p.set_priority(5, 2)
    p.set_priority(0, 0)
    assert [r.index for r in p.pick("a", everything, 6 * 4)][::4] == [2, 4, 5, 1, 3]
    assert p.weighted
    for i in (2, 4, 5):
        p.set_priority(i, 1)
    assert not p.weighted
