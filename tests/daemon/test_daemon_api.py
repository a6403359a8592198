"""Contract tests of the daemon's control API on a real loopback port: every endpoint, the happy
path against a seeding Session, and bad input (unknown ids, malformed magnets, traversal paths,
oversized uploads ...) answered with a clear 4xx, never a 5xx."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import pytest
from daemon_testlib import TOKEN, make_content, running_daemon, seeder, torrent_of, wait_for

from bitswarm.bencode import encode
from bitswarm.daemon import MAX_TORRENT_BYTES, create_app

pytestmark = pytest.mark.timeout(90)
UNKNOWN = "ab" * 20


async def _details(c: httpx.AsyncClient, tid: str) -> dict:
    r = await c.get(f"/api/v1/torrents/{tid}")
    assert r.status_code == 200, r.text
    return r.json()


async def _add_paused(c: httpx.AsyncClient, raw: bytes) -> str:
    reply = await c.post(
        "/api/v1/torrents",
        content=raw,
        params={"paused": "true"},
        headers={"Content-Type": "application/x-bittorrent"},
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


async def _complete(c: httpx.AsyncClient, tid: str) -> dict:
    async def done() -> dict | None:
        d = await _details(c, tid)
        return d if d["state"] == "seeding" and d["progress"] == 1.0 else None

    return await wait_for(done, 40)


async def test_upload_download_pause_resume_stream_remove(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed")
    raw, t = torrent_of(content)
    async with seeder(content, t) as (s, _), running_daemon(tmp_path / "d") as r, r.client() as c:
        reply = await c.post(
            "/api/v1/torrents",
            files={"torrent": ("album.torrent", raw, "application/x-bittorrent")},
            data={"peers": f"127.0.0.1:{s.port}"},
        )
        assert reply.status_code == 201, reply.text
        tid = reply.json()["id"]
        assert tid == t.swarm_hash.hex() and reply.json()["name"] == "album"
        listed = (await c.get("/api/v1/torrents")).json()["torrents"]
        assert [x["id"] for x in listed] == [tid]

        d = await _complete(c, tid)
        got = Path(d["save_path"], "album")
        for f in content.iterdir():
            assert (got / f.name).read_bytes() == f.read_bytes()
        assert [f["path"] for f in d["files"]] == ["clip.mp4", "track01.bin", "track02.bin"]
        assert d["files"][0]["media"] and not d["files"][1]["media"]
        assert all(f["progress"] == 1.0 and f["priority"] == 1 for f in d["files"])
        assert d["pieces_done"] == d["num_pieces"] == t.info.num_pieces
        bits = bytes.fromhex(d["pieces"])
        assert sum(bin(b).count("1") for b in bits) == t.info.num_pieces
        assert d["magnet"].startswith("magnet:?xt=urn:btih:" + tid)
        assert isinstance(d["peer_list"], list) and isinstance(d["trackers"], list)

        # play link: HTTP Range on the media file
        clip = (content / "clip.mp4").read_bytes()
        url = d["files"][0]["stream_url"]
        rr = await c.get(url, headers={"Range": "bytes=1000-1999"})
        assert rr.status_code == 206 and rr.content == clip[1000:2000]
        assert rr.headers["content-range"] == f"bytes 1000-1999/{len(clip)}"
        assert rr.headers["content-type"] == "video/mp4"
        full = await c.get(url)
        assert full.status_code == 200 and full.content == clip
        assert (await c.head(url)).headers["content-length"] == str(len(clip))
        assert (await c.get(url, headers={"Range": f"bytes={len(clip)}-"})).status_code == 416
        assert (await c.get(f"/api/v1/torrents/{tid}/files/9/stream")).status_code == 404

        paused = (await c.post(f"/api/v1/torrents/{tid}/pause")).json()
        assert paused["state"] == "paused" and paused["paused"] and paused["progress"] == 1.0
        assert (await c.get(url)).status_code == 409  # not running: no stream
        assert (await c.post(f"/api/v1/torrents/{tid}/pause")).status_code == 200  # idempotent
        resumed = (await c.post(f"/api/v1/torrents/{tid}/resume")).json()
        assert not resumed["paused"]
        await _complete(c, tid)

        gone = await c.delete(f"/api/v1/torrents/{tid}")
        assert gone.status_code == 200 and gone.json() == {"id": tid, "removed": True, "deleted_data": False}
        assert (got / "clip.mp4").exists()  # data kept
        assert (await c.get(f"/api/v1/torrents/{tid}")).status_code == 404
        assert not list((tmp_path / "d" / "torrents").glob("*"))
        # add again from the data already there: hashed, complete without any peer
        again = await c.post(
            "/api/v1/torrents", content=raw, headers={"Content-Type": "application/x-bittorrent"}
        )
        assert again.status_code == 201
        await _complete(c, tid)
        gone = await c.delete(f"/api/v1/torrents/{tid}", params={"delete_data": "true"})
        assert gone.json()["deleted_data"] and not got.exists()


async def test_add_variants_and_duplicates(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", files=2, size=50_000)
    raw, t = torrent_of(content)
    (tmp_path / "x.torrent").write_bytes(raw)
    async with running_daemon(tmp_path / "d") as r, r.client() as c:
        # server-side path, paused, custom relative save path
        reply = await c.post(
            "/api/v1/torrents", json={"path": str(tmp_path / "x.torrent"), "paused": True, "save_path": "sub"}
        )
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert body["state"] == "paused" and body["save_path"] == str(r.daemon.download_dir / "sub")
        assert body["total_size"] == t.info.total_size and body["progress"] == 0.0
        dup = await c.post("/api/v1/torrents", json={"torrent_base64": base64.b64encode(raw).decode()})
        assert dup.status_code == 409 and "already" in dup.json()["error"]["message"]
        dup = await c.post(
            "/api/v1/torrents", content=raw, headers={"Content-Type": "application/x-bittorrent"}
        )
        assert dup.status_code == 409
        # a magnet (kept paused: metadata comes from peers/DHT once resumed)
        magnet = (
            "magnet:?xt=urn:btih:" + "12" * 20 + "&dn=Some%20Film&tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce"
        )
        m = await c.post("/api/v1/torrents", json={"magnet": magnet, "paused": True})
        assert m.status_code == 201, m.text
        assert m.json()["name"] == "Some Film" and m.json()["id"] == "12" * 20
        md = (await c.get(f"/api/v1/torrents/{'12' * 20}")).json()
        assert md["files"] == [] and md["pieces"] is None and md["magnet"].startswith("magnet:")
        # multipart magnet
        m2 = await c.post(
            "/api/v1/torrents",
            files={"magnet": (None, "magnet:?xt=urn:btih:" + "34" * 20)},
            data={"paused": "true"},
        )
        assert m2.status_code == 201, m2.text
        assert (await c.post(f"/api/v1/torrents/{'34' * 20}/recheck")).status_code == 409  # no metadata
        assert (
            await c.put(f"/api/v1/torrents/{'34' * 20}/priorities", json={"priorities": [1]})
        ).status_code == 409
        ids = {x["id"] for x in (await c.get("/api/v1/torrents")).json()["torrents"]}
        assert ids == {t.swarm_hash.hex(), "12" * 20, "34" * 20}


def _traversal_torrent() -> bytes:
    info = {
        b"name": b"innocent",
        b"piece length": 16384,
        b"pieces": b"\0" * 20,
        b"files": [{b"length": 10, b"path": [b"..", b"..", b"etc", b"evil"]}],
    }
    return encode({b"announce": b"http://127.0.0.1:1/announce", b"info": info})


async def test_bad_input_is_4xx_never_5xx(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", files=2, size=40_000)
    raw, _t = torrent_of(content)
    async with running_daemon(tmp_path / "d") as r, r.client() as c:
        tid = await _add_paused(c, raw)
        cases: list[tuple[str, str, dict, int, str]] = [
            # unknown ids on every per-torrent endpoint
            ("GET", f"/api/v1/torrents/{UNKNOWN}", {}, 404, "no torrent"),
            ("DELETE", f"/api/v1/torrents/{UNKNOWN}", {}, 404, "no torrent"),
            ("POST", f"/api/v1/torrents/{UNKNOWN}/pause", {}, 404, "no torrent"),
            ("POST", f"/api/v1/torrents/{UNKNOWN}/resume", {}, 404, "no torrent"),
            ("POST", f"/api/v1/torrents/{UNKNOWN}/recheck", {}, 404, "no torrent"),
            (
                "PUT",
                f"/api/v1/torrents/{UNKNOWN}/priorities",
                {"json": {"priorities": [1]}},
                404,
                "no torrent",
            ),
            ("PUT", f"/api/v1/torrents/{UNKNOWN}/limits", {"json": {"download": 1}}, 404, "no torrent"),
            ("GET", f"/api/v1/torrents/{UNKNOWN}/files/0/stream", {}, 404, "no torrent"),
            ("GET", "/api/v1/torrents/not-a-hash", {}, 422, "torrent_id"),
            ("GET", "/api/v1/nope", {}, 404, "Not Found"),
            # malformed magnets
            ("POST", "/api/v1/torrents", {"json": {"magnet": "magnet:?dn=nohash"}}, 400, "malformed magnet"),
            ("POST", "/api/v1/torrents", {"json": {"magnet": "http://x"}}, 400, "malformed magnet"),
            (
                "POST",
                "/api/v1/torrents",
                {"json": {"magnet": "magnet:?xt=urn:btih:zz"}},
                400,
                "malformed magnet",
            ),
            # traversal paths and garbage in uploaded torrents
            (
                "POST",
                "/api/v1/torrents",
                {"files": {"torrent": ("e.torrent", _traversal_torrent())}},
                400,
                "valid",
            ),
            (
                "POST",
                "/api/v1/torrents",
                {"content": b"d4:spam", "headers": {"Content-Type": "application/x-bittorrent"}},
                400,
                "not a valid torrent",
            ),
            ("POST", "/api/v1/torrents", {"json": {"torrent_base64": "!!!"}}, 400, "base64"),
            (
                "POST",
                "/api/v1/torrents",
                {"json": {"path": str(tmp_path / "missing.torrent")}},
                400,
                "no such file",
            ),
            ("POST", "/api/v1/torrents", {"json": {"path": "/etc/passwd"}}, 400, "not a valid torrent"),
            # shape errors
            ("POST", "/api/v1/torrents", {"json": {}}, 400, "exactly one"),
            (
                "POST",
                "/api/v1/torrents",
                {"json": {"magnet": "magnet:?xt=urn:btih:" + "1" * 40, "path": "/x"}},
                400,
                "exactly one",
            ),
            ("POST", "/api/v1/torrents", {"json": {"bogus": 1}}, 422, "bogus"),
            (
                "POST",
                "/api/v1/torrents",
                {"content": b"{", "headers": {"Content-Type": "application/json"}},
                400,
                "not valid JSON",
            ),
            (
                "POST",
                "/api/v1/torrents",
                {"content": b"x", "headers": {"Content-Type": "text/plain"}},
                415,
                "send",
            ),
            (
                "POST",
                "/api/v1/torrents",
                {"content": b"--x--", "headers": {"Content-Type": "multipart/form-data"}},
                400,
                "boundary",
            ),
            ("POST", "/api/v1/torrents", {"files": {"other": ("a", b"b")}}, 400, "'torrent' file"),
            (
                "POST",
                "/api/v1/torrents",
                {"json": {"path": "/x.torrent", "peers": ["nohost"]}},
                400,
                "bad peer",
            ),
            (
                "POST",
                "/api/v1/torrents",
                {"json": {"path": "/x.torrent", "trackers": ["ftp://x"]}},
                400,
                "tracker",
            ),
            ("POST", "/api/v1/torrents", {"json": {"index_name": "film"}}, 400, "index_url"),
            (
                "POST",
                "/api/v1/torrents",
                {"json": {"index_name": "film", "index_url": "http://127.0.0.1:1"}},
                400,
                "index",
            ),
            (
                "POST",
                "/api/v1/torrents",
                {"json": {"index_name": "film", "index_url": "gopher://x"}},
                400,
                "index",
            ),
            (
                "POST",
                "/api/v1/torrents",
                {
                    "json": {
                        "torrent_base64": base64.b64encode(raw).decode(),
                        "save_path": str(tmp_path / "d" / "token"),
                    }
                },
                400,
                "not a directory",
            ),
            (
                "PUT",
                f"/api/v1/torrents/{tid}/priorities",
                {"json": {"priorities": [1]}},
                400,
                "give 2 priorities",
            ),
            ("PUT", f"/api/v1/torrents/{tid}/priorities", {"json": {"priorities": [1, 9]}}, 400, "0..7"),
            ("PUT", f"/api/v1/torrents/{tid}/priorities", {"json": {"priorities": "x"}}, 422, "priorities"),
            ("PUT", f"/api/v1/torrents/{tid}/limits", {"json": {"download": -1}}, 422, "download"),
            ("PUT", "/api/v1/limits", {"json": {"upload": "fast"}}, 422, "upload"),
            ("GET", "/api/v1/events?interval=0", {}, 422, "interval"),
        ]
        for method, path, kw, status, text in cases:
            reply = await c.request(method, path, **kw)
            assert reply.status_code == status, (method, path, kw, reply.status_code, reply.text)
            err = reply.json()["error"]
            assert text.lower() in err["message"].lower(), (path, kw, err)
            assert err["code"]

        # oversized uploads: declared length, chunked, and multipart → 413 before any parsing
        big = b"d" + b"x" * (MAX_TORRENT_BYTES + 100 * 1024)
        reply = await c.post(
            "/api/v1/torrents", content=big, headers={"Content-Type": "application/x-bittorrent"}
        )
        assert reply.status_code == 413 and "larger than" in reply.json()["error"]["message"]

        async def chunks():
            for _ in range(20):
                yield b"x" * (1024 * 1024)

        reply = await c.post(
            "/api/v1/torrents", content=chunks(), headers={"Content-Type": "application/x-bittorrent"}
        )
        assert reply.status_code == 413
        reply = await c.post("/api/v1/torrents", files={"torrent": ("big.torrent", big)})
        assert reply.status_code == 413
        # a large-but-allowed file that is not a torrent: 400 from the parser, not a 413
        reply = await c.post(
            "/api/v1/torrents",
            content=b"x" * (MAX_TORRENT_BYTES - 10),
            headers={"Content-Type": "application/x-bittorrent"},
        )
        assert reply.status_code == 400
        # still alive and unchanged
        assert [x["id"] for x in (await c.get("/api/v1/torrents")).json()["torrents"]] == [tid]


async def test_every_request_needs_the_token(tmp_path: Path) -> None:
    """Every /api/v1 operation of the OpenAPI document, reads and the event stream included, answers
    401 without the right bearer token; only the static shell and the API description are open; a
    file's stream URL also opens with its own key, and that key opens nothing else (issue 16)."""
    content = make_content(tmp_path / "seed", files=2, size=20_000)
    raw, t = torrent_of(content)
    async with seeder(content, t) as (s, _), running_daemon(tmp_path / "d") as r, r.client() as c:
        tid = (
            await c.post(
                "/api/v1/torrents",
                files={"torrent": ("a.torrent", raw)},
                data={"peers": f"127.0.0.1:{s.port}"},
            )
        ).json()["id"]
        spec = (await c.get("/openapi.json")).json()
        ops = [
            (method.upper(), path.replace("{torrent_id}", tid).replace("{file_index}", "0"))
            for path, methods in spec["paths"].items()
            for method in methods
        ]
        assert len(ops) >= 14 and ("GET", "/api/v1/events") in ops and ("GET", "/api/v1/stats") in ops
        assert all(path.startswith("/api/v1/") for _, path in ops)
        async with r.client(auth=False) as anon:
            for method, path in [*ops, ("HEAD", f"/api/v1/torrents/{tid}/files/0/stream")]:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
                    reply = await anon.request(method, path, headers=headers, json={})
                    assert reply.status_code == 401, (method, path, headers, reply.text)
                    if method != "HEAD":
                        assert reply.json()["error"]["code"] == "unauthorized"
            # open: the web UI's static shell and the API's own description (no user data)
            for path in ("/", "/favicon.svg", "/favicon.ico", "/openapi.json", "/api/docs"):
                assert (await anon.get(path)).status_code == 200, path
            d = await _complete(c, tid)
            url = d["files"][1]["stream_url"]
            assert "?key=" in url
            got = await anon.get(url, headers={"Range": "bytes=0-9"})
            assert got.status_code == 206 and got.content == (content / "track01.bin").read_bytes()[:10]
            key = url.split("?key=")[1]
            for other in (
                f"/api/v1/torrents/{tid}/files/0/stream?key={key}",  # another file
                f"/api/v1/torrents/{tid}?key={key}",  # another endpoint
                f"/api/v1/torrents/{tid}/files/1/stream?key={key[:-1]}0",
                f"/api/v1/torrents/{tid}/files/1/stream?key=",
            ):
                assert (await anon.get(other)).status_code == 401, other
        # nothing changed
        assert (await c.get("/api/v1/limits")).json() == {"download_limit": 0, "upload_limit": 0}
        # security scheme documented
        assert "HTTPBearer" in json.dumps(spec["components"]["securitySchemes"])


