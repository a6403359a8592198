"""PyPI's ``qbittorrent-api`` drives the daemon's qBittorrent Web API (``/api/v2``): login, adding by
file and by magnet, info, pause/resume, stop/start, categories, tags and delete, each checked against
the transfer's real state (the daemon's status and the bytes on disk) with local bitswarm seeders."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from compat_testlib import DEAD_TRACKER, Swarm, magnet_seeder, same_tree
from daemon_testlib import wait_for

from testtools import require_module

pytestmark = pytest.mark.timeout(120)


async def test_login_cookie_and_logout(swarm: Swarm) -> None:
    async with httpx.AsyncClient(base_url=swarm.run.url, timeout=10) as client:
        r = await client.get("/api/v2/torrents/info")
        assert r.status_code == 403
        r = await client.post("/api/v2/auth/login", data={"username": "admin", "password": "nope"})
        assert r.text == "Fails." and "SID" not in r.cookies
        r = await client.post(
            "/api/v2/auth/login", data={"username": "bitswarm", "password": swarm.run.token}
        )
        assert r.text == "Ok." and r.cookies.get("SID")
        r = await client.get("/api/v2/torrents/info")
        assert r.status_code == 200 and r.json() == []
        assert (await client.get("/api/v2/app/webapiVersion")).text == "2.8.3"
        assert (await client.post("/api/v2/auth/logout")).status_code == 200
        assert (await client.get("/api/v2/torrents/info")).status_code == 403


async def test_qbittorrent_api_library(swarm: Swarm) -> None:
    qbapi: Any = require_module("qbittorrentapi", "pip install qbittorrent-api")

    def client(password: str) -> Any:
        return qbapi.Client(host=f"127.0.0.1:{swarm.port}", username="bitswarm", password=password)

    bad = client("wrong")
    with pytest.raises(qbapi.LoginFailed):
        await asyncio.to_thread(bad.auth_log_in)
    qb = client(swarm.run.token)
    await asyncio.to_thread(qb.auth_log_in)
    assert await asyncio.to_thread(qb.app_web_api_version) == "2.8.3"

    # a category with its save path: a torrent added to it downloads there
    music = swarm.tmp / "music"
    await asyncio.to_thread(qb.torrents_create_category, name="music", save_path=str(music))
    cats = await asyncio.to_thread(qb.torrents_categories)
    assert cats["music"]["savePath"] == str(music)
    ok = await asyncio.to_thread(qb.torrents_add, torrent_files=swarm.data, category="music", tags=["a"])
    assert ok == "Ok."
    assert swarm.daemon.details(swarm.tid)["save_path"] == str(music)
    await swarm.connect_seeder()
    await wait_for(lambda: swarm.state() == "seeding", timeout=60)
    assert same_tree(swarm.content, music / "album")

    [info] = await asyncio.to_thread(qb.torrents_info, category="music")
    assert info.hash == swarm.tid and info.progress == 1.0 and info.state in ("uploading", "stalledUP")
    assert info.save_path == str(music) and info.tags == "a" and info.category == "music"
    files = await asyncio.to_thread(qb.torrents_files, torrent_hash=swarm.tid)
    assert [f.name for f in files] == ["album/clip.mp4", "album/track01.bin", "album/track02.bin"]
    assert all(f.progress == 1.0 for f in files)
    trackers = await asyncio.to_thread(qb.torrents_trackers, torrent_hash=swarm.tid)
    assert DEAD_TRACKER in [t.url for t in trackers]
    props = await asyncio.to_thread(qb.torrents_properties, torrent_hash=swarm.tid)
    assert props.pieces_have == props.pieces_num == swarm.torrent.info.num_pieces

    # tags
    await asyncio.to_thread(qb.torrents_add_tags, tags=["b", "c"], torrent_hashes=swarm.tid)
    assert set(await asyncio.to_thread(qb.torrents_tags)) == {"a", "b", "c"}
    [info] = await asyncio.to_thread(qb.torrents_info, tag="c")
    assert info.tags == "a, b, c"
    assert await asyncio.to_thread(qb.torrents_info, tag="nope") == []

    # pause / resume (Web API 2.8: the library calls pause and resume)
    await asyncio.to_thread(qb.torrents_pause, torrent_hashes=swarm.tid)
    assert swarm.state() == "paused"
    [info] = await asyncio.to_thread(qb.torrents_info, status_filter="paused")
    assert info.state == "pausedUP"
    await asyncio.to_thread(qb.torrents_resume, torrent_hashes=swarm.tid)
    await wait_for(lambda: swarm.state() == "seeding")
    # stop / start (Web API 2.11 names) are served too
    async with httpx.AsyncClient(base_url=swarm.run.url, timeout=10) as raw:
        login = {"username": "bitswarm", "password": swarm.run.token}
        assert (await raw.post("/api/v2/auth/login", data=login)).text == "Ok."
        assert (await raw.post("/api/v2/torrents/stop", data={"hashes": swarm.tid})).status_code == 200
        assert swarm.state() == "paused"
        assert (await raw.post("/api/v2/torrents/start", data={"hashes": "all"})).status_code == 200
        await wait_for(lambda: swarm.state() == "seeding")
        main = (await raw.get("/api/v2/sync/maindata")).json()
        assert main["torrents"][swarm.tid]["progress"] == 1.0 and "music" in main["categories"]

    # by magnet: the metadata and the data come from a second seeder named in the link (x.pe)
    async with magnet_seeder(swarm.tmp) as (other, t2, magnet):
        inbox = swarm.tmp / "inbox"
        ok = await asyncio.to_thread(qb.torrents_add, urls=magnet, save_path=str(inbox))
        assert ok == "Ok."
        tid2 = t2.swarm_hash.hex()
        await wait_for(lambda: swarm.state(tid2) == "seeding", timeout=60)
    assert same_tree(other, inbox / "single")
    hashes = {t.hash for t in await asyncio.to_thread(qb.torrents_info)}
    assert hashes == {swarm.tid, tid2}

    # setCategory to an unknown category is refused; delete with files
    with pytest.raises(qbapi.Conflict409Error):
        await asyncio.to_thread(qb.torrents_set_category, category="nope", torrent_hashes=tid2)
    await asyncio.to_thread(qb.torrents_delete, delete_files=True, torrent_hashes=swarm.tid)
    assert swarm.tid not in swarm.daemon.ids() and not (music / "album").exists()
    assert [t.hash for t in await asyncio.to_thread(qb.torrents_info)] == [tid2]
