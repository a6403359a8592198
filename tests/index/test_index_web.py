"""The web UI: HTML pages over HTTP (escaping, cookie session from the native token, errors as HTML)
and, in a real Chromium driven by Playwright, register → log out → log in → search → open a file.

Screenshots go to ``$BITSWARM_SCREENSHOTS`` when set (docs/screenshots is made that way), else to
the test's temp dir."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import httpx
import pytest
from index_testlib import FAST_HASHER, FakeClock

from bitswarm.index import OFFLINE_AFTER, Chunk, FileSpec, IndexService
from bitswarm.index._config import IndexConfig
from bitswarm.index._validate import file_spec
from bitswarm.index._web import COOKIE
from bitswarm.index.http import create_app
from bitswarm.index.server import IndexServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def populate(svc: IndexService) -> dict[str, int]:
    """A small catalogue: some files with several online peers, one whose only peer went offline."""
    ids: dict[str, int] = {}
    await svc.add_file(FileSpec(name="Old Lecture 1998.ogv", sha1="9" * 40, size=7_340_032), guid=None)
    ids["Old Lecture 1998.ogv"] = (await svc.file_by_hash("9" * 40)).file.id
    svc.clock.advance(OFFLINE_AFTER + 5)  # type: ignore[attr-defined]
    peers = []
    for n in range(3):
        user = await svc.create_user(f"seeder{n}", "pw")
        p = await svc.register_peer(user=user, ip=f"127.0.0.{10 + n}", port=6881 + n, online=True)
        peers.append(p.guid)
    catalogue = [
        ("Big Buck Bunny 1080p.mkv", "a", 276_134_947, 3),
        ("Big Buck Bunny 720p.mkv", "b", 158_008_374, 1),
        ("Sintel 4K.mkv", "c", 1_160_000_000, 2),
        ("Tears of Steel.mp4", "d", 734_003_200, 2),
        ("ubuntu-24.04-desktop-amd64.iso", "e", 6_114_656_256, 3),
        ("<script>alert(1)</script>.txt", "f", 42, 1),
    ]
    for name, ch, size, hosts in catalogue:
        spec = file_spec(file_name=name, size=size, btih_v1=ch * 40, sha256=ch * 64)
        chunks = tuple(Chunk(i, f"{name}.{i}", f"{ch}{i:03d}" * 16) for i in range(4))
        spec = dataclasses.replace(spec, chunks=chunks)
        fid = 0
        for guid in peers[:hosts]:
            fid, _ = await svc.add_file(spec, guid=guid, path=f"/srv/media/{name}")
        ids[name] = fid
    return ids


@pytest.fixture
async def web(index_db):
    svc = await IndexService.open(index_db, clock=FakeClock(), hasher=FAST_HASHER)
    ids = await populate(svc)
    app = create_app(svc)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://idx") as c:
        yield c, svc, ids
    await app.state.federation.aclose()
    await svc.close()


async def test_pages_render_and_escape(web):
    c, _svc, ids = web
    home = await c.get("/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert "Big Buck Bunny 1080p.mkv" in home.text and "Log in" in home.text
    assert (
        "<script>alert(1)</script>" not in home.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in home.text
    )
    r = await c.get("/", params={"q": "bunny"})
    assert r.text.index("Big Buck Bunny 1080p.mkv") < r.text.index("Big Buck Bunny 720p.mkv")  # 3 vs 1 online
    assert "Sintel" not in r.text and "(1–2 of 2)" in r.text and 'href="magnet:?xt=urn:btih:' in r.text
    r = await c.get("/", params={"q": '"bunny big"'})
    assert "No files." in r.text
    page = await c.get(f"/files/{ids['Sintel 4K.mkv']}")
    assert page.status_code == 200
    for needle in ("c" * 64, "c" * 40, "127.0.0.10:6881", "/srv/media/Sintel 4K.mkv", "Sintel 4K.mkv.3"):
        assert needle in page.text, needle
    assert page.text.count('class="badge on"') == 2
    old = await c.get(f"/files/{ids['Old Lecture 1998.ogv']}")
    assert 'class="badge off"' in old.text and 'class="badge on"' not in old.text
    for bad in (
        "/files/999999",
        "/files/abc",
        "/peers/not-a-guid",
        f"/peers/{'0' * 8}-0000-0000-0000-{'0' * 12}",
    ):
        r = await c.get(bad)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), bad
    peers = await c.get("/peers", params={"status": "online"})
    assert peers.text.count('class="badge on"') == 3 and "seeder2" in peers.text
    peer_id = (await c.get("/api/v1/peers", params={"status": "online"})).json()["items"][0]["id"]
    assert "Big Buck Bunny 1080p.mkv" in (await c.get(f"/peers/{peer_id}")).text
    css = await c.get("/static/index.css")
    assert css.headers["content-type"].startswith("text/css") and "header" in css.text
    assert "/static/index.css" not in (await c.get("/openapi.json")).text  # the UI is not in the API spec


async def test_register_login_logout_cookie_is_a_native_token(web):
    c, _svc, _ = web
    r = await c.post("/register", data={"username": "dora", "password": "s3cret"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    token = c.cookies.get(COOKIE)
    assert (
        token
        and "httponly" in r.headers["set-cookie"].lower()
        and "samesite=lax" in r.headers["set-cookie"].lower()
    )
    assert "Signed in as <b>dora</b>" in (await c.get("/")).text
    # the cookie is a native API bearer token
    me = await c.post("/api/v1/peers", json={"port": 7000}, headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 201 and me.json()["username"] == "dora"
    r = await c.post("/register", data={"username": "dora", "password": "x"})
    assert r.status_code == 409 and "taken" in r.text
    r = await c.post("/register", data={"username": "bad name!", "password": "x"})
    assert r.status_code == 400 and 'class="error"' in r.text
    assert (await c.post("/logout")).status_code == 303
    assert c.cookies.get(COOKIE) is None
    assert (
        await c.post("/api/v1/peers", json={}, headers={"Authorization": f"Bearer {token}"})
    ).status_code == 401
    r = await c.post("/login", data={"username": "dora", "password": "wrong"})
    assert r.status_code == 401 and "bad username or password" in r.text
    r = await c.post("/login", data={"username": "dora", "password": "s3cret"})
    assert r.status_code == 303 and c.cookies.get(COOKIE)
    assert "Signed in as <b>dora</b>" in (await c.get("/peers")).text
    c.cookies.set(COOKIE, "forged")
    assert "Log in" in (await c.get("/")).text


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_browser_register_login_search_open_file(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; no browser download)")
    shots = Path(os.environ.get("BITSWARM_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    svc = await IndexService.open(tmp_path / "web.db", clock=FakeClock(), hasher=FAST_HASHER)
    server = IndexServer(IndexConfig(name="web", host="127.0.0.1", port=0), svc)
    ids = await populate(svc)
    bound = await server.start()
    base = f"http://127.0.0.1:{bound.http_port}"
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1100, "height": 720})
                page.set_default_timeout(15_000)
                await page.goto(base + "/")
                assert await page.title() == "Search · bitswarm index"
                await page.click("text=Register")
                await page.fill("#username", "erin")
                await page.fill("#password", "correct horse")
                await page.screenshot(path=str(shots / "index-register.png"))
                await page.click("form button[type=submit]")
                await page.wait_for_url(base + "/")
                assert "Signed in as erin" in await page.inner_text("header")
                await page.click("text=Log out")
                await page.wait_for_selector("header >> text=Log in")
                await page.click("header >> text=Log in")
                await page.fill("#username", "erin")
                await page.fill("#password", "wrong")
                await page.click("form button[type=submit]")
                assert "bad username or password" in await page.inner_text(".error")
                await page.fill("#password", "correct horse")
                await page.click("form button[type=submit]")
                await page.wait_for_url(base + "/")
                assert "Signed in as erin" in await page.inner_text("header")
                await page.fill("input[name=q]", "big buck")
                await page.press("input[name=q]", "Enter")
                await page.wait_for_url("**/?q=big+buck")
                rows = await page.locator("table.files tbody tr").all_inner_texts()
                assert [r.split("\t")[0] for r in rows] == [
                    "Big Buck Bunny 1080p.mkv",
                    "Big Buck Bunny 720p.mkv",
                ]
                await page.screenshot(path=str(shots / "index-search.png"))
                await page.click("text=Big Buck Bunny 1080p.mkv")
                await page.wait_for_url(f"{base}/files/{ids['Big Buck Bunny 1080p.mkv']}")
                assert await page.inner_text("h1") == "Big Buck Bunny 1080p.mkv"
                body = await page.inner_text("main")
                assert "a" * 64 in body and "127.0.0.12:6883" in body and "Big Buck Bunny 1080p.mkv.3" in body
                await page.screenshot(path=str(shots / "index-file.png"), full_page=True)
                await page.click("header >> text=Peers")
                await page.wait_for_url(base + "/peers")
                assert await page.locator("span.badge.on").count() == 3
                await page.screenshot(path=str(shots / "index-peers.png"))
            finally:
                await browser.close()
    finally:
        await server.stop()
        await svc.close()
    for name in ("register", "search", "file", "peers"):
        png = shots / f"index-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
