"""Web seeds: pieces from HTTP servers (BEP 19 GetRight ``url-list``, BEP 17 ``httpseeds``).

A web seed plugs into the :class:`~bitswarm.session.scheduler.RequestScheduler` like a peer that has
every piece: it asks the picker for one whole piece nobody has started — or, once none is left, a
whole piece in flight to peers, the slowest (web seed end-game: a slow peer holding the last pieces
must not leave the seed idle) — (:meth:`RequestScheduler.pick_web_piece`), fetches it, and hands it to
:meth:`RequestScheduler.finish_web_piece`, which hashes and writes it on the path every piece takes.
A piece that fails its hash check drops the seed for good (it serves other bytes than the torrent's);
HTTP errors and refused connections put the URL in back-off (exponential, capped), so a dead mirror
costs one request per back-off period.

BEP 19: a piece is a byte range of the torrent's piece space. :func:`map_range` maps it onto the
files (the pure part, tested with Hypothesis); each file part becomes a ranged GET of
``URL[/name]/path`` (single-file: the URL itself unless it ends in ``/``); padding files and v2 gaps
are zeros and never requested. BEP 17: ``URL?info_hash=..&piece=N`` returns the piece; a 503 body
gives the seconds to wait.

One :class:`httpx.AsyncClient` per torrent keeps connections alive (HTTP/1.1; HTTP/2 when ``h2`` is
installed), follows redirects, and runs :data:`CONNECTIONS_PER_SEED` requests per seed in parallel.
Bytes count in the torrent's download meter and pass its download rate limiter.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import importlib.util
import logging
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bitswarm import __version__
from bitswarm.errors import BitswarmError
from bitswarm.session.ratelimit import RateMeter

if TYPE_CHECKING:
    import httpx

    from bitswarm.metainfo import InfoDict
    from bitswarm.session.clock import Clock
    from bitswarm.session.ratelimit import RateLimiter
    from bitswarm.session.scheduler import RequestScheduler

log = logging.getLogger("bitswarm.webseed")

#: Requests in flight per web seed (each fetches one whole piece).
CONNECTIONS_PER_SEED = 3
#: Seconds between looks for work while the picker has nothing for web seeds (while downloading),
#: and while the torrent is not downloading (seeding: a file wanted again starts them within this).
IDLE_POLL = 0.5
IDLE_POLL_NOT_DOWNLOADING = 5.0
#: Back-off after the first failure; doubled per failure in a row, up to :data:`BACKOFF_MAX`.
BACKOFF_FIRST = 2.0
BACKOFF_MAX = 300.0
#: Seconds per request before it is abandoned (connect, or silence between reads).
REQUEST_TIMEOUT = 30.0
_HTTP2 = importlib.util.find_spec("h2") is not None


class WebSeedError(BitswarmError):
    """A web seed request failed (HTTP status, connection, short or malformed answer)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- the pure part: piece space -> file ranges -> URLs ------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of a piece-space range inside one file (``file`` indexes ``info.files``), or zeros
    (``file`` None: a padding file or a v2 gap, never requested)."""

    file: int | None
    offset: int  #: in the file (0 for zeros)
    length: int


def map_range(info: InfoDict, start: int, length: int, starts: Sequence[int] | None = None) -> list[Segment]:
    """The files holding ``length`` bytes of the piece space from ``start``, in order. ``starts``:
    each file's offset (``[f.offset for f in info.files]``), when the caller keeps it."""
    files = info.files
    if starts is None:
        starts = [f.offset for f in files]
    out: list[Segment] = []
    pos, end = start, start + length
    i = max(0, bisect.bisect_right(starts, pos) - 1)
    while pos < end:
        while i < len(files) and files[i].offset + files[i].length <= pos:
            i += 1
        if i == len(files):
            out.append(Segment(None, 0, end - pos))  # past the last file (cannot happen in a valid torrent)
            break
        f = files[i]
        if f.offset > pos:  # a v2 gap before the next file
            n = min(end, f.offset) - pos
            out.append(Segment(None, 0, n))
            pos += n
            continue
        n = min(end, f.offset + f.length) - pos
        out.append(Segment(None if f.pad else i, 0 if f.pad else pos - f.offset, n))
        pos += n
    return out


def file_url(base: str, info: InfoDict, file: int) -> str:
    """BEP 19: the URL of one file of the torrent on a GetRight-style server."""
    quote = urllib.parse.quote
    if info.single_file:
        return base + quote(info.name) if base.endswith("/") else base
    root = base if base.endswith("/") else base + "/"
    return root + "/".join(quote(c) for c in (info.name, *info.files[file].path))


