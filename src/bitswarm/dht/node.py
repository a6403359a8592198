"""The Mainline DHT node (BEP 5 with BEP 32, 42, 43, 44, 51), sans-I/O.

:class:`DHTNode` never touches a socket or an event loop. Feed it datagrams with
:meth:`DHTNode.datagram_received`, call :meth:`DHTNode.tick` now and then (timeouts, token rotation,
expiry, bucket refresh), and give it a ``send(data, addr)`` callback and a ``clock()``. That is all a
simulation needs to run hundreds of nodes in one process over a dict of fake addresses, and all the
asyncio driver (:mod:`bitswarm.dht.server`) adds is a UDP socket and a timer.

Security measures (parameters in :class:`DHTConfig`):

* write tokens = SHA-1(secret + IP + target)[:8]; the secret rotates every 5 minutes and the current
  and previous secrets are accepted, so a token is valid for 5-10 minutes; a bad token gets error 203;
* malformed datagrams get no reply at all (no amplification); replies are bounded in size;
* a per-source token-bucket rate limit on queries (per IP; per IP:port for local addresses);
* BEP 42: our id is derived from the external IP found by voting on responses' ``ip`` field and is
  regenerated when the vote settles on a different address; ``enforce_node_id`` keeps
  non-compliant nodes out of the table and out of store targets;
* routing-table limits: one id per address, per bucket one entry per IP and per /24 (/64);
  only responders enter main buckets; private addresses are refused unless in LAN mode.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bitswarm.bencode import BencodeError
from bitswarm.bencode import decode as bdecode
from bitswarm.bencode import encode as bencode
from bitswarm.dht import bep44
from bitswarm.dht.bep42 import generate_node_id, is_local_address, is_valid_node_id
from bitswarm.dht.krpc import (
    ERROR_BAD_SIGNATURE,
    ERROR_CAS_MISMATCH,
    ERROR_METHOD_UNKNOWN,
    ERROR_PROTOCOL,
    ERROR_SALT_TOO_BIG,
    ERROR_SEQ_TOO_LOW,
    ERROR_V_TOO_BIG,
    Addr,
    AnnouncePeerArgs,
    Error,
    FindNodeArgs,
    GetArgs,
    GetPeersArgs,
    KRPCError,
    NodeInfo,
    PingArgs,
    PutArgs,
    Query,
    Response,
    ResponseBody,
    SampleInfohashesArgs,
    decode,
    decode_nodes,
    decode_nodes6,
    encode,
    encode_compact_addr,
    encode_nodes,
    encode_nodes6,
    pack_ip,
    parse_query,
    parse_response,
)
from bitswarm.dht.routing import RoutingTable

# :mod:`.lookup` (the client side: iterative lookups) is imported by the first lookup or BEP 44 put: a
# node that only answers queries (a peer on a LAN with no bootstrap node) never loads it.
if TYPE_CHECKING:
    from bitswarm.dht.lookup import Item, Lookup, LookupResult

__all__ = ["DHTConfig", "DHTNode", "DHTStats", "NodeRouter", "QueryHook", "family_of", "load_state"]

SendFn = Callable[[bytes, Addr], None]
ReplyFn = Callable[[ResponseBody | Error | None], None]
#: A custom query handler (:attr:`DHTNode.query_hook`): it sees each well-formed incoming query (after
#: the rate limit) and returns True when it has taken care of it — answering now or later with
#: :meth:`DHTNode.respond` / :meth:`DHTNode.respond_error`, or not at all; False leaves the query to the
#: built-in handlers.
QueryHook = Callable[[Query, Addr], bool]


class NodeRouter(Protocol):
    """A user routing policy (:attr:`DHTNode.router`, tinybt's ``user_router``).

    The node tells it about every contact it hears from and every query that went unanswered, and asks
    it for the contacts to hand out in ``nodes``/``nodes6`` and to start lookups from. The built-in
    routing tables keep running beside it (bucket refresh, persistence)."""

    def node_seen(self, node: NodeInfo, responded: bool) -> None:
        """``node`` answered one of our queries (``responded``) or sent us a query."""

    def node_failed(self, addr: Addr) -> None:
        """A query to ``addr`` timed out or its reply was malformed."""

    def closest_nodes(self, target: bytes, count: int) -> list[NodeInfo]:
        """Up to ``count`` known contacts, closest to ``target`` first."""
        ...


def family_of(host: str) -> int:
    return 6 if ":" in host else 4


#: BEP 33: at most this many values beside the two 256-byte filters (the answer stays in one datagram).
SCRAPE_MAX_VALUES = 20


@dataclass(slots=True)
class DHTConfig:
    """Tunables. Times are in seconds of the injected clock."""

    k: int = 8
    alpha: int = 3
    query_timeout: float = 4.0  # hard per-query timeout
    slow_after: float = 1.0  # then the query stops counting against alpha
    max_lookup_queries: int = 150  # bound on queries per lookup
    max_failures: int = 2  # unanswered queries in a row before a node is bad
    good_for: float = 900.0  # BEP 5 15-minute rule
    bucket_refresh: float = 900.0
    token_rotation: float = 300.0  # secret rotation; tokens valid for one or two periods
    peer_ttl: float = 1800.0  # announce_peer storage expiry
    max_peers_per_hash: int = 200
    max_info_hashes: int = 5000
    max_values_returned: int = 50
    item_ttl: float = 7200.0  # BEP 44
    max_items: int = 1000
    sample_interval: int = 300  # BEP 51 ``interval``
    max_samples: int = 20
    rate_limit: float = 50.0  # queries per second per source
    rate_burst: float = 100.0
    lan: bool | None = None  # None: decided by the first bootstrap address (local → LAN mode)
    read_only: bool = False  # BEP 43
    enforce_node_id: bool = False  # BEP 42 enforcement
    restrict_routing_ips: bool = True
    regenerate_id: bool = True  # BEP 42: new id when the external-IP vote settles elsewhere
    ip_vote_threshold: int = 10
    families: tuple[int, ...] = (4,)  # address families we can send to (BEP 32)
    max_confirm_pings: int = 16  # outstanding pings to replacement candidates
    version: bytes = b"BW\x00\x01"


@dataclass(slots=True)
class DHTStats:
    """Counters of a node's traffic."""

    received: int = 0
    sent: int = 0
    dropped_malformed: int = 0
    dropped_rate_limited: int = 0
    queries_answered: int = 0
    errors_sent: int = 0
    timeouts: int = 0


@dataclass(slots=True)
class _Pending:
    """A query we sent and wait for the reply of."""

    addr: Addr
    node_id: bytes | None
    deadline: float
    slow_at: float
    callback: ReplyFn
    lookup: Lookup | None = None
    slow_notified: bool = False


@dataclass(slots=True)
class _StoredPeer:
    """A peer stored by announce_peer: when it expires and the DHT address that announced it."""

    expires: float
    announcer: Addr
    seed: bool = False  #: BEP 33: announced with ``seed=1``


@dataclass(slots=True)
class _StoredItem:
    """A BEP 44 item stored here, and when it expires."""

    item: Item
    expires: float


@dataclass(slots=True)
class _Bucket:
    """One source's query rate-limit token bucket."""

    tokens: float
    last: float


def _ip_key(addr: Addr) -> object:
    return addr if is_local_address(addr[0]) else addr[0]


def load_state(data: bytes) -> tuple[bytes, list[NodeInfo]]:
    """Parse :meth:`DHTNode.save_state` output: (node id, saved contacts). Raises KRPCError."""
    try:
        d = bdecode(data)
    except BencodeError as exc:
        raise KRPCError(f"bad DHT state: {exc}") from None
    if not isinstance(d, dict) or not isinstance(d.get(b"id"), bytes) or len(d[b"id"]) != 20:
        raise KRPCError("bad DHT state: no id")
    contacts = decode_nodes(d.get(b"nodes", b"")) + decode_nodes6(d.get(b"nodes6", b""))
    return d[b"id"], contacts


class DHTNode:
    """A Mainline DHT node with injected I/O: ``send(data, addr)``, ``clock()``, ``rng``."""

    def __init__(
        self,
        node_id: bytes | None,
        send: SendFn,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        config: DHTConfig | None = None,
    ) -> None:
        self.rng = rng or random.Random()
        self.config = config or DHTConfig()
        self.send = send
        self.clock = clock
        self.node_id = node_id if node_id is not None else self.rng.randbytes(20)
        self.families = self.config.families
        self.stats = DHTStats()
        now = clock()
        self.tables: dict[int, RoutingTable] = {f: self._new_table(now) for f in (4, 6)}
        self._pending: dict[bytes, _Pending] = {}
        self._tid = self.rng.randrange(1 << 16)
        self._secret = self.rng.randbytes(16)
        self._prev_secret = self._secret
        self._rotated = now
        self._peers: dict[bytes, dict[Addr, _StoredPeer]] = {}
        self._items: dict[bytes, _StoredItem] = {}
        self._rate: dict[object, _Bucket] = {}
        self._lookups: set[Lookup] = set()
        self._confirm_pings = 0
        self._votes: dict[str, str] = {}  # voter IP -> the external IP it reported (BEP 42)
        self._vote_counts: dict[str, int] = {}
        self.external_ip: str | None = None
        self._reported: dict[str, Addr] = {}  # voter IP -> the (ip, port) it saw us at
        self._first_report: Addr | None = None
        self.query_hook: QueryHook | None = None
        self.router: NodeRouter | None = None
        self.on_node_id_change: Callable[[bytes], None] | None = None
        #: called with (the IP a responding node saw us at, that node's address): BEP 42 ``ip`` fields
        self.on_ip_report: Callable[[str, Addr], None] | None = None
        self._last_maintenance = now
        self._bootstrap_addrs: list[Addr] = []
        self._refreshing = 0

    def _new_table(self, now: float) -> RoutingTable:
        c = self.config
        return RoutingTable(
            self.node_id,
            k=c.k,
            now=now,
            restrict_ips=c.restrict_routing_ips,
            good_for=c.good_for,
            max_failures=c.max_failures,
        )

    # ------------------------------------------------------------------ properties

    @property
    def lan(self) -> bool:
        return bool(self.config.lan)

    def table_for(self, addr: Addr) -> RoutingTable:
        return self.tables[family_of(addr[0])]

    def acceptable_contact(self, addr: Addr, node_id: bytes | None) -> bool:
        """May ``addr`` enter a lookup or the routing table? (ports, families, LAN mode, BEP 42)."""
        if not 0 < addr[1] <= 0xFFFF or family_of(addr[0]) not in self.families:
            return False
        if not self.lan and is_local_address(addr[0]):
            return False
        return not (
            self.config.enforce_node_id and node_id is not None and not is_valid_node_id(node_id, addr[0])
        )

    # ------------------------------------------------------------------ sending

    def _next_tid(self) -> bytes:
        for _ in range(1 << 16):
            self._tid = (self._tid + 1) & 0xFFFF
            t = self._tid.to_bytes(2, "big")
            if t not in self._pending:
                return t
        raise RuntimeError("no free transaction id")  # pragma: no cover - 65536 in flight

    def _send_msg(self, msg: Query | Response | Error, addr: Addr) -> None:
        self.stats.sent += 1
        self.send(encode(msg), addr)

    def query(
        self,
        addr: Addr,
        method: bytes,
        args: dict[bytes, Any],
        callback: ReplyFn,
        *,
        node_id: bytes | None = None,
        lookup: Lookup | None = None,
    ) -> None:
        """Send one query; ``callback`` gets the typed response, an Error, or None on timeout."""
        now = self.clock()
        t = self._next_tid()
        a = {b"id": self.node_id, **args}
        if len(self.families) > 1 and method in (b"find_node", b"get_peers", b"get", b"sample_infohashes"):
            a[b"want"] = [b"n4", b"n6"]
        self._pending[t] = _Pending(
            addr, node_id, now + self.config.query_timeout, now + self.config.slow_after, callback, lookup
        )
        self._send_msg(Query(t, method, a, self.config.version, self.config.read_only), addr)

    def ping(self, addr: Addr, callback: ReplyFn | None = None) -> None:
        self.query(addr, b"ping", {}, callback or (lambda r: None))

    def send_lookup_query(self, lookup: Lookup, addr: Addr, node_id: bytes | None) -> None:
        if lookup.kind == "get_peers":
            args = {b"info_hash": lookup.target}
            if lookup.scrape:
                args[b"scrape"] = 1  # type: ignore[assignment]
        elif lookup.kind == "get":
            args = {b"target": lookup.target}
            if lookup.seq is not None:
                args[b"seq"] = lookup.seq  # type: ignore[assignment]
        else:
            args = {b"target": lookup.target}
        method = {"get_peers": b"get_peers", "get": b"get"}.get(lookup.kind, b"find_node")
        self.query(addr, method, args, lambda r: lookup.on_reply(addr, r), node_id=node_id, lookup=lookup)

    def send_store_query(
        self, lookup: Lookup, addr: Addr, node_id: bytes | None, method: bytes, args: dict[bytes, Any]
    ) -> None:
        self.query(addr, method, args, lookup.on_store_reply, node_id=node_id)

    # ------------------------------------------------------------------ receiving

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        """Feed one UDP datagram from ``addr``. Never raises for bad input."""
        self.stats.received += 1
        try:
            msg = decode(data)
        except KRPCError:
            self.stats.dropped_malformed += 1
            return
        if isinstance(msg, Query):
            self._handle_query(msg, addr)
            return
        p = self._pending.get(msg.t)
        if p is None or p.addr != addr:
            self.stats.dropped_malformed += 1
            return
        del self._pending[msg.t]
        if isinstance(msg, Error):
            p.callback(msg)
            return
        try:
            body = parse_response(msg)
        except KRPCError:
            self.stats.dropped_malformed += 1
            self._failed(p)
            p.callback(None)
            return
        now = self.clock()
        if self.acceptable_contact(addr, body.id):
            table = self.table_for(addr)
            if p.node_id is not None and p.node_id != body.id:
                table.failed(p.node_id, addr, now)
            status = table.heard(body.id, addr, now, responded=True)
            if status == "replacement":
                for e in table.questionable_in_bucket(body.id, now):
                    self.ping(e.addr, self._make_maint_cb(e.id, e.addr))
            if self.router is not None:
                self.router.node_seen(NodeInfo(body.id, addr), True)
        if msg.ip is not None:
            self._report(msg.ip, addr)
            self._vote(msg.ip[0], addr)
            if self.on_ip_report is not None:
                self.on_ip_report(msg.ip[0], addr)
        p.callback(body)

    def _make_maint_cb(self, node_id: bytes, addr: Addr) -> ReplyFn:
        def cb(r: ResponseBody | Error | None) -> None:
            if r is None:
                self.table_for(addr).failed(node_id, addr, self.clock())

        return cb

    def _failed(self, p: _Pending) -> None:
        if p.node_id is not None:
            self.table_for(p.addr).failed(p.node_id, p.addr, self.clock())
        if self.router is not None:
            self.router.node_failed(p.addr)

    # ------------------------------------------------------------------ BEP 42 external IP voting

    def _report(self, reported: Addr, voter: Addr) -> None:
        if self._first_report is None:
            self._first_report = reported
        if voter[0] not in self._reported and len(self._reported) >= 50:
            del self._reported[next(iter(self._reported))]
        self._reported.pop(voter[0], None)
        self._reported[voter[0]] = reported

    @property
    def external_address(self) -> Addr | None:
        """The (ip, port) other nodes see us at (BEP 42 ``ip`` of their responses), None before any
        report. The first report counts at once; then the address most of the last 50 reporters (one per
        IP) agree on — once the IP vote settles (:attr:`external_ip`), the most reported port at that IP."""
        reports = list(self._reported.values())
        if self.external_ip is not None:
            reports = [a for a in reports if a[0] == self.external_ip] or reports
        if not reports:
            return self._first_report
        counts: dict[Addr, int] = {}
        for a in reports:
            counts[a] = counts.get(a, 0) + 1
        best = max(counts.values())
        if self._first_report is not None and counts.get(self._first_report) == best:
            return self._first_report  # a tie keeps the first report; else the earliest of the best
        return next(a for a in reports if counts[a] == best)

    def _vote(self, reported: str, voter: Addr) -> None:
        """One vote per voter IP (the latest), over the last 50 voters; the only count that can
        newly cross the threshold is the one just incremented."""
        votes, counts = self._votes, self._vote_counts
        old = votes.pop(voter[0], None)
        if old is None and len(votes) >= 50:
            old = votes.pop(next(iter(votes)))
        if old is not None:
            counts[old] -= 1
        votes[voter[0]] = reported
        n = counts[reported] = counts.get(reported, 0) + 1
        if n < self.config.ip_vote_threshold or 2 * n <= len(votes) or reported == self.external_ip:
            return
        self.external_ip = reported
        if (
            self.config.regenerate_id
            and not is_local_address(reported)
            and not is_valid_node_id(self.node_id, reported)
        ):
            self.set_node_id(generate_node_id(reported, self.rng))

    def set_node_id(self, node_id: bytes) -> None:
        """Change our id (BEP 42 re-generation): rebuild the tables around it and look ourselves up."""
        now = self.clock()
        old = self.tables
        self.node_id = node_id
        self.tables = {f: self._new_table(now) for f in (4, 6)}
        for table in old.values():
            for e in table.entries():
                self.tables[family_of(e.addr[0])].heard(e.id, e.addr, e.last_response or now, responded=True)
        if self.on_node_id_change is not None:
            self.on_node_id_change(node_id)
        self.find_node(node_id)

    # ------------------------------------------------------------------ query handling

    def _rate_ok(self, addr: Addr, now: float) -> bool:
        key = _ip_key(addr)
        b = self._rate.get(key)
        c = self.config
        if b is None:
            if len(self._rate) > 20000:
                self._rate.clear()
            b = self._rate[key] = _Bucket(c.rate_burst, now)
        b.tokens = min(c.rate_burst, b.tokens + (now - b.last) * c.rate_limit)
        b.last = now
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True

    def _handle_query(self, q: Query, addr: Addr) -> None:
        if self.config.read_only:
            return  # BEP 43: read-only nodes do not answer
        now = self.clock()
        if not self._rate_ok(addr, now):
            self.stats.dropped_rate_limited += 1
            return
        if self.query_hook is not None and self.query_hook(q, addr):
            return
        try:
            args = parse_query(q)
        except KRPCError as exc:
            if exc.code == ERROR_METHOD_UNKNOWN:
                args2 = self._forward_compat(q)
                if args2 is None:
                    self._error(q.t, addr, ERROR_METHOD_UNKNOWN, "Method Unknown")
                    return
                args = args2
            else:
                self._error(q.t, addr, ERROR_PROTOCOL, "Protocol Error")
                return
        values = self._dispatch(args, q, addr, now)
        if values is not None:
            self.respond(q, addr, values)
        if not q.ro and self.acceptable_contact(addr, args.id):
            if self.router is not None:
                self.router.node_seen(NodeInfo(args.id, addr), False)
            table = self.table_for(addr)
            status = table.heard(args.id, addr, now, responded=False)
            if status == "replacement" and self._confirm_pings < self.config.max_confirm_pings:
                e = table.get(args.id)
                if e is not None and e.ping_sent is None and e in table.unconfirmed_candidates(64):
                    e.ping_sent = now
                    self._confirm_pings += 1
                    self.ping(addr, self._confirm_cb)

    def _confirm_cb(self, r: ResponseBody | Error | None) -> None:
        self._confirm_pings -= 1

    def _forward_compat(self, q: Query) -> FindNodeArgs | None:
        """BEP 5 forward compatibility: unknown methods with ``target``/``info_hash`` act as find_node."""
        a = q.args
        node_id = a.get(b"id")
        target = a.get(b"target", a.get(b"info_hash"))
        if (
            isinstance(node_id, bytes)
            and len(node_id) == 20
            and isinstance(target, bytes)
            and len(target) == 20
        ):
            return FindNodeArgs(node_id, target)
        return None

    def _error(self, t: bytes, addr: Addr, code: int, message: str) -> None:
        self.stats.errors_sent += 1
        self._send_msg(Error(t, code, message, self.config.version, addr), addr)

    def respond(self, query: Query, addr: Addr, values: dict[bytes, Any]) -> None:
        """Answer ``query`` from ``addr`` (for a :attr:`query_hook`); ``id`` defaults to our node id."""
        self.stats.queries_answered += 1
        self._send_msg(Response(query.t, {b"id": self.node_id, **values}, self.config.version, addr), addr)

    def respond_error(self, query: Query, addr: Addr, code: int, message: str) -> None:
        """Answer ``query`` from ``addr`` with a KRPC error (for a :attr:`query_hook`)."""
        self._error(query.t, addr, code, message)

    def _token(self, secret: bytes, addr: Addr, target: bytes) -> bytes:
        return hashlib.sha1(secret + pack_ip(addr[0]) + target).digest()[:8]

    def make_token(self, addr: Addr, target: bytes) -> bytes:
        """The write token we hand ``addr`` for ``target`` (BEP 5 get_peers / BEP 44 get)."""
        return self._token(self._secret, addr, target)

    def token_valid(self, token: bytes, addr: Addr, target: bytes) -> bool:
        return token in (
            self._token(self._secret, addr, target),
            self._token(self._prev_secret, addr, target),
        )

    def _nodes_for(self, target: bytes, want: frozenset[bytes], addr: Addr, now: float) -> dict[bytes, Any]:
        if not want:
            want = frozenset([b"n6" if family_of(addr[0]) == 6 else b"n4"])
        out: dict[bytes, Any] = {}
        k = self.config.k
        if self.router is not None:
            chosen = self.router.closest_nodes(target, 2 * k)
            if b"n4" in want:
                out[b"nodes"] = encode_nodes([n for n in chosen if family_of(n.addr[0]) == 4][:k])
            if b"n6" in want:
                out[b"nodes6"] = encode_nodes6([n for n in chosen if family_of(n.addr[0]) == 6][:k])
            return out
        if b"n4" in want:
            out[b"nodes"] = encode_nodes([e.info() for e in self.tables[4].closest(target, k, now)])
        if b"n6" in want:
            out[b"nodes6"] = encode_nodes6([e.info() for e in self.tables[6].closest(target, k, now)])
        return out

    def _dispatch(self, args: Any, q: Query, addr: Addr, now: float) -> dict[bytes, Any] | None:
        me = {b"id": self.node_id}
        if isinstance(args, PingArgs):
            return me
        if isinstance(args, FindNodeArgs):
            return {**me, **self._nodes_for(args.target, args.want, addr, now)}
        if isinstance(args, GetPeersArgs):
            out = {**me, **self._nodes_for(args.info_hash, args.want, addr, now)}
            out[b"token"] = self.make_token(addr, args.info_hash)
            limit = SCRAPE_MAX_VALUES if args.scrape else self.config.max_values_returned
            values = self._values_for(args.info_hash, addr, now, noseed=args.noseed, limit=limit)
            if values:
                out[b"values"] = values
            if args.scrape:
                out.update(self._scrape_filters(args.info_hash, now))
            return out
        if isinstance(args, AnnouncePeerArgs):
            if not self.token_valid(args.token, addr, args.info_hash):
                self._error(q.t, addr, ERROR_PROTOCOL, "Bad token")
                return None
            port = addr[1] if args.implied_port else args.port
            if port == 0:
                self._error(q.t, addr, ERROR_PROTOCOL, "Bad port")
                return None
            self._store_peer(args.info_hash, (addr[0], port), addr, now, seed=args.seed)
            return me
        if isinstance(args, SampleInfohashesArgs):
            out = {**me, **self._nodes_for(args.target, args.want, addr, now)}
            keys = list(self._peers)
            n = min(len(keys), self.config.max_samples)
            out[b"samples"] = b"".join(self.rng.sample(keys, n)) if n else b""
            out[b"interval"] = self.config.sample_interval
            out[b"num"] = len(keys)
            return out
        if isinstance(args, GetArgs):
            out = {**me, **self._nodes_for(args.target, args.want, addr, now)}
            out[b"token"] = self.make_token(addr, args.target)
            stored = self._items.get(args.target)
            if stored is not None and stored.expires > now:
                it = stored.item
                if it.k is None:
                    out[b"v"] = bdecode(it.v)
                else:
                    out[b"seq"] = it.seq
                    if args.seq is None or (it.seq is not None and it.seq > args.seq):
                        out.update({b"v": bdecode(it.v), b"k": it.k, b"sig": it.sig})
            return out
        if isinstance(args, PutArgs):
            return self._handle_put(args, q, addr, now)
        return None  # pragma: no cover - parse_query returns only the types above

    def _values_for(
        self, info_hash: bytes, requester: Addr, now: float, *, noseed: bool = False, limit: int | None = None
    ) -> list[bytes]:
        """Stored peers for ``requester``: its family, live, and never the requester itself — neither its
        own endpoint nor a peer it announced (a libtorrent peer handed its own address dials itself and
        bans its own IP). Other peers on the requester's IP (other ports) are returned. ``noseed``
        (BEP 33): no seeds. At most ``limit`` (default ``max_values_returned``)."""
        peers = self._peers.get(info_hash)
        if not peers:
            return []
        family = family_of(requester[0])
        live = [
            a
            for a, p in peers.items()
            if p.expires > now
            and family_of(a[0]) == family
            and a != requester
            and p.announcer != requester
            and not (noseed and p.seed)
        ]
        limit = self.config.max_values_returned if limit is None else limit
        if len(live) > limit:
            live = self.rng.sample(live, limit)
        return [encode_compact_addr(a) for a in live]

    def _scrape_filters(self, info_hash: bytes, now: float) -> dict[bytes, bytes]:
        """BEP 33 ``BFsd``/``BFpe`` of the live peers stored for ``info_hash`` (nothing if none): one
        entry per IP, a seed if its latest announce said so."""
        from bitswarm.dht.bep33 import ScrapeBloom

        latest: dict[str, _StoredPeer] = {}
        for (host, _port), p in self._peers.get(info_hash, {}).items():
            if p.expires > now and (host not in latest or p.expires >= latest[host].expires):
                latest[host] = p
        if not latest:
            return {}
        seeds = ScrapeBloom.of(h for h, p in latest.items() if p.seed)
        others = ScrapeBloom.of(h for h, p in latest.items() if not p.seed)
        return {b"BFsd": bytes(seeds), b"BFpe": bytes(others)}

    def _store_peer(
        self, info_hash: bytes, peer: Addr, announcer: Addr, now: float, *, seed: bool = False
    ) -> None:
        c = self.config
        peers = self._peers.get(info_hash)
        if peers is None:
            if len(self._peers) >= c.max_info_hashes:
                # evict the info-hash whose freshest announce is the oldest
                victim = min(
                    self._peers, key=lambda h: max((p.expires for p in self._peers[h].values()), default=0.0)
                )
                del self._peers[victim]
            peers = self._peers[info_hash] = {}
        if peer not in peers and len(peers) >= c.max_peers_per_hash:
            oldest = min(peers, key=lambda a: peers[a].expires)
            del peers[oldest]
        peers[peer] = _StoredPeer(now + c.peer_ttl, announcer, seed)

    def _handle_put(self, a: PutArgs, q: Query, addr: Addr, now: float) -> dict[bytes, Any] | None:
        if len(a.v) > bep44.MAX_V:
            self._error(q.t, addr, ERROR_V_TOO_BIG, "Message (v field) too big")
            return None
        if len(a.salt) > bep44.MAX_SALT:
            self._error(q.t, addr, ERROR_SALT_TOO_BIG, "Salt too big")
            return None
        from bitswarm.dht.lookup import Item

        item = Item(a.v, a.k, a.sig, a.seq, a.salt)
        target = item.target
        if not self.token_valid(a.token, addr, target):
            self._error(q.t, addr, ERROR_PROTOCOL, "Bad token")
            return None
        if a.k is not None:
            assert a.sig is not None and a.seq is not None
            if a.seq < 0 or not bep44.verify(a.k, a.sig, a.seq, a.v, a.salt):
                self._error(q.t, addr, ERROR_BAD_SIGNATURE, "Invalid signature")
                return None
            old = self._items.get(target)
            if old is not None and old.expires > now and old.item.seq is not None:
                if a.cas is not None and a.cas != old.item.seq:
                    self._error(q.t, addr, ERROR_CAS_MISMATCH, "CAS mismatch")
                    return None
                if a.seq < old.item.seq or (a.seq == old.item.seq and a.v != old.item.v):
                    self._error(q.t, addr, ERROR_SEQ_TOO_LOW, "Sequence number less than current")
                    return None
        if target not in self._items and len(self._items) >= self.config.max_items:
            victim = min(self._items, key=lambda t: self._items[t].expires)
            del self._items[victim]
        self._items[target] = _StoredItem(item, now + self.config.item_ttl)
        return {b"id": self.node_id}

    # ------------------------------------------------------------------ lookups (client side)

    def _start(self, lookup: Lookup, extra: Iterable[NodeInfo | Addr] = ()) -> Lookup:
        now = self.clock()
        for x in extra:
            if isinstance(x, NodeInfo):
                lookup.add_candidate(x.addr, x.id)
            else:
                lookup.add_candidate((x[0], x[1]), None)
        if self.router is not None:
            for n in self.router.closest_nodes(lookup.target, self.config.k * 2):
                lookup.add_candidate(n.addr, n.id)
        else:
            for f in self.families:
                for e in self.tables[f].closest(lookup.target, self.config.k * 2, now):
                    lookup.add_candidate(e.addr, e.id)
        if not lookup._cands:
            for a in self._bootstrap_addrs:
                lookup.add_candidate(a, None)
        self._lookups.add(lookup)
        lookup.start()
        return lookup

    def lookup_finished(self, lookup: Lookup) -> None:
        self._lookups.discard(lookup)

    def bootstrap(self, contacts: Iterable[NodeInfo | Addr]) -> Lookup:
        """Join the network through ``contacts`` (addresses, or saved NodeInfo): a find_node of our id."""
        from bitswarm.dht.lookup import Lookup

        contacts = list(contacts)
        for x in contacts:
            a = x.addr if isinstance(x, NodeInfo) else (x[0], x[1])
            if self.config.lan is None:
                self.config.lan = is_local_address(a[0])
            if a not in self._bootstrap_addrs and len(self._bootstrap_addrs) < 32:
                self._bootstrap_addrs.append(a)
        lookup = self._start(Lookup(self, "find_node", self.node_id), contacts)
        lookup.add_done_callback(self._bootstrapped)
        return lookup

    def _bootstrapped(self, result: LookupResult) -> None:
        self.refresh_buckets()

    def refresh_buckets(self, *, stale_only: bool = False) -> int:
        """Random-id find_node in each bucket (all of them after a bootstrap; the stale ones from
        :meth:`tick`), so far buckets fill as well as the ones near our id. Returns lookups started."""
        now = self.clock()
        started = 0
        for f in self.families:
            table = self.tables[f]
            if stale_only:
                indices = table.stale_buckets(now, self.config.bucket_refresh)[:2]
            else:
                indices = list(range(len(table.buckets)))
            for idx in indices:
                table.touch_bucket(idx, now)
                self._refreshing += 1
                started += 1
                lk = self.find_node(table.random_id_in_bucket(idx, self.rng))
                lk.add_done_callback(self._refresh_done)
        return started

    def find_node(self, target: bytes) -> Lookup:
        from bitswarm.dht.lookup import Lookup

        return self._start(Lookup(self, "find_node", target))

    def get_peers(self, info_hash: bytes) -> Lookup:
        """Iterative get_peers; the result's ``peers`` are what the network returned."""
        from bitswarm.dht.lookup import Lookup

        return self._start(Lookup(self, "get_peers", info_hash))

    def scrape(self, info_hash: bytes) -> Lookup:
        """BEP 33: a get_peers lookup with ``scrape=1``; the result's ``bf_seeds``/``bf_peers`` are the
        union of the nodes' bloom filters (``seeds_estimate``/``peers_estimate`` count them)."""
        from bitswarm.dht.lookup import Lookup

        return self._start(Lookup(self, "get_peers", info_hash, scrape=True))

    def announce(
        self, info_hash: bytes, port: int = 0, *, implied_port: bool = False, seed: bool = False
    ) -> Lookup:
        """get_peers lookup, then announce_peer to the k closest nodes that gave a token (``seed``:
        BEP 33 ``seed=1``, we have the whole torrent)."""
        from bitswarm.dht.lookup import Lookup

        return self._start(
            Lookup(
                self,
                "get_peers",
                info_hash,
                store="announce",
                port=port,
                implied_port=implied_port,
                seed=seed,
            )
        )

    def get_item(self, target: bytes, *, salt: bytes = b"", seq: int | None = None) -> Lookup:
        """BEP 44 get: the result's ``item`` is the verified value (newest seq for mutable items)."""
        from bitswarm.dht.lookup import Lookup

        return self._start(Lookup(self, "get", target, salt=salt, seq=seq))

    def put_item(self, item: Item) -> Lookup:
        """BEP 44 put: a get lookup of ``item.target`` then put to the k closest with tokens."""
        from bitswarm.dht.lookup import Lookup

        return self._start(Lookup(self, "get", item.target, store="put", put_item=item, salt=item.salt))

    # ------------------------------------------------------------------ timers

    def tick(self) -> None:
        """Run timers: query timeouts, slow-query notices, token rotation, expiry, bucket refresh."""
        now = self.clock()
        expired = []
        slow = []
        for t, p in self._pending.items():
            if now >= p.deadline:
                expired.append(t)
            elif not p.slow_notified and now >= p.slow_at and p.lookup is not None:
                p.slow_notified = True
                slow.append(p)
        for p in slow:
            assert p.lookup is not None
            p.lookup.on_slow(p.addr)
        for t in expired:
            p = self._pending.pop(t)
            self.stats.timeouts += 1
            self._failed(p)
            p.callback(None)
        if now - self._rotated >= self.config.token_rotation:
            self._prev_secret = self._secret
            self._secret = self.rng.randbytes(16)
            self._rotated = now
        if now - self._last_maintenance >= 5.0:
            self._last_maintenance = now
            self._maintenance(now)

    def _maintenance(self, now: float) -> None:
        for h in list(self._peers):
            peers = self._peers[h]
            for a in [a for a, p in peers.items() if p.expires <= now]:
                del peers[a]
            if not peers:
                del self._peers[h]
        for t in [t for t, s in self._items.items() if s.expires <= now]:
            del self._items[t]
        for key in [k for k, b in self._rate.items() if now - b.last > 60.0]:
            del self._rate[key]
        if self._refreshing == 0:
            if self._bootstrap_addrs and all(len(self.tables[f]) == 0 for f in self.families):
                self.bootstrap([])
            else:
                self.refresh_buckets(stale_only=True)
        for f in self.families:
            for e in self.tables[f].unconfirmed_candidates(4):
                if self._confirm_pings < self.config.max_confirm_pings:
                    e.ping_sent = now
                    self._confirm_pings += 1
                    self.ping(e.addr, self._confirm_cb)

    def _refresh_done(self, result: LookupResult) -> None:
        self._refreshing -= 1

    # ------------------------------------------------------------------ persistence and introspection

    def save_state(self) -> bytes:
        """Our id and routing-table contacts, bencoded (reload with :func:`load_state`)."""
        now = self.clock()
        nodes4 = [e.info() for e in self.tables[4].entries() if self.tables[4].state(e, now) != "bad"]
        nodes6 = [e.info() for e in self.tables[6].entries() if self.tables[6].state(e, now) != "bad"]
        return bencode(
            {b"id": self.node_id, b"nodes": encode_nodes(nodes4), b"nodes6": encode_nodes6(nodes6)}
        )

    @property
    def active_lookups(self) -> int:
        """Lookups (including bucket refreshes) still running."""
        return len(self._lookups)

    def routing_table_size(self) -> int:
        return sum(len(t) for t in self.tables.values())

    def stored_peers(self, info_hash: bytes) -> list[Addr]:
        now = self.clock()
        return [a for a, p in self._peers.get(info_hash, {}).items() if p.expires > now]
