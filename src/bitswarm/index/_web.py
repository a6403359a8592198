"""The index's web UI at ``/``: server-rendered HTML (small string templates, everything escaped),
one CSS file, no JavaScript.

Pages: search with results (name, size, online peers, magnet), a file page (hashes, peers, chunks,
.torrent link), the peers list and a peer's files, register / log in / log out. Logging in creates a
native API session (:meth:`IndexService.login`); its token is kept in an ``HttpOnly``,
``SameSite=Lax`` cookie, so the browser session and the ``/api/v1`` bearer token are the same thing.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode

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
from bitswarm.index._model import SESSION_TTL, FileRecord, Peer, User
from bitswarm.index._service import IndexService

COOKIE = "bitswarm_session"
PAGE = 50

CSS = """
:root { --fg:#1d2433; --muted:#5f6b7a; --line:#e3e7ee; --bg:#f6f8fb; --card:#fff; --accent:#2f6fed;
        --ok:#1f9d55; --off:#9aa4b2; --warn:#c0392b; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--fg); background:var(--bg); }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
header { background:#16213a; color:#fff; }
header .bar { max-width:1100px; margin:0 auto; padding:10px 20px; display:flex; gap:22px;
              align-items:center; }
header .brand { font-weight:700; font-size:18px; color:#fff; letter-spacing:.2px; }
header .brand span { color:#7fb0ff; }
header nav a { color:#d7e2ff; margin-right:16px; }
header .who { margin-left:auto; display:flex; gap:12px; align-items:center; color:#d7e2ff; }
header form { margin:0; }
header .who .btn { padding:3px 12px; color:#fff; }
main { max-width:1100px; margin:24px auto; padding:0 20px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:18px 20px;
        margin-bottom:18px; box-shadow:0 1px 2px rgba(20,30,60,.04); }
h1 { font-size:22px; margin:0 0 12px; } h2 { font-size:17px; margin:0 0 10px; }
.search { display:flex; gap:8px; }
.search input { flex:1; font-size:16px; padding:10px 12px; border:1px solid #c9d2df; border-radius:8px; }
button, .btn { font:inherit; background:var(--accent); color:#fff; border:0; border-radius:8px;
               padding:9px 16px; cursor:pointer; }
button.link { background:none; color:#d7e2ff; padding:0; }
table { width:100%; border-collapse:collapse; }
th, td { text-align:left; padding:8px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:12px; text-transform:uppercase; letter-spacing:.5px; color:var(--muted); font-weight:600; }
td.num, th.num { text-align:right; white-space:nowrap; }
tr:last-child td { border-bottom:0; }
code, .hash { font-family:ui-monospace,"DejaVu Sans Mono",monospace; font-size:12.5px; word-break:break-all; }
.muted { color:var(--muted); }
.badge { display:inline-block; font-size:12px; padding:1px 8px; border-radius:999px; color:#fff; }
.on { background:var(--ok); } .off { background:var(--off); }
.stats { display:flex; gap:24px; color:var(--muted); font-size:14px; margin-top:10px; }
.form { max-width:380px; }
.form label { display:block; font-weight:600; margin:10px 0 4px; }
.form input { width:100%; padding:9px 11px; border:1px solid #c9d2df; border-radius:8px; font-size:15px; }
.form button { margin-top:16px; width:100%; }
.error { background:#fdecea; color:var(--warn); border:1px solid #f5c6c0; padding:9px 12px;
         border-radius:8px; }
.pager { display:flex; gap:14px; margin-top:12px; }
dl.kv { display:grid; grid-template-columns:140px 1fr; gap:6px 14px; margin:0; }
dl.kv dt { color:var(--muted); } dl.kv dd { margin:0; }
footer { max-width:1100px; margin:0 auto 30px; padding:0 20px; color:var(--muted); font-size:13px; }
"""


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


def _badge(online: bool) -> str:
    return '<span class="badge on">online</span>' if online else '<span class="badge off">offline</span>'


def _files_table(items: tuple[FileRecord, ...] | list[FileRecord]) -> str:
    if not items:
        return '<p class="muted">No files.</p>'
    rows = []
    for f in items:
        magnet = f'<a href="{escape(f.magnet)}" title="magnet link">magnet</a>' if f.magnet else ""
        torrent = f' · <a href="/api/v1/files/{f.id}/torrent">.torrent</a>' if f.has_torrent else ""
        rows.append(
            f'<tr><td><a href="/files/{f.id}">{escape(f.name)}</a></td>'
            f'<td class="num">{_size(f.size)}</td>'
            f'<td class="num">{f.online_peers} <span class="muted">/ {f.total_peers}</span></td>'
            f"<td>{magnet}{torrent}</td></tr>"
        )
    return (
        '<table class="files"><thead><tr><th>Name</th><th class="num">Size</th>'
        '<th class="num">Online peers</th><th>Get</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _peers_table(peers: list[Peer], now: float, *, path: dict[str, str | None] | None = None) -> str:
    if not peers:
        return '<p class="muted">No peers.</p>'
    rows = []
    for p in peers:
        addr = f"{p.ip or '?'}:{p.port or '?'}"
        extra = f"<td><code>{escape(path.get(p.public_id) or '')}</code></td>" if path is not None else ""
        rows.append(
            f'<tr><td><a class="hash" href="/peers/{p.public_id}">{p.public_id}</a></td>'
            f"<td>{escape(p.username or '')}</td><td><code>{escape(addr)}</code></td>"
            f"<td>{_badge(p.online)}</td><td>{_ago(p.last_seen, now)}</td>{extra}</tr>"
        )
    head = "<th>Path</th>" if path is not None else ""
    return (
        "<table><thead><tr><th>Peer</th><th>User</th><th>Address</th><th>Status</th><th>Last seen</th>"
        f"{head}</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


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
        request: Request, title: str, body: str, *, status: int = 200, q: str = "", user: Any = ...
    ) -> HTMLResponse:
        if user is ...:
            user = await current(request)
        if user is None:
            who = '<a href="/login">Log in</a><a href="/register" class="btn">Register</a>'
        else:
            who = (
                f"<span>Signed in as <b>{escape(user.username)}</b></span>"
                '<form method="post" action="/logout">'
                '<button class="link" type="submit">Log out</button></form>'
            )
        html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · bitswarm index</title>
<link rel="stylesheet" href="/static/index.css"></head>
<body><header><div class="bar">
<a class="brand" href="/">bit<span>swarm</span> index</a>
<nav><a href="/">Search</a><a href="/peers">Peers</a><a href="/docs">API</a></nav>
<div class="who">{who}</div></div></header>
<main>{body}</main>
<footer>bitswarm file index · P2PFlix, CentralizedP2P and native APIs on this port</footer>
</body></html>"""
        return HTMLResponse(html, status_code=status)

    async def error_page(request: Request, exc: IndexServiceError) -> HTMLResponse:
        body = f'<div class="card"><h1>{exc.status} {escape(exc.code)}</h1><p>{escape(str(exc))}</p></div>'
        return await page(request, "Error", body, status=exc.status)

    def search_box(q: str) -> str:
        return (
            '<form class="search" method="get" action="/">'
            f'<input type="search" name="q" value="{escape(q)}" placeholder="Search files: words or a '
            '&quot;quoted phrase&quot;" autofocus><button type="submit">Search</button></form>'
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
        stats = (
            f'<div class="stats"><span>{await service.count_files()} files</span>'
            f"<span>{await service.count_peers('online')} peers online</span>"
            f"<span>{await service.count_peers('all')} peers registered</span></div>"
        )
        parts = [f'<div class="card"><h1>Find a file</h1>{search_box(q)}{stats}</div>']
        if q.strip():
            try:
                result = await service.search(q, limit=PAGE, offset=offset)
            except ValidationError as exc:
                return await error_page(request, exc)
            pager = []
            if offset > 0:
                prev = urlencode({"q": q, "offset": max(0, offset - PAGE)})
                pager.append(f'<a href="/?{prev}">← previous</a>')
            if offset + PAGE < result.total:
                pager.append(f'<a href="/?{urlencode({"q": q, "offset": offset + PAGE})}">next →</a>')
            shown = f"{offset + 1}–{offset + len(result.items)} of " if result.items else ""
            parts.append(
                f'<div class="card"><h2>Results for “{escape(q)}” <span class="muted">'
                f"({shown}{result.total})</span></h2>{_files_table(result.items)}"
                f'<div class="pager">{"".join(pager)}</div></div>'
            )
        else:
            recent = await service.list_files(limit=20)
            parts.append(f'<div class="card"><h2>Files</h2>{_files_table(recent)}</div>')
        return await page(request, f"Search {q}" if q else "Search", "".join(parts), q=q)

    @router.get("/files/{file_id}", response_class=HTMLResponse)
    async def file_page(request: Request, file_id: str) -> HTMLResponse:
        try:
            fid = v.integer(int(file_id) if file_id.isdigit() else -1, "file id")
            d = await service.get_file(fid)
        except IndexServiceError as exc:
            return await error_page(request, NotFound(str(exc)) if isinstance(exc, ValidationError) else exc)
        f, now = d.file, service.clock()
        hashes = [
            (
                "Size",
                f"{_size(f.size)}" + (f" <span class='muted'>({f.size} bytes)</span>" if f.size else ""),
            ),
            ("Online peers", f"{f.online_peers} of {f.total_peers}"),
        ]
        for label, value in (
            ("SHA-1", f.sha1),
            ("SHA-256", f.sha256),
            ("MD5", f.md5),
            ("Info-hash v1", f.btih_v1),
            ("Info-hash v2", f.btih_v2),
        ):
            if value:
                hashes.append((label, f'<span class="hash">{escape(value)}</span>'))
        if f.magnet:
            hashes.append(("Magnet", f'<a class="hash" href="{escape(f.magnet)}">{escape(f.magnet)}</a>'))
        if f.has_torrent:
            hashes.append(("Torrent", f'<a href="/api/v1/files/{f.id}/torrent">download .torrent</a>'))
        kv = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in hashes)
        paths = {h.peer.public_id: h.path for h in d.hosts}
        chunk_rows = "".join(
            f"<tr><td class='num'>{c.id}</td><td>{escape(c.name)}</td>"
            f"<td class='hash'>{escape(c.hash)}</td></tr>"
            for c in d.chunks[:500]
        )
        more = f"<p class='muted'>… and {len(d.chunks) - 500} more</p>" if len(d.chunks) > 500 else ""
        chunks = (
            "<table><thead><tr><th class='num'>#</th><th>Name</th><th>Hash</th></tr></thead>"
            f"<tbody>{chunk_rows}</tbody></table>{more}"
            if d.chunks
            else '<p class="muted">No chunk list registered.</p>'
        )
        body = (
            f'<div class="card"><h1>{escape(f.name)}</h1><dl class="kv">{kv}</dl></div>'
            f'<div class="card"><h2>Peers ({len(d.hosts)})</h2>'
            f"{_peers_table([h.peer for h in d.hosts], now, path=paths)}</div>"
            f'<div class="card"><h2>Chunks ({len(d.chunks)})</h2>{chunks}</div>'
        )
        return await page(request, f.name, body)

    @router.get("/peers", response_class=HTMLResponse)
    async def peers_page(request: Request) -> HTMLResponse:
        status = request.query_params.get("status", "all")
        if status not in ("online", "offline", "all"):
            status = "all"
        offset = _int(request, "offset", 0, 10**9)
        peers = await service.list_peers(status, limit=PAGE, offset=offset)  # type: ignore[arg-type]
        total = await service.count_peers(status)  # type: ignore[arg-type]
        tabs = " · ".join(
            f"<b>{s}</b>" if s == status else f'<a href="/peers?status={s}">{s}</a>'
            for s in ("all", "online", "offline")
        )
        pager = []
        if offset > 0:
            pager.append(f'<a href="/peers?status={status}&offset={max(0, offset - PAGE)}">← previous</a>')
        if offset + PAGE < total:
            pager.append(f'<a href="/peers?status={status}&offset={offset + PAGE}">next →</a>')
        body = (
            f'<div class="card"><h1>Peers <span class="muted">({total})</span></h1><p>{tabs}</p>'
            f'{_peers_table(peers, service.clock())}<div class="pager">{"".join(pager)}</div></div>'
        )
        return await page(request, "Peers", body)

    @router.get("/peers/{peer_id}", response_class=HTMLResponse)
    async def peer_page(request: Request, peer_id: str) -> HTMLResponse:
        try:
            peer = await service.find_peer(peer_id)
            files = await service.browse(peer.guid)
        except IndexServiceError as exc:
            return await error_page(request, NotFound(str(exc)) if isinstance(exc, ValidationError) else exc)
        now = service.clock()
        kv = (
            f"<dt>Status</dt><dd>{_badge(peer.online)}</dd>"
            f"<dt>User</dt><dd>{escape(peer.username or '—')}</dd>"
            f"<dt>Address</dt><dd><code>{escape(str(peer.ip))}:{peer.port or '?'}</code></dd>"
            f"<dt>Last seen</dt><dd>{_ago(peer.last_seen, now)}</dd>"
            f"<dt>Registered until</dt><dd>{time.strftime('%Y-%m-%d', time.gmtime(peer.expires_at))}</dd>"
        )
        body = (
            f'<div class="card"><h1 class="hash">{peer.public_id}</h1><dl class="kv">{kv}</dl></div>'
            f'<div class="card"><h2>Files ({len(files)})</h2>{_files_table(files)}</div>'
        )
        return await page(request, "Peer", body)

    def account_form(kind: str, error: str = "", username: str = "") -> str:
        title = "Create an account" if kind == "register" else "Log in"
        other = (
            '<p class="muted">Already registered? <a href="/login">Log in</a></p>'
            if kind == "register"
            else '<p class="muted">No account yet? <a href="/register">Register</a></p>'
        )
        err = f'<p class="error">{escape(error)}</p>' if error else ""
        return (
            f'<div class="card form"><h1>{title}</h1>{err}<form method="post" action="/{kind}">'
            f'<label for="username">Username</label><input id="username" name="username" '
            f'value="{escape(username)}" autocomplete="username" required maxlength="64">'
            '<label for="password">Password</label><input id="password" name="password" type="password" '
            f'autocomplete="{"new-password" if kind == "register" else "current-password"}" required>'
            f'<button type="submit">{title}</button></form>{other}</div>'
        )

    async def form(request: Request) -> dict[str, str]:
        raw = (await request.body()).decode("utf-8", "replace")
        return {k: vals[0] for k, vals in parse_qs(raw, max_num_fields=10).items()}

    def logged_in(token: str, to: str = "/") -> RedirectResponse:
        response = RedirectResponse(to, status_code=303)
        response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL), httponly=True, samesite="lax", path="/")
        return response

    @router.get("/register", response_class=HTMLResponse)
    async def register_form(request: Request) -> HTMLResponse:
        return await page(request, "Register", account_form("register"))

    @router.post("/register", response_class=HTMLResponse)
    async def register(request: Request) -> Response:
        data = await form(request)
        name, pw = data.get("username", ""), data.get("password", "")
        try:
            await service.create_user(v.username(name), v.password(pw))
            session = await service.login(name, pw, ip=_ip(request))
        except (ValidationError, Conflict, AuthError, Throttled) as exc:
            return await page(
                request, "Register", account_form("register", str(exc), name), status=exc.status
            )
        return logged_in(session.token)

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> HTMLResponse:
        return await page(request, "Log in", account_form("login"))

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        data = await form(request)
        name, pw = data.get("username", ""), data.get("password", "")
        try:
            session = await service.login(name[:64], pw[:1024], ip=_ip(request))
        except (AuthError, Throttled) as exc:
            response = await page(
                request, "Log in", account_form("login", str(exc), name), status=exc.status, user=None
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
