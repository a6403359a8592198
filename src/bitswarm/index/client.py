"""Client side of the index's native ``/api/v1`` API: register what a seeder shares, keep it online,
and look files up for a download (``bitswarm share --index`` and ``bitswarm get``).

Registration needs an account. Credentials come from the URL's user-info
(``http://alice:secret@host:42070``), from ``username``/``password``, or — when none is given — a
throw-away account ``seeder-<random>`` is created on first use. The .torrent itself (BEP 3 / BEP 52
metainfo, base64 in JSON) is registered with the file, so a downloader can rebuild it without the
DHT.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from bitswarm.errors import BitswarmError
from bitswarm.index._model import KEEPALIVE_INTERVAL
from bitswarm.metainfo import Torrent, parse_torrent

log = logging.getLogger("bitswarm.index.client")

_HEX_HASH = re.compile(r"(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64})")


class IndexClientError(BitswarmError):
    """The index refused a request or could not be reached. ``status`` is the HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def exit_code(self) -> int:
        """The command line's code (``docs/cli.md``): 1 when the index could not be reached, failed
        (5xx), is not an index, or no peer had the file; 2 for a request it refused (4xx) or bad input."""
        return 1 if self.code in _RUNTIME_FAILURES or self.status >= 500 else 2


#: :attr:`IndexClientError.code` values that mean the operation failed at run time.
_RUNTIME_FAILURES = frozenset({"unreachable", "not_an_index", "no_peer"})


@dataclass(frozen=True, slots=True)
class PeerAddress:
    peer_id: str  # the public id (the index never shows a peer's guid to others)
    ip: str
    port: int
    online: bool


@dataclass(frozen=True, slots=True)
class IndexedFile:
    """A file as the index describes it, with the peers that host it (online ones first)."""

    id: int
    name: str
    size: int | None
    info_hash_v1: str | None
    info_hash_v2: str | None
    magnet: str | None
    has_torrent: bool
    peers: tuple[PeerAddress, ...]
    sha1: str | None = None  #: whole-file SHA-1 (a seed-001/002 peer serves the file by it)


@dataclass(frozen=True, slots=True)
class Registration:
    file_id: int
    peer_guid: str


def _specific(host: str | None) -> str | None:
    """None for a wildcard listen address (the index then uses the request's source address)."""
    return None if host in (None, "", "0.0.0.0", "::") else host


