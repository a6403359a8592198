"""The web UI's Info tab switches super-seeding per torrent (issue 20), in Chromium (Playwright):
the checkbox reaches the engine (a peer connecting afterwards gets no bitfield) and the tab shows
whether the torrent super-seeds now."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from daemon_testlib import TOKEN, make_content, running_daemon, torrent_of, wait_for
from test_daemon_browser import CHROMIUM, CHROMIUM_ARGS
from tests.session.test_session_superseed import connect

from bitswarm.wire import HaveNone

pytestmark = pytest.mark.timeout(120)


async def test_info_tab_super_seeding_checkbox(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; no browser download)")
    content = make_content(tmp_path / "seed", "album", files=2, size=100_000)
    raw, t = torrent_of(content, piece_length=16384)
    tid = t.swarm_hash.hex()
    async with running_daemon(tmp_path / "d") as r:
        await r.daemon.add_torrent(raw, save_path=str(content.parent))
        await wait_for(lambda: r.daemon.details(tid)["state"] == "seeding", timeout=30)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1200, "height": 760})
                page.set_default_timeout(20_000)
                await page.goto(f"{r.url}/#token={TOKEN}")
                row = page.locator(f'.row[data-id="{tid}"]')
                await row.locator(".name").click()
                await expect(page.locator("#drawer")).to_have_class(re.compile(r"\bopen\b"))
                await page.click('.dtab[data-t="info"]')
                box = page.locator("#d-super-seed")
                await expect(box).not_to_be_checked()
                await expect(page.locator("#d-super-seed-state")).to_have_text("off")
                await box.check()
                await wait_for(lambda: r.daemon.details(tid)["super_seeding"], timeout=10)
                await expect(page.locator("#d-super-seed-state")).to_contain_text("active")
                await expect(page.locator("#d-super-seed")).to_be_checked()
            finally:
                await browser.close()
        peer = await connect(t, r.daemon.session.port)
        try:
            assert isinstance(await peer.next(), HaveNone)  # the engine super-seeds
        finally:
            peer.writer.close()
