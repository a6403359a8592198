"""The choke driver of one torrent: the pure :class:`~bitswarm.session.choker.Choker` applied to
peers, every ``rechoke_interval``, when interest changes and when slots free up.

libtorrent's ``choker.cpp`` is the model for the decision (in :mod:`~bitswarm.session.choker`); this
module only gathers each peer's rates, applies the answer and keeps the uplink busy between rechokes.
Time comes from an injected :class:`~bitswarm.session.clock.Clock`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from bitswarm.session.choker import Choker, PeerRates

if TYPE_CHECKING:
    from bitswarm.session.clock import Clock
    from bitswarm.session.peer import PeerProtocol
    from bitswarm.session.peer_manager import PeerManager

#: Seconds an unchoked peer may ask us for nothing before its slot goes to a choked interested peer.
IDLE_UNCHOKE_SECONDS = 2.0
#: A peer connected for less than this is "new" to the choker (optimistic unchoke preference).
NEW_PEER_SECONDS = 30.0


class ChokeDriver:
    """Applies :class:`Choker` decisions to the peers of one torrent."""

    def __init__(
        self,
        choker: Choker,
        peers: PeerManager,
        *,
        clock: Clock,
        rechoke_interval: float,
        idle_unchoke_seconds: float = IDLE_UNCHOKE_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        self.choker = choker
        self.peers = peers
        self.clock = clock
        self.rechoke_interval = rechoke_interval
        self.idle_unchoke_seconds = idle_unchoke_seconds
        self.rng = rng or random.Random()
        #: set by the torrent: a seed has its own slot count (``seed_upload_slots``)
        self.seeding = False

    async def run(self) -> None:
        """Rechoke every ``rechoke_interval`` while there are peers; without one the loop returns
        (the torrent starts it again when a peer joins: an idle torrent holds no task, issue 24)."""
        while len(self.peers):
            await self.clock.sleep(self.rechoke_interval)
            self.rechoke()

    def rechoke(self) -> None:
        peers = list(self.peers)
        now = self.clock.now()
        rates = [
            PeerRates(
                key=p,
                interested=p.peer_interested,
                download_rate=p.download.rate,
                upload_rate=p.upload.rate,
                uploaded=p.upload.total,
                snubbed=p.snubbed,
                new=now - p.connected_at < NEW_PEER_SECONDS,
            )
            for p in peers
        ]
        chosen = self.choker.rechoke(rates, seeding=self.seeding)
        for p in peers:
            p.set_choking(p not in chosen)

    def unchoke_free_slots(self) -> None:
        unchoked = sum(1 for p in self.peers if not p.am_choking)
        slots = self.choker.slot_count(seeding=self.seeding)
        if unchoked >= slots:
            return
        for peer in self.peers:
            if unchoked >= slots:
                break
            if peer.am_choking and peer.peer_interested:
                peer.set_choking(False)
                unchoked += 1

    def rotate_idle_unchokes(self) -> None:
        """Between rechokes, keep the uplink working: an unchoked peer that has asked us for
        nothing for ``idle_unchoke_seconds`` (it is interested, but gets what we have elsewhere)
        gives its slot to a choked interested peer, one that has not just lost a slot this way
        first. Early in a swarm every slot fills at once and some uplinks idled until the rechoke."""
        waiting = [p for p in self.peers if p.am_choking and p.peer_interested and not p.closed]
        if not waiting:
            return
        now = self.clock.now()
        self.rng.shuffle(waiting)
        waiting.sort(key=lambda p: p.idle_choked_at, reverse=True)  # pop() takes the least recent
        for peer in list(self.peers):
            if not waiting:
                return
            if peer.am_choking or peer.uploads or peer is self.choker.optimistic:
                continue
            if now - max(peer.last_request, peer.unchoked_at) < self.idle_unchoke_seconds:
                continue
            peer.set_choking(True)
            peer.idle_choked_at = now
            waiting.pop().set_choking(False)

    def on_interest_changed(self, peer: PeerProtocol) -> None:
        if peer.peer_interested:
            self.unchoke_free_slots()
        elif not peer.am_choking and peer is not self.choker.optimistic:
            peer.set_choking(True)
            self.unchoke_free_slots()

    def peer_gone(self, peer: PeerProtocol) -> None:
        if self.choker.optimistic is peer:
            self.choker.optimistic = None
        self.unchoke_free_slots()

    def allowed_fast_for(self, peer: PeerProtocol) -> set[int]:
        return set()  # we do not grant allowed-fast pieces (BEP 6 makes it optional)