def _split_url(url: str) -> tuple[str, str | None, str | None]:
    """``http://user:pw@host:port/`` → (``http://host:port``, user, pw)."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IndexClientError(f"bad index URL {url!r}")
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    user = unquote(parts.username) if parts.username else None
    pw = unquote(parts.password) if parts.password else None
    return base, user, pw


class IndexClient:
    """Async client of one index server. Use as ``async with IndexClient(url) as idx: ...``."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base, url_user, url_pw = _split_url(url)
        self.base_url = base
        self.username = username or url_user
        self.password = password or url_pw
        self._http = httpx.AsyncClient(base_url=base + "/api/v1", timeout=timeout, transport=transport)
        self._token: str | None = None
        self.peer_guid: str | None = None
        self._peer_addr: tuple[str | None, int] | None = None
        self._shares: list[tuple[bytes, str | None]] = []

    async def __aenter__(self) -> IndexClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing ------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, auth: bool = False, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"} if auth and self._token else {}
        try:
            reply = await self._http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise IndexClientError(f"{self.base_url}: {exc}", code="unreachable") from None
        if reply.status_code >= 400:
            code = message = ""
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                err = reply.json()["error"]
                code, message = err["code"], err["message"]
            raise IndexClientError(
                f"{self.base_url}{path}: HTTP {reply.status_code} {message}".rstrip(), reply.status_code, code
            )
        return reply

    async def _json(self, method: str, path: str, *, auth: bool = False, **kw: Any) -> Any:
        reply = await self._request(method, path, auth=auth, **kw)
        try:
            return reply.json()
        except ValueError:
            raise IndexClientError(
                f"{self.base_url}{path}: not JSON (is this an index server?)", code="not_an_index"
            ) from None

    # -- account and peer ----------------------------------------------------------------------

    async def login(self) -> str:
        """Log in (creating the account when it is a generated one, or when it does not exist)."""
        if self.username is None or self.password is None:
            self.username = "seeder-" + secrets.token_hex(6)
            self.password = secrets.token_urlsafe(24)
            await self._json("POST", "/users", json={"username": self.username, "password": self.password})
        creds = {"username": self.username, "password": self.password}
        try:
            body = await self._json("POST", "/sessions", json=creds)
        except IndexClientError as exc:
            if exc.status != 401:
                raise
            await self._json("POST", "/users", json=creds)  # a new name: register it (409 if taken)
            body = await self._json("POST", "/sessions", json=creds)
        self._token = str(body["token"])
        return self._token

    async def register_peer(self, host: str | None, port: int) -> str:
        """Register this machine's BitTorrent listener (``host`` None or a wildcard: the index uses
        the address the request comes from) and mark it online."""
        if self._token is None:
            await self.login()
        ip = _specific(host)
        body: dict[str, Any] = {"port": port}
        if ip is not None:
            body["ip"] = ip
        peer = await self._json("POST", "/peers", json=body, auth=True)
        self.peer_guid = str(peer["guid"])
        self._peer_addr = (ip, port)
        return self.peer_guid

    async def register_share(
        self, torrent: Torrent | bytes, host: str | None, port: int, *, sha1: str | None = None
    ) -> Registration:
        """Register a torrent this peer seeds at ``host:port`` (the .torrent is uploaded with it);
        ``sha1``: the whole-file SHA-1 of a single-file torrent (what the binary protocol's SEARCH
        and BROWSE show, see :func:`content_sha1`)."""
        data = torrent if isinstance(torrent, bytes) else torrent.raw
        if not data:
            raise IndexClientError("the torrent has no raw bytes to register")
        if self.peer_guid is None or self._peer_addr != (_specific(host), port):
            await self.register_peer(host, port)
        reg = await self._add(data, sha1)
        self._shares.append((data, sha1))
        return reg

    async def _add(self, data: bytes, sha1: str | None = None) -> Registration:
        t = parse_torrent(data)
        body = {
            "peer_guid": self.peer_guid,
            "name": t.name,
            "size": t.info.total_size,
            "torrent": base64.b64encode(data).decode("ascii"),
        }
        if sha1 is not None:
            body["sha1"] = sha1
        out = await self._json("POST", "/files", json=body, auth=True)
        assert self.peer_guid is not None
        return Registration(int(out["id"]), self.peer_guid)

    async def keep_alive(self) -> None:
        """One keep-alive; when the index forgot us (expired token, restarted without data, purged
        peer) log in again, re-register the peer and every share."""
        if self.peer_guid is None:
            raise IndexClientError("no peer registered")
        try:
            await self._json("POST", f"/peers/{self.peer_guid}/keepalive", auth=True)
        except IndexClientError as exc:
            if exc.status not in (401, 404):
                raise
            await self._reregister()

    async def _reregister(self) -> None:
        await self.login()
        assert self._peer_addr is not None
        await self.register_peer(*self._peer_addr)
        for data, sha1 in self._shares:
            await self._add(data, sha1)

    async def keep_alive_loop(self, interval: float = KEEPALIVE_INTERVAL / 2) -> None:
        """Keep-alives every ``interval`` seconds until cancelled; a failure is logged and retried at
        the next tick (the index may be down for a while)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.keep_alive()
            except IndexClientError as exc:
                log.warning("index keep-alive failed: %s", exc)

    async def logout_peer(self) -> None:
        if self.peer_guid is not None and self._token is not None:
            with contextlib.suppress(IndexClientError):
                await self._json("POST", f"/peers/{self.peer_guid}/logout", auth=True)

    # -- lookups -------------------------------------------------------------------------------

    async def file(self, file_id: int) -> IndexedFile:
        return _indexed(await self._json("GET", f"/files/{file_id}"))

    async def lookup(self, name_or_hash: str) -> IndexedFile:
        """A file by any hash (SHA-1/SHA-256/MD5/BEP 3/BEP 52 info-hash) or by name: an exact name
        (the one with most online peers), else the single search match."""
        if _HEX_HASH.fullmatch(name_or_hash):
            try:
                return _indexed(await self._json("GET", f"/hashes/{name_or_hash}"))
            except IndexClientError as exc:
                if exc.status != 404:
                    raise
        page = await self._json("GET", "/search", params={"q": name_or_hash[:256], "limit": 50})
        items = page.get("items", [])
        exact = [f for f in items if f["name"] == name_or_hash]
        if exact:
            best = max(exact, key=lambda f: (f["online_peers"], f.get("has_torrent", False)))
            return await self.file(int(best["id"]))
        if len(items) == 1:
            return await self.file(int(items[0]["id"]))
        if not items:
            raise IndexClientError(f"no file named or hashed {name_or_hash!r} on {self.base_url}", 404)
        names = ", ".join(repr(f["name"]) for f in items[:5])
        raise IndexClientError(f"{name_or_hash!r} is ambiguous: {names} ... (give the exact name or a hash)")

    async def torrent(self, file_id: int) -> bytes:
        return (await self._request("GET", f"/files/{file_id}/torrent")).content


def _indexed(d: dict[str, Any]) -> IndexedFile:
    peers = tuple(
        PeerAddress(p["id"], p["ip"], int(p["port"]), bool(p["online"]))
        for p in d.get("peers", [])
        if p.get("ip") and p.get("port")
    )
    return IndexedFile(
        id=int(d["id"]),
        name=d["name"],
        size=d.get("size"),
        info_hash_v1=d.get("info_hash_v1"),
        info_hash_v2=d.get("info_hash_v2"),
        magnet=d.get("magnet"),
        has_torrent=bool(d.get("has_torrent")),
        peers=tuple(sorted(peers, key=lambda p: not p.online)),
        sha1=d.get("sha1"),
    )


async def content_sha1(torrent: Torrent, save_path: str | os.PathLike[str]) -> str | None:
    """The whole-file SHA-1 (hex) of a single-file torrent's content under ``save_path``, hashed in a
    worker thread; None for a multi-file torrent (the index's ``sha1`` is one file's)."""
    files = torrent.info.data_files
    if not torrent.info.single_file or len(files) != 1:
        return None
    from bitswarm.index.peer_files import sha1_file

    path = Path(save_path, *files[0].path)
    try:
        return await asyncio.to_thread(sha1_file, path)
    except OSError as exc:
        raise IndexClientError(f"cannot hash {path}: {exc.strerror or exc}") from None


@contextlib.asynccontextmanager
async def announce_share(
    index_url: str,
    torrent: Torrent | bytes,
    host: str | None,
    port: int,
    *,
    keepalive_interval: float = KEEPALIVE_INTERVAL / 2,
    save_path: str | os.PathLike[str] | None = None,
) -> AsyncIterator[Registration]:
    """Register a seeded torrent on the index and keep the peer online while the block runs; the
    peer is logged out on exit (``bitswarm share PATH --index URL``). With ``save_path`` (where the
    content is) a single file's whole-file SHA-1 is registered too."""
    sha1 = None
    if save_path is not None:
        sha1 = await content_sha1(
            torrent if not isinstance(torrent, bytes) else parse_torrent(torrent), save_path
        )
    async with IndexClient(index_url) as idx:
        reg = await idx.register_share(torrent, host, port, sha1=sha1)
        task = asyncio.create_task(idx.keep_alive_loop(keepalive_interval))
        try:
            yield reg
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await idx.logout_peer()


