"""The index client side: registering a seeded torrent (the .torrent is stored with the file),
keep-alives that re-register after the index forgot the peer, lookups by name and hash, and
``bitswarm share --index`` → ``bitswarm get`` between real processes (bytes identical)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys

import httpx
import pytest
from index_testlib import FAST_HASHER, FakeClock, close_pipes

from bitswarm.cli._peer import resume_dir_for
from bitswarm.index import IndexService, public_peer_id
from bitswarm.index.client import IndexClient, IndexClientError
from bitswarm.index.http import create_app
from bitswarm.metainfo import make_torrent, parse_torrent

CLI = [sys.executable, "-m", "bitswarm"]
GET = [*CLI, "get"]
LOCAL = ["--host", "127.0.0.1"]


@pytest.fixture
async def env(index_db, tmp_path):
    svc = await IndexService.open(index_db, clock=FakeClock(), hasher=FAST_HASHER)
    app = create_app(svc)
    transport = httpx.ASGITransport(app=app)
    yield svc, transport
    await app.state.federation.aclose()
    await svc.close()


def torrent_bytes(tmp_path, name="clip.bin", size=70_000) -> bytes:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return make_torrent(path, piece_length=16384).data


async def test_register_share_lookup_and_reregister(env, tmp_path):
    svc, transport = env
    data = torrent_bytes(tmp_path)
    t = parse_torrent(data)
    async with IndexClient("http://alice:pw-1@idx", transport=transport) as idx:
        reg = await idx.register_share(data, "127.0.0.5", 6881)
        by_name = await idx.lookup("clip.bin")
        assert by_name.id == reg.file_id and by_name.has_torrent
        assert by_name.size == 70_000
        assert by_name.info_hash_v1 == t.info_hash_v1.hex() and by_name.info_hash_v2 == t.info_hash_v2.hex()
        assert [(p.ip, p.port, p.online) for p in by_name.peers] == [("127.0.0.5", 6881, True)]
        assert (await idx.lookup(t.info_hash_v1.hex())).id == reg.file_id
        assert (await idx.lookup(t.info_hash_v2.hex().upper())).id == reg.file_id
        assert (await idx.lookup("cli")).id == reg.file_id  # the single search match
        assert await idx.torrent(reg.file_id) == data
        await idx.keep_alive()
        # the index forgets the peer (expired, purged): the next keep-alive registers everything again
        user = await svc.authenticate("alice", "pw-1")
        assert await svc.delete_user_peers(user) == 1
        with pytest.raises(IndexClientError) as err:
            await idx.lookup("clip.bin")
        assert err.value.status == 404
        await idx.keep_alive()
        again = await idx.lookup("clip.bin")
        assert idx.peer_guid is not None and idx.peer_guid != reg.peer_guid
        assert [p.peer_id for p in again.peers] == [public_peer_id(idx.peer_guid)]  # never the guid
        await idx.logout_peer()
        assert not (await idx.file(again.id)).peers[0].online
    # a second share under the same name is a different file: the name is then ambiguous by prefix
    async with IndexClient("http://idx", transport=transport) as anon:
        await anon.register_share(torrent_bytes(tmp_path, "clip two.bin"), None, 7000)
        assert anon.username is not None and anon.username.startswith("seeder-")
        with pytest.raises(IndexClientError, match="ambiguous"):
            await anon.lookup("cli")
        assert (await anon.lookup("clip.bin")).name == "clip.bin"


async def test_native_api_checks_the_torrent(env, tmp_path):
    svc, transport = env
    data = torrent_bytes(tmp_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://idx/api/v1") as c:
        await c.post("/users", json={"username": "bob", "password": "pw"})
        token = (await c.post("/sessions", json={"username": "bob", "password": "pw"})).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        guid = (await c.post("/peers", json={"port": 5000}, headers=auth)).json()["guid"]
        base = {"peer_guid": guid, "name": "x.bin"}
        for bad in ("not base64!", base64.b64encode(b"d4:infoi1ee").decode(), ""):
            r = await c.post("/files", json={**base, "torrent": bad}, headers=auth)
            assert r.status_code == 400, r.text
        r = await c.post(
            "/files",
            json={**base, "torrent": base64.b64encode(data).decode(), "info_hash_v1": "0" * 40},
            headers=auth,
        )
        assert r.status_code == 400 and "does not match" in r.json()["error"]["message"]
        r = await c.post("/files", json={**base, "torrent": base64.b64encode(data).decode()}, headers=auth)
        assert r.status_code == 201 and r.json()["has_torrent"] is True
        fid = r.json()["id"]
        r = await c.get(f"/files/{fid}/torrent")
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-type"] == "application/x-bittorrent"
        r = await c.post("/files", json={**base, "name": "plain", "sha1": "1" * 40}, headers=auth)
        assert (await c.get(f"/files/{r.json()['id']}/torrent")).status_code == 404
        assert (await c.get("/files/999999/torrent")).status_code == 404
    # the torrent travels in the federation dump too
    dump = await svc.dump()
    assert [base64.b64decode(f["torrent"]) for f in dump["files"] if f["torrent"]] == [data]


def _json_lines_until(proc, event, limit=400):
    """Read the process's JSON lines until one has ``event`` (bounded; the test timeout bounds time)."""
    seen = []
    for _ in range(limit):
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"process ended before {event!r}: {seen[-5:]} {proc.stderr.read()}")
        msg = json.loads(line)
        seen.append(msg.get("event"))
        if msg.get("event") == event:
            return msg
    raise AssertionError(f"no {event!r} in {limit} lines")