def httpseed_url(base: str, info_hash: bytes, piece: int) -> str:
    """BEP 17: the URL of one piece on a Hoffman-style seed script."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}info_hash={urllib.parse.quote_from_bytes(info_hash)}&piece={piece}"


def backoff_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row (``failures`` >= 1)."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** min(failures - 1, 16)))


# -- the driver -------------------------------------------------------------------------------


class WebSeed:
    """One web seed URL: its parallel requests, back-off and error state. Hashable by identity (it
    is the picker's key for the blocks it fetches, like a peer)."""

    def __init__(
        self,
        url: str,
        *,
        kind: str,
        info: InfoDict,
        info_hash: bytes | None,
        scheduler: RequestScheduler,
        clock: Clock,
        limiter: RateLimiter,
        connections: int = CONNECTIONS_PER_SEED,
    ) -> None:
        self.url = url
        self.kind = kind  #: ``bep19`` (url-list) or ``bep17`` (httpseeds)
        self.info = info
        self.info_hash = info_hash
        self.scheduler = scheduler
        self.clock = clock
        self.limiter = limiter
        self.connections = connections
        #: ``idle`` (nothing fetched yet), ``connected``, ``backoff`` (retry at ``retry_at``),
        #: ``dropped`` (served a piece that failed its hash check: never asked again)
        self.state = "idle"
        self.error: str | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.downloaded = 0
        self.pieces = 0
        self.recent = RateMeter(clock=clock.now)
        self._starts = [f.offset for f in info.files]

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    def _failed(self, exc: WebSeedError) -> None:
        self.failures += 1
        delay = backoff_delay(self.failures)
        if exc.retry_after is not None:
            delay = max(delay, min(BACKOFF_MAX, exc.retry_after))
        self.retry_at = self.clock.now() + delay
        self.state, self.error = "backoff", str(exc)
        log.info("web seed %s: %s (retry in %.0f s)", self.url, exc, delay)

    def drop(self, reason: str) -> None:
        self.state, self.error = "dropped", reason
        log.warning("web seed %s dropped: %s", self.url, reason)

    async def run(self, client: httpx.AsyncClient) -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.connections):
                tg.create_task(self._worker(client))

    async def _worker(self, client: httpx.AsyncClient) -> None:
        sched, clock = self.scheduler, self.clock
        while self.state != "dropped":
            wait = self.retry_at - clock.now()
            if wait > 0:
                await clock.sleep(wait)
                continue
            blocks = sched.pick_web_piece(self)
            if not blocks:
                await clock.sleep(IDLE_POLL if sched.downloading else IDLE_POLL_NOT_DOWNLOADING)
                continue
            index = blocks[0].index
            try:
                data = await self._fetch_piece(client, index)
            except WebSeedError as exc:
                sched.release_web_piece(self, index)
                self._failed(exc)
                continue
            except Exception as exc:  # anything else from the HTTP stack: back off, keep the others
                sched.release_web_piece(self, index)
                self._failed(WebSeedError(f"{type(exc).__name__}: {exc}"))
                continue
            except BaseException:
                sched.release_web_piece(self, index)
                raise
            self.failures, self.state, self.error = 0, "connected", None
            ok = await sched.finish_web_piece(self, index, data)
            if ok is False:
                self.drop(f"piece {index} failed its hash check")
            elif ok:
                self.pieces += 1

    async def _fetch_piece(self, client: httpx.AsyncClient, index: int) -> bytearray:
        info = self.info
        size = self.scheduler.piece_size(index)
        out = bytearray(size)  # zeros: padding and gaps are already in place
        view = memoryview(out)
        if self.kind == "bep17":
            assert self.info_hash is not None
            await self._get(client, httpseed_url(self.url, self.info_hash, index), None, view)
            return out
        pos = 0
        for seg in map_range(info, index * info.piece_length, size, self._starts):
            if seg.file is not None:
                url = file_url(self.url, info, seg.file)
                await self._get(client, url, seg.offset, view[pos : pos + seg.length])
            pos += seg.length
        return out

    async def _get(self, client: httpx.AsyncClient, url: str, offset: int | None, into: memoryview) -> None:
        """GET ``len(into)`` bytes of ``url`` from ``offset`` (None: the whole answer) into ``into``."""
        import httpx  # only when a torrent has web seeds: a peer process must not load it at start

        want = len(into)
        headers = {"Accept-Encoding": "identity"}
        if offset is not None:
            headers["Range"] = f"bytes={offset}-{offset + want - 1}"
        try:
            async with client.stream("GET", url, headers=headers) as resp:
                skip = self._check_status(resp, offset)
                got = 0
                async for chunk in resp.aiter_raw():
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                    n = min(len(chunk), want - got)
                    into[got : got + n] = chunk[:n]
                    got += n
                    await self._account(n)
                    if got == want:
                        break
        except httpx.HTTPError as exc:
            raise WebSeedError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        if got != want:
            raise WebSeedError(f"short answer: {got} of {want} bytes")

    def _check_status(self, resp: httpx.Response, offset: int | None) -> int:
        """Bytes to skip at the start of the body; :class:`WebSeedError` for a status we cannot use."""
        code = resp.status_code
        if code == 206 and offset is not None:
            got = resp.headers.get("content-range", "")
            if not got.startswith(f"bytes {offset}-"):
                raise WebSeedError(f"206 with Content-Range {got[:60]!r}, asked for bytes {offset}-")
            return 0
        if code == 200:
            return offset or 0  # a server that ignores Range: read up to our part
        retry: float | None = None
        if code == 503 and self.kind == "bep17":
            with contextlib.suppress(ValueError):
                retry = float(resp.headers.get("retry-after", "") or 0) or None
        raise WebSeedError(f"HTTP {code} {resp.reason_phrase}".rstrip(), retry_after=retry)

    async def _account(self, n: int) -> None:
        self.downloaded += n
        self.recent.add(n)
        self.scheduler.down.add(n)
        wait = self.limiter.take(n)
        if wait > 0:
            await self.clock.sleep(wait)

    def as_peer(self) -> dict[str, object]:
        """This seed in the form of ``TorrentHandle.peers()``."""
        return {
            "address": self.url,
            "client": f"web seed ({self.kind})",
            "seed": True,
            "download_rate": self.recent.rate,
            "upload_rate": 0.0,
            "choked": self.state != "connected",
            "choking": True,
            "transport": "http",
            "encrypted": self.url.startswith("https:"),
            "state": self.state,
            "error": self.error,
            "downloaded": self.downloaded,
        }


