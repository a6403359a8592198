"""The web UI's settings page, categories and queue in a real Chromium (Playwright, Debian's
/usr/bin/chromium): a setting changed on the page takes effect (checked through the API and the
session's limiter), a torrent added to a category from the add dialog is saved in the category's
folder, and the queue advances on screen (one download slot, two torrents).

Screenshots go to ``$BITSWARM_SCREENSHOTS`` when set, else to the test's temp dir."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_testlib import TOKEN, make_content, running_daemon, seeder, session_config, torrent_of, wait_for
from test_daemon_browser import CHROMIUM, CHROMIUM_ARGS, hide_toasts

from bitswarm.daemon._webui import static_file
from bitswarm.session import Session

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@contextlib.asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[tuple[Any, Any, Path]]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; no browser download)")
    shots = Path(os.environ.get("BITSWARM_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, expect, shots
            assert not errors, errors  # no script error on any page
        finally:
            await browser.close()


async def test_static_files_and_templates_are_package_data(tmp_path: Path) -> None:
    """The pages come from templates (autoescaped), their CSS/JS from static files, all served."""
    async with running_daemon(tmp_path / "d") as r, r.client(auth=False) as c:
        for path, kind in [
            ("/", "text/html"),
            ("/settings", "text/html"),
            ("/static/app.js", "text/javascript"),
        ]:
            got = await c.get(path)
            assert got.status_code == 200 and got.headers["content-type"].startswith(kind), path
        assert (await c.get("/static/app.css")).content == static_file("app.css")
        assert (await c.get("/static/../_core.py")).status_code == 404
        assert (await c.get("/static/nope.js")).status_code == 404
        page = (await c.get("/settings")).text
        assert 'name="queue_downloads_max"' in page and 'data-bit="64"' in page
        assert "/static/settings.js" in page and "{%" not in page


async def test_settings_page_changes_take_effect(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "d") as r, chromium(tmp_path) as (page, expect, shots):
        await page.goto(f"{r.url}/settings#token={TOKEN}")
        assert "token" not in page.url
        await expect(page.locator("#s-queue_downloads_max")).to_have_value("5")  # filled from the API
        await expect(page.locator("#s-listen_port")).to_have_text(str(r.daemon.session.port))
        await expect(page.locator("#s-holepunch")).to_have_text("on")  # read-only: daemon.toml holepunch
        await page.check("#s-queue_downloads_enabled")
        await page.fill("#s-queue_downloads_max", "1")
        await page.fill("#s-download_limit", "750000")
        await page.fill("#s-seed_ratio_limit", "1.25")
        await page.check("#s-seed_ratio_enabled")
        await page.fill("#s-alt_speed_time_begin", "08:30")
        await page.uncheck('#s-alt_speed_time_day input[data-bit="1"]')  # not on Sundays
        await page.select_option("#s-seed_goal_action", "remove")
        await page.click("#settings-save")
        await expect(page.locator("#toast")).to_have_text("Settings saved")
        s = r.daemon.automation_settings()
        assert s["queue_downloads_enabled"] and s["queue_downloads_max"] == 1
        assert s["seed_ratio_enabled"] and s["seed_ratio_limit"] == 1.25 and s["seed_goal_action"] == "remove"
        assert s["alt_speed_time_begin"] == 8 * 60 + 30 and s["alt_speed_time_day"] == 126
        await wait_for(lambda: r.daemon.session.download_limiter.rate == 750_000, timeout=10)
        async with r.client() as c:
            assert (await c.get("/api/v1/limits")).json()["download_limit"] == 750_000
        # a value out of range: the API's message on the page, nothing saved
        await page.fill("#s-queue_stalled_minutes", "0")
        await page.click("#settings-save")
        await expect(page.locator("#settings-err")).to_contain_text("queue_stalled_minutes")
        assert r.daemon.automation_settings()["queue_stalled_minutes"] == 30.0
        await hide_toasts(page)
        await page.screenshot(path=str(shots / "daemon-settings.png"), full_page=True)


async def test_add_to_a_category_from_the_add_dialog(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", "Jazz Album", files=2, size=120_000)
    raw, t = torrent_of(content)
    tfile = tmp_path / "jazz.torrent"
    tfile.write_bytes(raw)
    music = tmp_path / "music"
    tid = t.swarm_hash.hex()
    async with (
        seeder(content, t) as (s, _),
        running_daemon(tmp_path / "d") as r,
        chromium(tmp_path) as (page, expect, shots),
    ):
        # the category is created on the settings page
        await page.goto(f"{r.url}/settings#token={TOKEN}")
        await page.fill("#cat-name", "music")
        await page.fill("#cat-path", str(music))
        await page.click("#cat-add")
        await expect(page.locator("#cat-table tbody tr")).to_have_count(1)
        assert r.daemon.categories() == {"music": str(music)}
        await page.click("#settings-link")  # to the list by the navigation (the token is kept)
        await page.click('.nav a[href="/"]')
        await page.click("#add-btn")
        await page.set_input_files("#file", str(tfile))
        await expect(page.locator('#add-category option[value="music"]')).to_have_count(1)
        await page.select_option("#add-category", "music")
        await page.fill("#add-tags", "jazz, 1959")
        await page.fill("#peers", f"127.0.0.1:{s.port}")
        await page.click("#add-go")
        row = page.locator(f'.row[data-id="{tid}"]')
        await expect(row.locator(".cat")).to_have_text("music")
        await expect(row.locator(".tags")).to_have_text("#jazz #1959")
        await expect(row.locator(".badge")).to_have_text("seeding", timeout=60_000)
        assert (music / "Jazz Album" / "clip.mp4").read_bytes() == (content / "clip.mp4").read_bytes()
        st = r.daemon.details(tid)
        assert st["category"] == "music" and st["save_path"] == str(music) and st["tags"] == ["jazz", "1959"]
        # the category filter shows it; another category's filter does not
        await page.select_option("#cat-filter", "music")
        await expect(page.locator(".row")).to_have_count(1)
        await page.select_option("#cat-filter", "")
        await expect(page.locator(".row")).to_have_count(0)
        await page.select_option("#cat-filter", "*")
        # the Info tab takes it out of the category
        await row.locator(".name").click()
        await page.click('.dtab[data-t="info"]')
        await page.select_option("#d-category", "")
        await expect(row.locator(".cat")).to_have_text("")
        assert r.daemon.details(tid)["category"] == ""
        await hide_toasts(page)
        await page.screenshot(path=str(shots / "daemon-category.png"))


async def test_queue_advances_on_screen(tmp_path: Path) -> None:
    a = make_content(tmp_path / "seed", "First In Line", files=2, size=400_000, seed=3)
    b = make_content(tmp_path / "seed", "Second In Line", files=2, size=300_000, seed=4)
    (raw_a, ta), (raw_b, tb) = torrent_of(a), torrent_of(b)
    async with (
        Session(session_config(upload_rate_limit=500_000)) as s,
        running_daemon(tmp_path / "d") as r,
        chromium(tmp_path) as (page, expect, shots),
    ):
        for content, t in ((a, ta), (b, tb)):
            await s.add(t, content.parent)
        r.daemon.update_settings({"queue_downloads_enabled": True, "queue_downloads_max": 1})
        await page.goto(f"{r.url}/#token={TOKEN}")
        await r.daemon.add_torrent(raw_a, peers=[("127.0.0.1", s.port)])
        await r.daemon.add_torrent(raw_b, peers=[("127.0.0.1", s.port)])
        first = page.locator(f'.row[data-id="{ta.swarm_hash.hex()}"]')
        second = page.locator(f'.row[data-id="{tb.swarm_hash.hex()}"]')
        await expect(first.locator(".badge")).to_have_text("downloading")
        await expect(second.locator(".badge")).to_have_text("queued")
        await expect(second.locator(".qpos")).to_have_text("#2 in queue")
        await page.click('.tab[data-f="queued"]')
        await expect(page.locator(".row")).to_have_count(1)
        await page.click('.tab[data-f="all"]')
        # sortable columns: by name descending puts "Second" first
        await page.click('.col[data-sort="name"]')
        await page.click('.col[data-sort="name"]')
        await expect(page.locator(".row").first).to_have_attribute("data-id", tb.swarm_hash.hex())
        await expect(page.locator('.col[data-sort="name"]')).to_have_class(re.compile(r"\bon\b"))
        await page.screenshot(path=str(shots / "daemon-queue.png"))
        # the first finishes: the second gets the slot and downloads
        await expect(first.locator(".badge")).to_have_text("seeding", timeout=60_000)
        await expect(second.locator(".badge")).to_have_text(re.compile("downloading|seeding"))
        await expect(second.locator(".badge")).to_have_text("seeding", timeout=60_000)


def test_pyproject_package_data_covers_the_web_ui() -> None:
    """Every template and static file is in pyproject's package-data (so a wheel has them)."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "bitswarm"
    ]
    pkg = root / "src" / "bitswarm"
    files = [
        p.relative_to(pkg).as_posix()
        for d in ("daemon/static", "daemon/templates")
        for p in (pkg / d).iterdir()
    ]
    assert len(files) >= 8
    for f in files:
        assert any(fnmatch.fnmatch(f, pat) for pat in patterns), f
