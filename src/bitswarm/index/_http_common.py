"""What the three HTTP front ends share: the error form chosen by path, the body-size cap and a
strict JSON body reader (bad UTF-8, bad JSON, non-object → ValidationError, never a 5xx)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from bitswarm.index._errors import IndexServiceError, ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NATIVE_PREFIX = "/api/v1"
CENTRALIZED_PATHS = ("/resource", "/heartbeat")


def front_end(path: str) -> str:
    """Which API a path belongs to: ``native``, ``centralized`` or ``p2pflix`` (everything else)."""
    if path == NATIVE_PREFIX or path.startswith(NATIVE_PREFIX + "/"):
        return "native"
    if path.rstrip("/") in CENTRALIZED_PATHS:
        return "centralized"
    return "p2pflix"


def error_body(path: str, code: str, message: str) -> dict[str, Any]:
    kind = front_end(path)
    if kind == "native":
        return {"error": {"code": code, "message": message}}
    if kind == "centralized":
        return {"error": message}
    return {"success": False, "error": message}


def error_response(path: str, status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(path, code, message), status_code=status)


def service_error_response(request: Request, exc: IndexServiceError) -> JSONResponse:
    return error_response(request.url.path, exc.status, exc.code, str(exc))


async def read_json(request: Request, *, optional: bool = False) -> Any:
    """The request body as JSON. An empty body is ``{}`` when ``optional`` (GET /resource)."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise ValidationError("a JSON body is required")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValidationError("the body is not valid UTF-8") from None
    except ValueError as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}") from None


class BodyLimit:
    """ASGI middleware: read the whole request body first (at most ``limit`` bytes) and answer 413 in
    the front end's own error form when it is larger, before any handler runs."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    await self._too_large(path, scope, send)
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
                await self._too_large(path, scope, send)
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

    async def _too_large(self, path: str, scope: Scope, send: Send) -> None:
        response = error_response(path, 413, "too_large", f"request body larger than {self.limit} bytes")
        await response(scope, self._no_receive, send)

    @staticmethod
    async def _no_receive() -> Message:
        return {"type": "http.disconnect"}
