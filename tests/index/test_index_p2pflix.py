"""Seed 000 (P2PFlix tracker API): every endpoint with the seed's shapes, its errors, and
federation (tracker_sync / new_tracker) between in-process trackers."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from index_testlib import FAST_HASHER, FED, FED_KEY, SHA_A, FakeClock

from bitswarm.index import OFFLINE_AFTER, IndexService, Tracker
from bitswarm.index._config import IndexConfig
from bitswarm.index.http import create_app

CHUNKS = [
    {"id": 0, "name": "movie.mkv.0", "chunk_hash": "c0"},
    {"id": 1, "name": "movie.mkv.1", "chunk_hash": "c1"},
]


@pytest.fixture
async def env(index_db):
    clock = FakeClock()
    svc = await IndexService.open(index_db, clock=clock, hasher=FAST_HASHER)
    app = create_app(svc, IndexConfig(name="t1", federation_key=FED_KEY))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t1", timeout=10
    ) as c:
        yield c, svc, clock
    await app.state.federation.aclose()
    await svc.close()


async def add(c, name="movie.mkv", full_hash=SHA_A, guid=None, seq=0, chunks=CHUNKS):
    r = await c.post(
        "/add_file",
        json={"name": name, "full_hash": full_hash, "chunks": chunks, "guid": guid, "seq_number": seq},
    )
    return r


def assert_error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and isinstance(body["error"], str) and body["error"]
    assert set(body) == {"success", "error"}


async def test_add_file_assigns_guid_and_dedupes(env):
    c, _, _ = env
    r = await add(c)
    body = r.json()
    assert r.status_code == 200 and body["success"] is True and body["file_id"] == 1
    guid = body["guid"]
    assert str(uuid.UUID(guid)) == guid
    r = await add(c, guid=guid, seq=1)
    assert r.json() == {"success": True, "file_id": 1, "guid": guid}  # echoed guid, existing id
    other = (await add(c, seq=0)).json()
    assert other["file_id"] == 1 and other["guid"] != guid


async def test_add_file_errors(env):
    c, _, _ = env
    assert_error(await c.post("/add_file", json={"name": "x"}), 400)
    assert_error(await add(c, seq="1"), 400)
    assert_error(await add(c, seq=True), 400)
    assert_error(await add(c, chunks="nope"), 400)
    assert_error(await add(c, chunks=[{"id": "0", "name": "a", "chunk_hash": "h"}]), 400)
    assert_error(await add(c, chunks=[{"id": 0, "name": "a", "chunk_hash": "h"}] * 2), 400)
    assert_error(await add(c, name=""), 400)
    assert_error(await add(c, full_hash="has space"), 400)
    assert_error(await add(c, guid="not-a-uuid"), 400)
    assert_error(await add(c, guid=str(uuid.uuid4())), 404)
    assert_error(await c.post("/add_file", content=b"\xff\xfe\x00"), 400)
    assert_error(await c.post("/add_file", content=b"[1, 2]"), 400)
    assert_error(await c.post("/add_file", content=b"{bad json"), 400)
    assert_error(await c.post("/add_file", content=b"x" * ((1 << 20) + 1)), 413)
    assert (await c.get("/file_list")).json() == {"success": True, "files": []}  # nothing stored
    good = (await add(c, seq=3)).json()
    assert_error(await add(c, guid=good["guid"], seq=3), 409)  # replay
    assert_error(await add(c, guid=good["guid"], seq=2), 409)  # stale


async def test_file_list_file_and_file_by_hash(env):
    c, _, clock = env
    guid = (await add(c)).json()["guid"]
    assert (await c.get("/file_list")).json() == {
        "success": True,
        "files": [{"id": 1, "name": "movie.mkv", "full_hash": SHA_A, "active_peers": 1}],
    }
    expected_chunks = [
        {"id": 0, "name": "movie.mkv.0", "chunk_hash": "c0"},
        {"id": 1, "name": "movie.mkv.1", "chunk_hash": "c1"},
    ]
    assert (await c.get("/file/1")).json() == {
        "success": True,
        "name": "movie.mkv",
        "file_hash": SHA_A,
        "peers": [{"ip": "127.0.0.1"}],
        "chunks": expected_chunks,
    }
    assert (await c.get(f"/file_by_hash/{SHA_A}")).json() == {
        "success": True,
        "name": "movie.mkv",
        "full_hash": SHA_A,
        "peers": [{"ip": "127.0.0.1"}],
        "chunks": expected_chunks,
    }
    clock.advance(OFFLINE_AFTER + 1)
    assert (await c.get("/file_list")).json()["files"][0]["active_peers"] == 0
    assert (await c.get("/file/1")).json()["peers"] == []
    assert (await c.put("/keep_alive", json={"guid": guid, "ka_seq_number": 0})).json() == {"success": True}
    assert (await c.get("/file_list")).json()["files"][0]["active_peers"] == 1
    assert_error(await c.get("/file/99"), 404)
    assert_error(await c.get("/file/abc"), 400)
    assert_error(await c.get("/file/-1"), 400)
    assert_error(await c.get("/file_by_hash/unknownhash"), 404)


async def test_keep_alive_and_peer_guid(env):
    c, _, _ = env
    guid = (await add(c, seq=4)).json()["guid"]
    assert (await c.put("/keep_alive", json={"guid": guid, "ka_seq_number": 7})).json() == {"success": True}
    assert_error(await c.put("/keep_alive", json={"guid": guid, "ka_seq_number": 7}), 409)
    assert_error(await c.put("/keep_alive", json={"guid": str(uuid.uuid4()), "ka_seq_number": 0}), 404)
    assert_error(await c.put("/keep_alive", json={"guid": guid}), 400)
    assert_error(await c.put("/keep_alive", json={"ka_seq_number": 1}), 400)
    assert (await c.get(f"/peer_guid/{guid}")).json() == {
        "success": True,
        "files": [{"id": 1, "name": "movie.mkv", "full_hash": SHA_A}],
        "expected_seq_number": 5,
        "ka_expected_seq_number": 8,
    }
    assert_error(await c.get(f"/peer_guid/{uuid.uuid4()}"), 404)
    assert_error(await c.get("/peer_guid/xyz"), 400)


async def test_deregister_file_and_by_hash(env):
    c, _, _ = env
    g1 = (await add(c, seq=0)).json()["guid"]
    g2 = (await add(c, seq=0)).json()["guid"]
    r = await c.request("DELETE", "/deregister_file", json={"file_id": 1, "guid": g1, "seq_number": 1})
    assert r.json() == {"success": True}
    assert_error(
        await c.request("DELETE", "/deregister_file", json={"file_id": 1, "guid": g1, "seq_number": 2}), 404
    )
    assert_error(
        await c.request("DELETE", "/deregister_file", json={"file_id": 1, "guid": g2, "seq_number": 0}), 409
    )
    assert_error(
        await c.request("DELETE", "/deregister_file", json={"file_id": "1", "guid": g2, "seq_number": 5}), 400
    )
    assert (await c.get("/file_list")).json()["files"][0]["id"] == 1  # g2 still hosts it
    r = await c.request(
        "DELETE", "/deregister_file_by_hash", json={"file_hash": SHA_A, "guid": g2, "seq_number": 1}
    )
    assert r.json() == {"success": True}
    assert (await c.get("/file_list")).json() == {"success": True, "files": []}  # no hosts left: removed
    assert_error(
        await c.request(
            "DELETE", "/deregister_file_by_hash", json={"file_hash": SHA_A, "guid": g2, "seq_number": 2}
        ),
        404,
    )
    # the seed's comment calls file_hash an integer: an integer is taken as its decimal text
    g3 = (await add(c, full_hash="12345", seq=0)).json()["guid"]
    r = await c.request(
        "DELETE", "/deregister_file_by_hash", json={"file_hash": 12345, "guid": g3, "seq_number": 1}
    )
    assert r.json() == {"success": True}


async def test_unknown_route_and_method_use_p2pflix_form(env):
    c, _, _ = env
    assert_error(await c.get("/no_such_thing"), 404)
    assert_error(await c.post("/file_list"), 405)


async def test_tracker_list_from_config_and_tracker_sync_validation(env):
    c, svc, _ = env
    assert (await c.get("/tracker_list")).json() == {"success": True, "trackers": []}
    await svc.add_tracker("t2", "10.9.9.9:42070")
    assert (await c.get("/tracker_list")).json() == {
        "success": True,
        "trackers": [{"name": "t2", "ip": "10.9.9.9:42070"}],
    }
    assert_error(
        await c.patch(
            "/tracker_sync", json={"event": "explode", "event_ip": "1.2.3.4", "data": {}}, headers=FED
        ),
        400,
    )
    assert_error(
        await c.patch(
            "/tracker_sync", json={"event": "add_file", "event_ip": "1.2.3.4", "data": []}, headers=FED
        ),
        400,
    )
    assert_error(
        await c.patch(
            "/tracker_sync", json={"event": "add_file", "event_ip": "1.2.3.4", "data": {}}, headers=FED
        ),
        400,
    )


class Net:
    """In-process trackers joined by their ``ip`` names; send() goes straight into the other's ASGI app."""

    def __init__(self):
        self.apps: dict[str, object] = {}
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.services: list[IndexService] = []

    async def add(self, ip: str, clock) -> httpx.AsyncClient:
        svc = await IndexService.open(":memory:", clock=clock, hasher=FAST_HASHER)
        self.services.append(svc)

        async def send(tracker: Tracker, event: dict) -> None:
            await self.clients[tracker.ip].patch("/tracker_sync", json=event, headers=FED)

        app = create_app(svc, IndexConfig(name=ip, advertise=ip, federation_key=FED_KEY), send=send)
        self.apps[ip] = app
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{ip}", timeout=10
        )
        self.clients[ip] = client
        return client

    async def drain(self):
        for _ in range(5):
            for app in self.apps.values():
                await app.state.federation.drain()

    async def close(self):
        for client in self.clients.values():
            await client.aclose()
        for app in self.apps.values():
            await app.state.federation.aclose()
        for svc in self.services:
            await svc.close()


