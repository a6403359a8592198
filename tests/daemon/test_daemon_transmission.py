"""Real Transmission clients drive the daemon's ``/transmission/rpc``: Debian's ``transmission-remote``
(3.00) and PyPI's ``transmission-rpc``. Each step is checked against the transfer's real state (the
daemon's own status and the bytes on disk), downloading from a local bitswarm seeder."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
from typing import Any

import httpx
import pytest
from compat_testlib import Swarm, magnet_seeder, same_tree
from daemon_testlib import make_content, wait_for

from bitswarm.metainfo import create_torrent
from testtools import require_module, require_tool

pytestmark = pytest.mark.timeout(120)


# -- the protocol itself -----------------------------------------------------------------------


async def test_basic_auth_challenge_then_session_id_handshake(swarm: Swarm) -> None:
    url = swarm.run.url + "/transmission/rpc"
    body = {"method": "session-get", "tag": 7}
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(url, json=body)  # no credentials: the challenge
        assert r.status_code == 401
        assert r.headers["www-authenticate"].lower().startswith("basic")
        r = await client.post(url, json=body, auth=("anyone", "wrong"))
        assert r.status_code == 401
        r = await client.post(url, json=body, auth=("anyone", swarm.run.token))
        assert r.status_code == 409
        sid = r.headers["x-transmission-session-id"]
        headers = {"X-Transmission-Session-Id": sid}
        for path in (url, url + "/"):
            r = await client.post(path, json=body, auth=("bitswarm", swarm.run.token), headers=headers)
            assert r.status_code == 200
            out = r.json()
            assert out["result"] == "success" and out["tag"] == 7
            assert out["arguments"]["rpc-version"] >= 15
            assert out["arguments"]["download-dir"] == str(swarm.daemon.download_dir)
        r = await client.post(
            url, json={"method": "no-such-thing"}, auth=("x", swarm.run.token), headers=headers
        )
        assert r.json()["result"] == "method name not recognized"
        r = await client.post(
            url, json={"method": "blocklist-update"}, auth=("x", swarm.run.token), headers=headers
        )
        assert r.json() == {"result": "success", "arguments": {"blocklist-size": 0}}


# -- transmission-remote -----------------------------------------------------------------------


async def _remote(swarm: Swarm, *args: str) -> str:
    exe = require_tool("transmission-remote", "apt-get install transmission-cli")
    proc = await asyncio.create_subprocess_exec(
        exe,
        f"127.0.0.1:{swarm.port}",
        "--auth",
        f"bitswarm:{swarm.run.token}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"transmission-remote {' '.join(args)}: {text}{err.decode(errors='replace')}"
    assert "error" not in err.decode(errors="replace").lower(), err
    return text


async def test_transmission_remote_drives_a_download(swarm: Swarm) -> None:
    dl = swarm.tmp / "dl"
    dl.mkdir()
    out = await _remote(swarm, "--start-paused", "-a", str(swarm.torrent_file), "-w", str(dl))
    assert "success" in out
    st = swarm.status()
    assert st["state"] == "paused" and st["save_path"] == str(dl)

    # limits: a 40 kB/s cap on the torrent, then start: it downloads, slowly, from the seeder
    await _remote(swarm, "-t", "1", "-d", "40")
    assert swarm.status()["download_limit"] == 40_000
    await _remote(swarm, "-t", "1", "-s")
    await swarm.connect_seeder()
    await wait_for(lambda: swarm.status()["peer_list"], timeout=30)
    peers = await _remote(swarm, "-t", "1", "-ip")
    assert "127.0.0.1" in peers, peers
    await wait_for(lambda: swarm.status()["done_size"] > 0, timeout=30)
    assert swarm.status()["progress"] < 1.0  # capped: far from done yet
    listing = await _remote(swarm, "-l")
    line = next(x for x in listing.splitlines() if "album" in x)
    assert line.split()[0] == "1" and "100%" not in line

    # no limit: it completes; the bytes are the seeder's
    await _remote(swarm, "-t", "1", "-D")
    assert swarm.status()["download_limit"] == 0
    await wait_for(lambda: swarm.status()["state"] == "seeding", timeout=60)
    assert same_tree(swarm.content, dl / "album")
    listing = await _remote(swarm, "-l")
    line = next(x for x in listing.splitlines() if "album" in x)
    assert "100%" in line and ("Seeding" in line or "Idle" in line), listing

    info = await _remote(swarm, "-t", "1", "-i")
    assert "Name: album" in info and f"Hash: {swarm.tid}" in info and "Percent Done: 100%" in info, info
    assert f"Location: {dl}" in info
    files = await _remote(swarm, "-t", "1", "-if")
    assert "3 files" in files and "album/clip.mp4" in files and "album/track01.bin" in files, files
    trackers = await _remote(swarm, "-t", "1", "-it")
    assert "Tracker 0: http://127.0.0.1:9" in trackers, trackers

    async def tracker_error_shown() -> bool:  # the dead tracker's error, from the daemon's status
        return 'Got an error "unreachable' in await _remote(swarm, "-t", "1", "-it")

    await wait_for(tracker_error_shown, timeout=30, interval=0.5)

    # stop, start
    await _remote(swarm, "-t", "1", "-S")
    await wait_for(lambda: swarm.status()["state"] == "paused")
    assert "Stopped" in await _remote(swarm, "-l")
    await _remote(swarm, "-t", "1", "-s")
    await wait_for(lambda: swarm.status()["state"] == "seeding")

    # verify finds a damaged piece (without it the damage would stay)
    victim = dl / "album" / "track01.bin"
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    await _remote(swarm, "-t", "1", "-v")  # the check finds it; the piece is fetched again
    await wait_for(
        lambda: swarm.status()["state"] == "seeding" and same_tree(swarm.content, dl / "album"), timeout=60
    )

    # move: the data goes to the new directory (and the torrent goes on from there)
    moved = swarm.tmp / "moved"
    await _remote(swarm, "-t", "1", "--move", str(moved))
    await wait_for(lambda: swarm.status()["save_path"] == str(moved) and swarm.status()["state"] != "moving")
    assert (moved / "album" / "clip.mp4").is_file() and not (dl / "album" / "clip.mp4").exists()

    # remove with data
    await _remote(swarm, "-t", "1", "--remove-and-delete")
    assert swarm.tid not in swarm.daemon.ids()
    assert not (moved / "album").exists()
    assert "album" not in await _remote(swarm, "-l")


# -- transmission-rpc (PyPI) -------------------------------------------------------------------


async def test_transmission_rpc_library(swarm: Swarm) -> None:
    trpc: Any = require_module("transmission_rpc", "pip install transmission-rpc")

    def client(password: str = swarm.run.token) -> Any:
        return trpc.Client(host="127.0.0.1", port=swarm.port, username="bitswarm", password=password)

    with pytest.raises(trpc.TransmissionAuthError):
        await asyncio.to_thread(client, "wrong")
    tc = await asyncio.to_thread(client)
    session = await asyncio.to_thread(tc.get_session)
    assert session.rpc_version >= 15 and session.download_dir == str(swarm.daemon.download_dir)

    dl = swarm.tmp / "lib"
    added = await asyncio.to_thread(tc.add_torrent, swarm.data, download_dir=str(dl), labels=["music"])
    assert added.id == 1 and added.hash_string == swarm.tid
    await swarm.connect_seeder()
    await wait_for(lambda: swarm.status()["state"] == "seeding", timeout=60)
    assert same_tree(swarm.content, dl / "album")
    t = await asyncio.to_thread(tc.get_torrent, 1)
    assert t.percent_done == 1.0 and t.status == "seeding" and t.labels == ["music"]
    assert t.download_dir == str(dl) and len(t.get_files()) == 3
    assert all(f.completed == f.size for f in t.get_files())

    # a magnet of a torrent that is already there is a duplicate, with the same id
    magnet = f"magnet:?xt=urn:btih:{swarm.tid}&dn=album"
    dup = await asyncio.to_thread(tc.add_torrent, magnet)
    assert dup.id == 1

    await asyncio.to_thread(tc.change_torrent, 1, seed_ratio_limit=1.5, labels=["a", "b"])
    t = await asyncio.to_thread(tc.get_torrent, 1)
    assert t.seed_ratio_limit == 1.5 and t.labels == ["a", "b"]

    await asyncio.to_thread(tc.stop_torrent, 1)
    await wait_for(lambda: swarm.status()["state"] == "paused")
    assert (await asyncio.to_thread(tc.get_torrent, 1)).status == "stopped"
    await asyncio.to_thread(tc.start_torrent, 1)
    await wait_for(lambda: swarm.status()["state"] == "seeding")

    # a second torrent (metainfo bytes) gets the next id
    other = make_content(swarm.tmp / "seed2", "single", files=1, size=50_000, seed=5)
    raw2 = create_torrent(other / "clip.mp4", version="v1", piece_length=16384)
    added2 = await asyncio.to_thread(tc.add_torrent, raw2, paused=True)
    assert added2.id == 2
    ids = [x.id for x in await asyncio.to_thread(tc.get_torrents)]
    assert ids == [1, 2]

    # a magnet: the metadata and the data come from the seeder the link names
    async with magnet_seeder(swarm.tmp) as (other, t3, magnet):
        added3 = await asyncio.to_thread(tc.add_torrent, magnet, download_dir=str(swarm.tmp / "mag"))
        assert added3.id == 3 and added3.hash_string == t3.swarm_hash.hex()
        await wait_for(lambda: swarm.state(t3.swarm_hash.hex()) == "seeding", timeout=60)
    assert same_tree(other, swarm.tmp / "mag" / "single")
    t = await asyncio.to_thread(tc.get_torrent, 3)
    assert t.name == "single" and t.percent_done == 1.0 and len(t.get_files()) == 2

    await asyncio.to_thread(tc.remove_torrent, 1, delete_data=True)
    assert swarm.tid not in swarm.daemon.ids()
    assert not (dl / "album").exists()
    assert [x.id for x in await asyncio.to_thread(tc.get_torrents)] == [2, 3]


async def test_torrent_add_by_url_and_table_format(swarm: Swarm) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(swarm.tmp))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = swarm.run.url + "/transmission/rpc"
    try:
        async with httpx.AsyncClient(timeout=30, auth=("x", swarm.run.token)) as client:
            sid = (await client.post(url)).headers["x-transmission-session-id"]
            headers = {"X-Transmission-Session-Id": sid}
            link = f"http://127.0.0.1:{server.server_address[1]}/{swarm.torrent_file.name}"
            body = {"method": "torrent-add", "arguments": {"filename": link, "paused": True}}
            out = (await client.post(url, json=body, headers=headers)).json()
            assert out["arguments"]["torrent-added"]["hashString"] == swarm.tid, out
            missing = {"method": "torrent-add", "arguments": {"filename": link + ".nope"}}
            out = (await client.post(url, json=missing, headers=headers)).json()
            assert "HTTP 404" in out["result"]
            body = {
                "method": "torrent-get",
                "arguments": {"fields": ["id", "name", "status"], "format": "table"},
            }
            out = (await client.post(url, json=body, headers=headers)).json()
            assert out["arguments"]["torrents"] == [["id", "name", "status"], [1, "album", 0]]
    finally:
        server.shutdown()
        server.server_close()
    assert swarm.state() == "paused"
