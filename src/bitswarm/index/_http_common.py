"""What the three HTTP front ends share: the error form chosen by path, the body-size cap, a strict
JSON body reader (bad UTF-8, bad JSON, non-object → ValidationError, never a 5xx) and
:class:`JsonGuard`, which answers 400 for a JSON body nested deeper than :data:`MAX_JSON_DEPTH` or
holding a lone surrogate (``"\\ud800"``: not Unicode text, cannot be stored) before any handler runs."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from bitswarm._asgi import ASGIApp, Message, Receive, Scope, Send
from bitswarm.index._errors import IndexServiceError, Throttled, ValidationError

NATIVE_PREFIX = "/api/v1"
CENTRALIZED_PATHS = ("/resource", "/heartbeat")
#: Deepest JSON nesting any index body may have (the deepest real one, a chunk of a file, is 3).
MAX_JSON_DEPTH = 32


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
    response = error_response(request.url.path, exc.status, exc.code, str(exc))
    if isinstance(exc, Throttled):
        response.headers["Retry-After"] = str(int(exc.retry_after))
    return response


async def read_json(request: Request, *, optional: bool = False) -> Any:
    """The request body as JSON. An empty body is ``{}`` when ``optional`` (GET /resource)."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise ValidationError("a JSON body is required")
    if too_deep(raw):
        raise ValidationError(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValidationError("the body is not valid UTF-8") from None
    except RecursionError:  # not reached after too_deep(); kept as a last line
        raise ValidationError(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}") from None
    check_json(value)
    return value


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def too_deep(raw: bytes) -> bool:
    """Whether ``raw`` nests arrays/objects deeper than :data:`MAX_JSON_DEPTH` — found by counting
    brackets outside strings, before any parser recurses (so no RecursionError is ever raised in the
    process). Not a validity check: a body that is not JSON is the parser's business."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for m in _BRACKET.finditer(_JSON_STRING.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


def check_json(value: Any) -> None:
    """ValidationError for nesting deeper than :data:`MAX_JSON_DEPTH` or a string (key or value) that
    is not Unicode text (a lone surrogate from a ``\\ud800`` escape). Iterative: no recursion limit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValidationError(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            for key, sub in item.items():
                _check_text(key)
                stack.append((sub, depth + 1))
        else:
            stack.extend((sub, depth + 1) for sub in item)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("a JSON string holds a lone surrogate (not Unicode text)") from None


class JsonGuard:
    """Pure ASGI middleware (inside the body-size cap, which has already read the whole body): a body
    that parses as JSON but is nested too deep or holds a lone surrogate gets 400 in the front end's
    error form before any handler runs — every JSON endpoint of every front end, in one place. A body
    that is not JSON at all goes on to its handler, which answers with its own error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope.get("method") in ("GET", "HEAD") and not _has_body(scope)):
            await self.app(scope, receive, send)
            return
        first = await receive()  # BodyLimit (outside us) hands over the whole body in one message
        problem = _json_problem(first.get("body", b"")) if first["type"] == "http.request" else None
        if problem is not None:
            await error_response(scope.get("path", "/"), 400, "invalid", problem)(scope, receive, send)
            return
        pending = [first]

        async def again() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, again, send)


def _has_body(scope: Scope) -> bool:
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in scope.get("headers", []))


def _json_problem(raw: bytes) -> str | None:
    """Why a JSON body is refused here (too deep, lone surrogate), or None (fine, or not JSON)."""
    if raw.lstrip()[:1] not in (b"{", b"[", b'"'):
        return None
    if too_deep(raw):
        return f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        check_json(json.loads(raw))
    except RecursionError:
        return f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels"
    except ValidationError as exc:
        return str(exc)
    except ValueError:  # not JSON (or not UTF-8): the handler gives its own error
        return None
    return None


def reject_in_front_end_form(scope: Scope, status: int, code: str, message: str) -> ASGIApp:
    """The body-limit middleware's errors in the error form of the front end the path belongs to."""
    return error_response(scope.get("path", "/"), status, code, message)
