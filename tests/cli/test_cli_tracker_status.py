"""A real ``bitswarm download`` whose tracker is dead or refuses the torrent says so (issue 21): the
``--json`` stream carries ``tracker_error`` events and progress lines with a ``waiting_reason``, and
the progress line on a terminal shows the reason instead of "0 peers" forever."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bitswarm.metainfo import create_torrent
from trackertools import closed_port, failing_tracker

pytestmark = pytest.mark.timeout(60)


def torrent_file(tmp_path: Path, tracker: str) -> Path:
    data = tmp_path / "seed" / "f.bin"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(random.Random(5).randbytes(100_000))
    path = tmp_path / "f.torrent"
    path.write_bytes(create_torrent(data, version="v1", piece_length=32768, trackers=[[tracker]]))
    return path


def download_args(tmp_path: Path, torrent: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "bitswarm", "download", str(torrent), "-o", str(tmp_path / "out"),
        "--no-dht", "--host", "127.0.0.1", "--port", "0", *extra,
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def json_download(tmp_path: Path, torrent: Path) -> AsyncIterator[asyncio.StreamReader]:
    proc = await asyncio.create_subprocess_exec(
        *download_args(tmp_path, torrent, "--json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        yield proc.stdout
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)


async def until(stdout: asyncio.StreamReader, want: Any) -> dict[str, Any]:
    """The first JSON line for which ``want(line)`` holds."""
    async with asyncio.timeout(30):
        while line := await stdout.readline():
            event: dict[str, Any] = json.loads(line)
            if want(event):
                return event
    raise AssertionError("the download ended first")


async def test_json_stream_shows_a_dead_tracker(tmp_path: Path) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/announce"
    async with json_download(tmp_path, torrent_file(tmp_path, url)) as out:
        ev = await until(out, lambda e: e["event"] == "tracker_error")
        assert ev["url"] == url and ev["error"].startswith("unreachable")
        progress = await until(out, lambda e: e["event"] == "progress" and e.get("waiting_reason"))
        assert (
            progress["waiting_reason"]
            == f"waiting: tracker 127.0.0.1:{port} unreachable, DHT off, 0 peers known"
        )


async def test_json_stream_shows_the_trackers_failure_reason(tmp_path: Path) -> None:
    async with (
        failing_tracker(b"torrent not allowed here") as url,
        json_download(tmp_path, torrent_file(tmp_path, url)) as out,
    ):
        ev = await until(out, lambda e: e["event"] == "tracker_error")
        assert (ev["url"], ev["error"]) == (url, "torrent not allowed here")
        progress = await until(out, lambda e: e["event"] == "progress" and e.get("waiting_reason"))
        assert "failed: torrent not allowed here" in progress["waiting_reason"]


async def test_progress_line_on_a_terminal_says_why_there_is_no_peer(tmp_path: Path) -> None:
    port = closed_port()
    torrent = torrent_file(tmp_path, f"http://127.0.0.1:{port}/announce")
    main, sub = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *download_args(tmp_path, torrent),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=sub,
        env={**os.environ, "COLUMNS": "250", "TERM": "xterm"},
    )
    os.close(sub)
    want = f"waiting: tracker 127.0.0.1:{port} unreachable, DHT off, 0 peers known".encode()
    seen = b""
    try:
        async with asyncio.timeout(30):
            while want not in seen:
                chunk = await asyncio.to_thread(os.read, main, 65536)
                assert chunk, seen[-2000:]
                seen += chunk
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
        with contextlib.suppress(OSError):
            while await asyncio.to_thread(os.read, main, 65536):
                pass
        os.close(main)
