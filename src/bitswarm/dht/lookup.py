"""Iterative Kademlia lookups (BEP 5 ``find_node``/``get_peers``, BEP 44 ``get``), sans-I/O.

A :class:`Lookup` keeps the candidates it has heard of sorted by XOR distance to the target. It keeps
up to ``alpha`` queries in flight to the closest not-yet-queried candidates among the ``k`` closest
non-failed ones, and finishes when those ``k`` closest have all answered (or no candidate is left).
A query that has been outstanding for ``slow_after`` seconds stops counting against ``alpha`` (it may
still answer until its hard timeout), so one dead node does not stall the lookup.

Store phases (``announce_peer``, BEP 44 ``put``) run after the traversal, against the ``k`` closest
nodes that answered with a write token; with BEP 42 enforcement only compliant ids qualify.

The lookup sends through its :class:`~bitswarm.dht.node.DHTNode`; results arrive via
:meth:`Lookup.add_done_callback` (the asyncio driver turns that into a future).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bitswarm.bencode import decode as bdecode
from bitswarm.dht import bep33, bep44
from bitswarm.dht.bep42 import is_valid_node_id
from bitswarm.dht.krpc import Addr, Error, NodeInfo, ResponseBody

if TYPE_CHECKING:
    from bitswarm.dht.node import DHTNode

__all__ = ["Item", "Lookup", "LookupResult"]

NEW, SENT, OK, FAILED = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Item:
    """A BEP 44 item: ``v`` is bencoded. Mutable when ``k`` is set."""

    v: bytes
    k: bytes | None = None
    sig: bytes | None = None
    seq: int | None = None
    salt: bytes = b""

    @property
    def target(self) -> bytes:
        if self.k is None:
            return bep44.immutable_target(self.v)
        return bep44.mutable_target(self.k, self.salt)


@dataclass(slots=True)
class LookupResult:
    """What a finished lookup found. ``messages`` counts the queries it sent."""

    target: bytes
    peers: list[Addr] = field(default_factory=list)
    nodes: list[NodeInfo] = field(default_factory=list)  # closest responders, nearest first
    messages: int = 0
    responses: int = 0
    stored: int = 0  # announce_peer / put acknowledgements
    item: Item | None = None
    started: float = 0.0
    finished: float = 0.0
    #: BEP 33 (a scrape lookup): the union of the nodes' ``BFsd``/``BFpe`` bloom filters (a node that
    #: answered with ``values`` only adds those IPs to ``bf_peers``, unless ``bf_seeds`` has them);
    #: None when nothing was found. ``scrapes``: nodes that answered with filters.
    bf_seeds: bytes | None = None
    bf_peers: bytes | None = None
    scrapes: int = 0

    @property
    def seeds_estimate(self) -> int:
        """BEP 33: about how many seeds the DHT knows of (0 without a scrape answer)."""
        return 0 if self.bf_seeds is None else round(bep33.estimate(self.bf_seeds))

    @property
    def peers_estimate(self) -> int:
        """BEP 33: about how many other peers (downloaders) the DHT knows of."""
        return 0 if self.bf_peers is None else round(bep33.estimate(self.bf_peers))


@dataclass(slots=True, eq=False)
class _Candidate:
    """One node a lookup knows of, and how far the lookup got with it."""

    addr: Addr
    id: bytes | None
    dist: int  # -1 while the id is unknown (bootstrap contacts go first)
    state: int = NEW
    slow: bool = False
    token: bytes | None = None
    item_seq: int | None = None


class Lookup:
    """One iterative lookup. ``kind`` is ``find_node``, ``get_peers`` or ``get``; ``store`` is
    ``announce`` or ``put`` (or None)."""

    def __init__(
        self,
        node: DHTNode,
        kind: str,
        target: bytes,
        *,
        store: str | None = None,
        port: int = 0,
        implied_port: bool = False,
        put_item: Item | None = None,
        salt: bytes = b"",
        seq: int | None = None,
        scrape: bool = False,
        seed: bool = False,
    ) -> None:
        self.node = node
        self.kind = kind
        self.target = target
        self.target_int = int.from_bytes(target, "big")
        self.store = store
        self.port = port
        self.implied_port = implied_port
        self.put_item = put_item
        self.salt = salt
        self.seq = seq
        self.scrape = scrape  #: BEP 33: ask for bloom filters (``get_peers`` with ``scrape=1``)
        self.seed = seed  #: BEP 33: announce with ``seed=1``
        self._bf_seeds: bep33.ScrapeBloom | None = None
        self._bf_peers: bep33.ScrapeBloom | None = None
        self._legacy_ips: set[str] = set()  # values of nodes that sent no filters
        self.k = node.config.k
        self.alpha = node.config.alpha
        self.max_queries = node.config.max_lookup_queries
        self.result = LookupResult(target, started=node.clock())
        self.done = False
        self._cands: dict[Addr, _Candidate] = {}
        self._ids: set[bytes] = set()
        self._order: list[_Candidate] = []
        self._dirty = False
        self._peers: set[Addr] = set()
        self._callbacks: list[Callable[[LookupResult], None]] = []
        self._reply_callbacks: list[Callable[[Addr, ResponseBody], None]] = []
        self._pending_stores = 0
        self._storing = False

    # ------------------------------------------------------------------ public

    def add_done_callback(self, fn: Callable[[LookupResult], None]) -> None:
        if self.done:
            fn(self.result)
        else:
            self._callbacks.append(fn)

    def add_reply_callback(self, fn: Callable[[Addr, ResponseBody], None]) -> None:
        """Call ``fn(addr, reply)`` for each response of the traversal as it arrives (peers and write
        tokens while the lookup runs; :attr:`ResponseBody.token` is what an announce to ``addr`` needs)."""
        self._reply_callbacks.append(fn)

    def add_candidate(self, addr: Addr, node_id: bytes | None) -> None:
        if addr in self._cands or (node_id is not None and node_id in self._ids):
            return
        if node_id is not None and node_id == self.node.node_id:
            return
        if not self.node.acceptable_contact(addr, node_id):
            return
        dist = -1 if node_id is None else int.from_bytes(node_id, "big") ^ self.target_int
        c = _Candidate(addr, node_id, dist)
        self._cands[addr] = c
        if node_id is not None:
            self._ids.add(node_id)
        self._order.append(c)
        self._dirty = True

    def start(self) -> None:
        self.step()

    # ------------------------------------------------------------------ traversal

    def step(self) -> None:
        if self.done or self._storing:
            return
        if self._dirty:
            self._order.sort(key=lambda c: c.dist)
            self._dirty = False
        in_flight = 0
        any_in_flight = False
        for c in self._order:
            if c.state == SENT:
                any_in_flight = True
                if not c.slow:
                    in_flight += 1
        seen = 0
        all_ok = True
        for c in self._order:
            if c.state == FAILED:
                continue
            seen += 1
            if c.state == NEW:
                all_ok = False
                if in_flight < self.alpha and self.result.messages < self.max_queries:
                    self._send(c)
                    in_flight += 1
                    any_in_flight = True
            elif c.state == SENT:
                all_ok = False
            if seen >= self.k:
                break
        if (all_ok and seen > 0) or not any_in_flight:
            self._traversal_done()

    def _send(self, c: _Candidate) -> None:
        c.state = SENT
        self.result.messages += 1
        self.node.send_lookup_query(self, c.addr, c.id)

    def on_reply(self, addr: Addr, reply: ResponseBody | Error | None) -> None:
        """Called by the node with the response, an error reply, or None on timeout."""
        c = self._cands.get(addr)
        if c is None or c.state != SENT:
            return
        if not isinstance(reply, ResponseBody):
            c.state = FAILED
            self.step()
            return
        c.state = OK
        self.result.responses += 1
        if c.id != reply.id:
            if c.id is not None:
                self._ids.discard(c.id)
            c.id = reply.id
            self._ids.add(reply.id)
            c.dist = int.from_bytes(reply.id, "big") ^ self.target_int
            self._dirty = True
        c.token = reply.token
        if self.node.config.enforce_node_id and not is_valid_node_id(reply.id, addr[0]):
            c.token = None  # BEP 42: not eligible as a storage target
        for peer in reply.values:
            if peer not in self._peers:
                self._peers.add(peer)
                self.result.peers.append(peer)
        if self.kind == "get" and reply.v is not None:
            self._consider_item(c, reply)
        if self.scrape:
            self._add_scrape(reply)
        for fn in self._reply_callbacks:
            fn(addr, reply)
        families = self.node.families
        if 4 in families:
            for n in reply.nodes:
                self.add_candidate(n.addr, n.id)
        if 6 in families:
            for n in reply.nodes6:
                self.add_candidate(n.addr, n.id)
        self.step()

    def _add_scrape(self, r: ResponseBody) -> None:
        if r.bf_seeds is None or r.bf_peers is None:
            self._legacy_ips.update(host for host, _port in r.values)
            return
        if self._bf_seeds is None or self._bf_peers is None:
            self._bf_seeds, self._bf_peers = bep33.ScrapeBloom(), bep33.ScrapeBloom()
        self._bf_seeds.update(r.bf_seeds)
        self._bf_peers.update(r.bf_peers)
        self.result.scrapes += 1

    def _scrape_result(self) -> None:
        """BEP 33 "legacy responses": IPs from nodes without filters count as peers, unless some
        node's seed filter holds them."""
        seeds, peers = self._bf_seeds, self._bf_peers
        if seeds is None or peers is None:
            if not self._legacy_ips:
                return
            seeds, peers = bep33.ScrapeBloom(), bep33.ScrapeBloom()
        for ip in self._legacy_ips:
            if ip not in seeds:
                peers.insert(ip)
        self.result.bf_seeds, self.result.bf_peers = bytes(seeds), bytes(peers)

    def on_slow(self, addr: Addr) -> None:
        c = self._cands.get(addr)
        if c is not None and c.state == SENT and not c.slow:
            c.slow = True
            self.step()

    def _consider_item(self, c: _Candidate, r: ResponseBody) -> None:
        assert r.v is not None
        if r.k is None:
            if bep44.immutable_target(r.v) == self.target and self.result.item is None:
                self.result.item = Item(r.v)
            return
        if r.sig is None or r.seq is None or bep44.mutable_target(r.k, self.salt) != self.target:
            return
        if not bep44.verify(r.k, r.sig, r.seq, r.v, self.salt):
            return
        c.item_seq = r.seq
        best = self.result.item
        if best is None or (best.seq is not None and r.seq > best.seq):
            self.result.item = Item(r.v, r.k, r.sig, r.seq, self.salt)

    # ------------------------------------------------------------------ completion and store phase

    def _closest_ok(self) -> list[_Candidate]:
        if self._dirty:
            self._order.sort(key=lambda c: c.dist)
            self._dirty = False
        return [c for c in self._order if c.state == OK][: self.k]

    def _traversal_done(self) -> None:
        if self.scrape:
            self._scrape_result()
        closest = self._closest_ok()
        self.result.nodes = [NodeInfo(c.id, c.addr) for c in closest if c.id is not None]
        if self.store is None:
            self._finish()
            return
        self._storing = True
        targets = [c for c in closest if c.token is not None]
        for c in targets:
            assert c.token is not None
            args: dict[bytes, Any]
            if self.store == "announce":
                args = {
                    b"info_hash": self.target,
                    b"port": self.port,
                    b"token": c.token,
                }
                if self.implied_port:
                    args[b"implied_port"] = 1
                if self.seed:
                    args[b"seed"] = 1
                method = b"announce_peer"
            else:
                item = self.put_item
                assert item is not None
                args = {b"token": c.token, b"v": bdecode(item.v)}
                if item.k is not None:
                    args.update({b"k": item.k, b"sig": item.sig, b"seq": item.seq})
                    if item.salt:
                        args[b"salt"] = item.salt
                method = b"put"
            self._pending_stores += 1
            self.result.messages += 1
            self.node.send_store_query(self, c.addr, c.id, method, args)
        if self._pending_stores == 0:
            self._finish()

    def on_store_reply(self, reply: ResponseBody | Error | None) -> None:
        if self.done:
            return
        if isinstance(reply, ResponseBody):
            self.result.stored += 1
        self._pending_stores -= 1
        if self._pending_stores <= 0:
            self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.result.finished = self.node.clock()
        self.node.lookup_finished(self)
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self.result)
