"""The Kademlia routing table of BEP 5: k-buckets that split only around our own id.

Bucket ``i`` (for ``i < len(buckets) - 1``) holds the nodes whose id shares exactly ``i`` leading bits
with ours; the last bucket holds everything closer. Only the last bucket splits, so the table keeps
fine detail near our id and eight contacts per "distance class" further out.

Node states (BEP 5): *good* when it answered one of our queries in the last 15 minutes (or answered
once and queried us in the last 15 minutes), *bad* after ``max_failures`` unanswered queries in a
row, *questionable* otherwise. Only nodes that answered our queries enter the main buckets; nodes
that merely queried us go to the bucket's replacement cache. A full bucket evicts a bad node for a
responding newcomer; otherwise the newcomer waits in the replacement cache and the caller pings the
bucket's questionable nodes (:meth:`RoutingTable.questionable_in_bucket`), whose failures then let a
replacement in.

IP restrictions (security): per bucket at most one entry per IP address and per /24 (IPv4) or /64
(IPv6) network; one id per address in the whole table. Local addresses are exempt (LAN mode).

The table is pure state: the caller passes ``now`` and does all sending.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from bitswarm.dht.bep42 import is_local_address
from bitswarm.dht.krpc import Addr, NodeInfo, pack_ip

__all__ = ["BAD", "GOOD", "QUESTIONABLE", "Bucket", "RoutingEntry", "RoutingTable", "distance"]

GOOD: Final = "good"
QUESTIONABLE: Final = "questionable"
BAD: Final = "bad"

ID_BITS: Final = 160


def distance(a: bytes, b: bytes) -> int:
    """XOR distance of two 20-byte ids as an integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def _network_key(host: str) -> tuple[bytes, bytes] | None:
    """(address bytes, /24 or /64 prefix) for IP restrictions; None for exempt local addresses."""
    if is_local_address(host):
        return None
    packed = pack_ip(host)
    return packed, packed[:3] if len(packed) == 4 else packed[:8]


@dataclass(slots=True, eq=False)
class RoutingEntry:
    """One node in a bucket (or its replacement cache)."""

    id: bytes
    addr: Addr
    id_int: int
    first_seen: float
    last_response: float | None = None  # last time it answered one of our queries
    last_query: float | None = None  # last time it queried us
    fail_count: int = 0
    ping_sent: float | None = None
    net: tuple[bytes, bytes] | None = None

    @property
    def confirmed(self) -> bool:
        """It has answered at least one of our queries."""
        return self.last_response is not None

    def state(self, now: float, good_for: float = 900.0, max_failures: int = 2) -> str:
        if self.fail_count >= max_failures:
            return BAD
        if self.last_response is not None and (
            now - self.last_response < good_for
            or (self.last_query is not None and now - self.last_query < good_for)
        ):
            return GOOD
        return QUESTIONABLE

    def info(self) -> NodeInfo:
        return NodeInfo(self.id, self.addr)


@dataclass(slots=True)
class Bucket:
    """A k-bucket: its nodes, the replacement cache and when it last changed."""

    entries: list[RoutingEntry] = field(default_factory=list)
    replacements: list[RoutingEntry] = field(default_factory=list)
    last_changed: float = 0.0