async def test_federation_three_trackers_converge_and_fourth_joins():
    clock = FakeClock()
    net = Net()
    try:
        a, b, c = [await net.add(ip, clock) for ip in ("a:1", "b:1", "c:1")]
        for ip, svc in zip(("a:1", "b:1", "c:1"), net.services, strict=True):
            for other in ("a:1", "b:1", "c:1"):
                if other != ip:
                    await svc.add_tracker(other, other)
        guid = (await add(a, seq=0)).json()["guid"]
        await net.drain()
        for client in (a, b, c):
            files = (await client.get("/file_list")).json()["files"]
            assert [(f["name"], f["full_hash"]) for f in files] == [("movie.mkv", SHA_A)]
            assert (await client.get(f"/peer_guid/{guid}")).json()["success"] is True
        # an event already seen is ignored (applied once): replaying b's copy changes nothing
        event = {
            "event": "add_file",
            "event_ip": "127.0.0.1",
            "event_id": "fixed-1",
            "data": {"name": "other.bin", "full_hash": "X1", "chunks": [], "guid": guid},
        }
        assert (await b.patch("/tracker_sync", json=event, headers=FED)).json() == {"success": True}
        assert (await b.patch("/tracker_sync", json=event, headers=FED)).json() == {"success": True}
        await net.drain()
        for client in (a, b, c):
            names = sorted(f["name"] for f in (await client.get("/file_list")).json()["files"])
            assert names == ["movie.mkv", "other.bin"]
        # deregistering on c floods to all
        r = await c.request(
            "DELETE", "/deregister_file_by_hash", json={"file_hash": "X1", "guid": guid, "seq_number": 1}
        )
        assert r.json() == {"success": True}
        await net.drain()
        for client in (a, b, c):
            assert [f["name"] for f in (await client.get("/file_list")).json()["files"]] == ["movie.mkv"]
        # a fourth tracker joins through new_tracker and gets the full database
        d = await net.add("d:1", clock)
        reply = (await a.post("/new_tracker", json={"name": "d:1", "ip": "d:1"}, headers=FED)).json()
        assert reply["success"] is True and isinstance(reply["data"], str)
        dump = json.loads(reply["data"])
        await net.services[3].load_dump(dump)
        await net.drain()
        assert [f["name"] for f in (await d.get("/file_list")).json()["files"]] == ["movie.mkv"]
        for client in (a, b, c, d):
            ips = {t["ip"] for t in (await client.get("/tracker_list")).json()["trackers"]}
            assert ips == {"a:1", "b:1", "c:1", "d:1"} - {client.base_url.host + ":1"}
        # and from now on d gets the floods too
        await add(b, name="late.mkv", full_hash="LATE", seq=0)
        await net.drain()
        assert sorted(f["name"] for f in (await d.get("/file_list")).json()["files"]) == [
            "late.mkv",
            "movie.mkv",
        ]
    finally:
        await net.close()


async def test_new_tracker_with_empty_body_uses_client_address(env):
    c, svc, _ = env
    await add(c)
    reply = (await c.post("/new_tracker", json={}, headers=FED)).json()
    assert reply["success"] is True
    assert json.loads(reply["data"])["files"][0]["name"] == "movie.mkv"
    assert [t.ip for t in await svc.trackers()] == ["127.0.0.1"]
