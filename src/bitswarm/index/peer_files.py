"""How the peers of the central-index seeds (001 binary, 002 CentralizedP2P) serve their files to
each other: the seeds leave the peer-to-peer transfer unspecified, so a peer serves plain HTTP/1.1 on
its listen port (uvicorn with :mod:`bitswarm.httpguard`'s limits):

* ``GET /sha1/<40 hex>`` — the shared file with that whole-file SHA-1 (seed 001's ``sha1`` field);
* ``GET /name/<file name>`` — the shared file of that name (seed 002's ``resource_name``).

A download (:func:`download`) streams into a temporary file next to the target, checks the SHA-1
when one is known, then renames it into place; nothing half-written is left behind. Hashing and
disk writes run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bitswarm.errors import BitswarmError

_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_READ = 1 << 20
_MIB = Decimal(1 << 20)


class PeerFileError(BitswarmError):
    """A file could not be shared or downloaded (unreadable, no such file, bad hash, peer gone)."""


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file this peer shares: its path, the name it is shared under, size and whole-file SHA-1."""

    path: Path
    name: str
    size: int
    sha1: str

    @property
    def size_mb(self) -> str:
        """Seed 001's ``dimension_in_mb``: mebibytes as decimal text (at most 9 decimals)."""
        return format((Decimal(self.size) / _MIB).quantize(Decimal("0.000000001")).normalize(), "f")


def sha1_file(path: str | os.PathLike[str]) -> str:
    """Whole-file SHA-1, hex (blocking: call it in a thread)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(_READ):
            h.update(chunk)
    return h.hexdigest()


def safe_name(name: str) -> str:
    """``name`` if it is a plain file name (no directory part, not ``.``/``..``, no NUL)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise PeerFileError(f"refusing the file name {name!r} (not a plain file name)")
    return name


def _scan(directory: Path) -> list[LocalFile]:
    if not directory.is_dir():
        raise PeerFileError(f"{directory} is not a directory")
    out = []
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and not entry.name.startswith("."):
            out.append(LocalFile(entry, entry.name, entry.stat().st_size, sha1_file(entry)))
    return out


async def scan_folder(directory: str | os.PathLike[str]) -> list[LocalFile]:
    """The regular files directly in ``directory`` (hidden ones skipped), hashed in a thread."""
    try:
        return await asyncio.to_thread(_scan, Path(directory))
    except OSError as exc:
        raise PeerFileError(f"cannot read {directory}: {exc.strerror or exc}") from None


async def local_file(path: str | os.PathLike[str]) -> LocalFile:
    """One file to share, hashed in a thread."""
    p = Path(path)

    def read() -> LocalFile:
        return LocalFile(p, p.name, p.stat().st_size, sha1_file(p))

    try:
        return await asyncio.to_thread(read)
    except OSError as exc:
        raise PeerFileError(f"cannot read {p}: {exc.strerror or exc}") from None


class PeerFileServer:
    """Serve shared files over HTTP on one port; ``start()`` returns the bound port (0 works)."""

    def __init__(self, files: Iterable[LocalFile] = ()) -> None:
        self._by_sha1: dict[str, LocalFile] = {}
        self._by_name: dict[str, LocalFile] = {}
        for f in files:
            self.add(f)
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    def add(self, f: LocalFile) -> None:
        self._by_sha1[f.sha1.lower()] = f
        self._by_name[f.name] = f

    def set_files(self, files: Iterable[LocalFile]) -> None:
        """Serve exactly ``files`` from now on (a folder rescan)."""
        self._by_sha1.clear()
        self._by_name.clear()
        for f in files:
            self.add(f)

    @property
    def files(self) -> list[LocalFile]:
        return list(self._by_name.values())

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import FileResponse, PlainTextResponse, Response
        from starlette.routing import Route

        async def reply(f: LocalFile | None) -> Response:
            if f is None or not await asyncio.to_thread(f.path.is_file):
                return PlainTextResponse("no such file\n", status_code=404)
            return FileResponse(f.path, filename=f.name, media_type="application/octet-stream")

        async def by_sha1(request: Request) -> Response:
            return await reply(self._by_sha1.get(str(request.path_params["sha1"]).lower()))

        async def by_name(request: Request) -> Response:
            return await reply(self._by_name.get(str(request.path_params["name"])))

        return Starlette(routes=[Route("/sha1/{sha1}", by_sha1), Route("/name/{name}", by_name)])

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        import uvicorn

        from bitswarm.httpguard import server_config

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])

        class _Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:  # the caller owns the signals
                yield

        self._server = server = _Quiet(server_config(self._app()))
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                self._task.result()
                raise PeerFileError("the file server did not start")
            await asyncio.sleep(0.005)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)

    async def __aenter__(self) -> PeerFileServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def size_bound(size_mb: str) -> int | None:
    """The most bytes a file of ``size_mb`` (seed 001's "dimension in Mb", which other clients may
    round to whole MiB) can have; None when the size is not known."""
    try:
        return int(Decimal(size_mb) * _MIB) + (1 << 20)
    except ArithmeticError:
        return None