@dataclass(frozen=True, slots=True)
class Fetched:
    file: IndexedFile
    torrent: Torrent | None  #: None: fetched over HTTP from a seed-001/002 peer (no .torrent registered)
    save_path: str
    received: int | None = None  #: bytes written, when fetched over HTTP

    @property
    def name(self) -> str:
        return self.torrent.name if self.torrent is not None else self.file.name

    @property
    def size(self) -> int | None:
        return self.torrent.info.total_size if self.torrent is not None else self.received

    @property
    def info_hash(self) -> str | None:
        return self.torrent.swarm_hash.hex() if self.torrent is not None else None


async def get(
    index_url: str,
    name_or_hash: str,
    save_path: str,
    *,
    host: str = "0.0.0.0",
    port: int = 0,
    timeout: float = 600.0,
    include_offline: bool = False,
    resume_dir: str | Callable[[bytes], Awaitable[str]] | None = None,
) -> Fetched:
    """Look ``name_or_hash`` up on the index and download it over BitTorrent from the peers the index
    lists (BEP 3 wire protocol, our own peer engine). Returns when every piece is verified.

    ``resume_dir``: where the torrent's resume data goes (:meth:`Session.add`; default
    ``save_path/.bitswarm``), or a coroutine function of the torrent's swarm hash returning it.

    A file registered without a .torrent but with its SHA-1 (by ``bitswarm index-peer`` or
    ``bitswarm centralized-peer``, seeds 001/002) is fetched from a peer that serves it over HTTP
    (:mod:`bitswarm.index.peer_files`), SHA-1 checked."""
    from bitswarm.session import Session, SessionConfig

    async with IndexClient(index_url) as idx:
        found = await idx.lookup(name_or_hash)
        if not found.has_torrent and found.sha1 is None:
            raise IndexClientError(
                f"{found.name!r} has no .torrent on the index (magnet-only entries need the DHT)"
            )
        data = await idx.torrent(found.id) if found.has_torrent else None
    peers = [(p.ip, p.port) for p in found.peers if p.online or include_offline]
    if not peers:
        raise IndexClientError(f"no online peer has {found.name!r}", code="no_peer")
    if data is None:
        received = await asyncio.wait_for(_get_over_http(found, peers, save_path), timeout)
        return Fetched(found, None, save_path, received)
    torrent = parse_torrent(data)
    rdir = await resume_dir(torrent.swarm_hash) if callable(resume_dir) else resume_dir
    async with Session(SessionConfig(listen_host=host, listen_port=port)) as session:
        handle = await session.add(torrent, save_path, peers=peers, resume_dir=rdir)
        await handle.wait_complete(timeout)
    return Fetched(found, torrent, save_path)


async def _get_over_http(found: IndexedFile, peers: list[tuple[str, int]], save_path: str) -> int:
    from bitswarm.index.peer_files import PeerFileError, download, file_url

    assert found.sha1 is not None
    # a size registered in seed 001's "dimension in Mb" is rounded: allow a little more
    cap = None if found.size is None else found.size + (1 << 20)
    last = ""
    for ip, port in peers:
        url = file_url(ip, port, sha1=found.sha1)
        try:
            path = await download(url, save_path, found.name, sha1=found.sha1, max_bytes=cap)
            return (await asyncio.to_thread(path.stat)).st_size
        except PeerFileError as exc:
            last = str(exc)
    raise IndexClientError(
        f"{found.name!r} has no .torrent and no peer served it over HTTP ({last})", code="no_peer"
    )


__all__ = [
    "Fetched",
    "IndexClient",
    "IndexClientError",
    "IndexedFile",
    "PeerAddress",
    "Registration",
    "announce_share",
    "content_sha1",
    "get",
]
