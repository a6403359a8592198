"""The daemon's blocklist and proxy settings (issue 21, daemon/privacy.py): the REST settings, Transmission's
``blocklist-*`` session keys and ``blocklist-update``, qBittorrent's ``ip_filter_*`` and ``proxy_*``
preferences (through qbittorrent-api), each asserted on the transfer's real state: a blocklisted
seeder (127.0.0.2) is never connected until the blocklist is switched off; a daemon whose ``proxy``
setting names a Dante SOCKS5 server downloads through it and the seeder sees only 127.0.0.5."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_testlib import Running, make_content, running_daemon, torrent_of, wait_for

from bitswarm.metainfo import Torrent
from bitswarm.session import Session, SessionConfig
from testtools import http_files, require_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "session"))

pytestmark = pytest.mark.timeout(120)

SEEDER = "127.0.0.2"


@contextlib.asynccontextmanager
async def seeder_at(host: str, content: Path, torrent: Torrent) -> AsyncIterator[Session]:
    async with Session(SessionConfig(listen_host=host, listen_port=0, enable_dht=False)) as s:
        await s.add(torrent, content.parent)
        yield s


async def rpc(run: Running, method: str, **arguments: Any) -> dict[str, Any]:
    """One Transmission RPC call (with the 409 session-id handshake)."""
    url = run.url + "/transmission/rpc"
    async with httpx.AsyncClient(timeout=30, auth=("bitswarm", run.token)) as client:
        r = await client.post(url, json={"method": method})
        sid = r.headers["x-transmission-session-id"]
        r = await client.post(
            url, json={"method": method, "arguments": arguments}, headers={"X-Transmission-Session-Id": sid}
        )
        out: dict[str, Any] = r.json()
        return out


def connected_to(run: Running, tid: str, host: str) -> bool:
    try:
        peers = run.daemon.handle(tid).peers()
    except Exception:
        return False
    return any(str(p["address"]).startswith(host + ":") for p in peers)


async def test_rest_and_transmission_blocklist_keep_a_seeder_away(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", "album", files=2, size=150_000)
    data, torrent = torrent_of(content)
    tid = torrent.swarm_hash.hex()
    dat = b"127.000.000.002 - 127.000.000.002 , 000 , the seeder\n10.0.0.0 - 10.255.255.255 , 000 , ten\n"
    with http_files({"/list.dat.gz": gzip.compress(dat), "/junk": b"<html>\n"}) as base:
        async with (
            seeder_at(SEEDER, content, torrent) as seed,
            running_daemon(tmp_path / "daemon") as run,
            run.client() as c,
        ):
            # bad values are refused with the reason
            for bad in ({"proxy": "http://h:1"}, {"blocklist_url": "ftp://x"}, {"blocklist_path": "rel"}):
                r = await c.put("/api/v1/settings", json=bad)
                assert r.status_code == 400, (bad, r.text)
            # Transmission: session-set the URL and enable, blocklist-update loads it
            url = f"{base}/list.dat.gz"
            out = await rpc(run, "session-set", **{"blocklist-url": url, "blocklist-enabled": True})
            assert out["result"] == "success", out
            out = await rpc(run, "blocklist-update")
            assert out == {"result": "success", "arguments": {"blocklist-size": 2}}
            got = (await rpc(run, "session-get"))["arguments"]
            assert (got["blocklist-enabled"], got["blocklist-url"], got["blocklist-size"]) == (
                True, f"{base}/list.dat.gz", 2,
            )  # fmt: skip
            stats = (await c.get("/api/v1/stats")).json()["privacy"]
            assert stats["blocklist_enabled"] and stats["blocklist_rules"] == 2
            assert stats["blocklist_ranges"] == 2
            # the blocklisted seeder is offered; it is never dialed
            await run.daemon.add_torrent(data, peers=[(SEEDER, seed.port)])
            await wait_for(lambda: run.daemon.privacy.status()["blocklist_blocked"] >= 1)
            assert not connected_to(run, tid, SEEDER)
            assert run.daemon.details(tid)["progress"] == 0.0
            assert "refused" in (await c.get("/api/v1/settings")).json()["blocklist_status"]
            # a bad URL: the update fails with its reason, the loaded list stays
            await rpc(run, "session-set", **{"blocklist-url": f"{base}/junk"})
            out = await rpc(run, "blocklist-update")
            assert "no blocklist rule" in out["result"]
            assert run.daemon.session.config.blocklist is not None
            # switched off through the REST API: the seeder is dialed and the download completes
            r = await c.put("/api/v1/settings", json={"blocklist_enabled": False})
            assert r.status_code == 200
            assert run.daemon.session.config.blocklist is None
            run.daemon.handle(tid).add_peer(SEEDER, seed.port)
            await wait_for(lambda: run.daemon.details(tid)["progress"] >= 1.0, timeout=60)
            assert (await rpc(run, "session-get"))["arguments"]["blocklist-enabled"] is False


async def test_qbittorrent_ip_filter_and_proxy_preferences(tmp_path: Path) -> None:
    qbapi: Any = require_module("qbittorrentapi", "pip install qbittorrent-api")
    listfile = tmp_path / "ipfilter.dat"
    listfile.write_text("10.0.0.0 - 10.0.0.255 , 000 , a\n10.0.1.0 - 10.0.1.255 , 200 , allowed\n")
    async with running_daemon(tmp_path / "daemon") as run:
        port = int(run.url.rsplit(":", 1)[1])

        def drive() -> dict[str, Any]:
            qb = qbapi.Client(host=f"127.0.0.1:{port}", username="bitswarm", password=run.token)
            qb.auth_log_in()
            qb.app_set_preferences({
                "ip_filter_enabled": True, "ip_filter_path": str(listfile),
                "proxy_type": 4, "proxy_ip": "127.0.0.1", "proxy_port": 1080,
                "proxy_auth_enabled": True, "proxy_username": "me", "proxy_password": "p@ss:word",
                "proxy_peer_connections": True,
            })  # fmt: skip
            prefs = dict(qb.app_preferences())
            with pytest.raises(qbapi.exceptions.HTTP400Error):
                qb.app_set_preferences({"proxy_type": 1, "proxy_ip": "h", "proxy_port": 3128})  # HTTP proxy
            return prefs

        prefs = await asyncio.to_thread(drive)
        settings = run.daemon.automation_settings()
        assert settings["proxy"] == "socks5://me:p%40ss%3Aword@127.0.0.1:1080"
        assert settings["blocklist_enabled"] and settings["blocklist_path"] == str(listfile)
        assert prefs["ip_filter_enabled"] is True and prefs["ip_filter_path"] == str(listfile)
        assert (prefs["proxy_type"], prefs["proxy_ip"], prefs["proxy_port"]) == (4, "127.0.0.1", 1080)
        assert prefs["proxy_username"] == "me" and prefs["proxy_password"] == ""
        # the filter file is loaded: one rule (the level-200 one allows its range)
        await wait_for(lambda: run.daemon.session.config.blocklist is not None)
        bl = run.daemon.session.config.blocklist
        assert bl is not None and bl.rules == 1 and bl.blocks("10.0.0.9") and not bl.blocks("10.0.1.9")

        def remove_proxy() -> None:
            qb = qbapi.Client(host=f"127.0.0.1:{port}", username="bitswarm", password=run.token)
            qb.auth_log_in()
            qb.app_set_preferences({"proxy_type": -1})

        await asyncio.to_thread(remove_proxy)
        assert run.daemon.automation_settings()["proxy"] == ""


async def test_a_daemon_with_a_proxy_setting_downloads_through_dante(tmp_path: Path) -> None:
    from test_session_proxy import PROXY_OUT, dante

    content = make_content(tmp_path / "seed", "album", files=2, size=150_000)
    data, torrent = torrent_of(content)
    tid = torrent.swarm_hash.hex()
    async with dante(tmp_path) as proxy, seeder_at(SEEDER, content, torrent) as seed:
        async with running_daemon(tmp_path / "daemon") as run, run.client() as c:
            r = await c.put("/api/v1/settings", json={"proxy": proxy})
            assert r.status_code == 200
            assert run.daemon.session.utp is not None  # a restart applies it
        async with running_daemon(tmp_path / "daemon") as run:  # the same data directory: restarted
            session = run.daemon.session
            assert session.config.proxy == proxy and session.utp is None and session.dht is None
            handles = seed.torrents
            seen: set[str] = set()
            await run.daemon.add_torrent(data, peers=[(SEEDER, seed.port)])

            def done() -> bool:
                seen.update(str(p["address"]).rsplit(":", 1)[0] for p in handles[0].peers())
                return bool(run.daemon.details(tid)["progress"] >= 1.0)

            await wait_for(done, timeout=60, interval=0.01)
            assert seen == {PROXY_OUT}
            async with run.client() as c:
                privacy = (await c.get("/api/v1/stats")).json()["privacy"]
                assert privacy["proxy"] == proxy.removeprefix("socks5://")