def _stop(proc):
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    finally:
        close_pipes(proc)


@pytest.mark.timeout(90)
def test_share_then_get_between_processes(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    index = subprocess.Popen(
        [*CLI, "index", "--port", "0", "--json", "--db", str(tmp_path / "i.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    share = None
    try:
        url = json.loads(index.stdout.readline())["url"]
        a = tmp_path / "a"
        a.mkdir()
        payload = os.urandom(1_500_000)
        (a / "Big Buck Bunny.mkv").write_bytes(payload)
        share = subprocess.Popen(
            [
                *CLI,
                "share",
                "Big Buck Bunny.mkv",
                "--index",
                url,
                "--port",
                "0",
                "--host",
                "127.0.0.1",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=a,
        )
        indexed = _json_lines_until(share, "indexed")
        assert indexed["name"] == "Big Buck Bunny.mkv"
        # the README's search: any word finds it (every word had to match: issue 22)
        found = subprocess.run([*CLI, "search", "bunny holiday", "--index", url, "--json"],
                               capture_output=True, text=True, env=env, timeout=30)  # fmt: skip
        assert found.returncode == 0, found.stderr
        assert [f["name"] for f in json.loads(found.stdout)["items"]] == ["Big Buck Bunny.mkv"]
        out = subprocess.run(
            [
                *GET,
                "Big Buck Bunny.mkv",
                "--index",
                url,
                "-o",
                str(tmp_path / "b"),
                "--json",
                *LOCAL,
                "--timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=80,
        )
        assert out.returncode == 0, out.stderr
        done = json.loads(out.stdout.strip().splitlines()[-1])
        assert done["event"] == "complete" and done["file_id"] == indexed["file_id"]
        assert (tmp_path / "b" / "Big Buck Bunny.mkv").read_bytes() == payload
        # resume data in the XDG state directory, as the other one-shot commands keep it (issue 22)
        assert not (tmp_path / "b" / ".bitswarm").exists()
        resume = resume_dir_for(tmp_path / "b") / f"{done['info_hash']}.resume"
        assert resume.is_file()
        # an older bitswarm's DIR/.bitswarm is migrated
        (tmp_path / "c" / ".bitswarm").mkdir(parents=True)
        (tmp_path / "c" / ".bitswarm" / resume.name).write_bytes(resume.read_bytes())
        # by info-hash too, into another directory
        out = subprocess.run(
            [*GET, done["info_hash"], "--index", url, "-o", str(tmp_path / "c"), *LOCAL],
            capture_output=True,
            text=True,
            env=env,
            timeout=80,
        )
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "c" / "Big Buck Bunny.mkv").read_bytes() == payload
        assert not (tmp_path / "c" / ".bitswarm").exists() and "moved resume data" in out.stderr
        assert (resume_dir_for(tmp_path / "c") / resume.name).is_file()
        out = subprocess.run(
            [*CLI, "get", "no such film", "--index", url, "-o", str(tmp_path / "d")],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert out.returncode == 2 and "no file named" in out.stderr
        # stopping the seeder logs its peer out of the index
        _stop(share)
        detail = httpx.get(f"{url}/api/v1/files/{indexed['file_id']}").json()
        assert [p["online"] for p in detail["peers"]] == [False]
    finally:
        if share is not None:
            _stop(share)
        _stop(index)
