"""A small HTTP/1.1 GET over asyncio streams, for plain ``http://`` tracker requests.

Why not httpx here (httpx still does ``https://``: TLS, certificate checks): a tracker announce is
one GET with a small bencoded reply, and importing httpx and building its client cost ~50 ms of CPU
(measured: 33 ms client + 17 ms first request, against ~1 ms for this), paid by every peer process
at its first announce — a swarm of peers started together on a few cores waits for it
(``docs/benchmarks.md``, swarm). One request per connection (``Connection: close``); the body is
read by ``Content-Length``, ``chunked`` or up to end of stream, never past ``max_body`` bytes.
Redirects are returned to the caller (status and ``Location``). Errors: :class:`HttpError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024  # status line + headers


class HttpError(Exception):
    """The server broke HTTP/1.1 (or the body was too large); ``str()`` says how."""


def _target(url: str) -> tuple[str, int, str, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise HttpError(f"not a plain http:// URL: {url!r}")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise HttpError(f"bad port in {url!r}") from exc
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, port, parts.netloc, path


async def http_get(
    url: str, *, user_agent: str, max_body: int, timeout: float
) -> tuple[int, bytes, str | None]:
    """GET ``url``; returns ``(status, body, location)`` (``location``: a redirect's target).

    Raises :class:`HttpError` for a malformed reply, ``OSError`` for connection failures and
    ``TimeoutError`` after ``timeout`` seconds overall.
    """
    host, port, netloc, path = _target(url)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, limit=_MAX_HEAD)
        try:
            writer.write(
                (
                    f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: {user_agent}\r\n"
                    "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
                ).encode("latin-1")
            )
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError as exc:
                raise HttpError("reply headers too long") from exc
            except asyncio.IncompleteReadError as exc:
                raise HttpError("connection closed before the reply headers ended") from exc
            status, headers = _parse_head(head)
            if 300 <= status < 400 and "location" in headers:
                return status, b"", headers["location"]
            body = await _read_body(reader, headers, max_body)
            return status, body, None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
        raise HttpError(f"bad status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise HttpError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(status_line[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], max_body: int) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader, max_body)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HttpError(f"bad Content-Length {length[:40]!r}")
        n = int(length)
        if n > max_body:
            raise HttpError(f"reply larger than {max_body} bytes")
        try:
            return await reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise HttpError(f"reply body cut short ({len(exc.partial)} of {n} bytes)") from exc
    body = await reader.read(max_body + 1)  # up to the end of the stream
    while body and len(body) <= max_body:
        more = await reader.read(max_body + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > max_body:
        raise HttpError(f"reply larger than {max_body} bytes")
    return body


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        try:
            size_line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise HttpError("bad chunked body") from exc
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise HttpError(f"bad chunk size {size_text[:20]!r}") from exc
        if size < 0 or len(body) + size > max_body:
            raise HttpError(f"reply larger than {max_body} bytes")
        try:
            if size == 0:
                return bytes(body)  # trailers, if any, are not needed
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise HttpError("chunk not followed by CRLF")
        except asyncio.IncompleteReadError as exc:
            raise HttpError("chunked body cut short") from exc
