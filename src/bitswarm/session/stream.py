"""Play while downloading: an async seekable reader over one file of a torrent, and an HTTP server
with ``Range`` support on top of it (``bitswarm stream``).

The HTTP server never trusts a client to be polite (:class:`~bitswarm.httpguard.HttpLimits`, shared
with the daemon's API and the index): a request's line and headers must arrive within
``header_timeout`` of its first byte (of the accept, for the first request), a keep-alive connection
may stay silent ``idle_timeout`` between requests, each client address (an IPv6 /64) holds at most
``max_per_ip`` connections and the server ``max_connections``; the request head is capped at
``max_head_bytes``, requests with a body are refused (413) and at most a few pipelined requests are
queued before reading pauses.

A read of ``[offset, offset + n)`` turns into pieces of the torrent's piece space; pieces not yet
verified get a picker *deadline* (the piece under the read position first, then ``readahead`` bytes
ahead, later deadlines further out), so the engine fetches them before anything else. The read then
waits — bounded by a timeout — until those pieces are verified and returns bytes read back from
disk. Seeking only moves the position: the next read re-targets the deadlines and drops the ones
left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import re
import time
import urllib.parse
from typing import TYPE_CHECKING

from bitswarm.errors import BitswarmError
from bitswarm.httpguard import ConnectionCounter, Deadline, HttpLimits
from bitswarm.metainfo import FileEntry

if TYPE_CHECKING:
    from bitswarm.session.torrent import TorrentHandle, TorrentRuntime

DEFAULT_READAHEAD = 8 * 1024 * 1024


class StreamError(BitswarmError):
    """A streaming read failed: bad range, unknown file, timeout, torrent error."""


class _PieceWatch:
    """Wakes readers when pieces of one torrent are verified (from the session's event stream)."""

    def __init__(self, rt: TorrentRuntime) -> None:
        self.rt = rt
        self.changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.users = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        want = self.rt.swarm_hash.hex()
        async for ev in self.rt.session.events():
            if ev.info_hash == want and ev.kind in ("piece_verified", "torrent_completed", "torrent_error"):
                async with self.changed:
                    self.changed.notify_all()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


_watches: dict[int, _PieceWatch] = {}


class TorrentReader:
    """Async, seekable, read-only view of one file of a (possibly still downloading) torrent."""

    def __init__(
        self, handle: TorrentHandle, file_index: int = 0, *, readahead: int = DEFAULT_READAHEAD
    ) -> None:
        rt = handle._rt
        files = rt.info.data_files
        if not 0 <= file_index < len(files):
            raise StreamError(f"file index {file_index} out of range (the torrent has {len(files)} files)")
        self._rt = rt
        self.file: FileEntry = files[file_index]
        self.size = self.file.length
        self.name = self.file.path[-1] if self.file.path else rt.info.name
        self.readahead = readahead
        self._pos = 0
        self._deadlines: set[int] = set()
        watch = _watches.get(id(rt))
        if watch is None or watch.rt is not rt:
            watch = _watches[id(rt)] = _PieceWatch(rt)
        self._watch: _PieceWatch = watch
        self._watch.users += 1
        self._watch.start()
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for index in self._deadlines:
            self._rt.picker.set_deadline(index, None)
        self._deadlines.clear()
        self._watch.users -= 1
        if self._watch.users <= 0:
            _watches.pop(id(self._rt), None)
            await self._watch.stop()

    async def __aenter__(self) -> TorrentReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- position ------------------------------------------------------------------------------

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}.get(whence)
        if base is None:
            raise StreamError(f"bad whence {whence}")
        pos = base + offset
        if pos < 0:
            raise StreamError("cannot seek before the start of the file")
        self._pos = pos
        return pos

    async def read(self, n: int = -1, *, timeout: float | None = 120.0) -> bytes:
        """Up to ``n`` bytes from the position (all the rest for ``n < 0``); ``b""`` at the end."""
        if n < 0:
            n = self.size - self._pos
        data = await self.read_range(self._pos, n, timeout=timeout)
        self._pos += len(data)
        return data

    # -- reading -------------------------------------------------------------------------------

    def _pieces(self, start: int, end: int) -> range:
        plen = self._rt.info.piece_length
        base = self.file.offset
        return range((base + start) // plen, (base + end - 1) // plen + 1)

    def _target(self, start: int, end: int) -> None:
        """Deadlines: the pieces of this read now, then the read-ahead window, later ones later."""
        rt = self._rt
        have = rt.storage.have
        now = time.monotonic()
        wanted: dict[int, float] = {}
        for i in self._pieces(start, end):
            wanted[i] = now
        ahead_end = min(self.size, end + self.readahead)
        if ahead_end > end:
            for k, i in enumerate(self._pieces(end, ahead_end)):
                wanted.setdefault(i, now + 0.05 * (k + 1))
        for index in self._deadlines - wanted.keys():
            rt.picker.set_deadline(index, None)
        self._deadlines = set()
        for index, deadline in wanted.items():
            if not have.get(index):
                rt.picker.set_deadline(index, deadline)
                self._deadlines.add(index)
        for peer in list(rt.peers.values()):
            rt.scheduler.fill_requests(peer)

    async def read_range(self, offset: int, length: int, *, timeout: float | None = 120.0) -> bytes:
        """``length`` bytes at ``offset`` of the file (clipped at its end), once they are verified."""
        if self._closed:
            raise StreamError("reader is closed")
        if offset < 0 or length < 0:
            raise StreamError("negative offset or length")
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        rt = self._rt
        needed = list(self._pieces(offset, end))
        self._target(offset, end)
        have = rt.storage.have
        try:
            async with asyncio.timeout(timeout):
                async with self._watch.changed:
                    while not all(have.get(i) for i in needed):
                        if rt.error is not None:
                            raise StreamError(f"torrent failed: {rt.error}")
                        await self._watch.changed.wait()
        except TimeoutError:
            raise StreamError(f"bytes {offset}-{end - 1} did not arrive within {timeout} s") from None
        plen = rt.info.piece_length
        out = bytearray()
        pos = self.file.offset + offset
        stop = self.file.offset + end
        while pos < stop:
            index, begin = divmod(pos, plen)
            n = min(stop - pos, rt.info.piece_size(index) - begin)
            out += await rt.storage.read_block(index, begin, n)
            pos += n
        return bytes(out)


# ---------------------------------------------------------------------------------------------
# HTTP with Range (RFC 9110 single ranges), on httptools — no framework needed for two routes.

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``Range`` header → inclusive (first, last), None for the whole file; StreamError if unsatisfiable."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None  # multi-range or other units: answer with the whole file (allowed by RFC 9110)
    a, b = m.groups()
    if a == "" and b == "":
        return None
    if a == "":
        n = int(b)
        if n == 0:
            raise StreamError("empty suffix range")
        return max(0, size - n), size - 1
    first = int(a)
    last = min(int(b), size - 1) if b else size - 1
    if first >= size or first > last:
        raise StreamError("range not satisfiable")
    return first, last


#: Pipelined requests queued on one connection before it stops reading.
MAX_PIPELINED = 8


class StreamServer:
    """Serves every file of a torrent over HTTP while it downloads: ``/`` lists the files,
    ``/files/<index>/<name>`` streams one (``GET``/``HEAD``, ``Range``, keep-alive), within
    ``limits``."""

    def __init__(
        self,
        handle: TorrentHandle,
        *,
        readahead: int = DEFAULT_READAHEAD,
        limits: HttpLimits | None = None,
    ) -> None:
        self.handle = handle
        self.readahead = readahead
        self.limits = limits or HttpLimits()
        self.connections = ConnectionCounter(self.limits)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _HttpProtocol(self), host, port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def file_url(self, index: int, host: str = "127.0.0.1") -> str:
        f = self.handle._rt.info.data_files[index]
        return f"http://{host}:{self.port}/files/{index}/{urllib.parse.quote(f.path[-1])}"

    async def respond(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[bytes, TorrentReader | None, int, int]:
        """Status line + headers, and what to stream: (head, reader, first, length)."""
        files = self.handle._rt.info.data_files
        parts = urllib.parse.urlsplit(path).path.split("/")
        if parts[1:2] == [""] or path == "/":
            rows = "".join(
                f'<li><a href="/files/{i}/{urllib.parse.quote(f.path[-1])}">{_html(f.path_str)}</a>'
                f" ({f.length} bytes)</li>"
                for i, f in enumerate(files)
            )
            title = _html(self.handle.name)
            body = f"<!doctype html><title>{title}</title><h1>{title}</h1><ul>{rows}</ul>".encode()
            return (
                _head(
                    200, "OK", {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(body))}
                )
                + (body if method == "GET" else b""),
                None,
                0,
                0,
            )
        if len(parts) < 3 or parts[1] != "files" or not parts[2].isdigit() or int(parts[2]) >= len(files):
            return _error(404, "Not Found", "no such file"), None, 0, 0
        reader = TorrentReader(self.handle, int(parts[2]), readahead=self.readahead)
        size = reader.size
        ctype = mimetypes.guess_type(reader.name)[0] or "application/octet-stream"
        try:
            rng = parse_range(headers.get("range"), size)
        except StreamError:
            await reader.close()
            return (
                _head(
                    416, "Range Not Satisfiable", {"Content-Range": f"bytes */{size}", "Content-Length": "0"}
                ),
                None,
                0,
                0,
            )
        common = {"Content-Type": ctype, "Accept-Ranges": "bytes"}
        if rng is None:
            head = _head(200, "OK", {**common, "Content-Length": str(size)})
            first, length = 0, size
        else:
            first, last = rng
            length = last - first + 1
            head = _head(
                206,
                "Partial Content",
                {**common, "Content-Length": str(length), "Content-Range": f"bytes {first}-{last}/{size}"},
            )
        if method == "HEAD" or length == 0:
            await reader.close()
            return head, None, 0, 0
        return head, reader, first, length


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _head(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Server: bitswarm", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _error(status: int, reason: str, text: str, *, close: bool = False) -> bytes:
    body = f"{text}\n".encode()
    headers = {"Content-Type": "text/plain", "Content-Length": str(len(body))}
    if close:
        headers["Connection"] = "close"
    return _head(status, reason, headers) + body


CHUNK = 256 * 1024


class _HttpProtocol(asyncio.Protocol):
    def __init__(self, server: StreamServer) -> None:
        import httptools

        self.server = server
        self.limits = server.limits
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._key: str | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._refusal: bytes | None = None
        self._queue: asyncio.Queue[tuple[str, str, dict[str, str], bool]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._busy = False  #: a response is being produced (no clock runs)
        self._in_request = False  #: a request's line and headers are arriving
        self._served = 0
        self._deadline = Deadline(self._timed_out)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._key = self.server.connections.admit(str(peer[0]) if peer else "")
        if self._key is None:
            self._refuse(_error(503, "Service Unavailable", "too many connections", close=True))
            return
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        import httptools

        if self._refusal is not None or self.transport is None or self.transport.is_closing():
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._refuse(self._refusal or _error(400, "Bad Request", "bad request", close=True))

    def _refuse(self, reply: bytes) -> None:
        """Answer ``reply`` and close (the request is not served)."""
        self._refusal = reply
        self._deadline.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)
            self.transport.close()

    def _timed_out(self) -> None:
        if not self._busy and (self._in_request or not self._served):
            self._refuse(_error(408, "Request Timeout", "request timeout", close=True))
        elif self.transport is not None:  # a silent keep-alive connection (or a stalled pipeline)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        if self._key is not None:
            self.server.connections.release(self._key)
            self._key = None
        if self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._in_request = True
        self._deadline.arm(self.limits.header_timeout)

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.limits.max_head_bytes:
            self._refusal = _error(
                431, "Request Header Fields Too Large", "request head too large", close=True
            )
            raise ValueError("request head too large")  # stops the parser: data_received refuses

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        if len(self._headers) < 100:
            self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self._headers.get("content-length", "0").strip() != "0" or "transfer-encoding" in self._headers:
            self._refusal = _error(413, "Content Too Large", "requests take no body", close=True)
            raise ValueError("request with a body")

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        keep = self.parser.should_keep_alive()
        self._in_request = False
        self._deadline.cancel()
        self._queue.put_nowait((method, self._url.decode("latin-1"), dict(self._headers), keep))
        if self._queue.qsize() >= MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()  # a client that pipelines without reading waits

    async def _serve(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            while True:
                if self._queue.empty():
                    self._busy = False
                    if not self._in_request:  # waiting for the first request, or idle between two
                        lim = self.limits
                        self._deadline.arm(lim.idle_timeout if self._served else lim.header_timeout)
                method, url, headers, keep = await self._queue.get()
                self._busy = True
                self._served += 1
                if self._queue.qsize() < MAX_PIPELINED // 2 and not transport.is_closing():
                    transport.resume_reading()
                if not self._in_request:
                    self._deadline.cancel()  # no clock runs while a response is produced
                if method not in ("GET", "HEAD"):
                    transport.write(_error(405, "Method Not Allowed", "only GET and HEAD"))
                    continue
                head, reader, first, length = await self.server.respond(method, url, headers)
                transport.write(head)
                if reader is not None:
                    try:
                        pos, left = first, length
                        while left > 0:
                            chunk = await reader.read_range(pos, min(CHUNK, left))
                            if not chunk:
                                break
                            if not self._writable.is_set():  # a client that stops reading is cut off
                                await asyncio.wait_for(self._writable.wait(), self.limits.idle_timeout)
                            transport.write(chunk)
                            pos += len(chunk)
                            left -= len(chunk)
                    except BitswarmError:  # StreamError, or the storage closed under us
                        transport.close()  # headers are out: the only honest signal is to cut
                        return
                    except TimeoutError:  # the client stopped reading: drop what it did not take
                        transport.abort()
                        return
                    finally:
                        await reader.close()
                if not keep:
                    transport.close()
                    return
        except asyncio.CancelledError:
            pass
