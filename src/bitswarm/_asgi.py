"""ASGI pieces shared by bitswarm's HTTP front ends (the index and the daemon's control API)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Builds the error response for ``(scope, status, code, message)`` in the front end's own form.
Reject = Callable[[Scope, int, str, str], ASGIApp]


class BodyLimit:
    """Pure ASGI middleware: read the whole request body first (at most ``limit`` bytes) and refuse a
    larger one with 413 — by ``Content-Length`` or while reading a chunked body — before any handler
    runs, so nothing is stored half-way and memory stays bounded.

    ``reject`` renders errors in the front end's own form. ``drain``: read and drop up to this many
    bytes of an oversized body before answering, so a client that sends everything before reading gets
    the 413 instead of a reset connection. ``skip_methods`` pass through untouched (no body).
    ``strict_length``: a malformed ``Content-Length`` is a 400 (else it is ignored and the body read).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        *,
        reject: Reject,
        drain: int = 0,
        skip_methods: Collection[str] = (),
        strict_length: bool = False,
    ) -> None:
        self.app = app
        self.limit = limit
        self.reject = reject
        self.drain = drain
        self.skip_methods = frozenset(skip_methods)
        self.strict_length = strict_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in self.skip_methods:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    if self.strict_length:
                        await self.reject(scope, 400, "bad_request", "bad Content-Length")(
                            scope, receive, send
                        )
                        return
                    declared = -1
                if declared > self.limit:
                    await self._too_large(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        drained = 0
        while drained < self.drain:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response = self.reject(scope, 413, "too_large", f"request body is larger than {self.limit} bytes")
        await response(scope, _disconnected if not self.drain else receive, send)


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}
