"""The web UI's trackers tab shows each tracker's outcome and why the torrent waits (issue 21), in
Chromium (Playwright, no browser download: Debian's chromium)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from daemon_testlib import TOKEN, make_content, running_daemon, torrent_of

from trackertools import closed_port

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_trackers_tab_shows_a_dead_tracker_and_the_waiting_reason(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; no browser download)")
    raw, t = torrent_of(make_content(tmp_path / "seed", files=1))
    port = closed_port()
    dead = f"http://127.0.0.1:{port}/announce"
    async with running_daemon(tmp_path / "d") as r:
        await r.daemon.add_torrent(raw, trackers=[dead])
        async with async_playwright() as pw:
            args = ["--no-sandbox", "--disable-gpu"]
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                page = await browser.new_page()
                page.set_default_timeout(20_000)
                await page.goto(f"{r.url}/#token={TOKEN}")
                await page.locator(f'.row[data-id="{t.swarm_hash.hex()}"] .name').click()
                await expect(page.locator("#drawer")).to_have_class(re.compile(r"\bopen\b"))
                await page.click('.dtab[data-t="trackers"]')
                body = page.locator("#d-body")
                await expect(body.locator("td.path")).to_have_text(dead)
                await expect(body.locator("td.tstatus")).to_contain_text("error: unreachable")
                await expect(page.locator("#waiting")).to_have_text(
                    f"waiting: tracker 127.0.0.1:{port} unreachable, DHT off, 0 peers known"
                )
            finally:
                await browser.close()
