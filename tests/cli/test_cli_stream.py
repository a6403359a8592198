"""``bitswarm stream``: a real subprocess serving a torrent over HTTP while it downloads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from testtools import eventually

BW = [sys.executable, "-m", "bitswarm"]


def _first_json(proc: subprocess.Popen[str], key: str) -> dict[str, object]:
    assert proc.stdout is not None
    for _ in range(50):
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{") and key in line:
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"no JSON line with {key!r}")


@pytest.mark.timeout(90)
def test_stream_command_serves_ranges(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    (tmp_path / "clip.webm").write_bytes(data)
    subprocess.run([*BW, "create", "clip.webm", "-o", "clip.torrent", "-q", "--v1"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    seed = subprocess.Popen(
        [*BW, "seed", "clip.torrent", "--data", ".", "--port", "0", "--host", "127.0.0.1", "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    stream = None
    try:
        port = _first_json(seed, '"seeding"')["port"]
        stream = subprocess.Popen(
            [*BW, "stream", "clip.torrent", "-o", "out", "--port", "0", "--peer-port", "0",
             "--host", "127.0.0.1", "--peer", f"127.0.0.1:{port}", "--json"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        info = _first_json(stream, "streaming")
        url = info["files"][0]  # type: ignore[index]
        r = httpx.get(str(url), headers={"Range": "bytes=1000000-1000999"}, timeout=60)
        assert r.status_code == 206 and r.content == data[1_000_000:1_001_000]
        assert r.headers["content-type"] == "video/webm"
        # one address holds at most 64 connections (issue 16): the 6 over the cap get 503 at once
        host, port = str(url).split("/")[2].rsplit(":", 1)
        socks = [socket.create_connection((host, int(port)), timeout=5) for _ in range(70)]
        try:
            refused = 0
            for sock in socks[-6:]:
                refused += sock.recv(64).startswith(b"HTTP/1.1 503 ")
            assert refused == 6
            again = httpx.get(str(url), headers={"Range": "bytes=0-9"}, timeout=10)
            assert again.status_code == 503  # the address is at its cap ...
        finally:
            for sock in socks:
                sock.close()
        eventually(  # ... until its connections close
            lambda: httpx.get(str(url), headers={"Range": "bytes=0-9"}, timeout=10).status_code == 206,
            timeout=10, interval=0.1, what="the cap released",
        )  # fmt: skip
    finally:
        for p in (stream, seed):
            if p is not None:
                p.terminate()
                p.wait(10)
