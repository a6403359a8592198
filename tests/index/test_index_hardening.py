"""Issue 16 (index): hostile input and hostile clients. JSON nested 50,000 deep and lone surrogates on
every JSON endpoint, secret guids, login throttling, private database files, HTTP and binary caps."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from index_testlib import FAST_HASHER, FED, FED_KEY, SHA_A, FakeClock, asgi_client

from bitswarm.index import IndexService, ValidationError, public_peer_id
from bitswarm.index._config import IndexConfig, load_config
from bitswarm.index._http_common import front_end
from bitswarm.index.http import create_app
from bitswarm.index.server import IndexServer

DEEP = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"name": ' + DEEP + b"}"
SURROGATE = b'{"name": "\\ud800", "username": "\\ud800", "password": "x\\udfff", "guid": null}'


@pytest.fixture
async def env(index_db):
    clock = FakeClock()
    svc = await IndexService.open(index_db, clock=clock, hasher=FAST_HASHER)
    app = create_app(svc)
    async with asgi_client(app) as c:
        yield c, svc, clock, app
    await app.state.federation.aclose()
    await svc.close()


def _assert_api_error(r: httpx.Response, path: str, pattern: str) -> None:
    assert r.status_code == 400, (path, r.status_code, r.text)
    body = r.json()
    kind = front_end(path)
    if kind == "native":
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        message = body["error"]["message"]
    elif kind == "centralized":
        assert set(body) == {"error"}, body
        message = body["error"]
    else:
        assert body["success"] is False, body
        message = body["error"]
    assert re.search(pattern, message), (path, message)


WEB_FORMS = ("/login", "/register", "/logout")


def _json_endpoints(app) -> list[tuple[str, str]]:
    """(method, path) of every route in the OpenAPI schema that reads a JSON body (path parameters
    filled in); the web UI's HTML forms are not JSON."""
    out = []
    for route_path, operations in app.openapi()["paths"].items():
        if route_path in WEB_FORMS:
            continue
        path = re.sub(r"\{[^}]+\}", "1", route_path)
        for method in operations:
            method = method.upper()
            if method in ("POST", "PUT", "PATCH", "DELETE") or (method, path) == ("GET", "/resource"):
                out.append((method, path))
    return out


async def test_every_json_endpoint_answers_deep_nesting_and_lone_surrogates_with_400(env):
    c, svc, _, app = env
    endpoints = _json_endpoints(app)
    paths = {p for _, p in endpoints}
    # the sweep covers seed 000, seed 002 and the native API
    assert {"/add_file", "/keep_alive", "/deregister_file", "/tracker_sync", "/new_tracker"} <= paths
    assert {"/resource", "/heartbeat", "/api/v1/users", "/api/v1/sessions", "/api/v1/files"} <= paths
    headers = {"content-type": "application/json"}
    for method, path in endpoints:
        for body, pattern in (
            (DEEP, "nested deeper"),
            (DEEP_OBJECT, "nested deeper"),
            (SURROGATE, "surrogate"),
        ):
            r = await c.request(method, path, content=body, headers=headers)
            _assert_api_error(r, path, pattern)
    assert (await c.get("/file_list")).json() == {"success": True, "files": []}
    assert await svc.count_peers() == 0


