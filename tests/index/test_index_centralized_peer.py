"""The seed-002 peer's parts without processes: the client's calls against the in-process REST server
(POST /resource, GET /resource by name, /heartbeat), the request it sends (the name as the seed's GET
body and as a query), SERVER_IP[:PORT] parsing, the action port's command parser (Hypothesis: only
CommandError on any line) and its server; and ``bitswarm share --index`` registering the whole-file
SHA-1 (what a seed-001 SEARCH shows)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import uuid

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from index_testlib import FAST_HASHER, FakeClock
from seed_peer_testlib import StepSleep

from bitswarm.index import IndexService
from bitswarm.index.centralized_peer import (
    ActionServer,
    CentralizedClient,
    CentralizedError,
    Command,
    CommandError,
    fetch_resource,
    parse_command,
    server_url,
    sharing,
)
from bitswarm.index.client import IndexClient, content_sha1
from bitswarm.index.http import create_app
from bitswarm.metainfo import make_torrent, parse_torrent

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def rest():
    svc = await IndexService.open(":memory:", clock=FakeClock(), hasher=FAST_HASHER)
    app = create_app(svc)
    yield svc, httpx.ASGITransport(app=app)
    await app.state.federation.aclose()
    await svc.close()


async def test_share_and_fetch_through_the_rest_server(rest, tmp_path):
    _, transport = rest
    folder = tmp_path / "share"
    folder.mkdir()
    data = os.urandom(70_000)
    (folder / "test.csv").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    async with CentralizedClient("http://idx", transport=transport) as client:
        async with sharing(client, folder, peer_ip="127.0.0.1", listen_port=0) as peer:
            uuid.UUID(peer.peer_id)
            (holder,) = await client.holders("test.csv")
            assert (holder.ip, holder.port, holder.online) == ("127.0.0.1", peer.port, True)
            assert holder.resource_hash == hashlib.sha1(data).hexdigest()
            await client.heartbeat(peer.peer_id)
            _, path = await fetch_resource(client, "test.csv", out)
            assert path.read_bytes() == data
            assert await client.holders("other.csv") == []
            with pytest.raises(CentralizedError, match=r"no peer holds 'other\.csv'"):
                await fetch_resource(client, "other.csv", out)
        with pytest.raises(CentralizedError, match="HTTP 404"):
            await client.heartbeat(str(uuid.uuid4()))
        with pytest.raises(CentralizedError, match=r"no holder of 'test.csv' answered \(1 tried"):
            await fetch_resource(client, "test.csv", tmp_path)  # registered, but its server is gone


async def test_get_resource_sends_the_name_as_body_and_query():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        peers = [
            {"peer_id": "p", "peer_ip": "10.0.0.2", "peer_port": 3000, "online": False,
             "resources": [{"resource_name": "a b.csv", "resource_path": "/x", "resource_hash": "ab" * 16}]},
            {"peer_id": "q", "peer_ip": "10.0.0.3", "peer_port": 3001, "online": True,
             "resources": [{"resource_name": "a b.csv", "resource_hash": "cd" * 20}]},
            {"peer_id": "r", "peer_ip": None, "peer_port": None, "resources": []},
            "garbage",
        ]  # fmt: skip
        return httpx.Response(200, json=peers)

    async with CentralizedClient("http://s:1", transport=httpx.MockTransport(handler)) as client:
        holders = await client.holders("a b.csv")
    assert [(h.ip, h.online) for h in holders] == [("10.0.0.3", True), ("10.0.0.2", False)]
    (req,) = seen
    assert req.method == "GET" and req.url.params["resource_name"] == "a b.csv"
    assert json.loads(req.content) == {"resource_name": "a b.csv"}


async def test_client_errors_are_typed():
    async with CentralizedClient(
        "http://s:1", transport=httpx.MockTransport(lambda r: httpx.Response(400, json={"error": "bad name"}))
    ) as client:
        with pytest.raises(CentralizedError, match="HTTP 400 bad name"):
            await client.holders("x")
    async with CentralizedClient(
        "http://s:1", transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<html>"))
    ) as client:
        with pytest.raises(CentralizedError, match="not JSON"):
            await client.heartbeat("x")


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:42070"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://idx:1/", "http://idx:1"),
        ("::1", "http://[::1]:42070"),
        ("[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_server_url(text, url):
    assert server_url(text) == url


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("help", Command("help")),
        ("  LIST \n", Command("list")),
        ('find "a file.csv"', Command("find", "a file.csv")),
        ("get x.bin", Command("get", "x.bin")),
        ("quit", Command("quit")),
    ],
)
def test_parse_command(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize("line", ["", "   ", "bogus", "find", "find a b", "list x", 'get "unclosed'])
def test_parse_command_refuses(line):
    with pytest.raises(CommandError):
        parse_command(line)


@given(st.text(max_size=200))
def test_parse_command_fuzz(line):
    with contextlib.suppress(CommandError):
        parse_command(line)


async def test_action_server_answers_one_json_line_per_command(rest, tmp_path):
    _, transport = rest
    async with CentralizedClient("http://idx", transport=transport) as client:
        actions = ActionServer(client, [], tmp_path)
        port = await actions.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"help\nfind nothing.txt\nget nothing.txt\n\xff\xfe\n" + b"x" * 5000 + b"\n")
            replies = [json.loads(await reader.readline()) for _ in range(4)]
            assert set(replies[0]["commands"]) == {"help", "list", "find", "get", "quit"}
            assert replies[1] == {"ok": True, "holders": []}
            assert replies[2] == {"ok": False, "error": "no peer holds 'nothing.txt'"}
            assert replies[3] == {"ok": False, "error": "the line is not UTF-8"}
            assert await asyncio.wait_for(reader.read(), 10) == b""  # an over-long line: closed
            writer.close()
        finally:
            await actions.stop()


async def test_share_registers_the_whole_file_sha1(tmp_path):
    """``bitswarm share PATH --index`` (announce_share with the save path) registers the file's
    SHA-1, so a seed-001 SEARCH / BROWSE shows it instead of an empty field."""
    svc = await IndexService.open(":memory:", clock=FakeClock(), hasher=FAST_HASHER)
    app = create_app(svc)
    try:
        path = tmp_path / "clip.bin"
        path.write_bytes(os.urandom(70_000))
        torrent = parse_torrent(make_torrent(path, piece_length=16384).data)
        sha1 = await content_sha1(torrent, tmp_path)
        assert sha1 == hashlib.sha1(path.read_bytes()).hexdigest()
        async with IndexClient("http://alice:pw-1@idx", transport=httpx.ASGITransport(app=app)) as idx:
            reg = await idx.register_share(torrent, "127.0.0.5", 6881, sha1=sha1)
        assert (await svc.get_file(reg.file_id)).file.sha1 == sha1
        (tmp_path / "dir").mkdir()
        (tmp_path / "dir" / "a").write_bytes(b"a" * 100)
        (tmp_path / "dir" / "b").write_bytes(b"b" * 100)
        multi = parse_torrent(make_torrent(tmp_path / "dir").data)
        assert await content_sha1(multi, tmp_path) is None  # one sha1 describes one file
    finally:
        await app.state.federation.aclose()
        await svc.close()


async def test_sharing_sends_a_heartbeat_every_5_minutes(tmp_path):
    clock = FakeClock()
    svc = await IndexService.open(":memory:", clock=clock, hasher=FAST_HASHER)
    app = create_app(svc)
    sleep = StepSleep(clock.advance)
    ticks = sleep.ticks

    (tmp_path / "a.txt").write_bytes(b"a")
    try:
        client = CentralizedClient("http://idx", transport=httpx.ASGITransport(app=app))
        async with client, sharing(client, tmp_path, peer_ip="127.0.0.1", listen_port=0, sleep=sleep) as peer:
            for _ in range(3):  # 900 s: offline after 600 s without a heartbeat
                assert await ticks.get() == 300.0
                sleep.step()
            await ticks.get()
            assert (await svc.find_peer(peer.peer_id)).online
            clock.advance(700)
            assert not (await svc.find_peer(peer.peer_id)).online
    finally:
        await app.state.federation.aclose()
        await svc.close()
