"""The peer programs of seeds 001 and 002 as real processes against a real ``bitswarm index``:
two ``bitswarm index-peer`` peers (binary protocol: REGISTER, LOGIN, SEARCH, BROWSE, SHOW_PEERS,
download from the holder, LOGOUT) and two ``bitswarm centralized-peer`` peers (POST /resource,
GET /resource, download from the holder, the action port's commands) — bytes compared."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
CLI = [sys.executable, "-m", "bitswarm"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


class Proc:
    """A long-running bitswarm process whose first stdout line is a JSON object."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.p = subprocess.Popen(
            [*CLI, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )
        line = self.p.stdout.readline()  # blocks until the process printed its line (or died)
        if not line:
            self.p.kill()
            raise AssertionError(self.p.stderr.read())
        self.info = json.loads(line)

    def stop(self) -> str:
        """SIGTERM, exit code 0; the rest of stdout."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=20)
        assert self.p.returncode == 0, err
        return out

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate(timeout=20)


@pytest.fixture
def index(tmp_path):
    proc = Proc(["index", "--host", "127.0.0.1", "--port", "0", "--binary-port", "0", "--json",
                 "--db", str(tmp_path / "i.db")], tmp_path)  # fmt: skip
    yield proc.info
    proc.kill()


def folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    d = root / name
    d.mkdir()
    for fname, data in files.items():
        (d / fname).write_bytes(data)
    return d


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=60)


def cpeer(server: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``bitswarm centralized-peer 127.0.0.1 SERVER 0 0 ARGS...`` (a one-shot --get)."""
    return run("centralized-peer", "127.0.0.1", server, "0", "0", *args)


# -- seed 001 ---------------------------------------------------------------------------------------


def test_two_index_peers_register_search_download_logout(index, tmp_path):
    server = f"127.0.0.1:{index['binary_port']}"
    a_data, b_data = os.urandom(1_500_000), os.urandom(200_000)
    a_dir = folder(tmp_path, "a", {"alpha movie.mkv": a_data})
    b_dir = folder(tmp_path, "b", {"beta song.mp3": b_data})
    common = ["--server", server, "--json"]
    alice = Proc(["index-peer", "share", str(a_dir), "-u", "alice", "-p", "pw-a", "--host", "127.0.0.1",
                  *common], tmp_path)  # fmt: skip
    bob = Proc(["index-peer", "share", str(b_dir), "-u", "bob", "-p", "pw-b", "--host", "127.0.0.1",
                *common], tmp_path)  # fmt: skip
    try:
        assert alice.info["event"] == "registered" and alice.info["files"] == 1
        alice_id = [*common, "--id", alice.info["peer_id"]]
        bob_id = [*common, "--id", bob.info["peer_id"]]
        # SEARCH carries the port alice serves her files on (the 4th LOGIN line)
        out = run("index-peer", "search", "alpha", "-u", "bob", "-p", "pw-b", *bob_id)
        assert out.returncode == 0, out.stderr
        (hit,) = [json.loads(line) for line in out.stdout.splitlines()]
        assert hit["filename"] == "alpha movie.mkv" and hit["username"] == "alice"
        assert hit["peer_port"] == alice.info["port"] and hit["peer_ip"] == "127.0.0.1"
        assert hit["sha1"] == hashlib.sha1(a_data).hexdigest()
        out = run("index-peer", "browse", hit["peer_id"], "-u", "bob", "-p", "pw-b", "--server", server,
                  "--id", bob.info["peer_id"])  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"alpha movie.mkv|{hit['size_mb']}|{hit['sha1']}"
        out = run("index-peer", "peers", "--status", "online", "-u", "bob", "-p", "pw-b", *bob_id)
        online = {json.loads(line)["username"] for line in out.stdout.splitlines()}
        assert {"alice", "bob"} <= online
        # each peer downloads the other's file from the peer holding it
        got_b, got_a = tmp_path / "got-b", tmp_path / "got-a"
        got_b.mkdir()
        got_a.mkdir()
        out = run(
            "index-peer", "get", "alpha movie.mkv", "-u", "bob", "-p", "pw-b", "-o", f"{got_b}", *bob_id
        )
        assert out.returncode == 0, out.stderr
        assert (got_b / "alpha movie.mkv").read_bytes() == a_data
        out = run("index-peer", "get", "beta song.mp3", "-u", "alice", "-p", "pw-a", "-o", f"{got_a}",
                  *alice_id)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert (got_a / "beta song.mp3").read_bytes() == b_data
        # `bitswarm get` (native API) fetches a binary-registered file from its peer too (no .torrent)
        got_c = tmp_path / "got-c"
        out = run("get", "beta song.mp3", "--index", index["url"], "-o", str(got_c), "--host", "127.0.0.1",
                  "--json")  # fmt: skip
        assert out.returncode == 0, out.stderr
        done = json.loads(out.stdout)
        assert (done["size"], done["info_hash"], done["path"]) == (
            200_000,
            None,
            str(got_c / "beta song.mp3"),
        )
        assert (got_c / "beta song.mp3").read_bytes() == b_data
        # REGISTER_UPDATE: a new file in alice's folder is found after a rescan... (see the library
        # test); LOGOUT on SIGTERM: alice is offline and SEARCH no longer lists her file
        rest = alice.stop()
        assert json.loads(rest.splitlines()[-1])["event"] == "logged_out"
        out = run("index-peer", "search", "alpha", "-u", "bob", "-p", "pw-b", *bob_id)
        assert out.returncode == 0 and out.stdout == ""
        out = run(
            "index-peer", "get", "alpha movie.mkv", "-u", "bob", "-p", "pw-b", "-o", f"{got_b}", *bob_id
        )
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and "no online peer" in out.stderr
    finally:
        alice.kill()
        bob.stop()


