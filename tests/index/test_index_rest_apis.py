"""Seed 002 (CentralizedP2P) and the native /api/v1 API, and "registered through one front end,
found through all the others" (binary included)."""

from __future__ import annotations

import httpx
import pytest
from index_testlib import FAST_HASHER, FakeClock, binary_session

from bitswarm.index import OFFLINE_AFTER, IndexService, public_peer_id
from bitswarm.index import binary as b
from bitswarm.index.binary_server import BinaryIndexServer
from bitswarm.index.http import create_app

PEER = "42bb7fb8-8f8d-4c1c-b4df-d97c2e78eb7c"
RES = {
    "peer_id": PEER,
    "peer_ip": "127.0.0.1",
    "peer_port": 3000,
    "resource_name": "test.csv",
    "resource_path": "./tests",
    "resource_hash": "dea311be2ca928ae1d6ba5ab28b53c60",
}


@pytest.fixture
async def env(index_db):
    clock = FakeClock()
    svc = await IndexService.open(index_db, clock=clock, hasher=FAST_HASHER)
    app = create_app(svc)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://idx", timeout=10
    ) as c:
        yield c, svc, clock
    await app.state.federation.aclose()
    await svc.close()


def central_error(r, status):
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and isinstance(r.json()["error"], str)


def native_error(r, status, code=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message"}
    if code:
        assert err["code"] == code


async def test_centralized_resource_and_heartbeat(env):
    c, _, clock = env
    assert (await c.get("/resource")).json() == []
    r = await c.post("/resource", json=RES)
    assert r.status_code == 201
    assert r.json() == {
        "peer_id": PEER,
        "resource_name": "test.csv",
        "resource_hash": RES["resource_hash"],
        "file_id": 1,
    }
    expected = [
        {
            "peer_id": public_peer_id(PEER),  # listed by its public id: PEER is its credential
            "peer_ip": "127.0.0.1",
            "peer_port": 3000,
            "online": True,
            "resources": [
                {
                    "resource_name": "test.csv",
                    "resource_path": "./tests",
                    "resource_hash": RES["resource_hash"],
                }
            ],
        }
    ]
    assert (await c.request("GET", "/resource", json={})).json() == expected
    assert (await c.request("GET", "/resource", json={"resource_name": "test.csv"})).json() == expected
    assert (await c.request("GET", "/resource", json={"resource_name": "other.csv"})).json() == []
    clock.advance(OFFLINE_AFTER + 1)
    assert (await c.get("/resource")).json()[0]["online"] is False
    r = await c.post("/heartbeat", json={"peer_id": PEER})
    assert r.status_code == 200 and r.json() == {"peer_id": PEER, "status": "alive"}
    assert (await c.get("/resource")).json()[0]["online"] is True


async def test_centralized_errors(env):
    c, _, _ = env
    central_error(await c.post("/heartbeat", json={"peer_id": "11111111-2222-3333-4444-555555555555"}), 404)
    central_error(await c.post("/heartbeat", json={}), 400)
    central_error(await c.post("/heartbeat", content=b"\xc3\x28"), 400)
    for key, bad in [
        ("peer_id", "x"),
        ("peer_ip", "999.1.1.1"),
        ("peer_port", 70000),
        ("peer_port", "80"),
        ("resource_name", 5),
        ("resource_hash", "zz"),
        ("resource_path", 3),
    ]:
        central_error(await c.post("/resource", json={**RES, key: bad}), 400)
    central_error(await c.request("GET", "/resource", json={"resource_name": 7}), 400)
    central_error(await c.request("GET", "/resource", content=b"not json"), 400)
    central_error(await c.post("/resource", content=b"{" + b" " * (1 << 20) + b"}"), 413)
    assert (await c.get("/resource")).json() == []  # nothing stored half-way


async def test_native_flow(env):
    c, _, clock = env
    assert (await c.post("/api/v1/users", json={"username": "alice", "password": "pw"})).status_code == 201
    native_error(await c.post("/api/v1/users", json={"username": "alice", "password": "x"}), 409, "conflict")
    native_error(
        await c.post("/api/v1/sessions", json={"username": "alice", "password": "no"}), 401, "unauthorized"
    )
    token = (await c.post("/api/v1/sessions", json={"username": "alice", "password": "pw"})).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    native_error(await c.post("/api/v1/peers", json={"port": 6881}), 401)
    native_error(
        await c.post("/api/v1/peers", json={"port": 6881}, headers={"Authorization": "Bearer nope"}), 401
    )
    peer = (await c.post("/api/v1/peers", json={"port": 6881, "ip": "10.1.1.1"}, headers=auth)).json()
    assert peer["online"] is True and peer["port"] == 6881 and peer["username"] == "alice"
    guid = peer["guid"]
    body = {
        "peer_guid": guid,
        "name": "Debian 12 netinst.iso",
        "size": 658505728,
        "sha1": "1" * 40,
        "info_hash_v1": "ab" * 20,
        "chunks": [{"id": 0, "name": "p0", "hash": "h0"}],
    }
    r = await c.post("/api/v1/files", json=body, headers=auth)
    assert r.status_code == 201, r.text
    f = r.json()
    assert f["magnet"].startswith("magnet:?xt=urn:btih:" + "ab" * 20)
    assert f["chunks"] == [{"id": 0, "name": "p0", "hash": "h0"}] and f["online_peers"] == 1
    page = (await c.get("/api/v1/search", params={"q": "debi net"})).json()
    assert page["total"] == 1 and page["items"][0]["id"] == f["id"]
    assert (await c.get(f"/api/v1/hashes/{'AB' * 20}")).json()["id"] == f["id"]
    assert (await c.get(f"/api/v1/peers/{guid}")).json()["files"][0]["name"] == "Debian 12 netinst.iso"
    assert (await c.get("/api/v1/files", params={"limit": 1})).json()["total"] == 1
    assert (await c.get("/api/v1/peers", params={"status": "online"})).json()["total"] == 1
    clock.advance(OFFLINE_AFTER + 1)
    assert (await c.get("/api/v1/peers", params={"status": "offline"})).json()["total"] == 1
    assert (await c.post(f"/api/v1/peers/{guid}/keepalive", headers=auth)).json()["online"] is True
    assert (await c.post(f"/api/v1/peers/{guid}/logout", headers=auth)).json()["online"] is False
    assert (await c.post(f"/api/v1/peers/{guid}/login", headers=auth)).json()["online"] is True
    # another user cannot touch alice's peer
    await c.post("/api/v1/users", json={"username": "mallory", "password": "pw"})
    t2 = (await c.post("/api/v1/sessions", json={"username": "mallory", "password": "pw"})).json()["token"]
    native_error(await c.post(f"/api/v1/peers/{guid}/logout", headers={"Authorization": f"Bearer {t2}"}), 401)
    native_error(await c.post("/api/v1/files", json=body, headers={"Authorization": f"Bearer {t2}"}), 401)
    assert (await c.delete(f"/api/v1/files/{f['id']}/peers/{guid}", headers=auth)).status_code == 204
    native_error(await c.get(f"/api/v1/files/{f['id']}"), 404, "not_found")
    assert (await c.delete("/api/v1/sessions", headers=auth)).status_code == 204
    native_error(await c.post("/api/v1/peers", json={}, headers=auth), 401)


async def test_native_bad_input_never_5xx(env):
    c, _, _ = env
    native_error(await c.get("/api/v1/search"), 400, "invalid")
    native_error(await c.get("/api/v1/search", params={"q": "x", "limit": 0}), 400)
    native_error(await c.get("/api/v1/files/abc"), 400)
    native_error(await c.get("/api/v1/peers/not-a-guid"), 400)
    native_error(await c.get("/api/v1/peers", params={"status": "sideways"}), 400)
    native_error(await c.post("/api/v1/users", json={"username": 1, "password": "x"}), 400)
    native_error(await c.post("/api/v1/users", json={"username": "has space", "password": "x"}), 400)
    native_error(
        await c.post("/api/v1/users", content=b"\xff", headers={"content-type": "application/json"}), 400
    )
    native_error(await c.post("/api/v1/users", content=b"x" * (2 << 20)), 413, "too_large")
    native_error(await c.get("/api/v1/nothing"), 404)
    assert (await c.get("/openapi.json")).json()["paths"]["/api/v1/search"]


async def test_registered_once_found_everywhere(env, tmp_path):
    c, svc, _ = env
    server = BinaryIndexServer(svc)
    host, port = await server.start("127.0.0.1", 0)
    try:
        async with binary_session(host, port) as call:
            # registered through the binary protocol ...
            reg = await call(b.Register("erin", "pw", (b.SharedFile("alpha-bin.dat", "2", "a1" * 20),)))
            assert isinstance(reg, b.RegisterOk)
            assert await call(b.Login("erin", "pw", reg.peer_id, 51413)) == b.SimpleOk(
                b.MessageType.LOGIN_OK, "LOGIN SUCCESS"
            )
            # ... through P2PFlix ...
            await c.post(
                "/add_file",
                json={
                    "name": "beta flix.mkv",
                    "full_hash": "BETAHASH",
                    "chunks": [],
                    "guid": None,
                    "seq_number": 0,
                },
            )
            # ... through CentralizedP2P ...
            await c.post("/resource", json={**RES, "resource_name": "gamma central.csv"})
            # ... and through the native API
            await c.post("/api/v1/users", json={"username": "fay", "password": "pw"})
            tok = (await c.post("/api/v1/sessions", json={"username": "fay", "password": "pw"})).json()[
                "token"
            ]
            auth = {"Authorization": f"Bearer {tok}"}
            guid = (await c.post("/api/v1/peers", json={"port": 7000}, headers=auth)).json()["guid"]
            await c.post(
                "/api/v1/files",
                json={"peer_guid": guid, "name": "delta native.txt", "md5": "d" * 32},
                headers=auth,
            )

            names = {
                "alpha": "alpha-bin.dat",
                "beta": "beta flix.mkv",
                "gamma": "gamma central.csv",
                "delta": "delta native.txt",
            }
            for word, name in names.items():
                # native search
                items = (await c.get("/api/v1/search", params={"q": word})).json()["items"]
                assert [i["name"] for i in items] == [name]
                # P2PFlix file list
                assert name in {f["name"] for f in (await c.get("/file_list")).json()["files"]}
                # CentralizedP2P by name
                peers = (await c.request("GET", "/resource", json={"resource_name": name})).json()
                assert peers and peers[0]["resources"][0]["resource_name"] == name
                # binary SEARCH
                hits = await call(b.Search(word))
                assert isinstance(hits, b.SearchOk) and [h.filename for h in hits.hits] == [name]
            alpha = (await call(b.Search("alpha"))).hits[0]
            assert (alpha.peer_port, alpha.size_mb, alpha.username) == (51413, "2", "erin")
    finally:
        await server.close()
