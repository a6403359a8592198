"""Issue 23, server side: the seed-000 items (stable file ids, a joined tracker listed by its
configured name, ``-c FILE``) and seed 002's ``GET /resource?resource_name=`` — on both backends."""

from __future__ import annotations

import subprocess
import sys

import pytest
from index_testlib import FAST_HASHER, FED_KEY, FakeClock, asgi_client

from bitswarm.index import FileSpec, IndexService
from bitswarm.index._config import IndexConfig
from bitswarm.index.http import create_app
from bitswarm.index.server import IndexServer

CLI = [sys.executable, "-m", "bitswarm"]
PEER = "42bb7fb8-8f8d-4c1c-b4df-d97c2e78eb7c"


@pytest.fixture
async def svc(index_db):
    service = await IndexService.open(index_db, clock=FakeClock(), hasher=FAST_HASHER)
    yield service
    await service.close()


async def test_deleted_file_ids_are_never_reused(svc):
    """Seed 000 ids are what a client holds on to: a deleted file's id never names another file."""
    fid_a, guid = await svc.add_file(FileSpec(name="a.mkv", sha1="a" * 40), guid=None)
    fid_b, _ = await svc.add_file(FileSpec(name="b.mkv", sha1="b" * 40), guid=guid)
    await svc.remove_host(guid, file_id=fid_b)  # b has no host left: deleted
    fid_c, _ = await svc.add_file(FileSpec(name="c.mkv", sha1="c" * 40), guid=guid)
    assert fid_c not in (fid_a, fid_b) and fid_c > fid_b
    await svc.remove_host(guid, file_id=fid_c)
    await svc.remove_host(guid, file_id=fid_a)
    fid_d, _ = await svc.add_file(FileSpec(name="d.mkv", sha1="d" * 40), guid=None)
    assert fid_d > fid_c


async def test_stable_ids_survive_a_restart(tmp_path):
    db = str(tmp_path / "i.db")
    svc = await IndexService.open(db, hasher=FAST_HASHER)
    fid, guid = await svc.add_file(FileSpec(name="x", sha1="1" * 40), guid=None)
    await svc.remove_host(guid, file_id=fid)
    await svc.close()
    svc = await IndexService.open(db, hasher=FAST_HASHER)
    try:
        assert (await svc.add_file(FileSpec(name="y", sha1="2" * 40), guid=None))[0] == fid + 1
    finally:
        await svc.close()


async def test_a_joined_tracker_is_listed_by_its_configured_name():
    """Seed 000 ``new_tracker``: the new tracker lists the one it joined by that one's name."""
    servers = []
    try:
        for name in ("alpha", "beta"):
            cfg = IndexConfig(host="127.0.0.1", port=0, db=":memory:", name=name, federation_key=FED_KEY)
            server = IndexServer(cfg, await IndexService.open(":memory:", hasher=FAST_HASHER))
            await server.start()
            servers.append(server)
        alpha, beta = servers
        assert alpha.bound is not None
        await beta.join(f"http://127.0.0.1:{alpha.bound.http_port}")
        assert [(t.name, t.ip) for t in await beta.service.trackers()] == [
            ("alpha", f"127.0.0.1:{alpha.bound.http_port}")
        ]
        assert [t.name for t in await alpha.service.trackers()] == ["beta"]
    finally:
        for server in servers:
            await server.stop()
            await server.service.close()


@pytest.mark.parametrize("command", ["index", "serve"])
def test_short_config_flag_reads_the_config(tmp_path, command):
    """``tracker.py -c FILE``: ``-c`` is ``--config`` (a bad value in the file is reported)."""
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_key = 1\n" if command == "serve" else "port = 'x'\n")
    out = subprocess.run([*CLI, command, "-c", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "no such option" not in out.stderr.lower()
    assert ("no_such_key" if command == "serve" else "port") in out.stderr


async def test_get_resource_honours_the_query_string(svc):
    app = create_app(svc)
    try:
        async with asgi_client(app) as c:
            body = {"peer_id": PEER, "peer_ip": "127.0.0.1", "peer_port": 3000, "resource_hash": "d" * 32}
            await c.post("/resource", json={**body, "resource_name": "test.csv"})
            other = {**body, "peer_id": PEER[:-1] + "d", "resource_hash": "e" * 32}
            await c.post("/resource", json={**other, "resource_name": "o.csv"})
            by_query = (await c.get("/resource", params={"resource_name": "test.csv"})).json()
            by_body = (await c.request("GET", "/resource", json={"resource_name": "test.csv"})).json()
            assert by_query == by_body and len(by_query) == 1
            assert by_query[0]["resources"][0]["resource_name"] == "test.csv"
            assert (await c.get("/resource", params={"resource_name": "nothing"})).json() == []
            r = await c.get("/resource", params={"resource_name": ""})
            assert r.status_code == 400 and set(r.json()) == {"error"}
    finally:
        await app.state.federation.aclose()
