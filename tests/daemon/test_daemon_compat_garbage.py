"""Bad input to the Transmission RPC and the qBittorrent API gets the protocol's own error form, never
a 5xx, and changes nothing."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from compat_testlib import Swarm

pytestmark = pytest.mark.timeout(60)

DEEP = "[" * 100_000 + "]" * 100_000

RPC_BODIES: list[Any] = [
    "",
    "not json",
    DEEP,
    '{"method": "torrent-get", "arguments": {"fields": ' + DEEP + "}}",
    [],
    {"method": 5},
    {"method": "torrent-get"},
    {"method": "torrent-get", "arguments": {"fields": "id"}},
    {"method": "torrent-get", "arguments": []},
    {"method": "torrent-add", "arguments": {}},
    {"method": "torrent-add", "arguments": {"metainfo": "!!!not base64"}},
    {"method": "torrent-add", "arguments": {"metainfo": "ZDg6YW5ub3VuY2U="}},
    {"method": "torrent-add", "arguments": {"filename": "/nonexistent/x.torrent"}},
    {"method": "torrent-add", "arguments": {"filename": "magnet:?xt=urn:btih:zz"}},
    {"method": "torrent-add", "arguments": {"filename": "/dev/zero"}},
    {"method": "torrent-add", "arguments": {"metainfo": "ZA==", "download-dir": "/tmp/\ud800"}},
    {"method": "torrent-set", "arguments": {"ids": [1], "downloadLimit": "x"}},
    {"method": "torrent-set", "arguments": {"downloadLimit": -5, "downloadLimited": True}},
    {"method": "torrent-set", "arguments": {"files-wanted": [99999]}},
    {"method": "torrent-set", "arguments": {"files-unwanted": "all"}},
    {"method": "torrent-set", "arguments": {"priority-high": [True]}},
    {"method": "torrent-set", "arguments": {"labels": "x"}},
    {"method": "torrent-set", "arguments": {"seedRatioLimit": 1e400}},
    {"method": "torrent-set", "arguments": {"location": "/tmp/\ud800/x"}},
    {"method": "torrent-set", "arguments": {"location": "rel/\x00"}},
    {"method": "torrent-set-location", "arguments": {"location": 5, "move": True}},
    {"method": "torrent-set-location", "arguments": {"location": "/tmp/x", "move": False}},
    {"method": "session-set", "arguments": {"download-dir": "relative"}},
    {"method": "session-set", "arguments": {"download-dir": "/\ud800"}},
    {"method": "session-set", "arguments": {"speed-limit-down": "fast"}},
    {"method": "free-space", "arguments": {"path": "/nonexistent/dir"}},
    {"method": "free-space", "arguments": {"path": "/tmp/\ud800"}},
    {"method": "torrent-reannounce", "arguments": {"ids": [1]}},
]


async def test_transmission_rpc_garbage(swarm: Swarm) -> None:
    url = swarm.run.url + "/transmission/rpc"
    added = await swarm.daemon.add_torrent(swarm.data, paused=True)
    before = swarm.daemon.details(added["id"])
    async with httpx.AsyncClient(timeout=30, auth=("x", swarm.run.token)) as client:
        sid = (await client.post(url)).headers["x-transmission-session-id"]
        for body in RPC_BODIES:
            raw = body if isinstance(body, str) else json.dumps(body)
            r = await client.post(url, content=raw.encode("utf-8", "surrogatepass"),
                                  headers={"X-Transmission-Session-Id": sid})  # fmt: skip
            assert r.status_code == 200, (body, r.status_code, r.text[:300])
            assert r.json()["result"] != "success", (str(body)[:200], r.text[:300])
        # garbage a client may send and Transmission ignores: answered, nothing changes
        for body in (
            {"method": "torrent-get", "arguments": {"fields": [1, None, {}], "ids": [{"x": 1}, True, -1]}},
            {"method": "queue-move-up", "arguments": {"ids": "nonsense"}},
        ):
            r = await client.post(url, json=body, headers={"X-Transmission-Session-Id": sid})
            assert r.status_code == 200 and r.json()["result"] == "success", r.text[:300]
    after = swarm.daemon.details(added["id"])
    assert swarm.daemon.ids() == [added["id"]]
    assert (after["download_limit"], after["save_path"]) == (before["download_limit"], before["save_path"])


QBIT_CALLS: list[tuple[str, dict[str, str]]] = [
    ("torrents/properties", {}),
    ("torrents/properties", {"hash": "nope"}),
    ("torrents/files", {"hash": "0" * 40}),
    ("torrents/info", {"limit": "x"}),
    ("torrents/add", {}),
    ("torrents/add", {"urls": "magnet:?xt=urn:btih:zz\n/nonexistent\nhttp://127.0.0.1:9/x.torrent"}),
    ("torrents/add", {"urls": "/dev/zero"}),
    ("torrents/setLocation", {"hashes": "all", "location": ""}),
    ("torrents/setCategory", {"hashes": "all", "category": "missing"}),
    ("torrents/createCategory", {"category": "/bad/"}),
    ("torrents/createCategory", {}),
    ("torrents/setDownloadLimit", {"hashes": "all", "limit": "fast"}),
    ("app/setPreferences", {"json": "[1"}),
    ("app/setPreferences", {"json": DEEP}),
    ("app/setPreferences", {"json": '{"save_path": "/\\ud800"}'}),  # a lone surrogate: not text
    ("no/such", {}),
]


async def test_qbittorrent_garbage(swarm: Swarm) -> None:
    added = await swarm.daemon.add_torrent(swarm.data, paused=True)
    before = swarm.daemon.details(added["id"])
    async with httpx.AsyncClient(base_url=swarm.run.url, timeout=30) as client:
        login = {"username": "x", "password": swarm.run.token}
        assert (await client.post("/api/v2/auth/login", data=login)).text == "Ok."
        for name, form in QBIT_CALLS:
            encoded = "&".join(f"{k}={quote(v, errors='surrogatepass')}" for k, v in form.items())
            r = await client.post(f"/api/v2/{name}", content=encoded.encode(),
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
            assert 400 <= r.status_code < 500 or r.text == "Fails.", (name, form, r.status_code, r.text[:300])
        for name, form in (
            ("torrents/info", {"offset": "-99999999999999999999"}),
            ("torrents/info", {"sort": "x"}),
        ):
            r = await client.post(f"/api/v2/{name}", data=form)
            assert r.status_code == 200 and len(r.json()) == 1, r.text[:300]
    after = swarm.daemon.details(added["id"])
    assert swarm.daemon.ids() == [added["id"]]
    assert (after["download_limit"], after["save_path"]) == (before["download_limit"], before["save_path"])
