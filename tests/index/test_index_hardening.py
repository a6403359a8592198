"""Issue 16 (index): hostile input and hostile clients. JSON nested 50,000 deep and lone surrogates on
every JSON endpoint, secret guids, login throttling, private database files, HTTP and binary caps."""

from __future__ import annotations

import re

import httpx
import pytest
from index_testlib import FAST_HASHER, SHA_A, FakeClock, asgi_client

from bitswarm.index import IndexService
from bitswarm.index._http_common import front_end
from bitswarm.index.http import create_app

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