def test_index_peer_errors_are_one_line(index, tmp_path):
    server = f"127.0.0.1:{index['binary_port']}"
    out = run("index-peer", "search", "x", "--server", server, "-u", "carol", "-p", "pw")
    assert out.returncode == 0, out.stderr
    out = run("index-peer", "search", "x", "--server", server, "-u", "carol", "-p", "wrong")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "index refused REGISTER" in out.stderr
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    out = run("index-peer", "peers", "--server", f"127.0.0.1:{dead}", "-u", "carol", "-p", "pw")
    assert out.returncode == 1 and out.stderr.startswith("bitswarm: error: cannot connect")  # unreachable
    out = run("index-peer", "peers", "--server", "nonsense", "-u", "carol", "-p", "pw")
    assert out.returncode == 2 and "HOST:PORT" in out.stderr
    help_text = run("index-peer", "--help").stdout
    for word in ("REGISTER", "LOGIN", "KEEP_ALIVE", "LOGOUT", "SEARCH", "BROWSE", "SHOW_PEERS"):
        assert word in help_text


# -- seed 002 ---------------------------------------------------------------------------------------


def test_two_centralized_peers_share_and_get(index, tmp_path):
    server = f"127.0.0.1:{index['http_port']}"
    a_data, b_data = os.urandom(900_000), os.urandom(50_000)
    a_dir = folder(tmp_path, "a", {"test.csv": a_data})
    b_dir = folder(tmp_path, "b", {"other file.bin": b_data})
    a_out = tmp_path / "a-out"
    a_out.mkdir()
    alice = Proc(["centralized-peer", "127.0.0.1", server, "0", "0", "--share", str(a_dir), "-o", str(a_out),
                  "--json"], tmp_path)  # fmt: skip
    bob = Proc(["centralized-peer", "127.0.0.1", server, "0", "0", "--share", str(b_dir), "--json"], tmp_path)
    try:
        assert alice.info["resources"] == ["test.csv"] and alice.info["listen_port"] > 0
        got = tmp_path / "got"
        got.mkdir()
        out = cpeer(server, "--get", "test.csv", "--output", str(got))
        assert out.returncode == 0, out.stderr
        assert (got / "test.csv").read_bytes() == a_data
        assert f"127.0.0.1:{alice.info['listen_port']}" in out.stdout
        out = run("get", "other file.bin", "--index", index["url"], "-o", str(got), "--host", "127.0.0.1")
        assert out.returncode == 0, out.stderr
        assert (got / "other file.bin").read_bytes() == b_data
        # alice's command interface on her action port: find and get bob's file
        with socket.create_connection(("127.0.0.1", alice.info["action_port"]), timeout=30) as s:
            f = s.makefile("rwb")
            f.write(b'find "other file.bin"\nget "other file.bin"\nlist\nbogus\nquit\n')
            f.flush()
            found, fetched, listed, bad = (json.loads(f.readline()) for _ in range(4))
            assert f.readline() == b""  # quit closed the connection
        assert [(h["ip"], h["port"]) for h in found["holders"]] == [("127.0.0.1", bob.info["listen_port"])]
        assert fetched["ok"] and (a_out / "other file.bin").read_bytes() == b_data
        assert [r["name"] for r in listed["resources"]] == ["test.csv"]
        assert bad == {"ok": False, "error": "unknown command 'bogus' (try help)"}
        # no holder answers: alice is gone (still registered, but nothing serves the file)
        alice.stop()
        out = cpeer(server, "--get", "test.csv", "--output", str(tmp_path))
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr  # failed at run time
        assert "no holder of 'test.csv' answered" in out.stderr
        out = cpeer(server, "--get", "nothing.txt", "-o", str(got))
        assert out.returncode == 1 and "no peer holds 'nothing.txt'" in out.stderr
    finally:
        alice.kill()
        bob.stop()


def test_centralized_peer_usage_errors(tmp_path):
    out = run("centralized-peer", "127.0.0.1", "127.0.0.1:1", "0", "70000", "--get", "x")
    assert out.returncode == 2 and "LISTEN_PORT" in out.stderr
    out = cpeer("127.0.0.1:1", "--share", str(tmp_path), "--get", "x")
    assert out.returncode == 2 and "not both" in out.stderr
    out = cpeer("127.0.0.1:1", "--get", "x")  # nothing listens: the service is unreachable
    assert out.returncode == 1 and out.stderr.count("\n") == 1


def test_bitswarm_share_registers_the_whole_file_sha1(index, tmp_path):
    """A file shared with ``bitswarm share --index`` shows its SHA-1 in a seed-001 SEARCH."""
    data = os.urandom(100_000)
    (tmp_path / "shared clip.bin").write_bytes(data)
    share = subprocess.Popen(
        [*CLI, "share", "shared clip.bin", "--index", index["url"], "--port", "0", "--host", "127.0.0.1",
         "--no-dht", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    try:
        for _ in range(400):
            line = share.stdout.readline()
            assert line, share.stderr.read()
            if json.loads(line).get("event") == "indexed":
                break
        out = run("index-peer", "search", "clip", "--server", f"127.0.0.1:{index['binary_port']}",
                  "-u", "dave", "-p", "pw", "--json")  # fmt: skip
        assert out.returncode == 0, out.stderr
        (hit,) = [json.loads(line) for line in out.stdout.splitlines()]
        assert hit["filename"] == "shared clip.bin" and hit["sha1"] == hashlib.sha1(data).hexdigest()
    finally:
        share.send_signal(signal.SIGTERM)
        share.communicate(timeout=20)
