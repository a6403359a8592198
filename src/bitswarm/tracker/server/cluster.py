"""Swarm state of one instance of a tracker cluster: answered from memory, shared in deltas.

Several ``bitswarm tracker`` instances that share one Redis (``--redis``) each answer every announce
from their own :class:`ClusterStore` — a :class:`~.state.MemoryStore`, the same fast path as a lone
in-memory tracker — and exchange what changed every ``redis_sync`` seconds (:mod:`.redis_sync` does
the I/O). This module is sans-I/O: it only turns the store's changes into delta blobs and merges the
blobs of other instances, with the clock injected.

What an instance publishes (:meth:`ClusterStore.take_deltas`):

- its *journal*: every membership change it saw — a new peer, a leecher↔seeder move, an
  ``event=started`` re-announce, a ``stopped`` removal — and every own peer that expired;
- a *refresh*: each own live peer once per ``refresh_every`` seconds (a rolling pass over the
  swarms, a share of it each sync), with its age, so the copies elsewhere stay alive while the peer
  keeps announcing here (a plain re-announce is not in the journal);
- the *completed* counts that grew here since the last sync (increments, summed in Redis).

What it merges (:meth:`ClusterStore.merge`): other instances' records, in the order Redis took them.
A copied peer is marked *remote* (a bit in its tick, :data:`~.state.REMOTE`): it is answered like
any other, but it is never published again by this instance, a ``stopped``/expiry from elsewhere
removes only remote copies (a peer that also announces here stays), and it expires after
``remote_ttl`` = ``ttl + refresh_every + 2 × sync`` without news: the owner refreshes it at least once
per ``refresh_every``, so a copy never expires before the owner's own entry does, and outlives it by
at most ``refresh_every`` when the owner crashed (otherwise the owner's expiry record removes it). A
peer that announces here becomes local (its next tick has no remote bit).

Blob formats (both big-endian, concatenated records):

- peers: ``flags`` (1 byte: 1 = seeder, 2 = gone, 4 = IPv6), info-hash (20), compact address
  (6 or 18), then unless gone: peer id (20), age in seconds (4);
- completed: info-hash (20), increment (4).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from bitswarm.tracker.server.state import REMOTE, TICK_MASK, JournalEntry, MemoryStore, Swarm, _delete, _find

_SEEDER, _GONE, _V6 = 1, 2, 4


def pack_journal(journal: list[JournalEntry]) -> bytes:
    """A journal as a peers blob; of several changes of one peer only the last is kept."""
    latest = {(h, a): (p, s) for h, a, p, s in journal}
    out = bytearray()
    for (info_hash, addr), (peer_id, seeder) in latest.items():
        flags = (_V6 if len(addr) == 18 else 0) | (_SEEDER if seeder else 0)
        if peer_id is None:
            out += bytes((flags | _GONE,)) + info_hash + addr
        else:
            out += bytes((flags,)) + info_hash + addr + peer_id + b"\0\0\0\0"
    return bytes(out)


class ClusterStore(MemoryStore):
    """A :class:`MemoryStore` that records what to publish and merges other instances' deltas.

    ``sync_every``: seconds between syncs; ``refresh_every``: the period of the refresh pass
    (default a quarter of ``ttl``). Every method must be called under the tracker's store lock.
    """

    remote_ttl: int

    def __init__(
        self,
        ttl: int,
        *,
        sync_every: float,
        refresh_every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ttl, clock=clock)
        self.sync_every = sync_every
        self.refresh_every = max(sync_every, refresh_every if refresh_every is not None else ttl / 4)
        self.remote_ttl = ttl + math.ceil(self.refresh_every + 2 * sync_every)
        self.enable_journal()
        #: the share of each completed count the cluster already knows (published or merged)
        self._known: dict[bytes, int] = {}
        self._refresh_keys: list[bytes] = []
        self._refresh_pos = 0
        self._refresh_rate = 0.0  # peers per sync in this pass
        self._refresh_credit = 0.0

    # ------------------------------------------------------------------------------------ publish

    def take_deltas(self) -> tuple[bytes, bytes]:
        """``(peers blob, completed blob)`` of this instance's changes since the last call, plus
        this sync's share of the refresh pass."""
        journal, refresh, done = self.take_changes()
        return pack_journal(journal) + refresh, done

    def take_changes(self) -> tuple[list[JournalEntry], bytes, bytes]:
        """The parts of :meth:`take_deltas` that need the store lock: the journal (to pack with
        :func:`pack_journal` after the lock is released), the refresh records, the completed blob."""
        journal = self.take_journal()
        refresh = bytearray()
        self._refresh(refresh)
        done = bytearray()
        for info_hash, count in self.take_dirty().items():
            grew = count - self._known.get(info_hash, 0)
            if grew > 0:
                self._known[info_hash] = count
                done += info_hash + grew.to_bytes(4, "big")
        return journal, bytes(refresh), bytes(done)

    def _refresh(self, out: bytearray) -> None:
        """Append every own live peer of this sync's share of the swarms: whole swarms, as many
        as this sync's credit of peers (the peers at the start of a pass × ``sync_every /
        refresh_every``) allows, so a full pass takes about ``refresh_every`` seconds whatever the
        number and size of the swarms."""
        if self._refresh_pos >= len(self._refresh_keys):
            self._refresh_keys = list(self.swarms)
            self._refresh_pos = 0
            total = sum(len(swarm) for swarm in self.swarms.values())
            self._refresh_rate = total * self.sync_every / self.refresh_every
        keys = self._refresh_keys
        self._refresh_credit = min(self._refresh_credit + self._refresh_rate, self._refresh_rate + 1)
        now = self.tick()
        ttl = self.ttl
        while self._refresh_credit > 0 and self._refresh_pos < len(keys):
            info_hash = keys[self._refresh_pos]
            self._refresh_pos += 1
            swarm = self.swarms.get(info_hash)
            if swarm is None:
                continue
            self._refresh_credit -= len(swarm) or 1
            for t, buckets in enumerate(swarm.tables):
                w = 18 if t >= 2 else 6
                flags = bytes(((_V6 if w == 18 else 0) | (t & 1),))
                for b in buckets:
                    addrs, ids = b.addrs, b.ids
                    for i, v in enumerate(b.ticks):
                        age = (now - v) & TICK_MASK
                        if not v & REMOTE and age <= ttl:
                            out += flags + info_hash + addrs[i * w : i * w + w]
                            out += ids[i * 20 : i * 20 + 20] + age.to_bytes(4, "big")

    # ------------------------------------------------------------------------------------ merge

    def merge(self, blob: bytes, age: int = 0) -> int:
        """Apply another instance's peers blob, published ``age`` seconds ago; returns records
        applied. Malformed trailing bytes are ignored."""
        now = int(self._clock())
        swarms = self.swarms
        size = len(blob)
        pos = applied = 0
        while pos < size:
            flags = blob[pos]
            w = 18 if flags & _V6 else 6
            end = pos + 21 + w + (0 if flags & _GONE else 24)
            if end > size:
                break
            info_hash = blob[pos + 1 : pos + 21]
            addr = blob[pos + 21 : pos + 21 + w]
            key = int.from_bytes(addr, "big")
            fam = 2 if w == 18 else 0
            swarm = swarms.get(info_hash)
            if flags & _GONE:
                if swarm is not None:
                    for t in (fam, fam + 1):
                        found = _find(swarm.tables[t], key)
                        if found is not None and found[0].ticks[found[1]] & REMOTE:
                            _delete(found[0], found[1], w)
                            swarm.n[t] -= 1
                            applied += 1
                pos = end
                continue
            peer_id = blob[pos + 21 + w : pos + 41 + w]
            seen = age + int.from_bytes(blob[end - 4 : end], "big")
            pos = end
            if seen > self.remote_ttl:
                continue
            tick = ((now - seen) & TICK_MASK) | REMOTE
            if swarm is None:
                swarm = swarms[info_hash] = Swarm()
            t = fam + (flags & _SEEDER)
            found = _find(swarm.tables[t], key)
            if found is not None:
                b, i = found
                if b.ticks[i] & REMOTE:  # an own (local) entry is fresher news: keep it
                    b.ticks[i] = tick
                    b.ids[i * 20 : i * 20 + 20] = peer_id
                applied += 1
                continue
            other = _find(swarm.tables[t ^ 1], key)
            if other is not None:  # moved between leecher and seeder
                _delete(other[0], other[1], w)
                swarm.n[t ^ 1] -= 1
            if self._put(swarm.tables[t], key, addr, peer_id, tick, w):
                swarm.n[t] += 1
            applied += 1
        return applied

    def merge_completed(self, blob: bytes) -> None:
        """Apply another instance's completed increments."""
        for pos in range(0, len(blob) - 23, 24):
            info_hash = blob[pos : pos + 20]
            grew = int.from_bytes(blob[pos + 20 : pos + 24], "big")
            self.completed[info_hash] = self.completed.get(info_hash, 0) + grew
            self._known[info_hash] = self._known.get(info_hash, 0) + grew

    def load_completed(self, totals: Mapping[bytes, int]) -> None:
        """Set the cluster's completed totals (a starting instance, from Redis)."""
        for info_hash, count in totals.items():
            self.completed[info_hash] = count
            self._known[info_hash] = count
