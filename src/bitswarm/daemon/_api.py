"""The control API (``/api/v1``, OpenAPI at ``/openapi.json``) and the web UI at ``/``.

Every ``/api/v1`` request, reads included, needs ``Authorization: Bearer <token>``; a file's stream
URL may instead carry ``?key=``, an HMAC of the token over that one URL (handed out in the torrent's
details, so a media player can open it). Open without the token: the web UI's static shell (``/``, the
favicon) and the API's own description (``/openapi.json``, ``/api/docs``): none holds user data.
Errors are ``{"error": {"code": ..., "message": ...}}`` with a 4xx status: bad input never causes a 5xx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import mimetypes
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from bitswarm import __version__
from bitswarm._asgi import ASGIApp, BodyLimit, Scope
from bitswarm.daemon import qbittorrent, transmission
from bitswarm.daemon._core import MAX_TORRENT_BYTES, Daemon, DaemonError, clean_trackers, parse_peer
from bitswarm.daemon._webui import STATIC_TYPES, favicon, render, static_file
from bitswarm.daemon.automation import SPECS
from bitswarm.session.lifecycle import LifecycleError

if TYPE_CHECKING:
    from bitswarm.daemon._metrics import DaemonMetrics

#: Request bodies above this many bytes are refused with 413 before they reach a handler.
MAX_BODY_BYTES = MAX_TORRENT_BYTES + 64 * 1024
STREAM_CHUNK = 256 * 1024
#: An oversized body is read and discarded up to this many bytes before the 413 is sent.
DRAIN_BYTES = 64 * 1024 * 1024
_ID_PATTERN = "^[0-9a-fA-F]{40}$"


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _reject(scope: Scope, status: int, code: str, message: str) -> ASGIApp:
    return _error(status, code, message, {"Connection": "close"} if status == 413 else None)


class AddRequest(BaseModel):
    """Add a torrent: exactly one of ``magnet``, ``path`` (a .torrent on the daemon's machine),
    ``torrent_base64`` (the .torrent's bytes) or ``index_name`` (+ ``index_url``)."""

    model_config = ConfigDict(extra="forbid")
    magnet: str | None = Field(None, max_length=65536, description="BEP 9 magnet link")
    path: str | None = Field(None, max_length=4096, description="a .torrent file on the daemon's machine")
    torrent_base64: str | None = Field(None, max_length=2 * MAX_TORRENT_BYTES)
    index_url: str | None = Field(None, max_length=2048, description="a bitswarm index server")
    index_name: str | None = Field(None, max_length=1024, description="file name or hash on the index")
    save_path: str | None = Field(None, max_length=4096, description="default: the daemon's download dir")
    paused: bool = False
    peers: list[str] = Field(default_factory=list, max_length=200, description='"host:port" to dial')
    trackers: list[str] = Field(default_factory=list, max_length=50)
    priorities: list[int] | None = Field(None, max_length=100000, description="one per file, 0..7")
    category: str | None = Field(None, max_length=200, description="saved in the category's save path")
    tags: list[str] = Field(default_factory=list, max_length=100)


class PrioritiesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    priorities: list[int] = Field(..., max_length=1000000, description="one per file: 0 skip, 1..7")


class MoveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    save_path: str = Field(..., min_length=1, max_length=4096, description="the new directory")


class CategoryRequest(BaseModel):
    """Create a category or change its save path ("" = the daemon's download dir)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=200)
    save_path: str = Field("", max_length=4096)


class TorrentCategoryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str = Field(..., max_length=200, description='a category name, "" for none')


class TagsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: list[str] = Field(..., max_length=100)


class QueueRequest(BaseModel):
    """Move in the queue: ``where`` (top, up, down, bottom) or ``position`` (0 = first)."""

    model_config = ConfigDict(extra="forbid")
    where: Literal["top", "up", "down", "bottom"] | None = None
    position: int | None = Field(None, ge=0, le=1_000_000)


class GoalsRequest(BaseModel):
    """This torrent's seeding goals: modes 0 (the global goal), 1 (its own limit), 2 (none)."""

    model_config = ConfigDict(extra="forbid")
    ratio_mode: Literal[0, 1, 2] | None = None
    ratio_limit: float | None = Field(None, ge=0, le=1e8)
    time_mode: Literal[0, 1, 2] | None = None
    time_minutes: float | None = Field(None, ge=0, le=1e8)


class SuperSeedRequest(BaseModel):
    """BEP 16 for this torrent: true, false, or null (the daemon's ``super_seed`` setting)."""

    model_config = ConfigDict(extra="forbid")
    super_seed: bool | None


_SETTING_TYPES: dict[type, Any] = {bool: bool | None, int: int | None, float: float | None, str: str | None}
#: PUT /api/v1/settings: any subset of the automation settings (docs/daemon.md)
_SETTING_FIELDS: dict[str, Any] = {
    k: (_SETTING_TYPES[spec.kind], Field(None, description=spec.doc)) for k, spec in SPECS.items()
}
SettingsRequest: type[BaseModel] = create_model(
    "SettingsRequest", __config__=ConfigDict(extra="forbid"), **_SETTING_FIELDS
)


class LimitsRequest(BaseModel):
    """Rates in bytes/s; 0 = unlimited; a missing field is left as it is."""

    model_config = ConfigDict(extra="forbid")
    download: int | None = Field(None, ge=0, le=1 << 40)
    upload: int | None = Field(None, ge=0, le=1 << 40)


_Body = TypeVar("_Body", bound=BaseModel)
_F = TypeVar("_F", bound=Callable[..., Any])


def parse_body(model: type[_Body], body: bytes) -> _Body:
    """A JSON request body as ``model``, parsed strictly (pydantic's parser, not ``json``): JSON that
    is malformed, nested deeper than its recursion limit (200) or holds a lone surrogate (``"\\ud800"``,
    not Unicode text) is a 400 ``bad_json``; JSON of the wrong shape is a 422 ``invalid``."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        bad = [e for e in errors if e.get("type") == "json_invalid"]
        if bad:
            raise DaemonError(
                f"the body is not valid JSON: {bad[0].get('msg', '')}"[:300], 400, "bad_json"
            ) from None
        raise RequestValidationError(errors) from None


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body read with :func:`parse_body`."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


TorrentId = Annotated[str, PathParam(pattern=_ID_PATTERN, description="the torrent's id (hex info-hash)")]
FileIndex = Annotated[int, PathParam(ge=0, le=1_000_000, description="index in the torrent's file list")]

_bearer = HTTPBearer(auto_error=False, description="the token from DATA_DIR/token")


def create_app(
    daemon: Daemon,
    token: str,
    *,
    allowed_hosts: set[str] | None = None,
) -> FastAPI:
    """The ASGI app of one daemon. ``allowed_hosts``: accepted ``Host`` header names (without port),
    a guard against DNS rebinding for a loopback daemon; None accepts any."""
    app = FastAPI(
        title="bitswarm daemon",
        version=__version__,
        description="Control a running bitswarm session: torrents, limits, statistics, events.",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.daemon = daemon
    app.add_middleware(
        BodyLimit,
        limit=MAX_BODY_BYTES,
        reject=_reject,
        drain=DRAIN_BYTES,
        skip_methods=("GET", "HEAD", "OPTIONS"),
        strict_length=True,
    )

    if allowed_hosts is not None:

        @app.middleware("http")
        async def host_guard(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            host = (request.headers.get("host") or "").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.strip("[]") not in allowed_hosts:
                return _error(421, "misdirected", f"this daemon does not answer for host {host!r}")
            return await call_next(request)

    @app.exception_handler(DaemonError)
    async def _daemon_error(request: Request, exc: DaemonError) -> JSONResponse:
        return _error(exc.status, exc.code, str(exc))

    @app.exception_handler(LifecycleError)
    async def _lifecycle_error(request: Request, exc: LifecycleError) -> JSONResponse:
        return _error(409, "wrong_state", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
        return _error(422, "invalid", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "error"
        )
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    async def require_token(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if creds is None or creds.scheme.lower() != "bearer":
            raise DaemonError("this request needs 'Authorization: Bearer <token>'", 401, "unauthorized")
        if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise DaemonError("wrong token", 401, "unauthorized")

    Auth = Depends(require_token)
    api = APIRouter(prefix="/api/v1", dependencies=[Auth])

    async def stream_access(
        torrent_id: TorrentId,
        file_index: FileIndex,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        key: Annotated[str | None, Query(max_length=128, description="the stream_url's key")] = None,
    ) -> None:
        """The bearer token, or the ``key`` of this one file's stream URL."""
        if key is not None and creds is None:
            want = stream_key(token, torrent_id, file_index)
            if not hmac.compare_digest(key.encode(), want.encode()):
                raise DaemonError("wrong stream key", 401, "unauthorized")
            return
        await require_token(creds)

    # -- web UI --------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(render("index"), headers={"Cache-Control": "no-cache"})

    @app.get("/settings", include_in_schema=False)
    async def settings_page() -> HTMLResponse:
        return HTMLResponse(render("settings"), headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.svg", include_in_schema=False)
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon_svg() -> Response:
        return Response(favicon(), media_type="image/svg+xml")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: Annotated[str, PathParam(max_length=64)]) -> Response:
        data = static_file(name)
        if data is None:
            raise DaemonError(f"no static file {name!r}", 404, "not_found")
        return Response(data, media_type=STATIC_TYPES[name], headers={"Cache-Control": "no-cache"})

    # -- torrents ------------------------------------------------------------------------------

    @api.get("/torrents", summary="Every torrent with its status", response_model=dict[str, Any])
    async def list_torrents() -> Response:
        # each torrent's JSON is kept until its status changes: FastAPI's encoder walked every
        # value of 10,000 statuses, then json.dumps dumped them all on every call (issue 24)
        return Response(b'{"torrents":' + daemon.list_json() + b"}", media_type="application/json")

    @api.post(
        "/torrents",
        status_code=201,
        summary="Add a torrent: .torrent upload (multipart or raw), server-side path, magnet or index name",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": AddRequest.model_json_schema()},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "torrent": {"type": "string", "format": "binary"},
                                "magnet": {"type": "string"},
                                "save_path": {"type": "string"},
                                "paused": {"type": "string", "enum": ["true", "false"]},
                                "peers": {"type": "string", "description": "host:port, comma separated"},
                            },
                        }
                    },
                    "application/x-bittorrent": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def add_torrent(
        request: Request,
        save_path: Annotated[str | None, Query(max_length=4096)] = None,
        paused: bool = False,
        category: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        kind = ctype.split(";", 1)[0].strip().lower()
        if kind == "multipart/form-data":
            fields = parse_multipart(body, ctype)
            opts: dict[str, Any] = {
                "save_path": _text(fields.get("save_path")) or save_path,
                "paused": (_text(fields.get("paused")) or str(paused)).lower() in ("1", "true", "on", "yes"),
                "peers": [parse_peer(p) for p in (_text(fields.get("peers")) or "").split(",") if p.strip()],
                "category": _text(fields.get("category")) or category or None,
                "tags": [t.strip() for t in (_text(fields.get("tags")) or "").split(",") if t.strip()],
            }
            if "torrent" in fields:
                return await daemon.add_torrent(fields["torrent"], **opts)
            magnet = _text(fields.get("magnet"))
            if magnet:
                return await daemon.add_magnet(magnet.strip(), **opts)
            raise DaemonError("the form needs a 'torrent' file or a 'magnet' field")
        if kind in ("application/x-bittorrent", "application/octet-stream"):
            return await daemon.add_torrent(
                body, save_path=save_path, paused=paused, category=category or None
            )
        if kind != "application/json":
            raise DaemonError(
                "send application/json, multipart/form-data or application/x-bittorrent", 415, "unsupported"
            )
        return await _add_json(daemon, parse_body(AddRequest, body))

    @api.get("/torrents/{torrent_id}", summary="One torrent: status, files, peers, trackers, pieces")
    async def torrent_details(torrent_id: TorrentId) -> dict[str, Any]:
        out = daemon.details(torrent_id)
        for f in out["files"]:  # a link a media player can open: it carries this file's key
            f["stream_url"] += "?key=" + stream_key(token, out["id"], f["index"])
        return out

    @api.get("/torrents/{torrent_id}/trackers", summary="Each tracker's last announce, the DHT")
    async def torrent_trackers(torrent_id: TorrentId) -> dict[str, Any]:
        return daemon.trackers(torrent_id)

    @api.delete("/torrents/{torrent_id}", summary="Remove a torrent")
    async def remove_torrent(torrent_id: TorrentId, delete_data: bool = False) -> dict[str, Any]:
        return await daemon.remove(torrent_id, delete_data=delete_data)

    @api.post("/torrents/{torrent_id}/pause", summary="Pause (keeps the data)")
    async def pause(torrent_id: TorrentId) -> dict[str, Any]:
        return await daemon.pause(torrent_id)

    @api.post("/torrents/{torrent_id}/resume", summary="Resume")
    async def resume(torrent_id: TorrentId) -> dict[str, Any]:
        return await daemon.resume(torrent_id)

    @api.post("/torrents/{torrent_id}/recheck", summary="Hash every piece again")
    async def recheck(torrent_id: TorrentId) -> dict[str, Any]:
        return await daemon.recheck(torrent_id)

    def put_json(path: str, summary: str, model: type[BaseModel]) -> Callable[[_F], _F]:
        """A PUT whose JSON body the handler reads with :func:`parse_body` (documented as ``model``)."""
        return api.put(path, summary=summary, openapi_extra=_json_body(model))

    @put_json("/torrents/{torrent_id}/priorities", "File priorities", PrioritiesRequest)
    async def priorities(torrent_id: TorrentId, request: Request) -> dict[str, Any]:
        req = parse_body(PrioritiesRequest, await request.body())
        return await daemon.set_priorities(torrent_id, req.priorities)

    @put_json("/torrents/{torrent_id}/location", "Move the files to another directory", MoveRequest)
    async def move(torrent_id: TorrentId, request: Request) -> dict[str, Any]:
        req = parse_body(MoveRequest, await request.body())
        return await daemon.move(torrent_id, req.save_path)

    @put_json("/torrents/{torrent_id}/limits", "Per-torrent rate limits", LimitsRequest)
    async def torrent_limits(torrent_id: TorrentId, request: Request) -> dict[str, Any]:
        req = parse_body(LimitsRequest, await request.body())
        return await daemon.set_limits(torrent_id, download=req.download, upload=req.upload)

    stream_path = "/api/v1/torrents/{torrent_id}/files/{file_index}/stream"

    @app.get(
        stream_path,
        summary="Stream one file while it downloads (HTTP Range); the bearer token or the URL's key",
        response_class=Response,
        dependencies=[Depends(stream_access)],
    )
    async def stream_file(request: Request, torrent_id: TorrentId, file_index: FileIndex) -> Response:
        return await _stream(daemon, request, torrent_id, file_index)

    @app.head(stream_path, include_in_schema=False, dependencies=[Depends(stream_access)])
    async def stream_file_head(request: Request, torrent_id: TorrentId, file_index: FileIndex) -> Response:
        return await _stream(daemon, request, torrent_id, file_index)

    @put_json(
        "/torrents/{torrent_id}/category",
        "Put the torrent in a category (files stay)",
        TorrentCategoryRequest,
    )
    async def torrent_category(torrent_id: TorrentId, request: Request) -> dict[str, Any]:
        req = parse_body(TorrentCategoryRequest, await request.body())
        return daemon.set_category(torrent_id, req.category)

    @put_json("/torrents/{torrent_id}/tags", "The torrent's tags", TagsRequest)
    async def torrent_tags(torrent_id: TorrentId, request: Request) -> dict[str, Any]:
        req = parse_body(TagsRequest, await request.body())
        return daemon.set_tags(torrent_id, req.tags)

    @put_json("/torrents/{torrent_id}/super_seed", "BEP 16 super-seeding for this torrent", SuperSeedRequest)
    async def torrent_super_seed(torrent_id: TorrentId, request: Request) -> dict[str, Any]:
        req = parse_body(SuperSeedRequest, await request.body())
        return daemon.set_super_seed(torrent_id, req.super_seed)

    @put_json("/torrents/{torrent_id}/goals", "The torrent's seeding goals", GoalsRequest)
    async def torrent_goals(torrent_id: TorrentId, request: Request) -> dict[str, Any]:
        req = parse_body(GoalsRequest, await request.body())
        return await daemon.set_goals(torrent_id, req.model_dump(exclude_none=True))

    @api.post(
        "/torrents/{torrent_id}/queue",
        summary="Move the torrent in the queue",
        openapi_extra=_json_body(QueueRequest),
    )
    async def torrent_queue(torrent_id: TorrentId, request: Request) -> dict[str, Any]:
        req = parse_body(QueueRequest, await request.body())
        if (req.where is None) == (req.position is None):
            raise DaemonError("give where (top, up, down, bottom) or position")
        tid = daemon.record(torrent_id).id
        if req.where is not None:
            daemon.move_in_queue([tid], req.where)
        else:
            daemon.set_queue_position(tid, req.position or 0)
        return {"queue": daemon.queue_order()}

    # -- settings, categories ------------------------------------------------------------------

    @api.get("/settings", summary="Every setting: limits, schedule, queue, seeding goals, watch folder ...")
    async def get_settings() -> dict[str, Any]:
        return daemon.settings()

    @put_json("/settings", "Change settings (any subset; applied at once)", SettingsRequest)
    async def put_settings(request: Request) -> dict[str, Any]:
        req = parse_body(SettingsRequest, await request.body())
        return daemon.update_settings(req.model_dump(exclude_none=True))

    @api.get("/categories", summary="Categories and their save paths")
    async def get_categories() -> dict[str, str]:
        return daemon.categories()

    @put_json("/categories", "Create a category or change its save path", CategoryRequest)
    async def put_category(request: Request) -> dict[str, str]:
        req = parse_body(CategoryRequest, await request.body())
        return daemon.set_category_path(req.name, req.save_path)

    @api.delete("/categories/{name}", summary="Remove a category (its torrents keep their files)")
    async def delete_category(name: Annotated[str, PathParam(max_length=200)]) -> dict[str, str]:
        if name not in daemon.categories():
            raise DaemonError(f"no category {name!r}", 404, "not_found")
        return daemon.remove_categories([name])

    # -- session -------------------------------------------------------------------------------

    @api.get("/stats", summary="Session statistics")
    async def stats() -> dict[str, Any]:
        return daemon.stats()

    @api.get("/limits", summary="Global rate limits")
    async def get_limits() -> dict[str, int]:
        return daemon.global_limits()

    @put_json("/limits", "Set global rate limits", LimitsRequest)
    async def set_limits(request: Request) -> dict[str, int]:
        req = parse_body(LimitsRequest, await request.body())
        return daemon.set_global_limits(download=req.download, upload=req.upload)

    @api.get(
        "/events",
        summary="Server-sent events: a 'torrents' snapshot every second and daemon/engine events",
        response_class=StreamingResponse,
    )
    async def events(interval: Annotated[float, Query(ge=0.1, le=60)] = 1.0) -> StreamingResponse:
        async def sse() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"
            async for ev in daemon.events(interval):
                if ev["event"] == "torrents":  # each torrent's cached JSON (the web UI's list)
                    stats = json.dumps(ev["stats"], separators=(",", ":"), allow_nan=False, default=str)
                    torrents = daemon.list_json(ev["torrents"]).decode()
                    data = f'{{"event":"torrents","torrents":{torrents},"stats":{stats}}}'
                else:
                    data = json.dumps(ev, separators=(",", ":"), allow_nan=False, default=str)
                yield f"event: {ev['event']}\ndata: {data}\n\n".encode()

        return StreamingResponse(
            sse(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    metrics: list[DaemonMetrics] = []  # made at the first scrape: prometheus_client is imported then

    @app.get("/metrics", include_in_schema=False, dependencies=[Auth])  # Prometheus, needs the token
    async def prometheus_metrics() -> Response:
        from bitswarm.daemon._metrics import CONTENT_TYPE, DaemonMetrics

        if not metrics:
            metrics.append(DaemonMetrics(daemon))
        return Response(metrics[0].render(), media_type=CONTENT_TYPE)

    app.include_router(api)
    transmission.mount(app, daemon, token)  # /transmission/rpc (Transmission's RPC)
    qbittorrent.mount(app, daemon, token)  # /api/v2 (qBittorrent's Web API)
    return app


def stream_key(token: str, torrent_id: str, file_index: int) -> str:
    """The ``key`` of one file's stream URL: an HMAC of the token over the torrent id and file index
    (opens that file only; changes with the token)."""
    msg = f"stream/{torrent_id.lower()}/{file_index}".encode()
    return hmac.new(token.encode(), msg, hashlib.sha256).hexdigest()[:32]


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split("\n")[:3])[:300]


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


async def _add_json(daemon: Daemon, req: AddRequest) -> dict[str, Any]:
    sources = [x for x in (req.magnet, req.path, req.torrent_base64, req.index_name) if x]
    if len(sources) != 1:
        raise DaemonError("give exactly one of magnet, path, torrent_base64 or index_name")
    peers = [parse_peer(p) for p in req.peers]
    opts: dict[str, Any] = {"save_path": req.save_path, "paused": req.paused, "peers": peers}
    if req.category:
        opts["category"] = req.category
    if req.tags:
        opts["tags"] = req.tags
    if req.trackers:
        opts["trackers"] = clean_trackers(req.trackers)
    if req.magnet:
        return await daemon.add_magnet(req.magnet, **opts)
    if req.priorities is not None:
        opts["priorities"] = req.priorities
    if req.path:
        return await daemon.add_path(req.path, **opts)
    if req.torrent_base64:
        try:
            data = base64.b64decode(req.torrent_base64, validate=True)
        except (binascii.Error, ValueError):
            raise DaemonError("torrent_base64 is not base64") from None
        return await daemon.add_torrent(data, **opts)
    if not req.index_url:
        raise DaemonError("index_name needs index_url")
    opts.pop("priorities", None)
    return await daemon.add_from_index(req.index_url, req.index_name or "", **opts)


_DISPOSITION = re.compile(rb"(?i)^content-disposition:\s*form-data(.*)$", re.M)
_PARAM = re.compile(rb'(?i);\s*(name|filename)="((?:[^"\\]|\\.)*)"')


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """``multipart/form-data`` (RFC 7578) → {field name: bytes}; exact bytes, no temp files."""
    m = re.search(r'(?i)boundary="?([^";]{1,200})"?', content_type)
    if m is None:
        raise DaemonError("multipart body without a boundary")
    delim = b"--" + m.group(1).encode("latin-1", "replace")
    chunks = body.split(delim)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise DaemonError("malformed multipart body")
    out: dict[str, bytes] = {}
    for chunk in chunks[1:-1]:
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise DaemonError("malformed multipart part")
        d = _DISPOSITION.search(head)
        if d is None:
            continue
        params = {k.lower(): v for k, v in _PARAM.findall(d.group(1))}
        name = params.get(b"name")
        if name is None:
            continue
        out[name.decode("utf-8", "replace")] = content
    return out


async def _stream(daemon: Daemon, request: Request, torrent_id: str, file_index: int) -> Response:
    from bitswarm.session.stream import StreamError, TorrentReader, parse_range

    handle = daemon.handle(torrent_id)
    files = handle.torrent.info.data_files
    if not 0 <= file_index < len(files):
        raise DaemonError(f"no file {file_index} (the torrent has {len(files)})", 404, "not_found")
    f = files[file_index]
    size = f.length
    try:
        rng = parse_range(request.headers.get("range"), size)
    except StreamError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    ctype = mimetypes.guess_type(f.path[-1] if f.path else handle.name)[0] or "application/octet-stream"
    headers = {"Accept-Ranges": "bytes", "Content-Type": ctype}
    if rng is None:
        first, length, status = 0, size, 200
    else:
        first, last = rng
        length, status = last - first + 1, 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD" or length == 0:
        return Response(status_code=status, headers=headers)
    reader = TorrentReader(handle, file_index)

    async def body() -> AsyncIterator[bytes]:
        pos, end = first, first + length
        try:
            while pos < end:
                data = await reader.read_range(pos, min(STREAM_CHUNK, end - pos), timeout=120.0)
                if not data:
                    break
                pos += len(data)
                yield data
        except StreamError:
            return
        finally:
            await reader.close()

    return StreamingResponse(body(), status_code=status, headers=headers)
