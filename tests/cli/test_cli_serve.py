"""``bitswarm serve``: tracker + index + DHT node in one process, one data directory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from bitswarm.dht.server import DHTServer
from bitswarm.tracker.client import AnnounceParams, open_tracker

BW = [sys.executable, "-m", "bitswarm"]


async def _start(data: Path) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    proc = await asyncio.create_subprocess_exec(
        *BW, "serve", "--host", "127.0.0.1", "--tracker-port", "0", "--index-port", "0", "--dht-port", "0",
        "--dir", str(data), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    return proc, json.loads(line)


async def _stop(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 20)


@pytest.mark.timeout(90)
async def test_serve_runs_all_three_services_and_restarts(tmp_path: Path) -> None:
    proc, info = await _start(tmp_path / "data")
    try:
        # tracker: two peers announce over HTTP, the second sees the first; UDP answers too
        ih = os.urandom(20)
        for url in (info["tracker_http"], info["tracker_udp"]):
            client = open_tracker(url, timeout=5, udp_retry_base=0.5)
            try:
                await client.announce(AnnounceParams(ih, os.urandom(20), 6001, left=1))
                res = await client.announce(AnnounceParams(ih, os.urandom(20), 6002, left=1))
                assert ("127.0.0.1", 6001) in res.peers
            finally:
                await client.aclose()
        # index: web UI and the native API
        async with httpx.AsyncClient(base_url=info["index"], timeout=10) as http:
            assert (await http.get("/")).status_code == 200
            assert (await http.get("/openapi.json")).json()["openapi"]
        # DHT: a node bootstraps from it and finds it
        host, port = info["dht"].rsplit(":", 1)
        async with DHTServer("127.0.0.1", 0, bootstrap=[(host, int(port))]) as node:
            found = await node.find_node(bytes.fromhex(info["dht_id"]), timeout=10)
            assert any(n.id.hex() == info["dht_id"] for n in found)
    finally:
        code = await _stop(proc)
    assert code == 0
    assert {"tracker.sqlite", "index.sqlite3", "dht.state"} <= {p.name for p in (tmp_path / "data").iterdir()}
    # restart on the same directory: the DHT node keeps its id
    proc2, info2 = await _start(tmp_path / "data")
    assert await _stop(proc2) == 0
    assert info2["dht_id"] == info["dht_id"]


def test_serve_rejects_bad_config(tmp_path: Path) -> None:
    import subprocess

    cfg = tmp_path / "serve.toml"
    cfg.write_text('host = "127.0.0.1"\ntypo_key = 1\n')
    proc = subprocess.run([*BW, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "typo_key" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
