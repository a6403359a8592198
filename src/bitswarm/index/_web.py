"""The index's web UI at ``/``: server-rendered HTML from Jinja2 templates (package data in
``bitswarm/index/templates/``, autoescaped: every value a user or peer supplied is escaped), one CSS
file, no JavaScript.

Pages: search with results (name, size, online peers, magnet), a file page (hashes, peers, chunks,
.torrent link), the peers list and a peer's files, register / log in / log out. Logging in creates a
native API session (:meth:`IndexService.login`); its token is kept in an ``HttpOnly``,
``SameSite=Lax`` cookie, so the browser session and the ``/api/v1`` bearer token are the same thing.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bitswarm.index import _validate as v
from bitswarm.index._errors import (
    AuthError,
    Conflict,
    IndexServiceError,
    NotFound,
    Throttled,
    ValidationError,
)
from bitswarm.index._model import SESSION_TTL, User
from bitswarm.index._service import IndexService

COOKIE = "bitswarm_session"
PAGE = 50


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _ago(then: float | None, now: float) -> str:
    if then is None:
        return "never"
    delta = max(0.0, now - then)
    for limit, div, unit in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h")):
        if delta < limit:
            return f"{int(delta // div)} {unit} ago"
    return f"{int(delta // 86400)} d ago"


def _day(when: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(when))


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bitswarm.index", "templates"),
        autoescape=True,  # every page is HTML: escape everything not marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
    )
    env.filters.update(size=_size, ago=_ago, day=_day)
    return env


TEMPLATES = _templates()
CSS = resources.files("bitswarm.index").joinpath("templates/index.css").read_text("utf-8")


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def web_router(service: IndexService) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    async def current(request: Request) -> User | None:
        token = request.cookies.get(COOKIE)
        if not token or len(token) > 256:
            return None
        try:
            return await service.user_for_token(token)
        except AuthError:
            return None

    async def page(
        request: Request, template: str, title: str, *, status: int = 200, user: Any = ..., **context: Any
    ) -> HTMLResponse:
        """Render ``template`` (it extends ``base.html``) for the signed-in user (``...``: look it up)."""
        if user is ...:
            user = await current(request)
        html = TEMPLATES.get_template(template).render(title=title, user=user, **context)
        return HTMLResponse(html, status_code=status)

    async def error_page(request: Request, exc: IndexServiceError) -> HTMLResponse:
        return await page(
            request,
            "error.html",
            "Error",
            status=exc.status,
            error_status=exc.status,
            code=exc.code,
            message=str(exc),
        )

    def _int(request: Request, key: str, default: int, hi: int) -> int:
        try:
            value = int(request.query_params.get(key, default))
        except ValueError:
            return default
        return min(max(value, 0), hi)

    @router.get("/static/index.css")
    async def css() -> Response:
        return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    @router.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        q = request.query_params.get("q", "")[:256]
        offset = _int(request, "offset", 0, 10**9)
        context: dict[str, Any] = {
            "q": q,
            "offset": offset,
            "n_files": await service.count_files(),
            "n_online": await service.count_peers("online"),
            "n_peers": await service.count_peers("all"),
            "result": None,
            "recent": (),
            "prev_query": None,
            "next_query": None,
        }
        if q.strip():
            try:
                result = await service.search(q, limit=PAGE, offset=offset)
            except ValidationError as exc:
                return await error_page(request, exc)
            context["result"] = result
            if offset > 0:
                context["prev_query"] = urlencode({"q": q, "offset": max(0, offset - PAGE)})
            if offset + PAGE < result.total:
                context["next_query"] = urlencode({"q": q, "offset": offset + PAGE})
        else:
            context["recent"] = await service.list_files(limit=20)
        return await page(request, "home.html", f"Search {q}" if q else "Search", **context)

    @router.get("/files/{file_id}", response_class=HTMLResponse)
    async def file_page(request: Request, file_id: str) -> HTMLResponse:
        try:
            fid = v.integer(int(file_id) if file_id.isdigit() else -1, "file id")
            d = await service.get_file(fid)
        except IndexServiceError as exc:
            return await error_page(request, NotFound(str(exc)) if isinstance(exc, ValidationError) else exc)
        f = d.file
        hashes = [
            (label, value)
            for label, value in (
                ("SHA-1", f.sha1),
                ("SHA-256", f.sha256),
                ("MD5", f.md5),
                ("Info-hash v1", f.btih_v1),
                ("Info-hash v2", f.btih_v2),
            )
            if value
        ]
        return await page(
            request,
            "file.html",
            f.name,
            f=f,
            hashes=hashes,
            hosts=d.hosts,
            chunks=d.chunks,
            paths={h.peer.public_id: h.path for h in d.hosts},
            now=service.clock(),
        )

    @router.get("/peers", response_class=HTMLResponse)
    async def peers_page(request: Request) -> HTMLResponse:
        status = request.query_params.get("status", "all")
        if status not in ("online", "offline", "all"):
            status = "all"
        offset = _int(request, "offset", 0, 10**9)
        peers = await service.list_peers(status, limit=PAGE, offset=offset)  # type: ignore[arg-type]
        total = await service.count_peers(status)  # type: ignore[arg-type]
        return await page(
            request,
            "peers.html",
            "Peers",
            status_name=status,
            peers=peers,
            total=total,
            now=service.clock(),
            prev_offset=max(0, offset - PAGE) if offset > 0 else None,
            next_offset=offset + PAGE if offset + PAGE < total else None,
        )

    @router.get("/peers/{peer_id}", response_class=HTMLResponse)
    async def peer_page(request: Request, peer_id: str) -> HTMLResponse:
        try:
            peer = await service.find_peer(peer_id)
            files = await service.browse(peer.guid)
        except IndexServiceError as exc:
            return await error_page(request, NotFound(str(exc)) if isinstance(exc, ValidationError) else exc)
        return await page(request, "peer.html", "Peer", peer=peer, files=files, now=service.clock())

    def account(kind: str, error: str = "", username: str = "") -> dict[str, Any]:
        return {"kind": kind, "error": error, "username": username}

    async def form(request: Request) -> dict[str, str]:
        raw = (await request.body()).decode("utf-8", "replace")
        return {k: vals[0] for k, vals in parse_qs(raw, max_num_fields=10).items()}

    def logged_in(token: str, to: str = "/") -> RedirectResponse:
        response = RedirectResponse(to, status_code=303)
        response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL), httponly=True, samesite="lax", path="/")
        return response

    @router.get("/register", response_class=HTMLResponse)
    async def register_form(request: Request) -> HTMLResponse:
        return await page(request, "account.html", "Register", **account("register"))

    @router.post("/register", response_class=HTMLResponse)
    async def register(request: Request) -> Response:
        data = await form(request)
        name, pw = data.get("username", ""), data.get("password", "")
        try:
            await service.create_user(v.username(name), v.password(pw))
            session = await service.login(name, pw, ip=_ip(request))
        except (ValidationError, Conflict, AuthError, Throttled) as exc:
            return await page(
                request, "account.html", "Register", status=exc.status, **account("register", str(exc), name)
            )
        return logged_in(session.token)

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> HTMLResponse:
        return await page(request, "account.html", "Log in", **account("login"))

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        data = await form(request)
        name, pw = data.get("username", ""), data.get("password", "")
        try:
            session = await service.login(name[:64], pw[:1024], ip=_ip(request))
        except (AuthError, Throttled) as exc:
            response = await page(
                request,
                "account.html",
                "Log in",
                status=exc.status,
                user=None,
                **account("login", str(exc), name),
            )
            if isinstance(exc, Throttled):
                response.headers["Retry-After"] = str(int(exc.retry_after))
            return response
        return logged_in(session.token)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        if token and len(token) <= 256:
            await service.logout(token)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    return router
