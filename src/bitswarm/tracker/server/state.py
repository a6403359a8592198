"""In-memory swarm state, laid out for small memory and a short announce path.

Per torrent (:class:`Swarm`) there are up to four dicts: leechers and seeders, IPv4 and IPv6
(BEP 7). A peer is one entry ``compact address → int``: the key is the BEP 23 compact form
(4-byte IPv4 or 16-byte IPv6 address + 2-byte port), so a compact reply is a ``b"".join`` of keys,
and the value packs the 20-byte peer id and the last-seen tick (``peer_id << 20 | tick``) into one
6-digit int. That is ~125 bytes per peer at 10^6 peers (measured in ``bench/bench_tracker_http.py
--memory``). Seeder/leecher is the dict a peer sits in, so counts are ``len()``.

Expiry: ticks are whole seconds modulo 2^20; a peer silent for ``ttl`` seconds is removed by
:meth:`MemoryStore.sweep`, which walks the swarms incrementally with a bounded budget per call.

Peer choice is a random window over the candidate keys (opentracker's approach): small swarms take
``list(dict)``; swarms above :data:`BIG_SWARM` use a key snapshot refreshed every few seconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

TICK_MASK = (1 << 20) - 1
#: Above this many candidates, peer choice samples a periodically refreshed key snapshot.
BIG_SWARM = 4096
SNAPSHOT_AGE = 5.0

# BEP 15 wire values of the announce event (shared with bitswarm.tracker._common.Event).
EVENT_NONE, EVENT_COMPLETED, EVENT_STARTED, EVENT_STOPPED = 0, 1, 2, 3

_rand = random.random


class Swarm:
    """One torrent's peers: ``tables[family*2 + seeder]`` (family 0 = IPv4, 1 = IPv6)."""

    __slots__ = ("snap", "snap_at", "tables")

    def __init__(self) -> None:
        self.tables: list[dict[bytes, int]] = [{}, {}, {}, {}]
        self.snap: list[list[bytes] | None] = [None, None, None, None]
        self.snap_at = 0.0

    @property
    def seeders(self) -> int:
        t = self.tables
        return len(t[1]) + len(t[3])

    @property
    def leechers(self) -> int:
        t = self.tables
        return len(t[0]) + len(t[2])

    def __len__(self) -> int:
        t = self.tables
        return len(t[0]) + len(t[1]) + len(t[2]) + len(t[3])


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """One peer in a snapshot (persistence, Redis export, tests)."""

    info_hash: bytes
    addr: bytes  # compact: 6 bytes IPv4 or 18 bytes IPv6 (BEP 23 / BEP 7)
    peer_id: bytes
    seeder: bool
    age: int  # seconds since last announce


