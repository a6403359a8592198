"""BEP 46 from the command line, on a loopback DHT of bitswarm nodes: ``share --mutable KEYFILE``
prints a ``magnet:?xs=urn:btpk:`` link, ``download`` of that link finds the torrent and completes;
sharing other content with the same key moves the link to it; a link nobody published under is one
line and exit 1, a malformed one exit 2."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from tests.session.test_session_mutable import loopback_dht

BW = [sys.executable, "-m", "bitswarm"]
pytestmark = pytest.mark.timeout(120)


async def share(path: Path, boot: tuple[str, int], key: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        *BW, "share", str(path), "-o", str(path) + ".torrent", "--port", "0", "--host", "127.0.0.1",
        "--bootstrap", f"{boot[0]}:{boot[1]}", "--mutable", str(key), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while line := await proc.stdout.readline():
            msg = json.loads(line) if line.startswith(b"{") else {}
            if msg.get("event") == "mutable":
                return proc, str(msg["magnet"])
    raise AssertionError("share printed no mutable link")


async def download(link: str, out: Path, boot: tuple[str, int], *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *BW, "download", link, "-o", str(out), "--port", "0", "--host", "127.0.0.1",
        "--bootstrap", f"{boot[0]}:{boot[1]}", "--json", *extra,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_share_mutable_then_download_the_latest(tmp_path: Path) -> None:
    key = tmp_path / "release.key"
    one = tmp_path / "one" / "app-1.bin"
    one.parent.mkdir()
    one.write_bytes(os.urandom(300_000))
    two = tmp_path / "two" / "app-2.bin"
    two.parent.mkdir()
    two.write_bytes(os.urandom(200_000))
    async with loopback_dht(3) as boot:
        proc, link = await share(one, boot, key)
        try:
            assert link.startswith("magnet:?xs=urn:btpk:") and key.exists()
            code, err = await download(link, tmp_path / "dl1", boot)
            assert code == 0, err
            assert (tmp_path / "dl1" / "app-1.bin").read_bytes() == one.read_bytes()
        finally:
            proc.terminate()
            await proc.wait()
        proc, link2 = await share(two, boot, key)  # the same key: a new version
        try:
            assert link2 == link
            code, err = await download(link, tmp_path / "dl2", boot)
            assert code == 0, err
            assert (tmp_path / "dl2" / "app-2.bin").read_bytes() == two.read_bytes()
        finally:
            proc.terminate()
            await proc.wait()
        code, err = await download("magnet:?xs=urn:btpk:" + "ab" * 32, tmp_path / "dl3", boot,
                                   "--metadata-timeout", "3")  # fmt: skip
        assert code == 1 and err.strip().startswith("bitswarm: error: no BEP 46 item"), err
    code, err = await download("magnet:?xs=urn:btpk:1234", tmp_path / "dl4", ("127.0.0.1", 1))
    assert code == 2 and "bad magnet link" in err
