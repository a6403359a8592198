"""The choker: which interested peers we upload to (BEP 3 tit-for-tat with optimistic unchoke).

Every rechoke round (10 s) the choker unchokes the ``slots - 1`` interested peers that gave us the
best download rate (tit-for-tat, as a leecher), skipping snubbed peers, plus one optimistic unchoke
that rotates every third round (30 s) to a random interested peer, preferring newly connected ones.
As a seed it goes round-robin instead, over ``seed_slots`` (more than a leecher's: no tit-for-tat to
keep, and more parallel TCP flows keep a seed's uplink full): the interested peers we have sent the
least so far come first, so every leecher gets its share of the seed's uplink and has pieces to
trade with the others (ranking seeds by upload rate kept feeding the same few peers; measured in
``docs/benchmarks.md``). Pure logic: the session feeds it peer rates and applies the decision.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

RECHOKE_INTERVAL = 10.0
OPTIMISTIC_EVERY = 3  # rounds: 30 s


@dataclass(frozen=True, slots=True)
class PeerRates:
    """What the choker needs to know about one connected peer."""

    key: Hashable
    interested: bool  #: the peer is interested in us
    download_rate: float  #: bytes/s we receive from it
    upload_rate: float  #: bytes/s we send to it
    uploaded: int = 0  #: bytes sent to it so far (round-robin seeding)
    snubbed: bool = False  #: it sent us nothing for a long time while we wanted data
    new: bool = False  #: connected within the last few rounds (3x chance to be optimistic)


class Choker:
    """Decides the unchoked set each round."""

    def __init__(
        self, slots: int = 4, *, seed_slots: int | None = None, rng: random.Random | None = None
    ) -> None:
        if slots < 1 or (seed_slots is not None and seed_slots < 1):
            raise ValueError("at least one upload slot")
        self.slots = slots
        self.seed_slots = slots if seed_slots is None else seed_slots  #: used while seeding
        self._rng = rng or random.Random()
        self._round = 0
        self.optimistic: Hashable | None = None

    def slot_count(self, *, seeding: bool) -> int:
        """How many peers may be unchoked at once: ``seed_slots`` as a seed, else ``slots``."""
        return self.seed_slots if seeding else self.slots

    def rechoke(self, peers: Iterable[PeerRates], *, seeding: bool) -> set[Hashable]:
        """Return the keys of the peers to unchoke this round (all others are choked)."""
        interested = [p for p in peers if p.interested]
        keys = {p.key for p in interested}
        if self.optimistic not in keys:
            self.optimistic = None
        slots = self.slot_count(seeding=seeding)
        if seeding:
            ranked = sorted(interested, key=lambda p: p.uploaded)
        else:
            ranked = sorted(
                (p for p in interested if not p.snubbed), key=lambda p: p.download_rate, reverse=True
            )
        regular = [p.key for p in ranked[: slots - 1]]
        if self._round % OPTIMISTIC_EVERY == 0 or self.optimistic is None:
            pool: list[Hashable] = []
            for p in interested:
                if p.key not in regular:
                    pool.extend([p.key] * (3 if p.new else 1))
            self.optimistic = self._rng.choice(pool) if pool else None
        self._round += 1
        chosen = set(regular)
        if self.optimistic is not None:
            chosen.add(self.optimistic)
        # fill slots left empty (few interested peers or snubbed ones) so no capacity idles
        for p in interested:
            if len(chosen) >= slots:
                break
            chosen.add(p.key)
        return chosen
