"""A torrent added by magnet link survives every restart (issue 16, item 1): a hybrid magnet (the
default format of ``bitswarm create``) whose files span several pieces, so its BEP 52 piece layers
matter. Mid-download and complete, after SIGKILL and after SIGTERM of a ``bitswarm daemon``
subprocess: it is there with its settings, and finishes or keeps seeding. A saved torrent that cannot
be loaded stays in the list in the error state with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from daemon_testlib import TOKEN, make_content, running_daemon, seeder, torrent_of, wait_for
from test_daemon_restart import _close_pipes, _start_daemon

from bitswarm.metainfo import create_torrent, magnet_from_torrent, parse_torrent

pytestmark = pytest.mark.timeout(150)


_AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _get(api: str, tid: str) -> dict:
    async with httpx.AsyncClient(timeout=5, headers=_AUTH) as http:
        reply = await http.get(f"{api}/api/v1/torrents/{tid}")
        reply.raise_for_status()
        return dict(reply.json())


async def _until(api: str, tid: str, check, timeout: float = 40) -> dict:  # type: ignore[no-untyped-def]
    async def probe() -> dict | None:
        d = await _get(api, tid)
        return d if check(d) else None

    try:
        return dict(await wait_for(probe, timeout, 0.1))
    except TimeoutError:
        raise AssertionError(f"{tid}: condition not met in {timeout} s: {await _get(api, tid)}") from None


@contextlib.asynccontextmanager
async def _daemon(data: Path, sig: signal.Signals) -> AsyncIterator[str]:
    """A ``bitswarm daemon`` subprocess on ``data`` (its API URL), stopped with ``sig`` at the end."""
    proc, hello = await _start_daemon(data)
    try:
        yield str(hello["api"])
    finally:
        proc.send_signal(sig)
        code = await asyncio.to_thread(proc.wait, 20)
        _close_pipes(proc)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_hybrid_magnet_survives_restarts(tmp_path: Path, sig: signal.Signals) -> None:
    content = make_content(tmp_path / "seed", "hybrid film", files=2, size=600_000)
    raw = create_torrent(content, piece_length=32768)  # hybrid, bitswarm's default
    t = parse_torrent(raw)
    assert t.info_hash_v1 is not None and t.info_hash_v2 is not None and t.piece_layers
    data = tmp_path / "d"
    (data).mkdir()
    (data / "token").write_text(TOKEN + "\n")
    async with seeder(content, t) as (s, _):
        s.upload_limiter.set_rate(100_000)  # slow enough to stop it half-way
        magnet = magnet_from_torrent(t).to_uri() + f"&x.pe=127.0.0.1:{s.port}"
        async with _daemon(data, sig) as api, httpx.AsyncClient(base_url=api, timeout=10, headers=_AUTH) as c:
            added = await c.post("/api/v1/torrents", json={"magnet": magnet})
            assert added.status_code == 201, added.text
            tid = added.json()["id"]
            d = await _until(api, tid, lambda d: d["files"] and 0.1 < d["progress"] < 0.9)
            paths = [f["path"] for f in d["files"]]
            (await c.put(f"/api/v1/torrents/{tid}/limits", json={"upload": 321_000})).raise_for_status()
            got = await c.put(f"/api/v1/torrents/{tid}/priorities", json={"priorities": [1, 5]})
            assert got.status_code == 200, got.text
            await asyncio.sleep(1.2)  # the engine saves resume data every second

        # mid-download restart: it is there, with its settings, and finishes
        async with _daemon(data, sig) as api:
            d = await _get(api, tid)
            assert d["state"] != "error", d
            assert [f["path"] for f in d["files"]] == paths and d["upload_limit"] == 321_000
            assert [f["priority"] for f in d["files"]] == [1, 5]
            assert d["magnet"] and d["magnet"].startswith("magnet:?")
            s.upload_limiter.set_rate(0)
            d = await _until(api, tid, lambda d: d["state"] == "seeding")
            assert d["progress"] == 1.0

        # complete restart: it is there, complete, seeding, with its settings
        async with _daemon(data, sig) as api:
            d = await _until(api, tid, lambda d: d["state"] == "seeding", 20)
            assert d["progress"] == 1.0 and d["upload_limit"] == 321_000 and d["error"] is None
            assert [f["priority"] for f in d["files"]] == [1, 5]
            assert d["info_hash_v2"] == t.info_hash_v2.hex()
    for f in content.iterdir():
        assert (data / "downloads" / content.name / f.name).read_bytes() == f.read_bytes()


async def test_unrestorable_torrents_are_listed_as_errors(tmp_path: Path) -> None:
    """A damaged .torrent, a damaged record and a .torrent without its record: all three stay in the
    list in the error state with the reason (they used to vanish with a log line), and can be removed."""
    data = tmp_path / "d"
    raws = [
        torrent_of(make_content(tmp_path / "c", f"t{i}", files=1, size=50_000, seed=i))[0] for i in range(3)
    ]
    async with running_daemon(data) as r, r.client() as c:
        ids = []
        for raw in raws:
            reply = await c.post(
                "/api/v1/torrents",
                content=raw,
                params={"paused": "true"},
                headers={"Content-Type": "application/x-bittorrent"},
            )
            ids.append(reply.json()["id"])
    torrents = data / "torrents"
    (torrents / f"{ids[0]}.torrent").write_bytes(b"d4:infoi3ee")
    (torrents / f"{ids[1]}.json").write_text("{not json")
    (torrents / f"{ids[2]}.json").unlink()
    async with running_daemon(data) as r, r.client() as c:
        listed = {x["id"]: x for x in (await c.get("/api/v1/torrents")).json()["torrents"]}
        assert set(listed) == set(ids)
        for tid, why in zip(ids, ["info", "cannot be read", "is missing"], strict=True):
            assert listed[tid]["state"] == "error", listed[tid]
            assert "cannot be restored" in listed[tid]["error"] and why in listed[tid]["error"]
        # resuming does not pretend, details work, removing cleans up
        for op in ("resume", "pause", "recheck"):
            refused = await c.post(f"/api/v1/torrents/{ids[0]}/{op}")
            assert refused.status_code == 409 and "cannot be restored" in refused.json()["error"]["message"]
        assert (await c.get(f"/api/v1/torrents/{ids[1]}")).json()["state"] == "error"
        for tid in ids:
            assert (await c.delete(f"/api/v1/torrents/{tid}")).status_code == 200
        assert (await c.get("/api/v1/torrents")).json()["torrents"] == []
    assert not any(torrents.iterdir())


async def test_saved_magnet_metadata_loads_without_piece_layers(tmp_path: Path) -> None:
    """The daemon's .torrent of a hybrid magnet has no piece layers; a restart loads it (paused: no
    peers needed) with its files and name."""
    content = make_content(tmp_path / "seed", "h", files=2, size=200_000)
    t = parse_torrent(create_torrent(content, piece_length=32768))
    data = tmp_path / "d"
    async with seeder(content, t) as (s, _):
        magnet = magnet_from_torrent(t).to_uri() + f"&x.pe=127.0.0.1:{s.port}"
        async with running_daemon(data) as r, r.client() as c:
            tid = (await c.post("/api/v1/torrents", json={"magnet": magnet})).json()["id"]

            async def seeding() -> bool:
                return (await c.get(f"/api/v1/torrents/{tid}")).json()["state"] == "seeding"

            await wait_for(seeding, 40)
            (await c.post(f"/api/v1/torrents/{tid}/pause")).raise_for_status()
    saved = json.loads((data / "torrents" / f"{tid}.json").read_text())
    assert saved["metadata_only"] is True
    async with running_daemon(data) as r, r.client() as c:
        d = (await c.get(f"/api/v1/torrents/{tid}")).json()
        assert d["state"] == "paused" and d["progress"] == 1.0 and d["name"] == "h", d
        assert len(d["files"]) == 2
