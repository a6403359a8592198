"""The daemon API's HTTP server: uvicorn, with the per-client limits of
:class:`~bitswarm.session.stream.HttpLimits` that uvicorn does not have itself.

uvicorn closes a keep-alive connection after ``timeout_keep_alive`` seconds of silence, but it has no
deadline for a request's headers or body and no cap on connections per client, and its httptools
parser has no cap on the size of a request head. :func:`http_protocol` adds those to its httptools
protocol: a connection must send each request's line and headers within ``header_timeout`` of their
first byte (of the accept, for the first request) and the body within ``body_timeout`` of the end of
the headers (``408`` and close), at most ``max_per_ip`` connections per client address and
``max_connections`` in all (``503`` and close at once), a head of at most ``max_head_bytes`` (``431``),
and a client that stops reading a response (the event stream, a file) for ``idle_timeout`` is cut off.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bitswarm.session.stream import ConnectionCounter, Deadline, HttpLimits

__all__ = ["HttpLimits", "http_protocol", "server_config"]


def _reply(status: str, text: str) -> bytes:
    body = text.encode() + b"\n"
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


_TOO_MANY = _reply("503 Service Unavailable", "too many connections from this address")
_TIMEOUT = _reply("408 Request Timeout", "request timeout")
_HEAD_TOO_LARGE = _reply("431 Request Header Fields Too Large", "request head too large")


class _HeadTooLarge(Exception):
    pass


def http_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class with ``limits``; one class (one connection count) per server."""
    counter = ConnectionCounter(limits)

    class GuardedProtocol(HttpToolsProtocol):
        _key: str | None = None
        _deadline: Deadline | None = None
        _head_bytes = 0
        _head_too_large = False
        _in_request = False
        _stall: Deadline | None = None

        def pause_writing(self) -> None:
            """The client does not take what we send: it gets ``idle_timeout`` to start again."""
            super().pause_writing()
            if self._stall is None:
                self._stall = Deadline(self.transport.abort)  # close() would wait for the unsent data
            self._stall.arm(limits.idle_timeout)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._stall is not None:
                self._stall.cancel()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._key = counter.admit(self.client[0] if self.client else "")
            if self._key is None:
                transport.write(_TOO_MANY)
                transport.close()
                return
            self._deadline = Deadline(self._timed_out)
            self._deadline.arm(limits.header_timeout)  # the first request

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            if self._stall is not None:
                self._stall.cancel()
            if self._key is not None:
                counter.release(self._key)
                self._key = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._key is None or self._head_too_large:
                return  # refused: nothing more is read
            super().data_received(data)

        def _timed_out(self) -> None:
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(_TIMEOUT)
            self.transport.close()

        def _arm(self, seconds: float) -> None:
            if self._deadline is not None:
                self._deadline.arm(seconds)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._in_request = True
            self._arm(limits.header_timeout)

        def _count_head(self, n: int) -> None:
            self._head_bytes += n
            if self._head_bytes > limits.max_head_bytes:
                self._head_too_large = True
                raise _HeadTooLarge  # stops the parser; uvicorn answers through send_400_response

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value) + 4)
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if self._head_too_large:
                self.transport.write(_HEAD_TOO_LARGE)
                self.transport.close()
                return
            super().send_400_response(msg)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(limits.body_timeout)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_request = False
            if self._deadline is not None:
                self._deadline.cancel()  # the response runs without a clock; then uvicorn's keep-alive

    return GuardedProtocol


def server_config(
    app: Any, host: str, port: int, limits: HttpLimits | None = None, **kw: Any
) -> uvicorn.Config:
    """uvicorn's configuration for the daemon API on ``host:port`` with ``limits``."""
    lim = limits or HttpLimits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http_protocol(lim),
        timeout_keep_alive=max(1, math.ceil(lim.idle_timeout)),
        log_level="warning",
        lifespan="off",
        access_log=False,
        **kw,
    )
