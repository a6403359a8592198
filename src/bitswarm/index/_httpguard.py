"""Per-client limits of the index's HTTP port, added to uvicorn's httptools protocol.

uvicorn closes a keep-alive connection after ``timeout_keep_alive`` seconds of silence, but it sets
no deadline on a connection that never sends a request, none on a request's headers or body, caps
neither connections per address nor the size of a request head. :func:`guarded_protocol` returns
the protocol class that does, for one server:

* a request's line and headers must arrive within ``header_timeout`` of its first byte (of the
  accept, for the first request), its body within ``body_timeout`` of the headers' end; otherwise
  ``408`` (when no response is under way) and close;
* at most ``max_per_ip`` open connections per client address and ``max_connections`` in all: one
  more is answered ``503`` and closed at once, before anything is read;
* a request head (line and headers) of at most ``max_head_bytes``: ``431`` and close.

The handler runs with no deadline of ours; after the response uvicorn's keep-alive timer
(``idle_timeout``) takes over.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 30.0
    max_per_ip: int = 64
    max_connections: int = 4096
    max_head_bytes: int = 64 * 1024


def _canned(status: str, text: str) -> bytes:
    body = f"{text}\n".encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


BUSY = _canned("503 Service Unavailable", "too many connections from this address")
LATE = _canned("408 Request Timeout", "request not received in time")
HEAD_TOO_BIG = _canned("431 Request Header Fields Too Large", "request head too large")


class _HeadOverflow(Exception):
    """Raised from a parser callback: httptools turns it into a parse error and stops."""


class _Admission:
    """Open connections per address and in all, for one server."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.by_ip: Counter[str] = Counter()
        self.total = 0

    def take(self, ip: str) -> bool:
        if self.total >= self.limits.max_connections or self.by_ip[ip] >= self.limits.max_per_ip:
            return False
        self.by_ip[ip] += 1
        self.total += 1
        return True

    def give_back(self, ip: str) -> None:
        self.total -= 1
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]


def guarded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with ``limits`` (one class, hence one set of counts, per server)."""
    admission = _Admission(limits)

    class IndexHttpProtocol(HttpToolsProtocol):
        _admitted_ip: str | None = None
        _timer: asyncio.TimerHandle | None = None
        _head_size = 0
        _refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ip = self.client[0] if self.client else ""
            if not admission.take(ip):
                self._refused = True
                transport.write(BUSY)
                transport.close()
                return
            self._admitted_ip = ip
            self._set_timer(limits.header_timeout)  # the first request must come in time

        def connection_lost(self, exc: Exception | None) -> None:
            self._set_timer(None)
            if self._admitted_ip is not None:
                admission.give_back(self._admitted_ip)
                self._admitted_ip = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def _set_timer(self, seconds: float | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if seconds is not None:
                self._timer = self.loop.call_later(seconds, self._expired)

        def _expired(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
                self.transport.write(LATE)  # no response of ours is under way: say why we close
            self.transport.close()

        def _grow_head(self, n: int) -> None:
            self._head_size += n
            if self._head_size > limits.max_head_bytes:
                self._refused = True
                raise _HeadOverflow

        def send_400_response(self, msg: str) -> None:
            if self._refused:  # the head overflowed: say so, not "invalid request"
                self.transport.write(HEAD_TOO_BIG)
                self.transport.close()
                return
            super().send_400_response(msg)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_size = 0
            self._set_timer(limits.header_timeout)

        def on_url(self, url: bytes) -> None:
            self._grow_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._grow_head(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._set_timer(limits.body_timeout)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._set_timer(None)

    return IndexHttpProtocol


__all__ = ["HttpLimits", "guarded_protocol"]
