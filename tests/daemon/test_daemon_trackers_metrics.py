"""Tracker status through the daemon API (``GET /torrents/{id}/trackers``, the details, the status's
``waiting_reason``, the SSE events) and ``GET /metrics`` parsed by prometheus_client's own parser
against a real transfer (issue 21)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_testlib import make_content, running_daemon, seeder, torrent_of, wait_for
from prometheus_client.parser import text_string_to_metric_families

from trackertools import closed_port, failing_tracker

pytestmark = pytest.mark.timeout(90)


async def add(c: httpx.AsyncClient, raw: bytes, **body: Any) -> str:
    reply = await c.post("/api/v1/torrents", json={"torrent_base64": base64.b64encode(raw).decode(), **body})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


async def first_sse(c: httpx.AsyncClient, kind: str) -> dict[str, Any]:
    async with c.stream("GET", "/api/v1/events") as r:
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == kind:
                return dict(json.loads(line[6:]))
    raise AssertionError("the event stream ended")


async def trackers_when(c: httpx.AsyncClient, tid: str, status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        r = await c.get(f"/api/v1/torrents/{tid}/trackers")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body if body["trackers"] and body["trackers"][0]["status"] == status else None

    result: dict[str, Any] = await wait_for(check, 20)
    return result


async def test_a_dead_and_a_refusing_tracker_through_the_api(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", files=1)
    raw, _ = torrent_of(content)
    dead = f"http://127.0.0.1:{closed_port()}/announce"
    async with (
        failing_tracker(b"unregistered torrent") as refusing,
        running_daemon(tmp_path / "d") as r,
        r.client() as c,
        r.client() as events,
    ):
        sse = asyncio.ensure_future(first_sse(events, "tracker_error"))
        await asyncio.sleep(0.2)  # subscribed before the torrent starts
        tid = await add(c, raw, trackers=[dead])
        ev = await asyncio.wait_for(sse, 20)
        assert (ev["id"], ev["url"]) == (tid, dead) and ev["error"].startswith("unreachable")

        body = await trackers_when(c, tid, "error")
        [tr] = body["trackers"]
        assert (tr["url"], tr["tier"], tr["failures"], tr["peers"]) == (dead, 0, 1, None)
        assert tr["error"].startswith("unreachable") and tr["next_announce"] > tr["last_announce"]
        host = dead.split("/")[2]
        want = f"waiting: tracker {host} unreachable, DHT off, 0 peers known"
        assert body["waiting_reason"] == want
        assert body["dht"]["enabled"] is False and body["known_peers"] == 0
        details = (await c.get(f"/api/v1/torrents/{tid}")).json()
        assert details["waiting_reason"] == want
        assert details["trackers"][0]["status"] == "error" and details["trackers"][0]["url"] == dead
        missing = await c.get(f"/api/v1/torrents/{'ab' * 20}/trackers")
        assert missing.status_code == 404
        unauth = await r.client(auth=False).get(f"/api/v1/torrents/{tid}/trackers")
        assert unauth.status_code == 401

        # a tracker that answers with a failure reason: its own words
        assert (await c.delete(f"/api/v1/torrents/{tid}")).status_code == 200
        tid = await add(c, raw, trackers=[refusing])
        body = await trackers_when(c, tid, "error")
        assert body["trackers"][0]["error"] == "unregistered torrent"
        assert "failed: unregistered torrent" in body["waiting_reason"]


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, labels); prometheus_client's parser raises on any
    malformed line."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_a_real_transfer(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", files=2)
    raw, t = torrent_of(content)
    size = t.info.total_size
    dead = f"http://127.0.0.1:{closed_port()}/announce"
    async with seeder(content, t) as (s, _), running_daemon(tmp_path / "d") as r, r.client() as c:
        assert (await r.client(auth=False).get("/metrics")).status_code == 401
        wrong = httpx.AsyncClient(base_url=r.url, headers={"Authorization": "Bearer nope"})
        assert (await wrong.get("/metrics")).status_code == 401
        empty = await c.get("/metrics")
        assert empty.status_code == 200 and empty.headers["content-type"].startswith("text/plain")
        m = parse(empty.text)
        assert m[("bitswarm_torrents", (("state", "downloading"),))] == 0
        assert m[("bitswarm_downloaded_bytes_total", ())] == 0

        tid = await add(c, raw, trackers=[dead], peers=[f"127.0.0.1:{s.port}"])

        async def seeding() -> bool:
            st = (await c.get(f"/api/v1/torrents/{tid}")).json()
            tr = (await c.get(f"/api/v1/torrents/{tid}/trackers")).json()["trackers"]
            return bool(st["state"] == "seeding" and tr[0]["failures"] >= 1)

        await wait_for(seeding, 40)
        status = (await c.get(f"/api/v1/torrents/{tid}")).json()
        m = parse((await c.get("/metrics")).text)
        assert m[("bitswarm_torrents", (("state", "seeding"),))] == 1
        assert m[("bitswarm_torrents", (("state", "downloading"),))] == 0
        assert m[("bitswarm_downloaded_bytes_total", ())] >= size
        assert m[("bitswarm_downloaded_bytes_total", ())] == status["downloaded"]
        assert m[("bitswarm_uploaded_bytes_total", ())] == status["uploaded"]
        assert m[("bitswarm_trackers", (("status", "error"),))] == 1
        assert m[("bitswarm_tracker_errors_total", ())] >= 1
        assert m[("bitswarm_disk_errors", ())] == 0
        assert m[("bitswarm_peers", ())] == status["peers"]
        assert m[("bitswarm_download_rate_bytes_per_second", ())] >= 0
        assert m[("bitswarm_dht_nodes", ())] == 0

        # a removed torrent's bytes stay in the counters
        assert (await c.delete(f"/api/v1/torrents/{tid}")).status_code == 200
        after = parse((await c.get("/metrics")).text)
        assert after[("bitswarm_downloaded_bytes_total", ())] == m[("bitswarm_downloaded_bytes_total", ())]
        assert after[("bitswarm_torrents", (("state", "seeding"),))] == 0


async def test_ctl_show_prints_each_tracker_and_the_waiting_reason(tmp_path: Path) -> None:
    raw, _ = torrent_of(make_content(tmp_path / "seed", files=1))
    port = closed_port()
    dead = f"http://127.0.0.1:{port}/announce"
    async with running_daemon(tmp_path / "d") as r, r.client() as c:
        tid = await add(c, raw, trackers=[dead])
        await trackers_when(c, tid, "error")
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bitswarm", "ctl", "show", tid[:10], "--api", r.url, "--token", r.token],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert f"  waiting: tracker 127.0.0.1:{port} unreachable, DHT off, 0 peers known" in lines
        [line] = [x for x in lines if dead in x]
        assert line.startswith(f"    tier 0  {dead}  error: unreachable (")
        assert ", last " in line and ", next in " in line