class RoutingTable:
    """Routing table for one address family (BEP 32 keeps one per family)."""

    def __init__(
        self,
        own_id: bytes,
        *,
        k: int = 8,
        now: float = 0.0,
        restrict_ips: bool = True,
        good_for: float = 900.0,
        max_failures: int = 2,
        replacement_size: int | None = None,
    ) -> None:
        self.own_id = own_id
        self.own_int = int.from_bytes(own_id, "big")
        self.k = k
        self.restrict_ips = restrict_ips
        self.good_for = good_for
        self.max_failures = max_failures
        self.replacement_size = k if replacement_size is None else replacement_size
        self.buckets: list[Bucket] = [Bucket(last_changed=now)]
        self._by_id: dict[bytes, RoutingEntry] = {}  # main entries and replacements
        self._by_addr: dict[Addr, RoutingEntry] = {}

    # ------------------------------------------------------------------ lookup helpers

    def __len__(self) -> int:
        return sum(len(b.entries) for b in self.buckets)

    def bucket_index(self, id_int: int) -> int:
        d = self.own_int ^ id_int
        cpl = ID_BITS - d.bit_length()
        return min(cpl, len(self.buckets) - 1)

    def get(self, node_id: bytes) -> RoutingEntry | None:
        return self._by_id.get(node_id)

    def in_main(self, node_id: bytes) -> bool:
        e = self._by_id.get(node_id)
        return e is not None and e in self.buckets[self.bucket_index(e.id_int)].entries

    def entries(self) -> Iterator[RoutingEntry]:
        for b in self.buckets:
            yield from b.entries

    def state(self, e: RoutingEntry, now: float) -> str:
        return e.state(now, self.good_for, self.max_failures)

    # ------------------------------------------------------------------ updates

    def heard(self, node_id: bytes, addr: Addr, now: float, *, responded: bool) -> str:
        """Record a message from ``node_id`` at ``addr``.

        ``responded`` is True for an answer to our query (the node is then eligible for a main bucket)
        and False when it merely queried us. Returns ``"updated"``, ``"added"``, ``"replacement"``
        (bucket full: ping :meth:`questionable_in_bucket`), ``"rejected"`` (IP limits) or
        ``"conflict"`` (id/address mismatch with an existing entry).
        """
        if len(node_id) != 20 or node_id == self.own_id:
            return "rejected"
        e = self._by_id.get(node_id)
        if e is not None:
            if e.addr != addr:
                return "conflict"  # keep the old mapping: it may be a spoof
            if responded:
                e.last_response = now
                e.fail_count = 0
                e.ping_sent = None
            else:
                e.last_query = now
            idx = self.bucket_index(e.id_int)
            bucket = self.buckets[idx]
            if e in bucket.entries:
                if responded:
                    bucket.last_changed = now
                return "updated"
            if responded:
                return self._promote(idx, e, now)
            return "updated"
        other = self._by_addr.get(addr)
        if other is not None:
            if self.state(other, now) != BAD:
                return "conflict"
            self._remove(other)
        net = _network_key(addr[0]) if self.restrict_ips else None
        id_int = int.from_bytes(node_id, "big")
        idx = self.bucket_index(id_int)
        if net is not None and self._ip_taken(self.buckets[idx], net):
            return "rejected"
        e = RoutingEntry(node_id, addr, id_int, now, net=net)
        if responded:
            e.last_response = now
        else:
            e.last_query = now
        self._by_id[node_id] = e
        self._by_addr[addr] = e
        if not responded:
            self._add_replacement(self.buckets[idx], e)
            return "replacement"
        return self._promote(idx, e, now)

    def _ip_taken(self, bucket: Bucket, net: tuple[bytes, bytes]) -> bool:
        for other in bucket.entries:
            if other.net is not None and (other.net[0] == net[0] or other.net[1] == net[1]):
                return True
        return any(other.net is not None and other.net[0] == net[0] for other in bucket.replacements)

    def _add_replacement(self, bucket: Bucket, e: RoutingEntry) -> None:
        if e in bucket.replacements:
            return
        bucket.replacements.append(e)
        if len(bucket.replacements) > self.replacement_size:
            # Drop the oldest unconfirmed candidate first, else the oldest one.
            victim = next((r for r in bucket.replacements if not r.confirmed), bucket.replacements[0])
            bucket.replacements.remove(victim)
            self._forget(victim)

    def _promote(self, idx: int, e: RoutingEntry, now: float) -> str:
        """Place a responding node ``e`` (possibly in the replacement cache) into its main bucket."""
        while True:
            bucket = self.buckets[idx]
            if len(bucket.entries) < self.k:
                self._take_from_replacements(bucket, e)
                bucket.entries.append(e)
                bucket.last_changed = now
                return "added"
            bad = next((x for x in bucket.entries if self.state(x, now) == BAD), None)
            if bad is not None:
                self._take_from_replacements(bucket, e)
                bucket.entries[bucket.entries.index(bad)] = e
                self._forget(bad)
                bucket.last_changed = now
                return "added"
            if idx == len(self.buckets) - 1 and len(self.buckets) < ID_BITS:
                self._split()
                idx = self.bucket_index(e.id_int)
                continue
            self._add_replacement(bucket, e)
            return "replacement"

    def _take_from_replacements(self, bucket: Bucket, e: RoutingEntry) -> None:
        if e in bucket.replacements:
            bucket.replacements.remove(e)

    def _split(self) -> None:
        last = self.buckets[-1]
        new = Bucket(last_changed=last.last_changed)
        depth = len(self.buckets) - 1
        self.buckets.append(new)
        keep: list[RoutingEntry] = []
        for e in last.entries:
            (new.entries if self.bucket_index(e.id_int) > depth else keep).append(e)
        last.entries = keep
        keep_r: list[RoutingEntry] = []
        for e in last.replacements:
            (new.replacements if self.bucket_index(e.id_int) > depth else keep_r).append(e)
        last.replacements = keep_r
        for b in (last, new):
            self._fill_from_replacements(b)

    def _fill_from_replacements(self, bucket: Bucket) -> None:
        while len(bucket.entries) < self.k:
            cand = next((r for r in reversed(bucket.replacements) if r.confirmed), None)
            if cand is None:
                return
            bucket.replacements.remove(cand)
            bucket.entries.append(cand)

    def failed(self, node_id: bytes, addr: Addr, now: float) -> None:
        """One of our queries to ``node_id`` timed out. A node that turns bad is replaced by a confirmed
        replacement when the bucket has one; otherwise it stays until a responder takes its slot."""
        e = self._by_id.get(node_id)
        if e is None or e.addr != addr:
            return
        e.fail_count += 1
        e.ping_sent = None
        idx = self.bucket_index(e.id_int)
        bucket = self.buckets[idx]
        if e in bucket.replacements:
            if e.fail_count >= self.max_failures:
                bucket.replacements.remove(e)
                self._forget(e)
            return
        if self.state(e, now) != BAD:
            return
        cand = next((r for r in reversed(bucket.replacements) if r.confirmed and r.fail_count == 0), None)
        if cand is not None:
            bucket.replacements.remove(cand)
            bucket.entries[bucket.entries.index(e)] = cand
            self._forget(e)
            bucket.last_changed = now
        elif e.fail_count >= self.max_failures + 3:
            bucket.entries.remove(e)  # give up on it entirely
            self._forget(e)

    def remove(self, node_id: bytes) -> None:
        e = self._by_id.get(node_id)
        if e is not None:
            self._remove(e)

    def _remove(self, e: RoutingEntry) -> None:
        bucket = self.buckets[self.bucket_index(e.id_int)]
        if e in bucket.entries:
            bucket.entries.remove(e)
        if e in bucket.replacements:
            bucket.replacements.remove(e)
        self._forget(e)

    def _forget(self, e: RoutingEntry) -> None:
        if self._by_id.get(e.id) is e:
            del self._by_id[e.id]
        if self._by_addr.get(e.addr) is e:
            del self._by_addr[e.addr]

    # ------------------------------------------------------------------ maintenance queries

    def questionable_in_bucket(
        self, node_id: bytes, now: float, repeat_after: float = 10.0
    ) -> list[RoutingEntry]:
        """Questionable entries of ``node_id``'s bucket that should be pinged now (eviction check)."""
        bucket = self.buckets[self.bucket_index(int.from_bytes(node_id, "big"))]
        out = []
        for e in bucket.entries:
            if self.state(e, now) == QUESTIONABLE and (
                e.ping_sent is None or now - e.ping_sent > repeat_after
            ):
                e.ping_sent = now
                out.append(e)
        return out

    def unconfirmed_candidates(self, limit: int = 8) -> list[RoutingEntry]:
        """Replacement-cache nodes that never answered us, in buckets with a free or bad slot (or the
        splittable last bucket): the caller pings them so responders can move in."""
        out: list[RoutingEntry] = []
        last = len(self.buckets) - 1
        for i, b in enumerate(self.buckets):
            splittable = i == last and last < ID_BITS - 1
            if (
                not splittable
                and len(b.entries) >= self.k
                and all(e.fail_count < self.max_failures for e in b.entries)
            ):
                continue
            for r in b.replacements:
                if not r.confirmed and r.ping_sent is None:
                    out.append(r)
                    if len(out) >= limit:
                        return out
        return out

    def stale_buckets(self, now: float, interval: float = 900.0) -> list[int]:
        """Indices of buckets unchanged for ``interval`` seconds (BEP 5 refresh)."""
        return [i for i, b in enumerate(self.buckets) if now - b.last_changed >= interval]

    def touch_bucket(self, idx: int, now: float) -> None:
        self.buckets[idx].last_changed = now

    def random_id_in_bucket(self, idx: int, rng: random.Random) -> bytes:
        """A random id that falls into bucket ``idx`` (for refresh lookups)."""
        last = idx == len(self.buckets) - 1
        rand = rng.getrandbits(ID_BITS)
        if last:
            # Shares at least ``idx`` leading bits with our id.
            keep_mask = ((1 << idx) - 1) << (ID_BITS - idx) if idx else 0
            value = (self.own_int & keep_mask) | (rand & ~keep_mask & ((1 << ID_BITS) - 1))
        else:
            bit = 1 << (ID_BITS - 1 - idx)
            keep_mask = ((1 << idx) - 1) << (ID_BITS - idx) if idx else 0
            low = bit - 1
            value = (self.own_int & keep_mask) | ((self.own_int & bit) ^ bit) | (rand & low)
        return value.to_bytes(20, "big")

    def closest(
        self, target: bytes, count: int, now: float, *, include_bad: bool = False
    ) -> list[RoutingEntry]:
        """Up to ``count`` main-bucket entries nearest to ``target`` by XOR, bad nodes excluded."""
        t = int.from_bytes(target, "big")
        pool = [e for b in self.buckets for e in b.entries if include_bad or e.fail_count < self.max_failures]
        pool.sort(key=lambda e: e.id_int ^ t)
        return pool[:count]