def file_url(ip: str, port: int, *, sha1: str | None = None, name: str | None = None) -> str:
    """The URL of a file on a peer: by SHA-1 when known, else by name."""
    host = f"[{ip}]" if ":" in ip else ip
    if sha1:
        return f"http://{host}:{port}/sha1/{sha1.lower()}"
    if name is None:
        raise PeerFileError("a file is fetched by sha1 or by name")
    return f"http://{host}:{port}/name/{quote(name, safe='')}"


def _same_sha1(path: Path, sha1: str) -> bool:
    try:
        return path.is_file() and sha1_file(path) == sha1.lower()
    except OSError:
        return False


def _write(fh: Any, chunk: bytes, h: Any) -> None:
    fh.write(chunk)
    h.update(chunk)


async def download(
    url: str,
    directory: str | os.PathLike[str],
    name: str,
    *,
    sha1: str | None = None,
    timeout: float = 60.0,
    max_bytes: int | None = None,
) -> Path:
    """Fetch ``url`` into ``directory/name`` (the name must be a plain file name); with ``sha1`` the
    bytes must hash to it; more than ``max_bytes`` is refused. An existing file is never overwritten
    (one with the same SHA-1 is the download, done). Returns the path.
    :class:`PeerFileError` on any failure."""
    if sha1 is not None and not _SHA1.fullmatch(sha1):
        raise PeerFileError(f"bad sha1 {sha1!r}")
    target = Path(directory) / safe_name(name)
    if await asyncio.to_thread(target.exists):
        # the same bytes already there: done; anything else is never overwritten
        same = sha1 is not None and await asyncio.to_thread(_same_sha1, target, sha1)
        if same:
            return target
        raise PeerFileError(f"{target} exists (and is not the file asked for)")
    try:
        fd, tmp = await asyncio.to_thread(
            tempfile.mkstemp, prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
    except OSError as exc:
        raise PeerFileError(f"cannot write into {directory}: {exc.strerror or exc}") from None
    h = hashlib.sha1()
    try:
        with os.fdopen(fd, "wb") as fh:
            async with httpx.AsyncClient(timeout=timeout) as client, client.stream("GET", url) as reply:
                if reply.status_code != 200:
                    raise PeerFileError(f"{url}: HTTP {reply.status_code}")
                buf = bytearray()
                received = 0
                async for chunk in reply.aiter_bytes():
                    received += len(chunk)
                    if max_bytes is not None and received > max_bytes:
                        raise PeerFileError(f"{url}: more than the {max_bytes} bytes expected")
                    buf += chunk
                    if len(buf) >= _READ:
                        await asyncio.to_thread(_write, fh, bytes(buf), h)
                        buf.clear()
                if buf:
                    await asyncio.to_thread(_write, fh, bytes(buf), h)
        if sha1 is not None and h.hexdigest() != sha1.lower():
            raise PeerFileError(f"{url}: the bytes received do not match sha1 {sha1.lower()}")
        await asyncio.to_thread(os.link, tmp, target)  # fails if ``target`` appeared meanwhile
        await asyncio.to_thread(os.unlink, tmp)
    except httpx.HTTPError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise PeerFileError(f"{url}: {exc or type(exc).__name__}") from None
    except FileExistsError:
        Path(tmp).unlink(missing_ok=True)
        raise PeerFileError(f"{target} exists") from None
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise PeerFileError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


__all__ = [
    "LocalFile",
    "PeerFileError",
    "PeerFileServer",
    "download",
    "file_url",
    "local_file",
    "safe_name",
    "scan_folder",
    "sha1_file",
    "size_bound",
]
