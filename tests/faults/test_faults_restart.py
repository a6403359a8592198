"""Fault: the tracker and the file index SIGKILLed mid-swarm and restarted on the same databases.

Tracker (``bitswarm tracker --db trk.sqlite --mode whitelist``, counters flushed every 0.2 s and a
peer snapshot every 0.4 s through ``--config``): the torrent is whitelisted through ``/admin``, a
rate-limited seeder announces, leecher A completes (completed counter 1), leecher B starts. Once the
database holds that state (read-only look at the SQLite file) the tracker is SIGKILLed while B is
downloading and restarted on the same port and database. Expected: the whitelist, the completed
counter and the seeder (from the snapshot: the seeder does not announce again for 30 minutes) are
all there after the restart; B completes; leecher C, started after the restart with only the
tracker to find peers, gets the seeder from the restored snapshot and completes; the counter ends
at 3. Every leecher ends with the seeder's exact bytes.

Index (``bitswarm index --db idx.sqlite``): an account, a session, a peer and a file with its
.torrent (native API), a seed-000 ``add_file`` (P2PFlix, with its sequence number) and a seed-002
resource are registered; ``bitswarm get`` starts downloading through the index; the index is
SIGKILLed right after the last registration's reply, while the download runs. Expected after the
restart on the same database: the account logs in, the old bearer token still works, the peer, the
file (same .torrent bytes), the P2PFlix registration (a replay of its sequence number is refused
with 409) and the resource are all there; the interrupted ``get`` completes, and a new ``bitswarm
get`` through the restarted index finds the seeder and completes.
"""

from __future__ import annotations

import base64
import sqlite3
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults_testlib import (
    BITSWARM,
    JsonProc,
    Procs,
    create_torrent,
    free_port,
    make_payload,
    procs,
    sha256_file,
    start_rate_limited_seeder,
    wait_for,
)

from bitswarm.bencode import decode
from bitswarm.index import public_peer_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SIZE = 8 * 1024 * 1024
PIECE = 64 * 1024
SEED_RATE = 3 * 1024 * 1024
TOKEN = "fault-admin-token"


# ----------------------------------------------------------------------------------------------
# tracker


def scrape(url: str, info_hash: bytes) -> dict[str, int]:
    """The tracker's HTTP scrape entry for ``info_hash`` (``{}`` when it does not know it)."""
    q = url.replace("/announce", "/scrape") + "?info_hash=" + urllib.parse.quote_from_bytes(info_hash)
    with urllib.request.urlopen(q, timeout=5) as reply:
        files = decode(reply.read())[b"files"]
    entry = files.get(info_hash, {})
    return {k.decode(): int(v) for k, v in entry.items()}