async def test_a_lone_surrogate_where_it_would_be_stored_is_400(env):
    c, _, _, _ = env
    r = await c.post(
        "/add_file",
        content=b'{"name": "a\\ud800b", "full_hash": "' + SHA_A.encode() + b'", "chunks": [], '
        b'"guid": null, "seq_number": 0}',
        headers={"content-type": "application/json"},
    )
    _assert_api_error(r, "/add_file", "surrogate")
    r = await c.post(
        "/api/v1/users",
        content=b'{"username": "bob\\udc80", "password": "correct horse"}',
        headers={"content-type": "application/json"},
    )
    _assert_api_error(r, "/api/v1/users", "surrogate")
    # a real non-ASCII name (and a proper surrogate pair) is fine
    r = await c.post(
        "/add_file",
        content=b'{"name": "caf\\u00e9 \\ud83d\\ude00", "full_hash": "' + SHA_A.encode() + b'", '
        b'"chunks": [], "guid": null, "seq_number": 0}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert (await c.get("/file/1")).json()["name"] == "café \U0001f600"


# -- issue 16 item 4: a peer's guid is its credential; no public view shows it ----------------------

CENTRAL_ID = "42bb7fb8-8f8d-4c1c-b4df-d97c2e78eb7c"


async def _peers_of_every_kind(c: httpx.AsyncClient) -> list[str]:
    """Registers a seed 000 peer, a seed 002 peer and a native (user-owned) peer; their guids."""
    r = await c.post(
        "/add_file",
        json={"name": "movie.mkv", "full_hash": SHA_A, "chunks": [], "guid": None, "seq_number": 0},
    )
    assert r.json()["success"] is True, r.text
    anon = r.json()["guid"]
    await c.put("/keep_alive", json={"guid": anon, "ka_seq_number": 0})
    r = await c.post(
        "/resource",
        json={
            "peer_id": CENTRAL_ID,
            "peer_ip": "127.0.0.1",
            "peer_port": 3000,
            "resource_name": "movie.mkv",
            "resource_hash": "d" * 32,
        },
    )
    assert r.status_code == 201, r.text
    await c.post("/api/v1/users", json={"username": "olga", "password": "correct horse"})
    token = (await c.post("/api/v1/sessions", json={"username": "olga", "password": "correct horse"})).json()[
        "token"
    ]
    auth = {"Authorization": f"Bearer {token}"}
    owned = (await c.post("/api/v1/peers", json={"port": 6881}, headers=auth)).json()
    assert owned["id"] == public_peer_id(owned["guid"])  # the owner sees the guid of their peer
    r = await c.post(
        "/api/v1/files", json={"peer_guid": owned["guid"], "name": "movie.mkv", "sha256": SHA_A}, headers=auth
    )
    assert r.status_code == 201, r.text
    return [anon, CENTRAL_ID, owned["guid"]]


async def test_no_public_view_shows_a_guid_and_a_stranger_cannot_deregister(env):
    c, _, _, _ = env
    guids = await _peers_of_every_kind(c)
    public = [public_peer_id(g) for g in guids]
    views = [
        "/file_list",
        "/file/1",
        f"/file_by_hash/{SHA_A}",
        "/tracker_list",
        "/resource",
        "/api/v1/peers",
        "/api/v1/peers?status=online",
        "/api/v1/files",
        "/api/v1/files/1",
        "/api/v1/search?q=movie",
        f"/api/v1/hashes/{SHA_A}",
        "/",
        "/?q=movie",
        "/files/1",
        "/peers",
        *(f"/api/v1/peers/{p}" for p in public),
        *(f"/peers/{p}" for p in public),
    ]
    listed = (await c.get("/api/v1/peers")).json()["items"]
    assert sorted(p["id"] for p in listed) == sorted(public)
    for path in views:
        r = await c.get(path)
        assert r.status_code == 200, (path, r.text)
        for guid in guids:
            assert guid not in r.text, (path, guid)
    r = await c.request("GET", "/resource", json={"resource_name": "movie.mkv"})
    assert sorted(p["peer_id"] for p in r.json()) == sorted(public)
    # what a stranger can learn (a public id) does not work as the credential
    for p in public:
        r = await c.request("DELETE", "/deregister_file", json={"file_id": 1, "guid": p, "seq_number": 5})
        assert r.status_code == 400 and r.json()["success"] is False
        r = await c.get(f"/peer_guid/{p}")
        assert r.status_code == 400 and set(r.json()) == {"success", "error"}
        r = await c.post("/heartbeat", json={"peer_id": p})
        assert r.status_code == 400
    assert [h["ip"] for h in (await c.get("/file/1")).json()["peers"]] != []
    assert (await c.get(f"/peer_guid/{guids[0]}")).json()["expected_seq_number"] == 1  # for its holder


async def test_federation_needs_the_shared_key(index_db):
    """new_tracker (a dump of every guid) and tracker_sync are refused without the federation key,
    and an index with no key sends its events nowhere."""
    sent: list[dict] = []

    async def send(tracker, event) -> None:
        sent.append(event)

    svc = await IndexService.open(index_db, hasher=FAST_HASHER)
    for key in (None, FED_KEY):
        app = create_app(svc, IndexConfig(name="t", federation_key=key), send=send)
        async with asgi_client(app) as c:
            await svc.add_tracker("other", "10.0.0.2:42070")
            if key is None:
                anon = (await _peers_of_every_kind(c))[0]
            await app.state.federation.drain()
            for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": FED_KEY}):
                r = await c.post("/new_tracker", json={"name": "evil", "ip": "6.6.6.6:1"}, headers=headers)
                assert r.status_code == 403 and r.json()["success"] is False, r.text
                assert anon not in r.text
                event = {
                    "event": "deregister_file_by_hash",
                    "event_ip": "6.6.6.6",
                    "data": {"file_hash": SHA_A, "guid": anon, "seq_number": 9},
                }
                r = await c.patch("/tracker_sync", json=event, headers=headers)
                assert r.status_code == 403 and r.json()["success"] is False, r.text
            assert [t.ip for t in await svc.trackers()] == ["10.0.0.2:42070"]
            assert len((await c.get("/file/1")).json()["peers"]) >= 1
            if key is None:
                assert sent == []  # federation off: guids go nowhere
            else:
                r = await c.post("/new_tracker", json={"name": "friend", "ip": "10.0.0.3:1"}, headers=FED)
                assert r.json()["success"] is True and anon in r.json()["data"]
                await app.state.federation.drain()
                assert sent and all(e["event"] == "new_tracker" for e in sent)
            await app.state.federation.aclose()
    await svc.close()


# -- issue 16 item 5: login throttling, per account and per address ----------------------------------


async def _login(c: httpx.AsyncClient, user: str, pw: str) -> httpx.Response:
    return await c.post("/api/v1/sessions", json={"username": user, "password": pw})


async def test_rest_login_is_throttled_per_account_with_exponential_lockout(env):
    c, _, clock, _ = env
    await c.post("/api/v1/users", json={"username": "vera", "password": "right password"})
    answered = 0
    for _ in range(500):
        r = await _login(c, "vera", "wrong")
        if r.status_code == 401:
            answered += 1
        else:
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "throttled" and "retry in" in r.json()["error"]["message"]
            assert int(r.headers["retry-after"]) >= 1
    assert answered == 5  # 500 guesses in a row: five were checked, the rest refused unchecked
    r = await _login(c, "vera", "right password")
    assert r.status_code == 429  # locked: even the right password waits
    clock.advance(int(r.headers["retry-after"]))
    assert (await _login(c, "vera", "wrong")).status_code == 401  # one more try after the lock ...
    r = await _login(c, "vera", "wrong")
    assert r.status_code == 429 and r.headers["retry-after"] == "2"  # ... and the lock doubles
    clock.advance(2)
    assert (await _login(c, "vera", "right password")).status_code == 201
    for _ in range(5):  # a success starts the account over
        assert (await _login(c, "vera", "wrong")).status_code == 401


async def test_rest_login_is_throttled_per_address(env):
    c, _, clock, _ = env
    await c.post("/api/v1/users", json={"username": "walt", "password": "right password"})
    for n in range(20):  # one address guessing across many accounts, a few tries each
        assert (await _login(c, f"user{n}", "guess")).status_code == 401
    r = await _login(c, "walt", "right password")
    assert r.status_code == 429 and "this address" in r.json()["error"]["message"]
    clock.advance(int(r.headers["retry-after"]))
    assert (await _login(c, "walt", "right password")).status_code == 201
    clock.advance(3601)  # an hour without failures: the address starts over
    for n in range(19):
        assert (await _login(c, f"other{n}", "guess")).status_code == 401


async def test_web_login_is_throttled(env):
    c, _, _, _ = env
    await c.post("/register", data={"username": "xena", "password": "right password"})
    codes = [
        (await c.post("/login", data={"username": "xena", "password": "bad"})).status_code for _ in range(8)
    ]
    assert codes == [401] * 5 + [429] * 3
    r = await c.post("/login", data={"username": "xena", "password": "bad"})
    assert "too many failed logins" in r.text and "retry-after" in r.headers


async def test_parallel_guesses_cannot_slip_past_the_count(env):
    c, _, _, _ = env
    await c.post("/api/v1/users", json={"username": "yuri", "password": "right password"})
    replies = await asyncio.gather(*(_login(c, "yuri", "wrong") for _ in range(50)))
    assert sum(r.status_code == 401 for r in replies) <= 5
    assert all(r.status_code in (401, 429) for r in replies)


# -- issue 16 items 6 and 7: the HTTP port's timeouts and per-address cap ----------------------------


async def _raw(host: str, port: int, source: str = "127.0.0.1"):
    return await asyncio.open_connection(host, port, local_addr=(source, 0))


async def _get(host: str, port: int, source: str) -> bytes:
    reader, writer = await _raw(host, port, source)
    writer.write(b"GET /file_list HTTP/1.1\r\nHost: idx\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


#: The test server's timeouts: short, but long enough that opening 200 connections on a loaded CI
#: machine does not outlast them.
HTTP_TIMEOUT = 2.0


@pytest.fixture
async def http_server(tmp_path):
    cfg = IndexConfig(
        host="127.0.0.1",
        port=0,
        db=str(tmp_path / "i.db"),
        http_header_timeout=HTTP_TIMEOUT,
        http_body_timeout=HTTP_TIMEOUT,
        http_idle_timeout=HTTP_TIMEOUT,
        http_max_per_ip=64,
    )
    svc = await IndexService.open(cfg.db, hasher=FAST_HASHER)
    server = IndexServer(cfg, svc)
    bound = await server.start()
    yield bound.host, bound.http_port
    await server.stop()
    await svc.close()


async def test_http_idle_connections_from_one_address_are_capped_and_closed(http_server):
    host, port = http_server
    idle = []
    for _ in range(200):  # one host opens 200 connections and sends nothing
        idle.append(await _raw(host, port))
    refused = 0
    for reader, _ in idle[64:]:  # beyond the cap of 64: 503 at once, closed
        reply = await asyncio.wait_for(reader.read(), 10)
        assert reply.startswith(b"HTTP/1.1 503"), reply
        refused += 1
    assert refused == 136
    # a legitimate client (another address) is served at once, well before any timeout
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await _get(host, port, "127.0.0.2")).startswith(b"HTTP/1.1 200")
    assert loop.time() - start < 1.0
    # the 64 idle ones are closed at the header timeout (408), freeing the address
    for reader, _ in idle[:64]:
        reply = await asyncio.wait_for(reader.read(), 10)
        assert reply.startswith(b"HTTP/1.1 408"), reply
    assert loop.time() - start < HTTP_TIMEOUT + 3
    for _, writer in idle:
        writer.close()
    assert (await _get(host, port, "127.0.0.1")).startswith(b"HTTP/1.1 200")


async def test_http_slow_headers_slow_body_idle_keepalive_and_huge_heads_are_cut(http_server):
    host, port = http_server
    # headers that never end (slowloris)
    reader, writer = await _raw(host, port)
    writer.write(b"GET /file_list HTTP/1.1\r\nHost: idx\r\n")
    assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 408")
    writer.close()
    # a body that never comes
    reader, writer = await _raw(host, port)
    writer.write(b"POST /add_file HTTP/1.1\r\nHost: idx\r\nContent-Length: 100\r\n\r\n{")
    assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 408")
    writer.close()
    # a keep-alive connection left idle after its response
    reader, writer = await _raw(host, port)
    writer.write(b"GET /file_list HTTP/1.1\r\nHost: idx\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)  # the response, then EOF at the idle timeout
    assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1") == 1
    writer.close()
    # a request head over 64 KiB
    reader, writer = await _raw(host, port)
    writer.write(b"GET /file_list HTTP/1.1\r\nHost: idx\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 431")
    writer.close()


def test_config_toml_sets_the_limits_and_the_federation_key(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        'federation_key = "0123456789abcdef0123"\nhttp_header_timeout = 5\nhttp_idle_timeout = 12.5\n'
        "http_max_per_ip = 8\nbinary_max_per_ip = 2\nlogin_timeout = 3\n"
    )
    cfg = load_config(path)
    assert (cfg.federation_key, cfg.http_header_timeout, cfg.http_idle_timeout) == (
        "0123456789abcdef0123",
        5.0,
        12.5,
    )
    assert (cfg.http_max_per_ip, cfg.binary_max_per_ip, cfg.login_timeout) == (8, 2, 3.0)
    assert "0123456789abcdef0123" not in repr(cfg)
    for bad in (
        'federation_key = "short"',
        "http_idle_timeout = 0",
        "http_max_per_ip = 1.5",
        "login_timeout = true",
    ):
        path.write_text(bad + "\n")
        with pytest.raises(ValidationError):
            load_config(path)
    defaults = IndexConfig()
    assert (
        defaults.login_timeout <= 10 and defaults.http_header_timeout <= 10 and defaults.http_max_per_ip <= 64
    )


async def test_deep_json_is_refused_before_any_parser_recurses(monkeypatch):
    """Nesting is counted on the bytes first: the parser (which would recurse until RecursionError,
    leaving the process to recover from it) never sees a body nested too deep."""
    import json

    from bitswarm.index._http_common import JsonGuard, too_deep

    assert too_deep(DEEP) and too_deep(DEEP_OBJECT) and not too_deep(b'{"name": "' + b"[" * 99 + b'"}')

    def no_parse(*args, **kwargs):
        raise AssertionError("a body nested too deep reached the JSON parser")

    async def app(scope, receive, send):
        raise AssertionError("a body nested too deep reached the handler")

    sent = []

    async def receive():
        return {"type": "http.request", "body": DEEP_OBJECT, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/v1/files", "headers": [], "query_string": b""}
    monkeypatch.setattr(json, "loads", no_parse)
    await JsonGuard(app)(scope, receive, send)
    monkeypatch.undo()
    assert sent[0]["status"] == 400 and b"nested deeper than" in sent[1]["body"]
