"""The daemon's state survives restarts: a clean close, and a SIGKILL of a ``bitswarm daemon``
subprocess (driven with ``bitswarm ctl`` and ``bitswarm top --once``, as a user would)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from daemon_testlib import make_content, running_daemon, seeder, torrent_of, wait_for

pytestmark = pytest.mark.timeout(120)


async def test_clean_restart_restores_everything(tmp_path: Path) -> None:
    a = make_content(tmp_path / "seed", "alpha", files=2, size=120_000, seed=1)
    b = make_content(tmp_path / "seed", "beta", files=2, size=60_000, seed=2)
    raw_a, ta = torrent_of(a)
    raw_b, _tb = torrent_of(b)
    data = tmp_path / "d"
    async with seeder(a, ta) as (s, _):
        async with running_daemon(data) as r, r.client() as c:
            ida = (
                await c.post(
                    "/api/v1/torrents",
                    files={"torrent": ("a.torrent", raw_a)},
                    data={"peers": f"127.0.0.1:{s.port}"},
                )
            ).json()["id"]
            idb = (
                await c.post(
                    "/api/v1/torrents",
                    content=raw_b,
                    params={"paused": "true", "save_path": "later"},
                    headers={"Content-Type": "application/x-bittorrent"},
                )
            ).json()["id"]

            async def a_done() -> bool:
                return (await c.get(f"/api/v1/torrents/{ida}")).json()["state"] == "seeding"

            await wait_for(a_done, 40)
            (await c.put(f"/api/v1/torrents/{ida}/limits", json={"upload": 123_456})).raise_for_status()
            (
                await c.put(f"/api/v1/torrents/{idb}/priorities", json={"priorities": [0, 3]})
            ).raise_for_status()
            (await c.put("/api/v1/limits", json={"download": 777_000, "upload": 0})).raise_for_status()
            before = {x["id"]: x for x in (await c.get("/api/v1/torrents")).json()["torrents"]}

        async with running_daemon(data) as r, r.client() as c:
            after = {x["id"]: x for x in (await c.get("/api/v1/torrents")).json()["torrents"]}
            assert set(after) == {ida, idb}
            for key in (
                "name",
                "save_path",
                "added_at",
                "paused",
                "download_limit",
                "upload_limit",
                "total_size",
            ):
                assert after[ida][key] == before[ida][key] and after[idb][key] == before[idb][key], key
            assert after[idb]["state"] == "paused" and after[ida]["upload_limit"] == 123_456
            db = (await c.get(f"/api/v1/torrents/{idb}")).json()
            assert [f["priority"] for f in db["files"]] == [0, 3]
            assert (await c.get("/api/v1/limits")).json() == {"download_limit": 777_000, "upload_limit": 0}
            assert r.daemon.session.download_limiter.rate == 777_000

            async def a_seeding() -> dict | None:
                d = (await c.get(f"/api/v1/torrents/{ida}")).json()
                return d if d["state"] == "seeding" else None

            d = await wait_for(a_seeding, 20)
            assert d["progress"] == 1.0
            # resume data made it a quick open: no piece was hashed again
            storage = r.daemon._entries[ida].handle._rt.storage  # type: ignore[union-attr]
            assert storage.resume_status == "trusted"
            assert r.daemon._entries[ida].handle._rt.upload_limiter.rate == 123_456  # type: ignore[union-attr]


async def _bitswarm(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a thread: the seeding Session shares this test's event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bitswarm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )


async def _start_daemon(data: Path) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bitswarm",
            "daemon",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--api",
            "127.0.0.1:0",
            "--data",
            str(data),
            "--no-dht",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    if not line:
        proc.kill()
        raise AssertionError(f"daemon did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


def _close_pipes(proc: subprocess.Popen[str]) -> None:
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


async def _wait(data: Path, api: str, tid: str, state: str, timeout: float = 40) -> dict:
    deadline = time.monotonic() + timeout
    d: dict = {}
    auth = {"Authorization": f"Bearer {(data / 'token').read_text().strip()}"}
    async with httpx.AsyncClient(timeout=5, headers=auth) as http:
        while time.monotonic() < deadline:
            d = (await http.get(f"{api}/api/v1/torrents/{tid}")).json()
            if d["state"] == state:
                return d
            await asyncio.sleep(0.1)
    raise AssertionError(f"{tid} not {state} in {timeout} s: {d}")


@pytest.mark.slow
async def test_sigkill_restart_with_ctl_and_top(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", "film", files=2, size=400_000)
    raw, t = torrent_of(content)
    (tmp_path / "film.torrent").write_bytes(raw)
    (tmp_path / "other.torrent").write_bytes(torrent_of(make_content(tmp_path / "x", "other", files=1))[0])
    data = tmp_path / "d"
    async with seeder(content, t) as (s, _):
        proc, hello = await _start_daemon(data)
        try:
            api = hello["api"]
            assert (data / "token").read_text().strip()  # generated on first start
            ctl = ["--api", api, "--data", str(data)]
            out = await _bitswarm(
                "ctl", "add", str(tmp_path / "film.torrent"), "--peer", f"127.0.0.1:{s.port}", *ctl, "--json"
            )
            assert out.returncode == 0, out.stderr
            tid = json.loads(out.stdout)["id"]
            out = await _bitswarm("ctl", "add", str(tmp_path / "other.torrent"), "--paused", *ctl)
            assert out.returncode == 0 and "added other" in out.stdout, out.stderr
            # requests without the token are refused, reads too
            out = await _bitswarm("ctl", "pause", tid, "--api", api, "--data", str(tmp_path / "nowhere"))
            assert out.returncode == 2 and "401" in out.stderr  # docs/cli.md: a refused token is 2
            out = await _bitswarm("ctl", "list", "--api", api, "--data", str(tmp_path / "nowhere"))
            assert out.returncode == 2 and "401" in out.stderr  # docs/cli.md: a refused token is 2
            await _wait(data, api, tid, "seeding")
            out = await _bitswarm("ctl", "limits", "film", "--down", "2M", *ctl, "--json")
            assert json.loads(out.stdout) == {"download_limit": 2 * 1024 * 1024, "upload_limit": 0}, (
                out.stderr
            )
            listed = json.loads((await _bitswarm("ctl", "list", *ctl, "--json")).stdout)["torrents"]
            assert {x["name"]: x["state"] for x in listed} == {"film": "seeding", "other": "paused"}
            shown = await _bitswarm("ctl", "show", tid[:10], *ctl)
            assert "clip.mp4" in shown.stdout and "100.0%" in shown.stdout, shown.stderr
            denied = await _bitswarm("top", "--once", "--api", api, "--data", str(tmp_path / "nowhere"))
            assert denied.returncode == 2 and "401" in denied.stderr  # reads need the token too
            frame = await _bitswarm("top", "--once", "--api", api, "--data", str(data))
            assert frame.returncode == 0 and "film" in frame.stdout and "seeding" in frame.stdout
            assert "other" in frame.stdout and "paused" in frame.stdout
            await asyncio.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
        assert proc.returncode == -signal.SIGKILL
        _close_pipes(proc)

        proc, hello = await _start_daemon(data)
        try:
            api = hello["api"]
            ctl = ["--api", api, "--data", str(data)]
            d = await _wait(data, api, tid, "seeding", 20)
            assert d["progress"] == 1.0 and d["download_limit"] == 2 * 1024 * 1024
            listed = json.loads((await _bitswarm("ctl", "list", *ctl, "--json")).stdout)["torrents"]
            assert {x["name"]: x["state"] for x in listed} == {"film": "seeding", "other": "paused"}
            out = await _bitswarm("ctl", "pause", "film", *ctl, "--json")
            assert json.loads(out.stdout)["state"] == "paused", out.stderr
            out = await _bitswarm("ctl", "resume", "film", *ctl)
            assert out.returncode == 0, out.stderr
            await _wait(data, api, tid, "seeding", 20)
            out = await _bitswarm("ctl", "remove", "other", "--delete-data", *ctl)
            assert out.returncode == 0 and "removed" in out.stdout
            out = await _bitswarm("ctl", "show", "nothing-like-this", *ctl)
            assert out.returncode == 2 and "no torrent matches" in out.stderr
            proc.send_signal(signal.SIGTERM)  # clean stop
            assert await asyncio.to_thread(proc.wait, 20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        _close_pipes(proc)
        assert [p.name for p in (data / "torrents").glob("*.json")] == [f"{tid}.json"]
        assert os.path.exists(data / "resume" / f"{tid}.resume")
