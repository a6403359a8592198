"""BEP 16 super-seeding: the offer logic (unit), then a bitswarm super-seed against scripted peers
(no bitfield, pieces one or two at a time, the next once one has spread) and bitswarm leechers."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.session.test_session_messages import RawPeer, config, make_torrent

from bitswarm.metainfo import Torrent
from bitswarm.session import Session
from bitswarm.session.superseed import SuperSeeder
from bitswarm.wire import (
    Bitfield,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Reserved,
)

pytestmark = pytest.mark.timeout(60)


def has_of(s: set[int]) -> Callable[[int], bool]:
    return s.__contains__


def test_offers_least_offered_then_rarest_and_never_what_the_peer_has() -> None:
    avail = [3, 0, 2, 0, 1, 5]
    ss = SuperSeeder(6, avail.__getitem__, rng=random.Random(1), offers_per_peer=1)
    a_has: set[int] = set()
    first = ss.peer_joined("a", has_of(a_has))
    assert len(first) == 1 and first[0] in (1, 3)  # the rarest
    b_has = {1, 3}
    second = ss.peer_joined("b", has_of(b_has))
    assert second == [4]  # not what b has; least offered, then rarest
    c = ss.peer_joined("c", has_of({0, 1, 2, 3, 4, 5}))
    assert c == []  # nothing to offer a peer that has everything


def test_next_piece_once_the_offer_spread() -> None:
    ss = SuperSeeder(10, lambda i: 0, rng=random.Random(2), offers_per_peer=1, strict=True)
    a_has: set[int] = set()
    b_has: set[int] = set()
    (pa,) = ss.peer_joined("a", has_of(a_has))
    (pb,) = ss.peer_joined("b", has_of(b_has))
    assert pa != pb
    a_has.add(pa)
    assert ss.on_have("a", pa) == {}  # strict: a's own have is not a spread
    b_has.add(pa)
    nxt = ss.on_have("b", pa)  # b got a's piece (from a): a gets the next one
    assert list(nxt) == ["a"] and nxt["a"][0] not in (pa, pb)
    ss.peer_left("a")
    assert "a" not in ss.offered


def test_non_strict_advances_on_the_peers_own_have() -> None:
    ss = SuperSeeder(4, lambda i: 0, rng=random.Random(3), offers_per_peer=1)
    got: set[int] = set()
    (p,) = ss.peer_joined("solo", has_of(got))
    seen = [p]
    for _ in range(3):
        got.add(seen[-1])
        nxt = ss.on_have("solo", seen[-1])
        seen.append(nxt["solo"][0])
    assert sorted(seen) == [0, 1, 2, 3]
    got.add(seen[-1])
    assert ss.on_have("solo", seen[-1]) == {}


async def connect(t: Torrent, port: int) -> RawPeer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    peer = RawPeer(t, reader, writer)
    peer.send(Handshake(t.swarm_hash, b"-XX0000-" + os.urandom(12), Reserved.make(fast=True)))
    while not isinstance(await peer.next(), Handshake):
        pass
    return peer


async def offers(peer: RawPeer, n: int) -> list[int]:
    """The next ``n`` pieces the seed announces; fails on a bitfield or have-all."""
    got: list[int] = []
    while len(got) < n:
        ev = await peer.next(timeout=10)
        assert not isinstance(ev, Bitfield | HaveAll), ev
        if isinstance(ev, Have):
            got.append(ev.index)
    return got


async def test_super_seed_withholds_the_bitfield_and_offers_pieces_one_by_one(tmp_path: Path) -> None:
    src, t = make_torrent(tmp_path / "seed", 16 * 16384, 16384)
    async with Session(config(super_seed=True)) as seed:
        h = await seed.add(t, src.parent)
        assert h.status().state == "seeding"
        a = await connect(t, seed.port)
        b = await connect(t, seed.port)
        try:
            assert isinstance(await a.next(), HaveNone)
            a_offers = await offers(a, 2)
            assert isinstance(await b.next(), HaveNone)
            b_offers = await offers(b, 2)
            assert not set(a_offers) & set(b_offers)  # a piece is offered to one peer first
            # b announces one of a's pieces (it got it from a): a's offer spread, a gets a new one
            b.send(Have(a_offers[0]))
            (fresh,) = await offers(a, 1)
            assert fresh not in a_offers + b_offers
            # a announces its other offered piece itself (non-strict): the next one for a
            a.send(Have(a_offers[1]))
            (fresh2,) = await offers(a, 1)
            assert fresh2 not in (*a_offers, fresh)
        finally:
            a.writer.close()
            b.writer.close()


@pytest.mark.parametrize("leechers", [1, 3])
async def test_bitswarm_leechers_complete_from_a_super_seed(tmp_path: Path, leechers: int) -> None:
    src, t = make_torrent(tmp_path / "seed", 24 * 16384 + 999, 16384)
    async with Session(config(super_seed=True)) as seed:
        await seed.add(t, src.parent)
        sessions = [Session(config()) for _ in range(leechers)]
        for s in sessions:
            await s.start()
        try:
            handles = [
                await s.add(t, tmp_path / f"l{i}", peers=[("127.0.0.1", seed.port)])
                for i, s in enumerate(sessions)
            ]
            for i, h in enumerate(handles):  # leechers also know each other: pieces spread
                for j, s in enumerate(sessions):
                    if i != j:
                        h.add_peer("127.0.0.1", s.port)
            await asyncio.gather(*(h.wait_complete(timeout=45) for h in handles))
        finally:
            for s in sessions:
                await s.close()
    for i in range(leechers):
        assert (tmp_path / f"l{i}" / "f.bin").read_bytes() == src.read_bytes()
