"""One FastAPI application with the three HTTP front ends of the index on one port:

* the P2PFlix tracker API (seed 000) at the root (``/file_list``, ``/add_file`` …),
* the CentralizedP2P API (seed 002): ``/resource`` and ``/heartbeat``,
* the native API under ``/api/v1`` (OpenAPI at ``/openapi.json``),
* the web UI (HTML) at ``/``, ``/files/…``, ``/peers``, ``/login``, ``/register``.

Every error is answered in the form of the front end the path belongs to; request bodies larger
than ``config.max_body`` get 413, and JSON bodies nested too deep or holding a lone surrogate get 400,
before any handler runs.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bitswarm._asgi import BodyLimit
from bitswarm.index._centralized import centralized_router
from bitswarm.index._config import IndexConfig
from bitswarm.index._errors import IndexServiceError
from bitswarm.index._federation import Federation, SendFn
from bitswarm.index._http_common import (
    JsonGuard,
    error_response,
    reject_in_front_end_form,
    service_error_response,
)
from bitswarm.index._native import native_router
from bitswarm.index._p2pflix import p2pflix_router
from bitswarm.index._service import IndexService
from bitswarm.index._web import web_router


def _describe(errors: Any) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)[:500] or "invalid request"


def create_app(
    service: IndexService,
    config: IndexConfig | None = None,
    *,
    federation: Federation | None = None,
    send: SendFn | None = None,
) -> FastAPI:
    """Build the HTTP application over ``service``. ``send`` replaces the HTTP client federation uses
    to reach other trackers (tests join several in-process apps with it)."""
    config = config or IndexConfig()
    if federation is None:
        federation = Federation(
            service, name=config.name, advertise=config.advertise, send=send, key=config.federation_key
        )
    app = FastAPI(
        title="bitswarm index",
        version="1",
        description="File index: P2PFlix tracker API (seed 000), CentralizedP2P API (seed 002) and "
        "the native API under /api/v1.",
    )
    app.state.service = service
    app.state.federation = federation
    app.state.config = config

    @app.exception_handler(IndexServiceError)
    async def _service_error(request: Request, exc: IndexServiceError) -> JSONResponse:
        return service_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request.url.path, 400, "invalid", _describe(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(request.url.path, exc.status_code, code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(json.JSONDecodeError)
    async def _json_error(request: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return error_response(request.url.path, 400, "invalid", f"bad JSON: {exc}")

    app.include_router(p2pflix_router(service, federation, tracker_name=config.name))
    app.include_router(centralized_router(service))
    app.include_router(native_router(service))
    app.include_router(web_router(service))
    app.add_middleware(JsonGuard)  # inside BodyLimit: sees a body already capped at max_body
    app.add_middleware(BodyLimit, limit=config.max_body, reject=reject_in_front_end_form)
    return app


__all__ = ["create_app"]
