"""The web UI in a real Chromium (Playwright, Debian's /usr/bin/chromium): add a torrent by file
upload, watch it download from a seeding Session to 100 %, pause and resume it, open the detail view
with its play link, add a magnet, remove a torrent.

Screenshots go to ``$BITSWARM_SCREENSHOTS`` when set (docs/screenshots is made that way), else to
the test's temp dir."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from daemon_testlib import TOKEN, make_content, running_daemon, seeder, torrent_of

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def hide_toasts(page) -> None:  # type: ignore[no-untyped-def]
    await page.evaluate("document.getElementById('toast').classList.remove('show')")
    await page.wait_for_timeout(250)  # its fade-out


async def test_page_is_self_contained(tmp_path: Path) -> None:
    """No external assets: every src/href is local, the page works offline."""
    async with running_daemon(tmp_path / "d") as r, r.client() as c:
        page = (await c.get("/")).text
        assert "<title>bitswarm</title>" in page
        refs = [x for x in re.findall(r'(?:src|href)="([^"]+)"', page) if not x.startswith("' +")]  # JS-built
        assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
        assert "@import" not in page and "url(" not in page
        assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in page
        assert (await c.get("/favicon.svg")).headers["content-type"].startswith("image/svg+xml")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_browser_add_progress_pause_resume(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; no browser download)")
    shots = Path(os.environ.get("BITSWARM_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    content = make_content(tmp_path / "seed", "Big Buck Bunny (2008)", files=3, size=1_600_000)
    raw, t = torrent_of(content, piece_length=65536)
    tfile = tmp_path / "Big Buck Bunny (2008).torrent"
    tfile.write_bytes(raw)
    # two more torrents so the list looks lived-in: one finished, one paused half-way
    others = [
        torrent_of(make_content(tmp_path / "other", name, files=2, size=size, seed=i))
        for i, (name, size) in enumerate([("Debian 12 netinst", 400_000), ("Public Domain Jazz", 250_000)])
    ]
    # the seeder uploads at ~1.2 MB/s so the progress can be watched
    async with seeder(content, t, upload_rate_limit=1_200_000) as (s, _), running_daemon(tmp_path / "d") as r:
        async with r.client() as c:
            await r.daemon.add_torrent(others[0][0], save_path=str(tmp_path / "other"))
            await r.daemon.add_torrent(others[1][0], paused=True)
            magnet = "magnet:?xt=urn:btih:" + "5d" * 20 + "&dn=Night%20of%20the%20Living%20Dead%20(1968)"
            (await c.post("/api/v1/torrents", json={"magnet": magnet, "paused": True})).raise_for_status()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1200, "height": 760})
                page.set_default_timeout(20_000)
                await page.goto(f"{r.url}/#token={TOKEN}")
                assert await page.title() == "bitswarm"
                assert "token" not in page.url  # taken from the fragment, then dropped
                await expect(page.locator(".row")).to_have_count(3)
                # the event stream is up: read with fetch, which sends the token (every read needs it)
                await expect(page.locator("#conn")).to_have_class(re.compile(r"\blive\b"))

                # add by file upload, with the seeder as a peer
                await page.click("#add-btn")
                await page.set_input_files("#file", str(tfile))
                await expect(page.locator("#file-name")).to_have_text(tfile.name)
                await page.fill("#peers", f"127.0.0.1:{s.port}")
                await page.screenshot(path=str(shots / "daemon-add.png"))
                await page.click("#add-go")
                row = page.locator(f'.row[data-id="{t.swarm_hash.hex()}"]')
                await expect(row).to_have_count(1)
                await expect(row.locator(".badge")).to_have_text("downloading")
                # live progress (server-sent events): somewhere strictly between 0 and 100 %
                await page.wait_for_function(
                    """id => { const p = document.querySelector(`.row[data-id="${id}"] .pct`);
                               const v = p ? parseFloat(p.textContent) : 0; return v >= 15 && v < 90; }""",
                    arg=t.swarm_hash.hex(),
                )
                await expect(row.locator(".down")).to_contain_text("/s")
                await expect(row.locator(".eta")).to_contain_text("ETA")
                await hide_toasts(page)
                await page.screenshot(path=str(shots / "daemon-list.png"))
                await expect(row.locator(".pct")).to_have_text("100.0 %", timeout=60_000)
                await expect(row.locator(".badge")).to_have_text("seeding")
                assert (r.daemon.download_dir / content.name / "clip.mp4").read_bytes() == (
                    content / "clip.mp4"
                ).read_bytes()

                # pause and resume from the row's button
                await row.locator('[data-action="toggle"]').click()
                await expect(row.locator(".badge")).to_have_text("paused")
                await expect(row.locator('[data-action="toggle"]')).to_contain_text("Resume")
                # still in the session: the engine paused it
                paused = next(h for h in r.daemon.session.torrents if h.info_hash == t.swarm_hash)
                assert paused.status().state == "paused" and paused.status().peers == 0
                await page.click('.tab[data-f="paused"]')
                await expect(page.locator(".row")).to_have_count(3)  # + the paused one and the magnet
                await page.click('.tab[data-f="all"]')
                await row.locator('[data-action="toggle"]').click()
                await expect(row.locator(".badge")).to_have_text("seeding")
                await expect(row.locator(".pct")).to_have_text("100.0 %")

                # the detail view: files with a play link that streams with Range
                await row.locator(".name").click()
                await expect(page.locator("#drawer")).to_have_class(re.compile(r"\bopen\b"))
                await expect(page.locator("#d-name")).to_have_text(content.name)
                play = page.locator("a.play")
                await expect(play).to_have_count(1)
                href = await play.get_attribute("href")
                assert href is not None
                async with httpx.AsyncClient(base_url=r.url) as http:
                    part = await http.get(href, headers={"Range": "bytes=0-99"})
                assert part.status_code == 206 and part.content == (content / "clip.mp4").read_bytes()[:100]
                await hide_toasts(page)
                await page.screenshot(path=str(shots / "daemon-detail.png"))
                await page.click('.dtab[data-t="pieces"]')
                await expect(page.locator("canvas.pieces")).to_have_count(1)
                await page.click('.dtab[data-t="info"]')
                await expect(page.locator(".kv")).to_contain_text(t.swarm_hash.hex())
                await page.click("#d-close")

                # remove one (the confirm dialog), keeping its data
                other = page.locator(f'.row[data-id="{others[1][1].swarm_hash.hex()}"]')
                await other.locator('[data-action="remove"]').click()
                await page.click("#rm-go")
                await expect(other).to_have_count(0)
                assert others[1][1].swarm_hash.hex() not in r.daemon.ids()

                # a write with a wrong token asks for the token
                await page.evaluate("localStorage.setItem('bitswarm-token', 'wrong')")
                await row.locator('[data-action="toggle"]').click()
                await expect(page.locator("#tok-dlg")).to_be_visible()
                assert not r.daemon._entries[t.swarm_hash.hex()].rec.paused
            finally:
                await browser.close()
