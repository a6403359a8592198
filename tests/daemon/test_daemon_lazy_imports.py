"""An idle daemon does not import what only some requests need (issue 24: the empty daemon's RSS):
prometheus_client (``/metrics``), jinja2 (the web UI's pages) and httpx (adding from a URL, the
index, ``bitswarm ctl``) are imported on first use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

LAZY = ("prometheus_client", "jinja2", "httpx")

CODE = """
import asyncio, json, sys
from bitswarm.daemon import Daemon, create_app
from bitswarm.session import SessionConfig

async def main():
    d = Daemon(sys.argv[1], SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False))
    await d.start()
    try:
        create_app(d, "token")
        d.list_json()
    finally:
        await d.close()
    print(json.dumps(sorted(m for m in %r if m in sys.modules)))

asyncio.run(main())
"""


def test_an_idle_daemon_and_its_app_do_not_import_what_requests_need(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE % (LAZY,), str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
