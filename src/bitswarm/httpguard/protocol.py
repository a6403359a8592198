"""uvicorn's httptools protocol with the limits of :class:`~bitswarm.httpguard.HttpLimits` that
uvicorn does not have itself (used by the daemon's API and the index's HTTP port).

uvicorn closes a keep-alive connection after ``timeout_keep_alive`` seconds of silence, but it has no
deadline for a connection that never sends a request nor for a request's headers or body, no cap on
connections per client, and its httptools parser has no cap on the size of a request head.
:func:`guarded_protocol` returns the protocol class that adds them, for one server:

* a request's line and headers must arrive within ``header_timeout`` of its first byte (of the
  accept, for the first request), its body within ``body_timeout`` of the headers' end; otherwise
  ``408`` (when no response is under way) and close;
* at most ``max_per_ip`` open connections per client address (an IPv6 /64) and ``max_connections``
  in all: one more is answered ``503`` and closed at once, before anything is read;
* a request head (line and headers) of at most ``max_head_bytes``: ``431`` and close;
* a client that stops reading a response (an event stream, a file) for ``idle_timeout`` is cut off.

The handler runs with no deadline of ours; after the response uvicorn's keep-alive timer
(``idle_timeout``, set by :func:`server_config`) takes over.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bitswarm.httpguard.limits import ConnectionCounter, Deadline, HttpLimits

__all__ = ["guarded_protocol", "server_config"]


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
    """Raised from a parser callback: httptools turns it into a parse error and stops."""


def guarded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class with ``limits``; one class (one connection count) per server."""
    counter = ConnectionCounter(limits)

    class GuardedProtocol(HttpToolsProtocol):
        _key: str | None = None
        _deadline: Deadline | None = None
        _stall: Deadline | None = None
        _head_bytes = 0
        _head_too_large = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._key = counter.admit(self.client[0] if self.client else "")
            if self._key is None:
                transport.write(_TOO_MANY)
                transport.close()
                return
            self._deadline = Deadline(self._timed_out)
            self._deadline.arm(limits.header_timeout)  # the first request must come in time

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

        def _timed_out(self) -> None:
            if self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
                self.transport.write(_TIMEOUT)  # no response of ours is under way: say why we close
            self.transport.close()

        def _arm(self, seconds: float) -> None:
            if self._deadline is not None:
                self._deadline.arm(seconds)

        def _count_head(self, n: int) -> None:
            self._head_bytes += n
            if self._head_bytes > limits.max_head_bytes:
                self._head_too_large = True
                raise _HeadTooLarge  # stops the parser; uvicorn answers through send_400_response

        def send_400_response(self, msg: str) -> None:
            if self._head_too_large:  # say so, not "invalid request"
                self.transport.write(_HEAD_TOO_LARGE)
                self.transport.close()
                return
            super().send_400_response(msg)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._arm(limits.header_timeout)

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(limits.body_timeout)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            if self._deadline is not None:
                self._deadline.cancel()  # the response runs without a clock; then uvicorn's keep-alive

    return GuardedProtocol


def server_config(
    app: Any, host: str = "127.0.0.1", port: int = 8000, limits: HttpLimits | None = None, **kw: Any
) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` on ``host:port`` (or the sockets given to ``serve``) with
    ``limits`` (:class:`HttpLimits` defaults when None), quiet and without lifespan events."""
    lim = limits or HttpLimits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(lim),
        # uvicorn hands this to loop.call_later: a float works (tests use fractions of a second)
        timeout_keep_alive=lim.idle_timeout,  # type: ignore[arg-type]
        log_level="warning",
        lifespan="off",
        access_log=False,
        **kw,
    )
