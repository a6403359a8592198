"""What the three HTTP front ends share: the error form chosen by path, the body-size cap and a
strict JSON body reader (bad UTF-8, bad JSON, non-object → ValidationError, never a 5xx)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from bitswarm._asgi import ASGIApp, Scope
from bitswarm.index._errors import IndexServiceError, ValidationError

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


def reject_in_front_end_form(scope: Scope, status: int, code: str, message: str) -> ASGIApp:
    """The body-limit middleware's errors in the error form of the front end the path belongs to."""
    return error_response(scope.get("path", "/"), status, code, message)
