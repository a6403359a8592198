"""The daemon's stats carry the port-mapping state and the external address, and the web UI's header
shows the peer port and its mapping (issue 19)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from daemon_testlib import TOKEN, running_daemon
from test_daemon_browser import CHROMIUM, CHROMIUM_ARGS


async def test_stats_show_the_port_mapping_state(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "d", port_mapping=True) as run, run.client() as c:
        stats = (await c.get("/api/v1/stats")).json()
        reach = stats["reachability"]
        assert reach["port_mapping"] == "loopback"  # a daemon on 127.0.0.1 has nothing to map
        assert reach["summary"] == "port mapping off (loopback)"
        assert reach["advertised_port"] == stats["listen_port"] == run.daemon.session.port
        assert reach["external_address"] is None and reach["mappings"] == []
    async with running_daemon(tmp_path / "e") as run, run.client() as c:
        assert (await c.get("/api/v1/stats")).json()["reachability"]["port_mapping"] == "off"


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_web_ui_header_shows_the_port_and_its_mapping(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; no browser download)")
    async with running_daemon(tmp_path / "d", port_mapping=True) as r, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{r.url}/#token={TOKEN}")
            await expect(page.locator("#g-port-n")).to_have_text(str(r.daemon.session.port), timeout=15000)
            title = await page.locator("#g-port").get_attribute("title")
            assert title == "port mapping off (loopback)", title
        finally:
            await browser.close()


def test_top_header_says_whether_the_port_is_mapped() -> None:
    from rich.console import Console

    from bitswarm.daemon._top import render

    def header(reach: dict[str, object] | None) -> str:
        console = Console(width=200, record=True)
        stats: dict[str, object] = {"listen_port": 6881, **({"reachability": reach} if reach else {})}
        console.print(render([], stats, "http://127.0.0.1:9091", width=200))
        line = next(x for x in console.export_text().splitlines() if "port 6881" in x)
        return line.strip(" │")

    assert header({"port_mapping": "on", "summary": "mapped tcp 203.0.114.1:6881 (upnp)"}).endswith(
        "port 6881 mapped"
    )
    assert header({"port_mapping": "on", "summary": "no mapping service (...)"}).endswith(
        "port 6881 not mapped"
    )
    assert header({"port_mapping": "on", "summary": "port mapping: trying"}).endswith("port 6881 mapping...")
    assert header({"port_mapping": "off", "summary": "port mapping off"}).endswith("port 6881")
    assert header(None).endswith("port 6881")