def admin(base: str, method: str, path: str) -> Any:
    r = httpx.request(method, base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def db_state(db: Path, info_hash: bytes) -> tuple[set[bytes], int, set[bytes]]:
    """(whitelist, completed counter, peer addresses) as committed in the tracker's SQLite file."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        white = {bytes(r[0]) for r in con.execute("SELECT info_hash FROM whitelist")}
        row = con.execute("SELECT count FROM completed WHERE info_hash = ?", (info_hash,)).fetchone()
        peers = {bytes(r[0]) for r in con.execute("SELECT addr FROM peers WHERE info_hash = ?", (info_hash,))}
    finally:
        con.close()
    return white, (int(row[0]) if row else 0), peers


def start_tracker(group: Procs, tmp: Path, port: int, run: int) -> JsonProc:
    proc = group.start(
        [BITSWARM, "tracker", "--http", f"127.0.0.1:{port}", "--no-udp", "--db", str(tmp / "trk.sqlite"),
         "--mode", "whitelist", "--admin-token", TOKEN, "--config", str(tmp / "tracker.toml"), "--json"],
        stderr_path=tmp / f"tracker{run}.err", name=f"tracker#{run}",
    )  # fmt: skip
    bound = proc.wait_event(lambda e: "http" in e, 30, "the tracker to listen")
    assert bound["http"] == [f"http://127.0.0.1:{port}/announce"], bound
    return proc


def download(group: Procs, tmp: Path, torrent: Path, name: str) -> JsonProc:
    return group.start(
        [BITSWARM, "download", str(torrent), "-o", str(tmp / name), "--host", "127.0.0.1", "--port", "0",
         "--json"],
        stderr_path=tmp / f"{name}.err", name=name,
    )  # fmt: skip


def finish(proc: JsonProc, timeout: float = 60) -> None:
    proc.wait_event(lambda e: e["event"] == "torrent_completed", timeout, f"{proc.name} to complete")
    assert proc.wait_exit(30) == 0, proc.stderr_tail()
    proc.drain(10)


def test_tracker_sigkill_restart_keeps_whitelist_counters_and_peers(tmp_path: Path) -> None:
    t0 = time.monotonic()
    port = free_port()
    announce = f"http://127.0.0.1:{port}/announce"
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "tracker.toml").write_text("flush_every = 0.2\nsnapshot_every = 0.4\n")
    src = make_payload(tmp_path / "seed" / "swarm.bin", SIZE, seed=31)
    torrent = tmp_path / "swarm.torrent"
    ih = bytes.fromhex(create_torrent(src, torrent, piece=PIECE, trackers=[announce])["info_hash_v1"])
    want = sha256_file(src)
    db = tmp_path / "trk.sqlite"

    with procs() as group:
        tracker = start_tracker(group, tmp_path, port, 1)
        admin(base, "PUT", f"/admin/whitelist/{ih.hex()}")
        seeder, seed_port = start_rate_limited_seeder(
            tmp_path, torrent, src.parent, SEED_RATE, trackers=[announce]
        )
        group.add(seeder)
        wait_for(lambda: scrape(announce, ih).get("complete", 0) >= 1, 20, "the seeder's announce", 0.1)

        a = download(group, tmp_path, torrent, "leechA")
        finish(a)
        wait_for(lambda: scrape(announce, ih).get("downloaded") == 1, 10, "A's completed announce", 0.1)

        b = download(group, tmp_path, torrent, "leechB")
        b.wait_event(
            lambda e: e["event"] == "progress" and e["pieces_done"] >= e["num_pieces"] // 10, 30, "B to start"
        )
        # The periodic flush and snapshot have committed the state: whitelist, A's completion, the
        # seeder (and B) in the peer snapshot.
        wait_for(
            lambda: (s := db_state(db, ih))[0] == {ih} and s[1] == 1 and len(s[2]) >= 2,
            10, "the tracker database to hold the swarm", 0.1,
        )  # fmt: skip
        before = scrape(announce, ih)
        tracker.kill()
        assert tracker.proc.returncode == -9
        assert b.proc.poll() is None, "B finished before the tracker was killed"

        start_tracker(group, tmp_path, port, 2)
        after = scrape(announce, ih)
        white = admin(base, "GET", "/admin/whitelist")["info_hashes"]
        assert white == [ih.hex()], white
        assert after.get("downloaded") == 1, (before, after)
        assert after.get("complete", 0) >= 1, f"the seeder was not restored from the snapshot: {after}"

        finish(b)
        c = download(group, tmp_path, torrent, "leechC")
        finish(c)
        connected = {e["address"] for e in c.events if e["event"] == "peer_connected"}
        assert f"127.0.0.1:{seed_port}" in connected, connected
        wait_for(lambda: scrape(announce, ih).get("downloaded") == 3, 10, "3 completions", 0.1)
        for name in ("leechA", "leechB", "leechC"):
            assert sha256_file(tmp_path / name / "swarm.bin") == want, name
    print(
        f"\ntracker restart: scrape before kill {before}, after restart {after};"
        f" {time.monotonic() - t0:.1f} s"
    )


# ----------------------------------------------------------------------------------------------
# index


def start_index(group: Procs, tmp: Path, run: int) -> tuple[JsonProc, str]:
    proc = group.start(
        [BITSWARM, "index", "--host", "127.0.0.1", "--port", "0", "--db", str(tmp / "idx.sqlite"),
         "--config", str(tmp / "index.toml"), "--json"],
        stderr_path=tmp / f"index{run}.err", name=f"index#{run}",
    )  # fmt: skip
    ready = proc.wait_event(lambda e: "url" in e, 30, "the index to listen")
    return proc, str(ready["url"])


def call(client: httpx.Client, method: str, url: str, status: int, **kw: Any) -> Any:
    r = client.request(method, url, timeout=10, **kw)
    assert r.status_code == status, (method, url, r.status_code, r.text)
    return r.json() if r.content else None


def test_index_sigkill_restart_keeps_accounts_peers_and_files(tmp_path: Path) -> None:
    t0 = time.monotonic()
    (tmp_path / "index.toml").write_text("")
    src = make_payload(tmp_path / "seed" / "indexed.bin", SIZE, seed=32)
    torrent = tmp_path / "indexed.torrent"
    ih = create_torrent(src, torrent, piece=PIECE)["info_hash_v1"]
    blob = torrent.read_bytes()
    want = sha256_file(src)

    with procs() as group, httpx.Client() as http:
        seeder, seed_port = start_rate_limited_seeder(tmp_path, torrent, src.parent, SEED_RATE)
        group.add(seeder)
        index, url = start_index(group, tmp_path, 1)
        api = url + "/api/v1"
        # registrations through the three front ends
        call(http, "POST", api + "/users", 201, json={"username": "alice", "password": "correct horse 9"})
        token = call(
            http, "POST", api + "/sessions", 201, json={"username": "alice", "password": "correct horse 9"}
        )["token"]
        auth = {"Authorization": f"Bearer {token}"}
        peer = call(
            http, "POST", api + "/peers", 201, headers=auth, json={"ip": "127.0.0.1", "port": seed_port}
        )
        guid = peer["guid"]
        file = call(
            http, "POST", api + "/files", 201, headers=auth,
            json={"peer_guid": guid, "name": "indexed.bin", "torrent": base64.b64encode(blob).decode()},
        )  # fmt: skip
        assert file["info_hash_v1"] == ih and file["has_torrent"], file
        getter = group.start(
            [BITSWARM, "get", "indexed.bin", "--index", url, "-o", str(tmp_path / "get1"),
             "--host", "127.0.0.1", "--port", "0", "--json"],
            stderr_path=tmp_path / "get1.err", name="get#1",
        )  # fmt: skip
        # the getter has looked the file up and is downloading from the seeder
        seeder.wait_event(lambda e: e["event"] == "progress" and e["peers"] >= 1, 30, "get#1 to connect")
        flix = call(
            http, "POST", url + "/add_file", 200,
            json={"name": "flix.txt", "full_hash": "f" * 64, "guid": None, "seq_number": 7,
                  "chunks": [{"id": 0, "name": "c0", "chunk_hash": "a" * 64}]},
        )  # fmt: skip
        resource = {"peer_id": "0b7c4c1e-3c43-4a55-9f0e-5f4d8f0e1a01", "peer_ip": "127.0.0.1",
                    "peer_port": seed_port, "resource_name": "res.csv", "resource_path": "/data/res.csv",
                    "resource_hash": "d41d8cd98f00b204e9800998ecf8427e"}  # fmt: skip
        call(http, "POST", url + "/resource", 201, json=resource)
        index.kill()  # right after the last reply: no grace period, no clean shutdown
        assert index.proc.returncode == -9
        assert getter.proc.poll() is None, "the download finished before the index was killed"

        _, url2 = start_index(group, tmp_path, 2)
        api2 = url2 + "/api/v1"
        call(http, "POST", api2 + "/sessions", 201, json={"username": "alice", "password": "correct horse 9"})
        call(http, "POST", f"{api2}/peers/{guid}/keepalive", 200, headers=auth)  # the old token works
        got_peer = call(http, "GET", f"{api2}/peers/{guid}", 200)
        assert (got_peer["ip"], got_peer["port"]) == ("127.0.0.1", seed_port), got_peer
        assert [f["id"] for f in got_peer["files"]] == [file["id"]], got_peer
        got_file = call(http, "GET", f"{api2}/files/{file['id']}", 200)
        assert got_file["info_hash_v1"] == ih, got_file
        assert [p["id"] for p in got_file["peers"]] == [peer["id"]], got_file  # public id, not the guid
        r = http.get(f"{api2}/files/{file['id']}/torrent", timeout=10)
        assert r.status_code == 200 and r.content == blob
        assert call(http, "GET", f"{api2}/search", 200, params={"q": "indexed"})["total"] == 1
        flix_file = call(http, "GET", f"{url2}/file/{flix['file_id']}", 200)
        assert flix_file["name"] == "flix.txt" and [c["chunk_hash"] for c in flix_file["chunks"]] == [
            "a" * 64
        ]
        flix_peer = call(http, "GET", f"{url2}/peer_guid/{flix['guid']}", 200)
        assert flix_peer["expected_seq_number"] == 8, flix_peer
        replay = {
            "name": "again.txt",
            "full_hash": "e" * 64,
            "chunks": [],
            "guid": flix["guid"],
            "seq_number": 7,
        }
        call(http, "POST", url2 + "/add_file", 409, json=replay)
        hosted = call(http, "GET", url2 + "/resource", 200, json={"resource_name": "res.csv"})
        assert [p["peer_id"] for p in hosted] == [public_peer_id(resource["peer_id"])], hosted

        # the swarm: the interrupted download completes, a new one finds everything via the restart
        assert getter.wait_exit(60) == 0, getter.stderr_tail()
        getter.drain(10)
        getter2 = group.start(
            [BITSWARM, "get", "indexed.bin", "--index", url2, "-o", str(tmp_path / "get2"),
             "--host", "127.0.0.1", "--port", "0", "--json"],
            stderr_path=tmp_path / "get2.err", name="get#2",
        )  # fmt: skip
        assert getter2.wait_exit(60) == 0, getter2.stderr_tail()
        getter2.drain(10)
        for name, proc in (("get1", getter), ("get2", getter2)):
            done = [e for e in proc.events if e.get("event") == "complete"]
            assert done and done[0]["info_hash"] == ih, proc.events
            assert sha256_file(tmp_path / name / "indexed.bin") == want, name
    print(f"\nindex restart: every registration kept; {time.monotonic() - t0:.1f} s")
