"""In-memory swarm state, laid out for small memory and a short announce path.

Per torrent (:class:`Swarm`) there are four tables: leechers and seeders, IPv4 and IPv6 (BEP 7).
A table is packed the way opentracker packs its peer vectors: sorted parallel arrays, no Python
object per peer —

- ``keys``: the compact address as an integer (``array('Q')`` for IPv4; a list for IPv6), sorted,
  searched with :func:`bisect.bisect_left`;
- ``addrs``: the BEP 23 compact addresses (6 or 18 bytes each) in the same order, so a compact
  reply is one slice of a ``bytearray`` (a random window, opentracker's approach);
- ``ids``: the 20-byte peer ids (for BEP 3 dictionary replies and snapshots);
- ``ticks``: the last-announce second modulo 2^20 (``array('I')``).

That is 38 bytes per IPv4 peer plus array slack (~45 B per peer at 10^6 peers, measured in
``bench/bench_tracker_http.py --memory``). A table is split into hash buckets (each sorted) once a
bucket would pass :data:`BUCKET_MAX` records, so inserting or removing a peer moves at most a few
tens of kilobytes even in a swarm of millions. Seeder/leecher is the table a peer sits in.

Expiry: a peer silent for ``ttl`` seconds is removed by :meth:`MemoryStore.sweep`, which walks the
swarms incrementally with a bounded budget per call.

Journal: with :meth:`MemoryStore.enable_journal` every membership change (a new peer, a
leecher↔seeder move, an ``event=started`` re-announce, a ``stopped`` removal) is appended to a list
that the server writes to SQLite once a second (:meth:`MemoryStore.take_journal`). A plain refresh
of a known peer appends nothing, so the common announce costs no more than without persistence.
"""

from __future__ import annotations

import random
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

TICK_MASK = (1 << 20) - 1
#: set in a tick of a peer copied from another tracker instance (:mod:`.cluster`); ages ignore it
REMOTE = 1 << 31
#: A bucket holding more records than this makes its table double its bucket count.
BUCKET_MAX = 2048

# BEP 15 wire values of the announce event (shared with bitswarm.tracker._common.Event).
EVENT_NONE, EVENT_COMPLETED, EVENT_STARTED, EVENT_STOPPED = 0, 1, 2, 3

_rand = random.random


class Bucket:
    """Sorted parallel arrays of one table's peers (see the module docstring)."""

    __slots__ = ("addrs", "ids", "keys", "ticks")

    def __init__(self, v6: bool) -> None:
        self.keys: Any = [] if v6 else array("Q")
        self.addrs = bytearray()
        self.ids = bytearray()
        self.ticks = array("I")


class Swarm:
    """One torrent's peers: ``tables[family*2 + seeder]`` (family 0 = IPv4, 1 = IPv6), each a list
    of buckets (empty when the table is); ``n`` holds the four table sizes."""

    __slots__ = ("n", "tables")

    def __init__(self) -> None:
        self.tables: list[list[Bucket]] = [[], [], [], []]
        self.n = [0, 0, 0, 0]

    @property
    def seeders(self) -> int:
        n = self.n
        return n[1] + n[3]

    @property
    def leechers(self) -> int:
        n = self.n
        return n[0] + n[2]

    def __len__(self) -> int:
        n = self.n
        return n[0] + n[1] + n[2] + n[3]


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """One peer in a snapshot (persistence, Redis export, tests)."""

    info_hash: bytes
    addr: bytes  # compact: 6 bytes IPv4 or 18 bytes IPv6 (BEP 23 / BEP 7)
    peer_id: bytes
    seeder: bool
    age: int  # seconds since last announce


#: One journal entry: ``(info_hash, compact addr, peer_id, seeder)``; ``peer_id`` None = the peer left.
JournalEntry = tuple[bytes, bytes, bytes | None, bool]


def _bucket(buckets: list[Bucket], key: int) -> Bucket:
    nb = len(buckets)
    return buckets[0] if nb == 1 else buckets[key % nb]