class WebSeedManager:
    """Every web seed of one torrent, sharing one HTTP client."""

    def __init__(self, seeds: Sequence[WebSeed], *, proxy: str | None = None) -> None:
        self.seeds = list(seeds)
        #: a SOCKS5 proxy URL the seeds are fetched through (session/proxy.py; None: direct)
        self.proxy = proxy

    @classmethod
    def for_torrent(
        cls,
        *,
        url_list: Sequence[str],
        httpseeds: Sequence[str],
        info: InfoDict,
        info_hash_v1: bytes | None,
        scheduler: RequestScheduler,
        clock: Clock,
        limiter: RateLimiter,
        proxy: str | None = None,
    ) -> WebSeedManager:
        seeds = []
        kinds = [(u, "bep19") for u in url_list]
        if info_hash_v1 is not None:  # BEP 17 names the piece by the v1 info-hash
            kinds += [(u, "bep17") for u in httpseeds]
        seen: set[str] = set()
        for url, kind in kinds:
            if url in seen or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                continue
            seen.add(url)
            seeds.append(
                WebSeed(
                    url,
                    kind=kind,
                    info=info,
                    info_hash=info_hash_v1,
                    scheduler=scheduler,
                    clock=clock,
                    limiter=limiter,
                )
            )
        return cls(seeds, proxy=proxy)

    @property
    def connected(self) -> int:
        return sum(1 for s in self.seeds if s.connected)

    @property
    def downloaded(self) -> int:
        return sum(s.downloaded for s in self.seeds)

    def peers(self) -> list[dict[str, object]]:
        return [s.as_peer() for s in self.seeds]

    async def run(self) -> None:
        """Fetch from every seed until cancelled (the torrent's transfer stops)."""
        if not self.seeds:
            return
        import httpx  # only when a torrent has web seeds: a peer process must not load it at start

        limits = httpx.Limits(max_connections=None, max_keepalive_connections=4 * len(self.seeds))
        async with (
            httpx.AsyncClient(
                http2=_HTTP2,
                follow_redirects=True,
                timeout=httpx.Timeout(REQUEST_TIMEOUT),
                limits=limits,
                headers={"User-Agent": f"bitswarm/{__version__}"},
                trust_env=False,
                proxy=self.proxy,
            ) as client,
            asyncio.TaskGroup() as tg,
        ):
            for seed in self.seeds:
                tg.create_task(seed.run(client))