class MemoryStore:
    """Swarm state of one tracker process. Synchronous: every call returns at once.

    ``ttl``: seconds after which a silent peer expires. ``clock``: monotonic seconds (injectable).
    """

    is_async = False

    def __init__(self, ttl: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < ttl < (1 << 19):
            raise ValueError("ttl must be in (0, 2^19) seconds")
        self.ttl = ttl
        self._clock = clock
        self.swarms: dict[bytes, Swarm] = {}
        self.completed: dict[bytes, int] = {}
        #: info-hashes whose completed counter changed since the last :meth:`take_dirty`.
        self.dirty: set[bytes] = set()
        self._sweep_keys: list[bytes] = []
        self._sweep_pos = 0

    def tick(self) -> int:
        return int(self._clock()) & TICK_MASK

    # ------------------------------------------------------------------------------------ announce

    def announce(
        self, info_hash: bytes, addr: bytes, peer_id: bytes, seeder: bool, event: int, numwant: int
    ) -> tuple[int, int, list[bytes]]:
        """Record one announce (BEP 3 semantics) and choose up to ``numwant`` peers for the reply.

        ``addr`` is the compact address (6 or 18 bytes); only peers of the same family are
        returned (BEP 7), never the requester itself, and no seeders to a seeder.
        Returns ``(seeders, leechers, compact addresses)``.
        """
        swarm = self.swarms.get(info_hash)
        fam = 2 if len(addr) == 18 else 0
        if swarm is None:
            if event == EVENT_STOPPED:
                return 0, 0, []
            swarm = self.swarms[info_hash] = Swarm()
        tables = swarm.tables
        leech = tables[fam]
        seed = tables[fam + 1]
        if event == EVENT_STOPPED:
            leech.pop(addr, None)
            seed.pop(addr, None)
            return len(tables[1]) + len(tables[3]), len(tables[0]) + len(tables[2]), []
        value = (int.from_bytes(peer_id, "big") << 20) | (int(self._clock()) & TICK_MASK)
        if seeder:
            if event == EVENT_COMPLETED and addr not in seed:
                self.completed[info_hash] = self.completed.get(info_hash, 0) + 1
                self.dirty.add(info_hash)
            leech.pop(addr, None)
            seed[addr] = value
        else:
            seed.pop(addr, None)
            leech[addr] = value
        seeders = len(tables[1]) + len(tables[3])
        leechers = len(tables[0]) + len(tables[2])
        if numwant <= 0:
            return seeders, leechers, []
        if seeder:
            n = len(leech)
            if n <= numwant:
                return seeders, leechers, list(leech)
            keys = self._keys(swarm, fam, leech, None, n)
        else:
            n = len(leech) + len(seed)
            if n <= numwant + 1:
                peers = [*leech, *seed] if seed else list(leech)
                peers.remove(addr)
                return seeders, leechers, peers
            keys = self._keys(swarm, fam, leech, seed, n)
        n = len(keys)
        start = int(_rand() * n)
        chosen = keys[start : start + numwant + 1]
        if len(chosen) <= numwant:
            chosen += keys[: numwant + 1 - len(chosen)]
        if addr in chosen:
            chosen.remove(addr)
        else:
            del chosen[numwant:]
        if n > BIG_SWARM:  # a snapshot may hold departed peers
            chosen = [k for k in chosen if k in leech or (not seeder and k in seed)]
        return seeders, leechers, chosen

    def _keys(
        self, swarm: Swarm, fam: int, leech: dict[bytes, int], seed: dict[bytes, int] | None, n: int
    ) -> list[bytes]:
        if n <= BIG_SWARM:
            return [*leech, *seed] if seed else list(leech)
        slot = fam + (0 if seed is None else 1)
        now = self._clock()
        snap = swarm.snap[slot]
        if snap is None or now - swarm.snap_at > SNAPSHOT_AGE:
            snap = swarm.snap[slot] = [*leech, *seed] if seed is not None else list(leech)
            swarm.snap_at = now
        return snap

    def peer_ids(self, info_hash: bytes, addrs: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
        """``(addr, peer_id)`` for the dictionary-model reply (BEP 3 non-compact)."""
        swarm = self.swarms.get(info_hash)
        out: list[tuple[bytes, bytes]] = []
        if swarm is None:
            return out
        for addr in addrs:
            fam = 2 if len(addr) == 18 else 0
            value = swarm.tables[fam].get(addr)
            if value is None:
                value = swarm.tables[fam + 1].get(addr)
            if value is not None:
                out.append((addr, (value >> 20).to_bytes(20, "big")))
        return out

    # ------------------------------------------------------------------------------------ scrape

    def scrape(self, info_hash: bytes) -> tuple[int, int, int]:
        """``(seeders, completed, leechers)`` (BEP 15 order); zeros for an unknown torrent."""
        swarm = self.swarms.get(info_hash)
        done = self.completed.get(info_hash, 0)
        if swarm is None:
            return 0, done, 0
        return swarm.seeders, done, swarm.leechers

    def all_hashes(self) -> list[bytes]:
        return list(self.swarms.keys() | self.completed.keys())

    # ------------------------------------------------------------------------------------ expiry

    def sweep(self, budget: int) -> int:
        """Drop expired peers, examining at most about ``budget`` entries; returns peers removed.

        Walks a snapshot of the info-hashes across calls, so a full pass costs O(peers) spread over
        ``peers / budget`` calls. Empty swarms are deleted.
        """
        now = self.tick()
        ttl = self.ttl
        removed = 0
        while budget > 0:
            if self._sweep_pos >= len(self._sweep_keys):
                self._sweep_keys = list(self.swarms)
                self._sweep_pos = 0
                if not self._sweep_keys:
                    break
            info_hash = self._sweep_keys[self._sweep_pos]
            self._sweep_pos += 1
            swarm = self.swarms.get(info_hash)
            if swarm is None:
                continue
            for table in swarm.tables:
                if not table:
                    continue
                budget -= len(table)
                dead = [k for k, v in table.items() if ((now - v) & TICK_MASK) > ttl]
                for k in dead:
                    del table[k]
                removed += len(dead)
            if not len(swarm):
                del self.swarms[info_hash]
            if self._sweep_pos >= len(self._sweep_keys):
                break  # one full pass per call at most
        return removed

    # ------------------------------------------------------------------------------------ export

    def peers(self) -> Iterator[PeerRecord]:
        """Every live peer (for snapshots)."""
        now = self.tick()
        for info_hash, swarm in list(self.swarms.items()):
            for index, table in enumerate(swarm.tables):
                for addr, value in list(table.items()):
                    age = (now - value) & TICK_MASK
                    if age <= self.ttl:
                        yield PeerRecord(
                            info_hash, addr, (value >> 20).to_bytes(20, "big"), bool(index & 1), age
                        )

    def restore(self, records: Iterable[PeerRecord]) -> int:
        """Load peers (e.g. from a snapshot); each keeps its remaining lifetime."""
        now = int(self._clock())
        count = 0
        for rec in records:
            if rec.age > self.ttl or len(rec.addr) not in (6, 18) or len(rec.peer_id) != 20:
                continue
            swarm = self.swarms.get(rec.info_hash)
            if swarm is None:
                swarm = self.swarms[rec.info_hash] = Swarm()
            fam = 2 if len(rec.addr) == 18 else 0
            value = (int.from_bytes(rec.peer_id, "big") << 20) | ((now - rec.age) & TICK_MASK)
            swarm.tables[fam + rec.seeder][rec.addr] = value
            count += 1
        return count

    def counts(self) -> tuple[int, int, int]:
        """``(torrents, seeders, leechers)``."""
        seeders = leechers = 0
        for swarm in self.swarms.values():
            t = swarm.tables
            seeders += len(t[1]) + len(t[3])
            leechers += len(t[0]) + len(t[2])
        return len(self.swarms), seeders, leechers

    def take_dirty(self) -> dict[bytes, int]:
        """Completed counters changed since the last call (for persistence)."""
        out = {h: self.completed.get(h, 0) for h in self.dirty}
        self.dirty.clear()
        return out