def _find(buckets: list[Bucket], key: int) -> tuple[Bucket, int] | None:
    """The bucket and index of ``key`` in a table, or None."""
    if not buckets:
        return None
    b = _bucket(buckets, key)
    keys = b.keys
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        return b, i
    return None


def _delete(b: Bucket, i: int, w: int) -> None:
    del b.keys[i]
    del b.ticks[i]
    j = i * 20
    del b.ids[j : j + 20]
    j = i * w
    del b.addrs[j : j + w]


def _window(segs: list[bytearray], start: int, need: int) -> bytes:
    """``need`` bytes of the concatenation of ``segs`` from ``start``, wrapping around (need must
    be smaller than the total)."""
    i = 0
    while start >= len(segs[i]):
        start -= len(segs[i])
        i += 1
    seg = segs[i]
    if start + need <= len(seg):
        return bytes(seg[start : start + need])
    out = []
    count = len(segs)
    while need > 0:
        chunk = segs[i][start : start + need]
        out.append(chunk)
        need -= len(chunk)
        start = 0
        i = (i + 1) % count
    return b"".join(out)


def _without(blob: bytes, addr: bytes, w: int) -> bytes | None:
    """``blob`` minus the record ``addr`` (record-aligned), or None when it is absent."""
    pos = blob.find(addr)
    while pos >= 0 and pos % w:
        pos = blob.find(addr, pos + 1)
    if pos < 0:
        return None
    return blob[:pos] + blob[pos + w :]


def split(blob: bytes, w: int) -> list[bytes]:
    """A compact peer blob as a list of ``w``-byte addresses."""
    return [blob[i : i + w] for i in range(0, len(blob), w)]


