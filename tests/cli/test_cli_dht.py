"""``bitswarm dht`` (a standalone node) and ``bitswarm dht lookup`` against real UDP nodes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from bitswarm.dht.server import DHTServer

BW = [sys.executable, "-m", "bitswarm"]


@pytest.mark.timeout(60)
async def test_standalone_node_serves_a_lookup() -> None:
    node = await asyncio.create_subprocess_exec(
        *BW, "dht", "--port", "0", "--host", "127.0.0.1", "--interval", "0.5", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        first = json.loads(await asyncio.wait_for(node.stdout.readline(), 20))
        host, port = first["address"].rsplit(":", 1)
        assert len(bytes.fromhex(first["id"])) == 20
        info_hash = os.urandom(20)
        async with DHTServer("127.0.0.1", 0, bootstrap=[(host, int(port))]) as announcer:
            await announcer.bootstrap([(host, int(port))], timeout=10)
            await announcer.announce(info_hash, 51413, timeout=10)
            lookup = await asyncio.create_subprocess_exec(
                *BW, "dht", "lookup", info_hash.hex(), "--bootstrap", f"{host}:{port}", "--timeout", "10",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(lookup.communicate(), 40)
        assert lookup.returncode == 0
        assert "127.0.0.1:51413" in out.decode().split()
        status = json.loads(await asyncio.wait_for(node.stdout.readline(), 20))
        assert status["nodes"] >= 1  # the node learned about the others
    finally:
        node.terminate()
        await asyncio.wait_for(node.wait(), 10)
    assert node.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dht", "lookup", "zz"], "40 hex"),
        (["dht", "lookup", "a" * 40], "--bootstrap"),
        (["dht", "lookup", "a" * 40, "--bootstrap", "nohost"], "HOST:PORT"),
    ],
)
def test_dht_bad_input(args: list[str], message: str) -> None:
    proc = subprocess.run([*BW, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
