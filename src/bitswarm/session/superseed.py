"""BEP 16 super-seeding: how an initial seed makes each uploaded piece count.

A super-seed sends no bitfield (``have none`` with the fast extension, nothing without it). It
offers each peer a few pieces at a time with ``have`` messages, each the rarest piece the peer lacks
that nobody else has been offered, and offers the peer the next one once the piece it got has
*spread*: another peer announces it (the peer uploaded it onwards, BEP 16's rule). By default the
peer's own ``have`` for an offered piece also counts — libtorrent's non-strict mode — so a lone
downloader is not left waiting for a second one; ``strict=True`` keeps to BEP 16's letter. A peer
that turns ``not interested`` has what it was offered (a client that leaves out ``have`` messages
for pieces it believes we have — bitswarm itself — says so only this way): it gets its next pieces
too. A piece is offered to one peer once at most.

:class:`SuperSeeder` is pure logic: it reads piece availability through a callable, knows peers
only as hashable keys, and returns the pieces to announce to whom; the scheduler sends the haves.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable

#: Pieces offered to one peer at a time (libtorrent offers two).
OFFERS_PER_PEER = 2


class SuperSeeder:
    """Which piece to offer which peer (BEP 16)."""

    def __init__(
        self,
        num_pieces: int,
        availability: Callable[[int], int],
        *,
        rng: random.Random | None = None,
        strict: bool = False,
        offers_per_peer: int = OFFERS_PER_PEER,
    ) -> None:
        self.num_pieces = num_pieces
        self._availability = availability
        self._rng = rng or random.Random()
        self.strict = strict
        self.offers_per_peer = max(1, offers_per_peer)
        #: peer -> the pieces offered to it and not yet spread
        self.offered: dict[Hashable, set[int]] = {}
        #: piece -> how many times it has been offered (fewer first: spreads the pieces)
        self.times_offered = [0] * num_pieces
        self._has: dict[Hashable, Callable[[int], bool]] = {}
        #: peer -> every piece ever offered to it (never offered twice)
        self._given: dict[Hashable, set[int]] = {}

    def peer_joined(self, peer: Hashable, peer_has: Callable[[int], bool]) -> list[int]:
        """A new peer (it got no bitfield): the pieces to announce to it now."""
        self.offered.setdefault(peer, set())
        self._given.setdefault(peer, set())
        self._has[peer] = peer_has
        return self._top_up(peer)

    def peer_left(self, peer: Hashable) -> None:
        self.offered.pop(peer, None)
        self._has.pop(peer, None)
        self._given.pop(peer, None)

    def not_interested(self, peer: Hashable) -> list[int]:
        """``peer`` said ``not interested``: it has (or does not want) what it was offered; the
        pieces to announce to it next."""
        pieces = self.offered.get(peer)
        if pieces is None:
            return []
        pieces.clear()
        return self._top_up(peer)

    def on_have(self, peer: Hashable, index: int) -> dict[Hashable, list[int]]:
        """``peer`` announced piece ``index``: every peer whose offer has thereby spread (the
        offer went to another peer), and ``peer`` itself unless ``strict``, gets its next pieces.
        Returns peer -> pieces to announce to it."""
        out: dict[Hashable, list[int]] = {}
        for other, pieces in self.offered.items():
            if index not in pieces or (other == peer and self.strict):
                continue
            pieces.discard(index)
            fresh = self._top_up(other)
            if fresh:
                out[other] = fresh
        return out

    def _top_up(self, peer: Hashable) -> list[int]:
        pieces = self.offered.get(peer)
        has = self._has.get(peer)
        given = self._given.get(peer)
        if pieces is None or has is None or given is None:
            return []
        fresh: list[int] = []
        while len(pieces) < self.offers_per_peer:
            index = self._choose(given, has)
            if index is None:
                break
            pieces.add(index)
            given.add(index)
            self.times_offered[index] += 1
            fresh.append(index)
        return fresh

    def _choose(self, exclude: set[int], has: Callable[[int], bool]) -> int | None:
        """The piece the peer lacks that is least offered, then least available (random ties)."""
        best: tuple[int, int, float] | None = None
        choice = None
        avail, times, rnd = self._availability, self.times_offered, self._rng.random
        for index in range(self.num_pieces):
            if index in exclude or has(index):
                continue
            key = (times[index], avail(index), rnd())
            if best is None or key < best:
                best, choice = key, index
        return choice
