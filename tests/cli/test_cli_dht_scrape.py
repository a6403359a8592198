"""``bitswarm dht scrape`` (BEP 33) against real UDP DHT nodes on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from bitswarm.dht.node import DHTConfig
from bitswarm.dht.server import DHTServer

BW = [sys.executable, "-m", "bitswarm"]


@pytest.mark.timeout(60)
async def test_dht_scrape_counts_a_seed() -> None:
    async with (
        DHTServer("127.0.0.1", 0, config=DHTConfig(lan=True)) as node,
        DHTServer("127.0.0.1", 0, config=DHTConfig(lan=True)) as announcer,
    ):
        host, port = node.address
        await announcer.bootstrap([(host, port)], timeout=10)
        info_hash = os.urandom(20)
        assert (await announcer.announce(info_hash, 51413, seed=True, timeout=10)).stored >= 1
        proc = await asyncio.create_subprocess_exec(
            *BW, "dht", "scrape", info_hash.hex(), "--bootstrap", f"{host}:{port}",
            "--timeout", "10", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, err.decode()
    got = json.loads(out)
    assert got["info_hash"] == info_hash.hex()
    assert (got["seeds"], got["peers"]) == (1, 0) and got["nodes_answered"] >= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dht", "scrape", "zz"], "40 hex"),
        (["dht", "scrape", "a" * 40], "--bootstrap"),
    ],
)
def test_dht_scrape_bad_input(args: list[str], message: str) -> None:
    proc = subprocess.run([*BW, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
