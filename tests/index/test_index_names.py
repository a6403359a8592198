"""Names per peer (issue 23): a file is (hash, the name each peer calls it). Search, ``GET /resource``
and seed 001 SEARCH find it by any peer's name; a rename (``POST /resource`` with a new name,
``REGISTER_UPDATE``) changes that peer's name only; BROWSE lists each peer's own name. Both backends."""

from __future__ import annotations

import pytest
from index_testlib import FAST_HASHER, FakeClock, asgi_client, binary_session

from bitswarm.index import FileSpec, IndexService
from bitswarm.index import binary as b
from bitswarm.index.binary_server import BinaryIndexServer
from bitswarm.index.http import create_app

PEER_A = "42bb7fb8-8f8d-4c1c-b4df-d97c2e78eb7c"
PEER_B = "42bb7fb8-8f8d-4c1c-b4df-d97c2e78eb7d"
HASH = "dea311be2ca928ae1d6ba5ab28b53c60"


@pytest.fixture
async def svc(index_db):
    service = await IndexService.open(index_db, clock=FakeClock(), hasher=FAST_HASHER)
    yield service
    await service.close()


def resource(peer: str, name: str) -> dict[str, object]:
    return {
        "peer_id": peer,
        "peer_ip": "127.0.0.1",
        "peer_port": 3000,
        "resource_name": name,
        "resource_hash": HASH,
        "resource_path": f"/srv/{name}",
    }


async def test_each_peer_names_the_file_its_way(svc):
    app = create_app(svc)
    try:
        async with asgi_client(app) as c:
            assert (await c.post("/resource", json=resource(PEER_A, "holiday.csv"))).status_code == 201
            assert (await c.post("/resource", json=resource(PEER_B, "vacances.csv"))).status_code == 201
            # one file (same hash), found by either name, each holder listing it under its own name
            by_a = (await c.get("/resource", params={"resource_name": "holiday.csv"})).json()
            by_b = (await c.get("/resource", params={"resource_name": "vacances.csv"})).json()
            assert by_a == by_b and len(by_a) == 2
            assert sorted(p["resources"][0]["resource_name"] for p in by_a) == ["holiday.csv", "vacances.csv"]
            assert {r["resource_hash"] for p in by_a for r in p["resources"]} == {HASH}
            for word in ("holiday", "vacances"):
                items = (await c.get("/api/v1/search", params={"q": word})).json()["items"]
                assert len(items) == 1, word
            # B renames: B's name changes, A's does not; the old name of B finds nothing new
            assert (await c.post("/resource", json=resource(PEER_B, "urlaub.csv"))).status_code == 201
            assert (await c.get("/resource", params={"resource_name": "vacances.csv"})).json() == []
            after = (await c.get("/resource", params={"resource_name": "urlaub.csv"})).json()
            assert sorted(p["resources"][0]["resource_name"] for p in after) == ["holiday.csv", "urlaub.csv"]
            assert (await c.get("/api/v1/search", params={"q": "vacances"})).json()["items"] == []
            assert len((await c.get("/api/v1/search", params={"q": "urlaub"})).json()["items"]) == 1
            assert len((await c.get("/api/v1/search", params={"q": "holiday"})).json()["items"]) == 1
    finally:
        await app.state.federation.aclose()


async def test_a_lone_holder_renaming_renames_the_file(svc):
    app = create_app(svc)
    try:
        async with asgi_client(app) as c:
            await c.post("/resource", json=resource(PEER_A, "draft.txt"))
            await c.post("/resource", json=resource(PEER_A, "final.txt"))
            assert (await c.get("/api/v1/search", params={"q": "draft"})).json()["items"] == []
            assert [
                i["name"] for i in (await c.get("/api/v1/search", params={"q": "final"})).json()["items"]
            ] == ["final.txt"]
            assert (await c.get("/resource", params={"resource_name": "draft.txt"})).json() == []
    finally:
        await app.state.federation.aclose()


async def test_a_holder_leaving_takes_its_name_along(svc):
    fid, a = await svc.add_file(FileSpec(name="one name.bin", sha1="1" * 40), guid=None)
    _, b_guid = await svc.add_file(FileSpec(name="other name.bin", sha1="1" * 40), guid=None)
    assert (await svc.search("other")).total == 1
    await svc.remove_host(b_guid, file_id=fid)
    assert (await svc.search("other")).total == 0
    assert (await svc.search("one")).total == 1
    assert [d.file.id for d in await svc.files_named("other name.bin")] == []
    assert (await svc.get_file(fid)).hosts[0].name == "one name.bin"
    await svc.remove_host(a, file_id=fid)


async def test_binary_register_update_rename_shows_in_browse_and_search(svc):
    server = BinaryIndexServer(svc)
    host, port = await server.start("127.0.0.1", 0)
    try:
        async with binary_session(host, port) as call:
            sha1 = "ab" * 20
            ann = await call(b.Register("ann", "pw", (b.SharedFile("old name.txt", "1", sha1),)))
            bob = await call(b.Register("bob", "pw", (b.SharedFile("bob calls it.txt", "1", sha1),)))
            await call(b.Login("ann", "pw", ann.peer_id, 6001))
            await call(b.Login("bob", "pw", bob.peer_id, 6002))
            ok = await call(
                b.RegisterUpdate("ann", "pw", ann.peer_id, (b.SharedFile("new name.txt", "1", sha1),))
            )
            assert ok == b.SimpleOk(b.MessageType.REGISTER_UPDATE_OK, "REGISTER UPDATE SUCCESS")
            hits = (await call(b.Search("new"))).hits
            assert sorted(h.peer_port for h in hits) == [6001, 6002]
            names = {h.username: h.filename for h in hits}
            assert names == {"ann": "new name.txt", "bob": "bob calls it.txt"}
            assert (await call(b.Search("old"))).hits == ()
            ann_public = next(h.peer_id for h in hits if h.username == "ann")
            bob_public = next(h.peer_id for h in hits if h.username == "bob")
            assert [f.filename for f in (await call(b.Browse(ann_public))).files] == ["new name.txt"]
            assert [f.filename for f in (await call(b.Browse(bob_public))).files] == ["bob calls it.txt"]
    finally:
        await server.close()
