"""HTTP tracker front end (BEP 3 announce, BEP 23 compact, BEP 7 ``peers6`` and ``ipv4=``/``ipv6=``,
BEP 24 ``external ip``, BEP 48 scrape).

An :class:`asyncio.Protocol` driven by the ``httptools`` (llhttp) parser. The announce path does
no avoidable work: a fast query parser (:mod:`.query`), a synchronous in-memory store, and a reply
assembled from pre-encoded bencode fragments with one ``transport.write``. HTTP/1.1 keep-alive and
pipelining are supported; replies always go out in request order (async handlers — admin, Redis —
are queued behind a per-connection drain task).

Every refused tracker request is answered ``200 OK`` with a bencoded ``failure reason`` (what
clients expect). Transport-level abuse is answered with a status and a close: request line over
``max_request_bytes`` → 414, headers over it → 431, unparseable HTTP → 400, a connection over the
per-IP cap → 503, a request not complete within ``http_header_timeout`` → 408; a keep-alive
connection idle for ``http_idle_timeout`` is closed (:mod:`.limits`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import httptools

from bitswarm.dht.bep42 import is_local_address
from bitswarm.tracker._common import TrackerProtocolError
from bitswarm.tracker.http_codec import (
    FailureResponse,
    ScrapeResponse,
    ScrapeStats,
    encode_announce_response,
    encode_scrape_response,
    parse_scrape_query,
)
from bitswarm.tracker.server.config import Mode, TrackerConfig
from bitswarm.tracker.server.core import Rejected, TrackerCore
from bitswarm.tracker.server.limits import ConnectionGuard, client_key
from bitswarm.tracker.server.query import parse_announce

if TYPE_CHECKING:
    from bitswarm.tracker.server.admin import AdminApi

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
# @EXT@: BEP 24 ``external ip`` (between "complete" and "incomplete" in bencode's key order), filled
# in once per connection by :func:`_templates`, so a reply costs no more than without it
_ANN4 = b"d8:completei%de@EXT@10:incompletei%de8:intervali%de12:min intervali%de5:peers%d:"
_ANN6 = b"d8:completei%de@EXT@10:incompletei%de8:intervali%de12:min intervali%de5:peers0:6:peers6%d:"
_ANND = b"d8:completei%de@EXT@10:incompletei%de8:intervali%de12:min intervali%de5:peersl"
_STATUS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_MAX_BODY = 65536


def http_response(
    status: int, body: bytes, content_type: bytes = b"text/plain", close: bool = False
) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        status,
        _STATUS.get(status, b"Error"),
        content_type,
        len(body),
    )
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def failure(reason: str) -> bytes:
    """A BEP 3 ``failure reason`` reply (HTTP 200, bencoded body)."""
    body = encode_announce_response(FailureResponse(reason))
    return _OK % len(body) + body


def _peer_address(host: str) -> tuple[bytes, bool]:
    """Packed address and "is IPv6" (IPv4-mapped IPv6 counts as IPv4)."""
    if ":" in host:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
        if packed[:12] == b"\0" * 10 + b"\xff\xff":
            return packed[12:], False
        return packed, True
    return socket.inet_aton(host), False


#: the reply head templates of one requester address: (IPv4 compact, IPv6 compact, dictionary)
Templates = tuple[bytes, bytes, bytes]


def _templates(ip: bytes) -> Templates:
    """The reply templates carrying BEP 24 ``external ip``: the requester's address packed (4 or 16
    bytes; a ``%`` byte of it doubled, since the templates are %-formatted later)."""
    ext = b"11:external ip%d:" % len(ip) + ip.replace(b"%", b"%%")
    return _ANN4.replace(b"@EXT@", ext), _ANN6.replace(b"@EXT@", ext), _ANND.replace(b"@EXT@", ext)


def _other_family(text: str, port: int, v6: bool) -> bytes | None:
    """BEP 7 ``ipv6=`` (``v6``) or ``ipv4=``: an address or ``ADDR:PORT`` / ``[ADDR]:PORT`` (the
    port defaults to ``port``) as a compact address, or None when it is not a unicast address of
    that family outside the BEP 42 local blocks (the client's own rule for sending it): a client
    cannot plant a loopback, link-local or LAN address in other peers' replies. The BEP's NAT check
    is not done."""
    host, port_s = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port_s = rest[1:]
    elif not v6 and ":" in text:
        host, _, port_s = text.rpartition(":")
    if port_s:
        if not port_s.isdigit() or len(port_s) > 5:
            return None
        port = int(port_s)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if addr.version != (6 if v6 else 4) or not 0 < port <= 0xFFFF:
        return None
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback or addr.is_link_local or addr.is_reserved:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return None
    if is_local_address(host) or addr.packed[0] == 0:
        return None
    return addr.packed + port.to_bytes(2, "big")


class _Limit(Exception):
    """Raised inside a parser callback to stop parsing: the request breaks a size limit."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


Reply = bytes | Awaitable[bytes]


class HttpTrackerProtocol(asyncio.Protocol):
    """One HTTP connection to the tracker."""

    def __init__(
        self,
        core: TrackerCore,
        admin: AdminApi | None,
        connections: set[HttpTrackerProtocol],
        guard: ConnectionGuard,
    ) -> None:
        self.core = core
        self.admin = admin
        self.max_bytes = core.config.max_request_bytes
        self._connections = connections
        self._guard = guard
        #: deadlines (see :class:`~.limits.Guarded`): the request being received began at ``began``
        #: (-1: between requests); the last one was complete at ``last``
        self.began = self.last = guard.now
        self._key: bytes | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._hsize = 0
        self._headers: dict[bytes, bytes] | None = None
        self._body: bytearray | None = None
        self._pending: deque[tuple[Reply, bool]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._paused = False
        self._closed = False
        self.transport: asyncio.Transport | None = None
        self._ip = b"\x7f\0\0\1"
        self._tpl = _templates(self._ip)
        self._v6 = False
        self._host = ""
        self._trusted = False
        self._limit = 0

    # ---------------------------------------------------------------------------- transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self._host = peer[0]
            self._ip, self._v6 = _peer_address(peer[0])
            self._tpl = _templates(self._ip)
            proxies = self.core.config.trusted_proxies
            if proxies:
                host = str(ipaddress.ip_address(self._ip))
                self._trusted = host in proxies
        key = client_key(self._ip)
        if not self._guard.admit(key):
            self.core.errors["http_per_ip_cap"] += 1
            self._closed = True
            transport.write(http_response(503, b"too many connections from your address\n", close=True))
            transport.close()
            return
        self._key = key
        self._connections.add(self)
        self.began = self.last = self._guard.now

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._connections.discard(self)
        if self._key is not None:
            self._guard.release(self._key)
            self._key = None
        if self._drainer is not None:
            self._drainer.cancel()
        while self._pending:
            reply, _ = self._pending.popleft()
            if asyncio.iscoroutine(reply):
                reply.close()

    def pause_writing(self) -> None:
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            self._abort(self._limit or 500)
        except httptools.HttpParserUpgrade:
            self._abort(400)
        except httptools.HttpParserError:
            self._abort(400)

    def busy(self) -> bool:
        """Replies are still being produced (the idle deadline does not run meanwhile)."""
        return self._drainer is not None

    def timed_out(self, kind: str) -> None:
        """Close a connection past a deadline (``"header"``: 408 first when nothing else is queued;
        ``"idle"``: just close). Unsent data is dropped: a client that does not read loses it."""
        transport = self.transport
        if transport is None:
            return
        if self._closed:  # closing after its last reply: only a client that does not read holds it open
            if transport.get_write_buffer_size():
                self.core.errors[f"http_{kind}_timeout"] += 1
                transport.abort()
            return
        self.core.errors[f"http_{kind}_timeout"] += 1
        self._closed = True
        if kind == "header" and not self._pending and not transport.get_write_buffer_size():
            transport.write(http_response(408, b"", close=True))
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def _abort(self, status: int) -> None:
        self.core.errors[f"http_{status}"] += 1
        if self.transport is not None and not self._closed:
            self._enqueue(http_response(status, b"", close=True), False)

    # ---------------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self.began = self._guard.now
        self._url = b""
        self._hsize = 0
        self._headers = None
        self._body = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.max_bytes:
            self._limit = 414
            raise _Limit(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._hsize += len(name) + len(value) + 4
        if self._hsize > self.max_bytes:
            self._limit = 431
            raise _Limit(431)
        lname = name.lower()
        if lname in (b"authorization", b"x-forwarded-for", b"content-type"):
            if self._headers is None:
                self._headers = {}
            self._headers[lname] = value

    def on_body(self, body: bytes) -> None:
        if self._body is None:
            self._body = bytearray()
        self._body += body
        if len(self._body) > _MAX_BODY:
            self._limit = 413
            raise _Limit(413)

    def on_message_complete(self) -> None:
        self.began = -1.0
        self.last = self._guard.now
        keep = self._parser.should_keep_alive()
        try:
            reply = self._dispatch(self._parser.get_method(), self._url)
        except Exception:  # a bug must not kill the connection loop silently
            self.core.errors["internal"] += 1
            reply = http_response(500, b"internal error", close=True)
            keep = False
        self._enqueue(reply, keep)

    # ---------------------------------------------------------------------------- writing in order

    def _enqueue(self, reply: Reply, keep: bool) -> None:
        if not self._pending and type(reply) is bytes:
            self._write(reply, keep)
            return
        self._pending.append((reply, keep))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                reply, keep = self._pending[0]
                if not isinstance(reply, bytes):
                    try:
                        reply = await reply
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        self.core.errors["internal"] += 1
                        reply, keep = http_response(500, b"internal error", close=True), False
                if not self._pending:  # the connection was lost meanwhile (connection_lost emptied it)
                    break
                self._pending.popleft()
                self._write(reply, keep)
                if self._closed:
                    break
        finally:
            self._drainer = None

    def _write(self, reply: bytes, keep: bool) -> None:
        transport = self.transport
        if transport is None or self._closed:
            return
        transport.write(reply)
        if not keep:
            self._closed = True
            transport.close()

    # ---------------------------------------------------------------------------- routing

    def _dispatch(self, method: bytes, url: bytes) -> Reply:
        path, _, query = url.partition(b"?")
        if path == b"/announce":
            return self._announce(query, None) if method == b"GET" else http_response(405, b"")
        if path.startswith(b"/announce/"):
            return (
                self._announce(query, path[10:].decode("latin-1"))
                if method == b"GET"
                else http_response(405, b"")
            )
        if path == b"/scrape":
            return self._scrape(query, None)
        if path.startswith(b"/scrape/"):
            return self._scrape(query, path[8:].decode("latin-1"))
        if path == b"/stats":
            return self._json(self.core.stats())
        if path == b"/metrics":
            return self._metrics()
        if path.startswith(b"/admin") and self.admin is not None:
            headers = self._headers or {}
            body = bytes(self._body or b"")
            return self.admin.handle(method.decode("latin-1"), path.decode("latin-1"), headers, body)
        self.core.errors["http_404"] += 1
        return http_response(404, b"not found")

    async def _json(self, coro: Awaitable[dict[str, Any]]) -> bytes:
        return http_response(200, json.dumps(await coro).encode(), b"application/json")

    async def _metrics(self) -> bytes:
        return http_response(200, (await self.core.metrics()).encode(), b"text/plain; version=0.0.4")

    def _client_ip(self, ip_param: str | None) -> tuple[bytes, bool]:
        """The announcing peer's address: the socket's, unless a trusted proxy forwarded another."""
        if self._trusted:
            forwarded = (self._headers or {}).get(b"x-forwarded-for")
            candidate = forwarded.split(b",")[0].strip().decode("latin-1") if forwarded else ip_param
            if candidate:
                try:
                    return _peer_address(str(ipaddress.ip_address(candidate)))
                except ValueError:
                    pass
        return self._ip, self._v6

    def _announce(self, query: bytes, passkey: str | None) -> Reply:
        core = self.core
        try:
            a = parse_announce(query)
        except TrackerProtocolError as exc:
            core.errors["malformed"] += 1
            return failure(str(exc))
        if a.port == 0:
            core.errors["port"] += 1
            return failure("invalid port 0")
        if core.config.mode is not Mode.OPEN or passkey is not None:
            try:
                core.check(a.info_hash, passkey)
            except Rejected as exc:
                core.errors[exc.kind] += 1
                return failure(exc.reason)
        if self._trusted:
            ip, v6 = self._client_ip(a.ip)
            tpl = _templates(ip)
        else:
            ip, v6, tpl = self._ip, self._v6, self._tpl
        addr = ip + a.port.to_bytes(2, "big")
        numwant = core.numwant(a.numwant)
        # BEP 7: the client's address of the other family, stored beside this one (replies to it
        # still carry peers of the request's own family)
        other = a.ipv4 if v6 else a.ipv6
        extra = None if other is None else _other_family(other, a.port, not v6)
        store = core.store
        if store.is_async:
            return self._announce_async(a, addr, v6, numwant, tpl, extra)
        with core.lock:
            if extra is not None:
                store.announce(a.info_hash, extra, a.peer_id, a.left == 0, a.event, 0)
            seeders, leechers, peers = store.announce(
                a.info_hash, addr, a.peer_id, a.left == 0, a.event, numwant
            )
            core.announces["http"] += 1
            if not a.compact:
                ids = store.peer_ids(a.info_hash, peers, 18 if v6 else 6)
        if a.compact:
            return self._compact(seeders, leechers, peers, v6, tpl)
        return self._dictionary(seeders, leechers, ids, a.no_peer_id, tpl)

    async def _announce_async(
        self, a: Any, addr: bytes, v6: bool, numwant: int, tpl: Templates, extra: bytes | None
    ) -> bytes:
        store = self.core.store
        seeder, compact = a.left == 0, a.compact
        mine = store.announce(a.info_hash, addr, a.peer_id, seeder, a.event, numwant, with_ids=not compact)
        if extra is None:
            seeders, leechers, peers = await mine
        else:  # queued in this order: one batch (one script call) carries both, the counts include it
            other = store.announce(a.info_hash, extra, a.peer_id, seeder, a.event, 0)
            _, (seeders, leechers, peers) = await asyncio.gather(other, mine)
        self.core.announces["http"] += 1
        if a.compact:
            return self._compact(seeders, leechers, b"".join(p[0] for p in peers), v6, tpl)
        return self._dictionary(seeders, leechers, peers, a.no_peer_id, tpl)

    def _compact(self, seeders: int, leechers: int, blob: bytes, v6: bool, tpl: Templates) -> bytes:
        core = self.core
        head = tpl[v6] % (
            seeders,
            leechers,
            core.next_interval(),
            core.config.min_interval,
            len(blob),
        )
        return b"".join((_OK % (len(head) + len(blob) + 1), head, blob, b"e"))

    def _dictionary(
        self,
        seeders: int,
        leechers: int,
        peers: list[tuple[bytes, bytes | None]],
        no_peer_id: bool,
        tpl: Templates,
    ) -> bytes:
        core = self.core
        parts = [
            tpl[2] % (seeders, leechers, core.next_interval(), core.config.min_interval),
        ]
        for addr, peer_id in peers:
            ip = str(ipaddress.ip_address(addr[:-2])).encode()
            port = int.from_bytes(addr[-2:], "big")
            if no_peer_id or peer_id is None:
                parts.append(b"d2:ip%d:%s4:porti%dee" % (len(ip), ip, port))
            else:
                parts.append(b"d2:ip%d:%s7:peer id20:%s4:porti%dee" % (len(ip), ip, peer_id, port))
        parts.append(b"ee")
        body = b"".join(parts)
        return _OK % len(body) + body

    def _scrape(self, query: bytes, passkey: str | None) -> Reply:
        core = self.core
        try:
            hashes = parse_scrape_query(query)
        except TrackerProtocolError as exc:
            core.errors["malformed"] += 1
            return failure(str(exc))
        if not hashes:
            core.errors["full_scrape"] += 1
            return failure("full scrape is not supported: name info_hash values")
        try:
            for info_hash in hashes:
                core.check(info_hash, passkey)
        except Rejected as exc:
            core.errors[exc.kind] += 1
            return failure(exc.reason)
        store = core.store
        if store.is_async:
            return self._scrape_async(hashes)
        with core.lock:
            core.scrapes["http"] += 1
            stats = {h: store.scrape(h) for h in hashes}
        return self._scrape_body(stats)

    async def _scrape_async(self, hashes: tuple[bytes, ...]) -> bytes:
        stats = await self.core.store.scrape_many(hashes)
        self.core.scrapes["http"] += 1
        return self._scrape_body(dict(zip(hashes, stats, strict=True)))

    @staticmethod
    def _scrape_body(stats: dict[bytes, tuple[int, int, int]]) -> bytes:
        body = encode_scrape_response(
            ScrapeResponse(
                {h: ScrapeStats(complete=s, downloaded=d, incomplete=lc) for h, (s, d, lc) in stats.items()}
            )
        )
        return _OK % len(body) + body


def connection_guard(config: TrackerConfig, clock: Callable[[], float] = time.monotonic) -> ConnectionGuard:
    """The HTTP limits of ``config`` (trusted proxies are exempt from the per-IP cap)."""
    return ConnectionGuard(
        header_timeout=config.http_header_timeout,
        idle_timeout=config.http_idle_timeout,
        max_per_ip=config.http_max_per_ip,
        exempt=[_peer_address(ip)[0] for ip in config.trusted_proxies],
        clock=clock,
    )


def http_factory(
    core: TrackerCore, admin: AdminApi | None, connections: set[HttpTrackerProtocol], guard: ConnectionGuard
) -> Callable[[], HttpTrackerProtocol]:
    return lambda: HttpTrackerProtocol(core, admin, connections, guard)