async def test_host_guard_against_dns_rebinding(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "d") as r:
        app = create_app(r.daemon, TOKEN, allowed_hosts={"127.0.0.1", "localhost", "::1"})
        transport = httpx.ASGITransport(app=app)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:9091", headers=auth
        ) as c:
            assert (await c.get("/api/v1/stats")).status_code == 200
            evil = await c.get("/api/v1/stats", headers={"Host": "evil.example:9091"})
            assert evil.status_code == 421
            assert (await c.get("/", headers={"Host": "localhost:9091"})).status_code == 200


async def test_limits_priorities_recheck_stats_events(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", files=3, size=100_000)
    raw, t = torrent_of(content, piece_length=16384)
    async with seeder(content, t) as (s, _), running_daemon(tmp_path / "d") as r, r.client() as c:
        # the event stream: a snapshot at once, then events as they happen
        async with c.stream("GET", "/api/v1/events", params={"interval": 0.2}) as ev:
            assert ev.headers["content-type"].startswith("text/event-stream")
            lines = ev.aiter_lines()

            async def next_event() -> tuple[str, dict]:
                kind = ""
                async for line in lines:
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        return kind, json.loads(line[6:])
                raise AssertionError("stream ended")

            kind, data = await asyncio.wait_for(next_event(), 10)
            assert kind == "torrents" and data["torrents"] == [] and data["stats"]["torrents"] == 0
            assert data["stats"]["encryption"] == "prefer"  # the session's MSE/PE policy
            reply = await c.post(
                "/api/v1/torrents",
                json={
                    "torrent_base64": base64.b64encode(raw).decode(),
                    "peers": [f"127.0.0.1:{s.port}"],
                    "priorities": [1, 0, 1],
                },
            )
            assert reply.status_code == 201, reply.text
            tid = reply.json()["id"]
            seen: set[str] = set()

            async def until(kinds: set[str]) -> None:
                while not kinds <= seen:
                    k, d = await next_event()
                    seen.add(k)
                    if k == "torrents":
                        assert {x["id"] for x in d["torrents"]} == {tid}

            await asyncio.wait_for(until({"added", "started", "torrents"}), 20)

        async def partial_done() -> dict | None:
            d = await _details(c, tid)
            return d if d["state"] == "seeding" else None

        d = await wait_for(partial_done, 40)
        assert [f["priority"] for f in d["files"]] == [1, 0, 1]
        assert d["files"][0]["progress"] == 1.0 and d["files"][2]["progress"] == 1.0
        assert d["files"][1]["progress"] < 1.0 and d["wanted_size"] < d["total_size"]
        base = Path(d["save_path"], "album")
        assert not (base / "track01.bin").exists()
        # want the skipped file after all: downloads it
        pr = await c.put(f"/api/v1/torrents/{tid}/priorities", json={"priorities": [1, 2, 1]})
        assert pr.status_code == 200 and [f["priority"] for f in pr.json()["files"]] == [1, 2, 1]
        await _complete(c, tid)
        assert (base / "track01.bin").read_bytes() == (content / "track01.bin").read_bytes()

        # per-torrent and global limits
        lim = (
            await c.put(f"/api/v1/torrents/{tid}/limits", json={"download": 100_000, "upload": 50_000})
        ).json()
        assert lim["download_limit"] == 100_000 and lim["upload_limit"] == 50_000
        assert r.daemon._entries[tid].handle._rt.download_limiter.rate == 100_000  # type: ignore[union-attr]
        assert (await c.put("/api/v1/limits", json={"download": 1_000_000})).json() == {
            "download_limit": 1_000_000,
            "upload_limit": 0,
        }
        assert (await c.get("/api/v1/limits")).json()["download_limit"] == 1_000_000
        assert r.daemon.session.download_limiter.rate == 1_000_000
        stats = (await c.get("/api/v1/stats")).json()
        assert stats["torrents"] == 1 and stats["seeding"] == 1 and stats["download_limit"] == 1_000_000
        assert stats["listen_port"] == r.daemon.session.port

        # recheck finds a corrupted piece
        clip = base / "clip.mp4"
        data = bytearray(clip.read_bytes())
        data[5] ^= 0xFF
        clip.write_bytes(bytes(data))
        (await c.post(f"/api/v1/torrents/{tid}/pause")).raise_for_status()
        rc = await c.post(f"/api/v1/torrents/{tid}/recheck")
        assert rc.status_code == 200 and rc.json()["state"] == "checking"  # in the background

        async def rechecked() -> dict | None:
            d = await _details(c, tid)
            return d if d["state"] == "paused" else None  # a paused torrent stays paused

        d = await wait_for(rechecked, 40)
        assert d["pieces_done"] == t.info.num_pieces - 1 and d["progress"] < 1.0
        assert d["files"][0]["progress"] < 1.0
        # resumed: the bad piece is fetched again from the seeder
        (await c.post(f"/api/v1/torrents/{tid}/resume")).raise_for_status()
        await _complete(c, tid)
        assert clip.read_bytes() == (content / "clip.mp4").read_bytes()
        # recheck while running: hashes again, all good
        rc = await c.post(f"/api/v1/torrents/{tid}/recheck")
        assert rc.status_code == 200
        d = await _complete(c, tid)
        assert d["pieces_done"] == t.info.num_pieces


async def test_every_json_endpoint_answers_400_for_deep_nesting_and_lone_surrogates(tmp_path: Path) -> None:
    """Issue 16: JSON nested 50,000 deep and a lone surrogate (as a ``\\ud800`` escape and as its raw
    UTF-8 bytes) get 400 with the API's error JSON from every endpoint that reads a JSON body (found
    in the OpenAPI document, so a new one is swept too); the rest never answer 5xx."""
    raw, _t = torrent_of(make_content(tmp_path / "seed", files=2, size=20_000))
    async with running_daemon(tmp_path / "d") as r, r.client() as c:
        tid = await _add_paused(c, raw)
        spec = (await c.get("/openapi.json")).json()
        deep = b"[" * 50_000 + b"]" * 50_000
        bodies = {
            "deep": b'{"priorities": ' + deep + b"}",
            "deep-top": deep,
            "surrogate": b'{"magnet": "\\ud800", "download": 1}',
            "surrogate-key": b'{"\\udfff": [1, 2]}',
            "raw-surrogate": b'{"save_path": "\xed\xa0\x80"}',
        }
        swept = []
        for path, ops in spec["paths"].items():
            url = path.replace("{torrent_id}", tid).replace("{file_index}", "0")
            for method, op in ops.items():
                if method == "get":  # no body (and /events never ends)
                    continue
                takes_json = "application/json" in op.get("requestBody", {}).get("content", {})
                for name, body in bodies.items():
                    reply = await c.request(
                        method.upper(), url, content=body, headers={"Content-Type": "application/json"}
                    )
                    if takes_json:
                        assert reply.status_code == 400, (method, path, name, reply.text)
                        assert reply.json()["error"]["code"] == "bad_json", (method, path, name)
                    else:
                        assert reply.status_code < 500, (method, path, name, reply.text)
                swept += [(method, path)] if takes_json else []
        assert len(swept) >= 4, swept
        # still alive, and no refused body changed anything
        assert (await c.get("/api/v1/stats")).status_code == 200
        assert (await c.get("/api/v1/limits")).json() == {"download_limit": 0, "upload_limit": 0}
