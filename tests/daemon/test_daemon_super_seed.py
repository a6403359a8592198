"""Super-seeding per torrent at run time in the daemon (issue 20): the REST API's
``PUT /torrents/{id}/super_seed``, qBittorrent's ``torrents/setSuperSeeding`` and ``super_seeding``
in ``torrents/info`` and ``torrents/properties``; the switch survives a restart and a peer that
connects while it is on gets no bitfield (BEP 16)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from daemon_testlib import make_content, running_daemon, torrent_of, wait_for
from tests.session.test_session_superseed import connect

from bitswarm.wire import HaveAll, HaveNone

pytestmark = pytest.mark.timeout(90)


async def test_super_seed_switch_rest_qbittorrent_and_restart(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", "album", files=2, size=100_000)
    data, t = torrent_of(content, piece_length=16384)
    tid = t.swarm_hash.hex()
    async with running_daemon(tmp_path / "daemon") as run, run.client() as api:
        body = {"torrent_base64": base64.b64encode(data).decode(), "save_path": str(content.parent)}
        r = await api.post("/api/v1/torrents", json=body)
        assert r.status_code in (200, 201), r.text
        await wait_for(lambda: run.daemon.details(tid)["state"] == "seeding", timeout=30)
        st = run.daemon.details(tid)
        assert st["super_seed"] is False and st["super_seeding"] is False

        r = await api.put(f"/api/v1/torrents/{tid}/super_seed", json={"super_seed": True})
        assert r.status_code == 200, r.text
        assert r.json()["super_seed"] is True and r.json()["super_seeding"] is True
        peer = await connect(t, run.daemon.session.port)
        try:
            assert isinstance(await peer.next(), HaveNone)  # no bitfield: BEP 16
        finally:
            peer.writer.close()
        bad = await api.put(f"/api/v1/torrents/{tid}/super_seed", json={"super_seed": "maybe"})
        assert bad.status_code == 422

        # qBittorrent's Web API: the switch in info and properties, and setSuperSeeding
        async_client = run.client(auth=False)
        async with async_client as qb:
            login = {"username": "bitswarm", "password": run.token}
            assert (await qb.post("/api/v2/auth/login", data=login)).text == "Ok."
            [info] = (await qb.get("/api/v2/torrents/info")).json()
            assert info["super_seeding"] is True
            r = await qb.post("/api/v2/torrents/setSuperSeeding", data={"hashes": tid, "value": "false"})
            assert r.status_code == 200
            [info] = (await qb.get("/api/v2/torrents/info")).json()
            props = (await qb.get("/api/v2/torrents/properties", params={"hash": tid})).json()
            assert info["super_seeding"] is False and props["super_seeding"] is False
            peer = await connect(t, run.daemon.session.port)
            try:
                assert isinstance(await peer.next(), HaveAll)  # off again: the full picture
            finally:
                peer.writer.close()
            r = await qb.post("/api/v2/torrents/setSuperSeeding", data={"hashes": "all", "value": "true"})
            assert r.status_code == 200
            props = (await qb.get("/api/v2/torrents/properties", params={"hash": tid})).json()
            assert props["super_seeding"] is True
            r = await qb.post("/api/v2/torrents/setSuperSeeding", data={"hashes": tid})
            assert r.status_code == 400  # value is required
    # the switch is in the torrent's record: on after a restart
    async with running_daemon(tmp_path / "daemon") as run:
        await wait_for(lambda: run.daemon.details(tid)["state"] == "seeding", timeout=30)
        st = run.daemon.details(tid)
        assert st["super_seed"] is True and st["super_seeding"] is True
        peer = await connect(t, run.daemon.session.port)
        try:
            assert isinstance(await peer.next(), HaveNone)
        finally:
            peer.writer.close()
