"""Tracker client (asyncio): one interface over HTTP(S) (BEP 3/7/23/48) and UDP (BEP 15) trackers,
and the BEP 12 multitracker announce manager.

* :func:`open_tracker` picks the transport by URL scheme (``http``, ``https``, ``udp``); a bare
  ``host:port`` (as hand-written announce values often are) means ``http://host:port/announce``.
* :class:`HttpTrackerClient` / :class:`UdpTrackerClient` implement :class:`TrackerClient`:
  ``announce(params) -> AnnounceResult`` and ``scrape(hashes) -> {hash: ScrapeResult}``, raising
  :class:`TrackerError` (the tracker's failure text), :class:`TrackerTimeout`,
  :class:`TrackerUnreachable` or :class:`TrackerProtocolError`.
* :class:`AnnounceManager` owns the tiers of one torrent: shuffle each tier once, try in order,
  promote the tracker that answered, fall to the next tier; remembers ``tracker id``, keeps the
  ``key`` stable, tracks ``started``/``completed``/``stopped``, and schedules re-announces by
  ``interval``/``min interval`` on an injected clock (:class:`AnnounceSchedule`). It knows nothing of
  the peer session: transfer numbers come from a ``stats`` callback.

The codecs (:mod:`.udp_codec`, :mod:`.http_codec`) do the byte work; this module only moves bytes
and timers (plain-http GETs through :mod:`._http11`, https through httpx), and maps library
exceptions (httpx, :class:`._http11.HttpError`, OSError) into the tracker error hierarchy.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin, urlsplit

from bitswarm.tracker._common import (
    TRACKER_FAILURES,
    Event,
    TrackerError,
    TrackerProtocolError,
    TrackerTimeout,
    TrackerUnreachable,
    TrackerUrlError,
)
from bitswarm.tracker._http11 import HttpError, http_get
from bitswarm.tracker.udp_endpoint import UdpTrackerEndpoint

__all__ = [
    "AllTrackersFailed",
    "AnnounceManager",
    "AnnounceParams",
    "AnnounceResult",
    "AnnounceSchedule",
    "HttpTrackerClient",
    "ScrapeResult",
    "TrackerClient",
    "TransferStats",
    "UdpTrackerClient",
    "normalize_tracker_url",
    "open_tracker",
    "tiers_from_metainfo",
]

if TYPE_CHECKING:
    import httpx

    from bitswarm.tracker import udp_codec

# The codecs are imported where they are used: a peer on an http:// tracker never loads the UDP codec
# (nor one on a udp:// tracker the HTTP codec), and neither is loaded before the first announce.

_BARE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
USER_AGENT = "bitswarm/0.1"
MAX_REDIRECTS = 3


@dataclass(frozen=True, slots=True)
class AnnounceParams:
    """What one announce says, whatever the transport. ``key`` is a 32-bit number (sent as 8 hex
    digits over HTTP); ``num_want`` None = tracker default; ``tracker_id`` echoes BEP 3 ``tracker id``."""

    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int = 0
    event: Event = Event.NONE
    key: int = 0
    num_want: int | None = None
    tracker_id: bytes | None = None
    ip: str | None = None
    #: BEP 7 ``ipv4=`` / ``ipv6=``: our addresses of each family (HTTP announces only)
    ipv4: str | None = None
    ipv6: str | None = None


@dataclass(frozen=True, slots=True)
class AnnounceResult:
    """A successful announce. ``peers`` are (address, port), IPv4 and IPv6 (BEP 7) mixed.
    ``seeders``/``leechers`` are None when an HTTP tracker leaves out ``complete``/``incomplete``."""

    url: str
    peers: tuple[tuple[str, int], ...]
    interval: int
    min_interval: int | None = None
    seeders: int | None = None
    leechers: int | None = None
    tracker_id: bytes | None = None
    warning: str | None = None
    external_ip: str | None = None  #: BEP 24 (HTTP trackers that send it)


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    """Scrape counters of one torrent (BEP 48 names; UDP's seeders/completed/leechers map here)."""

    complete: int
    downloaded: int
    incomplete: int


class TrackerClient(Protocol):
    """One tracker, any transport."""

    url: str

    async def announce(self, params: AnnounceParams) -> AnnounceResult: ...

    async def scrape(self, info_hashes: Sequence[bytes]) -> dict[bytes, ScrapeResult]: ...

    async def aclose(self) -> None: ...


def normalize_tracker_url(url: str) -> str:
    """The URL to use: a bare ``host:port`` becomes ``http://host:port/announce``; ``http``,
    ``https`` and ``udp`` URLs pass through; anything else raises :class:`TrackerUrlError`."""
    url = url.strip()
    if "://" not in url:
        if _BARE.match(url) is None:
            raise TrackerUrlError(f"not a tracker URL: {url!r}")
        return f"http://{url}/announce"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https", "udp"):
        raise TrackerUrlError(f"unsupported tracker scheme {parts.scheme!r} in {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise TrackerUrlError(f"bad port in {url!r}") from None
    if not parts.hostname or (parts.scheme.lower() == "udp" and port is None):
        raise TrackerUrlError(f"tracker URL without host (or UDP port): {url!r}")
    return url


def open_tracker(
    url: str,
    *,
    timeout: float = 15.0,
    udp_retry_base: float = 15.0,
    udp_max_retries: int = 8,
    http_client: httpx.AsyncClient | None = None,
    proxy: str | None = None,
) -> TrackerClient:
    """A client for ``url`` chosen by scheme (see :func:`normalize_tracker_url`). With ``proxy``
    (``socks5://...``) HTTP(S) requests go through it and a UDP tracker is not contacted at all:
    its client fails every request (SOCKS5 UDP ASSOCIATE is not used; ``docs/security.md``)."""
    url = normalize_tracker_url(url)
    if url.lower().startswith("udp://"):
        if proxy:
            return ProxiedUdpTrackerClient(url)
        return UdpTrackerClient(url, retry_base=udp_retry_base, max_retries=udp_max_retries)
    return HttpTrackerClient(url, timeout=timeout, http_client=http_client, proxy=proxy)


class ProxiedUdpTrackerClient:
    """A UDP tracker while a proxy is set: never contacted (it would show our address)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _refuse(self) -> TrackerUnreachable:
        return TrackerUnreachable("UDP tracker not used through the proxy", url=self.url)

    async def announce(self, params: AnnounceParams) -> AnnounceResult:
        raise self._refuse()

    async def scrape(self, info_hashes: Sequence[bytes]) -> dict[bytes, ScrapeResult]:
        raise self._refuse()

    async def aclose(self) -> None:
        return None


# ------------------------------------------------------------------------------------------- HTTP


class HttpTrackerClient:
    """BEP 3 HTTP(S) tracker: plain http through :mod:`._http11`, https through httpx. Every request
    is bounded by ``timeout`` seconds overall; bodies larger than ``max_body`` bytes are refused."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 15.0,
        http_client: httpx.AsyncClient | None = None,
        max_body: int = 1 << 20,
        proxy: str | None = None,
    ) -> None:
        self.url = normalize_tracker_url(url)
        self.timeout = timeout
        self.max_body = max_body
        #: ``http_client`` given: every request goes through it. Otherwise plain http:// uses the
        #: small built-in client (:mod:`._http11`, no httpx import) and https:// an httpx client
        #: made on first use.
        self._own_client = http_client is None
        self._http: httpx.AsyncClient | None = http_client
        #: a SOCKS5 proxy URL: every request goes through httpx with it (None: direct)
        self.proxy = proxy

    def _httpx(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx  # imported on the first https request only

            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=True,
                max_redirects=3,
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
                proxy=self.proxy,
            )
        return self._http

    async def _get(self, url: str) -> tuple[int, bytes]:
        if not self._own_client or not url.startswith("http://") or self.proxy:
            return await self._get_httpx(url)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                status, body, location = await http_get(
                    url, user_agent=USER_AGENT, max_body=self.max_body, timeout=self.timeout
                )
                if location is None:
                    return status, body
                url = urljoin(url, location)
                if not url.startswith("http://"):
                    return await self._get_httpx(url)
        except TimeoutError:
            raise TrackerTimeout(f"no answer within {self.timeout} s", url=self.url) from None
        except HttpError as exc:
            raise TrackerProtocolError(f"bad HTTP reply: {exc}") from None
        except OSError as exc:
            raise TrackerUnreachable(f"{type(exc).__name__}: {exc}", url=self.url) from None
        raise TrackerUnreachable(f"more than {MAX_REDIRECTS} redirects", url=self.url)

    async def _get_httpx(self, url: str) -> tuple[int, bytes]:
        import httpx

        client = self._httpx()
        try:
            async with asyncio.timeout(self.timeout):
                async with client.stream("GET", url) as reply:
                    body = bytearray()
                    async for chunk in reply.aiter_bytes():
                        body += chunk
                        if len(body) > self.max_body:
                            raise TrackerProtocolError(f"tracker reply larger than {self.max_body} bytes")
                    return reply.status_code, bytes(body)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise TrackerTimeout(
                f"no answer within {self.timeout} s ({type(exc).__name__})", url=self.url
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            raise TrackerUnreachable(f"{type(exc).__name__}: {exc}", url=self.url) from None

    def _check_status(self, status: int, body: bytes) -> None:
        if status == 200:
            return
        from bitswarm.tracker import http_codec

        with contextlib.suppress(TrackerProtocolError):
            decoded = http_codec.decode_announce_response(body)
            if isinstance(decoded, http_codec.FailureResponse):
                raise TrackerError(decoded.reason, url=self.url)
        raise TrackerUnreachable(f"HTTP status {status}", url=self.url)

    async def announce(self, params: AnnounceParams) -> AnnounceResult:
        from bitswarm.tracker import http_codec

        request = http_codec.AnnounceRequest(
            info_hash=params.info_hash,
            peer_id=params.peer_id,
            port=params.port,
            uploaded=params.uploaded,
            downloaded=params.downloaded,
            left=params.left,
            event=params.event,
            compact=True,
            numwant=params.num_want,
            key=f"{params.key & 0xFFFFFFFF:08x}",
            trackerid=params.tracker_id,
            ip=params.ip,
            ipv4=params.ipv4,
            ipv6=params.ipv6,
        )
        status, body = await self._get(http_codec.announce_url(self.url, request))
        self._check_status(status, body)
        reply = http_codec.decode_announce_response(body)
        if isinstance(reply, http_codec.FailureResponse):
            raise TrackerError(reply.reason, url=self.url)
        return AnnounceResult(
            url=self.url,
            peers=tuple((p.ip, p.port) for p in reply.peers),
            interval=reply.interval,
            min_interval=reply.min_interval,
            seeders=reply.complete,
            leechers=reply.incomplete,
            tracker_id=reply.tracker_id,
            warning=reply.warning,
            external_ip=reply.external_ip,
        )

    async def scrape(self, info_hashes: Sequence[bytes]) -> dict[bytes, ScrapeResult]:
        from bitswarm.tracker import http_codec

        base = http_codec.scrape_url_from_announce(self.url)
        if base is None:
            raise TrackerUrlError(f"{self.url} has no scrape URL (BEP 48: last segment is not 'announce')")
        status, body = await self._get(http_codec.scrape_url(base, info_hashes))
        self._check_status(status, body)
        reply = http_codec.decode_scrape_response(body)
        if isinstance(reply, http_codec.FailureResponse):
            raise TrackerError(reply.reason, url=self.url)
        return {h: ScrapeResult(s.complete, s.downloaded, s.incomplete) for h, s in reply.files.items()}

    async def aclose(self) -> None:
        if self._own_client and self._http is not None:
            await self._http.aclose()


# -------------------------------------------------------------------------------------------- UDP


class UdpTrackerClient:
    """BEP 15 UDP tracker. Retransmits after ``retry_base * 2**n`` seconds for n = 0..``max_retries``
    (BEP 15: 15 s and 8), caches the connection id for 60 s on ``clock``, checks transaction ids.

    The socket work is a :class:`~bitswarm.tracker.udp_endpoint.UdpTrackerEndpoint`: ``endpoint``
    given (a session's, shared by all its torrents), the client uses it and never closes it;
    otherwise the client owns a private one (opened on first use, closed by :meth:`aclose`)."""

    __slots__ = (
        "__weakref__", "_clock", "_owns_endpoint", "connect_timeout", "endpoint", "host", "max_retries",
        "port", "retry_base", "url",
    )  # fmt: skip

    def __init__(
        self,
        url: str,
        *,
        retry_base: float = 15.0,
        max_retries: int = 8,
        clock: Callable[[], float] = time.monotonic,
        connect_timeout: float = 15.0,
        endpoint: UdpTrackerEndpoint | None = None,
    ) -> None:
        self.url = normalize_tracker_url(url)
        parts = urlsplit(self.url)
        if parts.scheme.lower() != "udp" or parts.hostname is None or parts.port is None:
            raise TrackerUrlError(f"not a udp://host:port URL: {url!r}")
        self.host, self.port = parts.hostname, parts.port
        self.retry_base = retry_base
        self.max_retries = max_retries
        #: seconds for resolving the tracker's host name
        self.connect_timeout = connect_timeout
        self._clock = clock
        self._owns_endpoint = endpoint is None
        self.endpoint = endpoint if endpoint is not None else UdpTrackerEndpoint(clock=clock)

    def with_endpoint(self, endpoint: UdpTrackerEndpoint) -> UdpTrackerClient:
        """The same tracker and settings over ``endpoint`` (a session's shared one): one client per
        tracker and settings for all the endpoint's torrents (it keeps no state of its own; 10,000
        torrents of one tracker had 10,000 clients; issue 24)."""
        key = (self.url, self.retry_base, self.max_retries, self.connect_timeout, self._clock)
        shared = endpoint.clients.get(key)
        if isinstance(shared, UdpTrackerClient):
            return shared
        client = UdpTrackerClient(
            self.url,
            retry_base=self.retry_base,
            max_retries=self.max_retries,
            clock=self._clock,
            connect_timeout=self.connect_timeout,
            endpoint=endpoint,
        )
        endpoint.clients[key] = client
        return client

    async def _transact(
        self, build: Callable[[int, int], bytes], expecting: udp_codec.Action
    ) -> udp_codec.Response:
        return await self.endpoint.transact(
            self.url,
            self.host,
            self.port,
            build,
            expecting,
            retry_base=self.retry_base,
            max_retries=self.max_retries,
            resolve_timeout=self.connect_timeout,
        )

    async def announce(self, params: AnnounceParams) -> AnnounceResult:
        from bitswarm.tracker import udp_codec

        def build(conn: int, tid: int) -> bytes:
            return udp_codec.encode_request(
                udp_codec.AnnounceRequest(
                    connection_id=conn,
                    transaction_id=tid,
                    info_hash=params.info_hash,
                    peer_id=params.peer_id,
                    downloaded=params.downloaded,
                    left=params.left,
                    uploaded=params.uploaded,
                    event=params.event,
                    key=params.key & 0xFFFFFFFF,
                    port=params.port,
                    ip=params.ip if ":" not in self.host else None,
                    num_want=-1 if params.num_want is None else params.num_want,
                )
            )

        resp = await self._transact(build, udp_codec.Action.ANNOUNCE)
        assert isinstance(resp, udp_codec.AnnounceResponse)
        return AnnounceResult(
            url=self.url,
            peers=resp.peers,
            interval=resp.interval,
            seeders=resp.seeders,
            leechers=resp.leechers,
        )

    async def scrape(self, info_hashes: Sequence[bytes]) -> dict[bytes, ScrapeResult]:
        from bitswarm.tracker import udp_codec

        hashes = list(info_hashes)
        out: dict[bytes, ScrapeResult] = {}
        for i in range(0, len(hashes), udp_codec.MAX_SCRAPE_HASHES):
            chunk = tuple(hashes[i : i + udp_codec.MAX_SCRAPE_HASHES])

            def build(conn: int, tid: int, chunk: tuple[bytes, ...] = chunk) -> bytes:
                return udp_codec.encode_request(udp_codec.ScrapeRequest(conn, tid, chunk))

            resp = await self._transact(build, udp_codec.Action.SCRAPE)
            assert isinstance(resp, udp_codec.ScrapeResponse)
            if len(resp.files) != len(chunk):
                raise TrackerProtocolError(
                    f"scrape reply has {len(resp.files)} entries for {len(chunk)} hashes"
                )
            for h, s in zip(chunk, resp.files, strict=True):
                out[h] = ScrapeResult(s.seeders, s.completed, s.leechers)
        return out

    async def aclose(self) -> None:
        """Close the private endpoint's sockets (a shared endpoint is its owner's to close); the
        client stays usable: the next request opens a new one."""
        if self._owns_endpoint:
            self.endpoint.close()
            self.endpoint = UdpTrackerEndpoint(clock=self._clock)


# ----------------------------------------------------------------------------------- BEP 12 tiers


@dataclass(frozen=True, slots=True)
class TransferStats:
    """The numbers an announce reports (bytes)."""

    uploaded: int = 0
    downloaded: int = 0
    left: int = 0


class AnnounceSchedule:
    """When to announce next (pure; times come from the caller's clock).

    After a success at ``now``: the next regular announce is at ``now + max(interval, min_interval,
    floor)``; nothing but an event may go out before ``now + min_interval`` (BEP 3 ``min interval``).
    After a failure of every tracker: retry after ``retry_base * 2**(failures-1)``, at most ``retry_max``.
    """

    __slots__ = ("earliest_at", "failures", "floor", "next_at", "retry_base", "retry_max")

    def __init__(self, *, floor: float = 30.0, retry_base: float = 30.0, retry_max: float = 1800.0) -> None:
        self.floor = floor
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.next_at = 0.0  # due at once
        self.earliest_at = 0.0
        self.failures = 0

    def on_success(self, now: float, interval: int, min_interval: int | None = None) -> None:
        gate = float(min_interval or 0)
        self.failures = 0
        self.earliest_at = now + gate
        self.next_at = now + max(float(interval), gate, self.floor)

    def on_failure(self, now: float) -> None:
        self.failures += 1
        self.next_at = now + min(self.retry_base * 2 ** (self.failures - 1), self.retry_max)

    def due(self, now: float) -> bool:
        """A regular re-announce is due."""
        return now >= self.next_at

    def may_announce(self, now: float) -> bool:
        """An extra (non-event) announce, e.g. to ask for more peers, is allowed by ``min interval``."""
        return now >= self.earliest_at

    def delay(self, now: float) -> float:
        """Seconds until the next regular announce."""
        return max(0.0, self.next_at - now)


class AllTrackersFailed(TrackerUnreachable):
    """No tracker in any tier answered. ``errors`` maps each tried URL to its exception."""

    def __init__(self, errors: dict[str, Exception]) -> None:
        detail = "; ".join(f"{u}: {type(e).__name__}: {e}" for u, e in errors.items()) or "no trackers"
        super().__init__(f"every tracker failed ({detail})")
        self.errors = errors


class AnnounceManager:
    """BEP 12 multitracker announces for one torrent.

    ``tiers`` is ``announce-list`` (or ``[[announce]]``). Each tier is shuffled once; ``announce``
    tries the tiers in order and the trackers of a tier in order, moves the tracker that answered to
    the front of its tier and stops there. A tracker that has not yet seen ``started`` from us gets it
    (even on a regular announce), so falling over to another tracker registers us there.
    """

    # one per torrent: slotted (issue 24, memory at 10,000 torrents)
    __slots__ = (
        "_clients", "_clock", "_completed_sent", "_factory", "_started", "_tracker_ids", "addresses",
        "info_hash", "ip", "key", "last_result", "num_want", "peer_id", "port", "schedule", "stats",
        "stopped_timeout", "tiers", "tracker_timeout",
    )  # fmt: skip

    def __init__(
        self,
        tiers: Sequence[Sequence[str]],
        *,
        info_hash: bytes,
        peer_id: bytes,
        port: int,
        stats: Callable[[], TransferStats] = TransferStats,
        num_want: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        client_factory: Callable[[str], TrackerClient] = open_tracker,
        schedule: AnnounceSchedule | None = None,
        tracker_timeout: float = 60.0,
        stopped_timeout: float = 5.0,
        addresses: Callable[[], Mapping[int, str]] | None = None,
        ip: str | None = None,
    ) -> None:
        rng = rng or random.Random()
        #: our IP per family (4, 6) as far as known: sent as BEP 7 ``ipv4=``/``ipv6=`` when public
        self.addresses = addresses
        #: BEP 3 ``ip``: sent only when configured (the tracker otherwise takes the source address)
        self.ip = ip
        self.tiers: list[list[str]] = []
        for tier in tiers:
            urls = list(dict.fromkeys(u.strip() for u in tier if u.strip()))
            rng.shuffle(urls)
            if urls:
                self.tiers.append(urls)
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.port = port
        self.stats = stats
        self.num_want = num_want
        self.key = rng.getrandbits(32)  # BEP 3/15 ``key``: one per session
        self.schedule = schedule or AnnounceSchedule()
        self.tracker_timeout = tracker_timeout
        self.stopped_timeout = stopped_timeout
        self.last_result: AnnounceResult | None = None
        self._clock = clock
        self._factory = client_factory
        self._clients: dict[str, TrackerClient] = {}
        self._tracker_ids: dict[str, bytes] = {}
        #: the trackers that saw ``started`` (a dict: an empty set is 216 bytes, an empty dict 64)
        self._started: dict[str, None] = {}
        self._completed_sent = False

    def _client(self, url: str) -> TrackerClient:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = self._factory(url)
        return client

    def _params(self, url: str, event: Event, stats: TransferStats) -> AnnounceParams:
        return AnnounceParams(
            info_hash=self.info_hash,
            peer_id=self.peer_id,
            port=self.port,
            uploaded=stats.uploaded,
            downloaded=stats.downloaded,
            left=stats.left,
            event=event,
            key=self.key,
            num_want=0 if event is Event.STOPPED else self.num_want,
            tracker_id=self._tracker_ids.get(url),
            ip=self.ip,
            **self._bep7_addresses(),
        )

    def _bep7_addresses(self) -> dict[str, str]:
        """BEP 7 ``ipv4``/``ipv6``: our addresses a peer elsewhere could dial (loopback, private and
        link-local ones are left out: a tracker must not hand those to the swarm)."""
        from bitswarm.dht.bep42 import is_local_address

        out: dict[str, str] = {}
        for family, ip in (self.addresses() if self.addresses is not None else {}).items():
            if family in (4, 6) and ip and not is_local_address(ip) and ip not in ("0.0.0.0", "::"):
                out[f"ipv{family}"] = ip
        return out

    async def _announce_one(self, url: str, event: Event, stats: TransferStats) -> AnnounceResult:
        if event is Event.NONE and url not in self._started:
            event = Event.STARTED
        try:
            async with asyncio.timeout(self.tracker_timeout):
                result = await self._client(url).announce(self._params(url, event, stats))
        except TrackerTimeout:
            raise  # the client's own, more precise timeout
        except TimeoutError:
            raise TrackerTimeout(f"no answer within {self.tracker_timeout} s", url=url) from None
        if result.tracker_id is not None:
            self._tracker_ids[url] = result.tracker_id
        if event is Event.STOPPED:
            self._started.pop(url, None)
        else:
            self._started[url] = None
        return result

    async def announce(
        self, event: Event = Event.NONE, *, stats: TransferStats | None = None
    ) -> AnnounceResult:
        """Announce now, to the first tracker that answers (BEP 12 order). Updates the schedule.
        Raises :class:`AllTrackersFailed` when none does."""
        numbers = stats if stats is not None else self.stats()
        errors: dict[str, Exception] = {}
        for tier in self.tiers:
            for url in list(tier):
                try:
                    result = await self._announce_one(url, event, numbers)
                except TRACKER_FAILURES as exc:
                    errors[url] = exc
                    continue
                tier.remove(url)
                tier.insert(0, url)
                self.schedule.on_success(self._clock(), result.interval, result.min_interval)
                self.last_result = result
                if event is Event.COMPLETED:
                    self._completed_sent = True
                return result
        self.schedule.on_failure(self._clock())
        raise AllTrackersFailed(errors)

    async def start(self) -> AnnounceResult:
        """The first announce of a session (``event=started``)."""
        return await self.announce(Event.STARTED)

    async def complete(self) -> AnnounceResult | None:
        """Tell the tracker the download finished (``event=completed``, sent once per session)."""
        if self._completed_sent:
            return None
        return await self.announce(Event.COMPLETED)

    async def reannounce(self, *, more_peers: bool = False) -> AnnounceResult | None:
        """The periodic announce: sent if ``interval`` has passed, or if ``more_peers`` and
        ``min interval`` allows it; else None."""
        now = self._clock()
        if self.schedule.due(now) or (more_peers and self.schedule.may_announce(now)):
            return await self.announce(Event.NONE)
        return None

    def seconds_until_next(self) -> float:
        return self.schedule.delay(self._clock())

    async def stop(self, timeout: float | None = None) -> list[str]:
        """Send ``stopped`` to every tracker that saw ``started`` (all at once, bounded by
        ``timeout``, default ``stopped_timeout``), then close the clients. Returns the URLs that
        acknowledged; failures are swallowed (shutdown must not hang)."""
        urls = sorted(self._started)
        numbers = self.stats()
        acked: list[str] = []

        async def one(url: str) -> None:
            with contextlib.suppress(*TRACKER_FAILURES):
                await self._announce_one(url, Event.STOPPED, numbers)
                acked.append(url)

        try:
            async with asyncio.timeout(self.stopped_timeout if timeout is None else timeout):
                await asyncio.gather(*(one(u) for u in urls))
        except TimeoutError:
            pass
        await self.aclose()
        return acked

    async def scrape(self) -> dict[bytes, ScrapeResult]:
        """Scrape this torrent from the first tracker that supports it (same order as announces)."""
        errors: dict[str, Exception] = {}
        for tier in self.tiers:
            for url in tier:
                try:
                    async with asyncio.timeout(self.tracker_timeout):
                        return await self._client(url).scrape([self.info_hash])
                except TrackerTimeout as exc:
                    errors[url] = exc
                except TimeoutError:
                    errors[url] = TrackerTimeout("scrape timed out", url=url)
                except TRACKER_FAILURES as exc:
                    errors[url] = exc
        raise AllTrackersFailed(errors)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()


def tiers_from_metainfo(
    announce: str | None, announce_list: Iterable[Iterable[str]] | None
) -> list[list[str]]:
    """BEP 12: use ``announce-list`` when present and non-empty, else ``[[announce]]``."""
    tiers = [list(t) for t in announce_list or () if list(t)]
    if tiers:
        return tiers
    return [[announce]] if announce else []