class MemoryStore:
    """Swarm state of one tracker process. Synchronous: every call returns at once.

    ``ttl``: seconds after which a silent peer expires. ``clock``: monotonic seconds (injectable).
    """

    is_async = False
    #: expiry of peers copied from another instance (None: a lone store, which has none)
    remote_ttl: int | None = None

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
        #: membership changes since the last :meth:`take_journal` (None: not journaling)
        self.journal: list[JournalEntry] | None = None

    def tick(self) -> int:
        return int(self._clock()) & TICK_MASK

    # ------------------------------------------------------------------------------------ announce

    def announce(
        self, info_hash: bytes, addr: bytes, peer_id: bytes, seeder: bool, event: int, numwant: int
    ) -> tuple[int, int, bytes]:
        """Record one announce (BEP 3 semantics) and choose up to ``numwant`` peers for the reply.

        ``addr`` is the compact address (6 or 18 bytes); only peers of the same family are
        returned (BEP 7), never the requester itself, and no seeders to a seeder.
        Returns ``(seeders, leechers, compact peers)``, the peers as one BEP 23 string.
        """
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            if event == EVENT_STOPPED:
                return 0, 0, b""
            swarm = self.swarms[info_hash] = Swarm()
        w = len(addr)
        fam = 2 if w == 18 else 0
        key = int.from_bytes(addr, "big")
        tables = swarm.tables
        n = swarm.n
        mine = fam + 1 if seeder else fam
        other = mine ^ 1
        gone = False
        if n[other]:
            found = _find(tables[other], key)
            if found is not None:
                _delete(found[0], found[1], w)
                n[other] -= 1
                gone = True
        if event == EVENT_STOPPED:
            if n[mine]:
                found = _find(tables[mine], key)
                if found is not None:
                    _delete(found[0], found[1], w)
                    n[mine] -= 1
                    gone = True
            if gone and self.journal is not None:
                self.journal.append((info_hash, addr, None, False))
            return n[1] + n[3], n[0] + n[2], b""
        if self._put(tables[mine], key, addr, peer_id, int(self._clock()) & TICK_MASK, w):
            n[mine] += 1
            if self.journal is not None:
                self.journal.append((info_hash, addr, peer_id, seeder))
            if seeder and event == EVENT_COMPLETED:
                self.completed[info_hash] = self.completed.get(info_hash, 0) + 1
                self.dirty.add(info_hash)
        elif event == EVENT_STARTED and self.journal is not None:
            self.journal.append((info_hash, addr, peer_id, seeder))  # a restarted client, maybe a new id
        seeders = n[1] + n[3]
        leechers = n[0] + n[2]
        if numwant <= 0:
            return seeders, leechers, b""
        if seeder:
            total = n[fam]
            if not total:
                return seeders, leechers, b""
            segs = [b.addrs for b in tables[fam]]
            if total <= numwant:
                return seeders, leechers, b"".join(segs)
            return seeders, leechers, _window(segs, int(_rand() * total) * w, numwant * w)
        total = n[fam] + n[fam + 1]
        if total == 1:
            return seeders, leechers, b""
        segs = [b.addrs for b in tables[fam]]
        if n[fam + 1]:
            segs += [b.addrs for b in tables[fam + 1]]
        if total <= numwant + 1:
            blob = b"".join(segs)
        else:
            blob = _window(segs, int(_rand() * total) * w, (numwant + 1) * w)
        rest = _without(blob, addr, w)
        if rest is not None:
            return seeders, leechers, rest
        return seeders, leechers, blob[: numwant * w]

    def _put(self, buckets: list[Bucket], key: int, addr: bytes, peer_id: bytes, tick: int, w: int) -> bool:
        """Insert or refresh one record; True when it is new."""
        if not buckets:
            buckets.append(Bucket(w == 18))
        b = buckets[0] if len(buckets) == 1 else buckets[key % len(buckets)]
        keys = b.keys
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            b.ticks[i] = tick
            j = i * 20
            if b.ids[j : j + 20] != peer_id:
                b.ids[j : j + 20] = peer_id
            return False
        keys.insert(i, key)
        b.ticks.insert(i, tick)
        j = i * 20
        b.ids[j:j] = peer_id
        j = i * w
        b.addrs[j:j] = addr
        if len(keys) > BUCKET_MAX:
            self._regrow(buckets, w)
        return True

    @staticmethod
    def _regrow(buckets: list[Bucket], w: int) -> None:
        """Double the bucket count of a table (odd counts: ``key % n`` mixes the port bits in)."""
        records = [
            (b.keys[i], bytes(b.addrs[i * w : i * w + w]), bytes(b.ids[i * 20 : i * 20 + 20]), b.ticks[i])
            for b in buckets
            for i in range(len(b.keys))
        ]
        records.sort()
        count = len(buckets) * 2 + 1
        fresh = [Bucket(w == 18) for _ in range(count)]
        for key, addr, peer_id, tick in records:
            b = fresh[key % count]
            b.keys.append(key)
            b.addrs += addr
            b.ids += peer_id
            b.ticks.append(tick)
        buckets[:] = fresh

    def peer_ids(self, info_hash: bytes, blob: bytes, w: int) -> list[tuple[bytes, bytes]]:
        """``(addr, peer_id)`` for the dictionary-model reply (BEP 3 non-compact); ``blob`` is a
        compact peer string of ``w``-byte records as :meth:`announce` returned it."""
        swarm = self.swarms.get(info_hash)
        out: list[tuple[bytes, bytes]] = []
        if swarm is None:
            return out
        fam = 2 if w == 18 else 0
        for addr in split(blob, w):
            key = int.from_bytes(addr, "big")
            found = _find(swarm.tables[fam], key) or _find(swarm.tables[fam + 1], key)
            if found is not None:
                b, i = found
                out.append((addr, bytes(b.ids[i * 20 : i * 20 + 20])))
        return out

    # ------------------------------------------------------------------------------------ scrape

    def scrape(self, info_hash: bytes) -> tuple[int, int, int]:
        """``(seeders, completed, leechers)`` (BEP 15 order); zeros for an unknown torrent."""
        swarm = self.swarms.get(info_hash)
        done = self.completed.get(info_hash, 0)
        if swarm is None:
            return 0, done, 0
        n = swarm.n
        return n[1] + n[3], done, n[0] + n[2]

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
        remote_ttl = self.remote_ttl
        journal = self.journal if remote_ttl is not None else None
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
            for t, buckets in enumerate(swarm.tables):
                w = 18 if t >= 2 else 6
                for b in buckets:
                    ticks = b.ticks
                    budget -= len(ticks)
                    if remote_ttl is None:
                        keep = [i for i, v in enumerate(ticks) if ((now - v) & TICK_MASK) <= ttl]
                    else:  # a cluster store: remote copies live longer (see .cluster)
                        keep = [
                            i
                            for i, v in enumerate(ticks)
                            if ((now - v) & TICK_MASK) <= (remote_ttl if v & REMOTE else ttl)
                        ]
                    dead = len(ticks) - len(keep)
                    if not dead:
                        continue
                    keys, ids, addrs = b.keys, b.ids, b.addrs
                    if journal is not None:  # own peers that expired: the other instances drop them
                        alive = set(keep)
                        journal += [
                            (info_hash, bytes(addrs[i * w : i * w + w]), None, False)
                            for i, v in enumerate(ticks)
                            if i not in alive and not v & REMOTE
                        ]
                    kept = [keys[i] for i in keep]
                    b.keys = kept if isinstance(keys, list) else array("Q", kept)
                    b.ticks = array("I", [ticks[i] for i in keep])
                    b.ids = bytearray(b"".join(ids[i * 20 : i * 20 + 20] for i in keep))
                    b.addrs = bytearray(b"".join(addrs[i * w : i * w + w] for i in keep))
                    swarm.n[t] -= dead
                    removed += dead
                if not swarm.n[t] and buckets:
                    buckets.clear()
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
            for t, buckets in enumerate(swarm.tables):
                w = 18 if t >= 2 else 6
                for b in list(buckets):
                    addrs, ids, ticks = bytes(b.addrs), bytes(b.ids), list(b.ticks)
                    for i, value in enumerate(ticks):
                        age = (now - value) & TICK_MASK
                        if age <= self.ttl:
                            yield PeerRecord(
                                info_hash,
                                addrs[i * w : i * w + w],
                                ids[i * 20 : i * 20 + 20],
                                bool(t & 1),
                                age,
                            )

    def restore(self, records: Iterable[PeerRecord]) -> int:
        """Load peers (e.g. from a snapshot); each keeps its remaining lifetime."""
        now = int(self._clock())
        count = 0
        for rec in records:
            w = len(rec.addr)
            if rec.age > self.ttl or w not in (6, 18) or len(rec.peer_id) != 20:
                continue
            swarm = self.swarms.get(rec.info_hash)
            if swarm is None:
                swarm = self.swarms[rec.info_hash] = Swarm()
            t = (2 if w == 18 else 0) + rec.seeder
            key = int.from_bytes(rec.addr, "big")
            other = _find(swarm.tables[t ^ 1], key)
            if other is not None:
                _delete(other[0], other[1], w)
                swarm.n[t ^ 1] -= 1
            if self._put(swarm.tables[t], key, rec.addr, rec.peer_id, (now - rec.age) & TICK_MASK, w):
                swarm.n[t] += 1
            count += 1
        return count

    def counts(self) -> tuple[int, int, int]:
        """``(torrents, seeders, leechers)``."""
        seeders = leechers = 0
        for swarm in self.swarms.values():
            n = swarm.n
            seeders += n[1] + n[3]
            leechers += n[0] + n[2]
        return len(self.swarms), seeders, leechers

    def enable_journal(self) -> None:
        """Start recording membership changes for :meth:`take_journal`."""
        if self.journal is None:
            self.journal = []

    def take_journal(self) -> list[JournalEntry]:
        """The membership changes since the last call, oldest first (empty when not journaling)."""
        journal = self.journal
        if not journal:
            return []
        self.journal = []
        return journal

    def take_dirty(self) -> dict[bytes, int]:
        """Completed counters changed since the last call (for persistence)."""
        out = {h: self.completed.get(h, 0) for h in self.dirty}
        self.dirty.clear()
        return out
