"""``bitswarm index`` as a real process (port 0, --json, config.toml, SIGTERM) and the
``bitswarm search`` / ``bitswarm peers`` clients against it; restart keeps the data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest
from index_testlib import close_pipes

pytestmark = pytest.mark.timeout(60)
CLI = [sys.executable, "-m", "bitswarm"]


def start(tmp_path, *extra):
    proc = subprocess.Popen(
        [
            *CLI,
            "index",
            "--port",
            "0",
            "--binary-port",
            "0",
            "--json",
            "--db",
            str(tmp_path / "i.db"),
            *extra,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = proc.stdout.readline()  # blocks until the server printed its ports (or died)
    if not line:
        proc.kill()
        proc.wait(timeout=5)
        err = proc.stderr.read()
        close_pipes(proc)
        raise AssertionError(err)
    return proc, json.loads(line)


def stop(proc):
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        close_pipes(proc)


def test_index_process_search_peers_and_restart(tmp_path):
    (tmp_path / "config.toml").write_text(
        'name = "cli-tracker"\n[[trackers]]\nname = "other"\nip = "127.0.0.1:1"\n'
    )
    proc, info = start(tmp_path)
    try:
        assert info["http_port"] > 0 and info["binary_port"] > 0
        url = info["url"]
        r = httpx.post(
            f"{url}/add_file",
            json={"name": "Sintel 4k.mkv", "full_hash": "S1", "chunks": [], "guid": None, "seq_number": 0},
        )
        assert r.json()["success"] is True
        assert httpx.get(f"{url}/tracker_list").json()["trackers"] == [{"name": "other", "ip": "127.0.0.1:1"}]
        out = subprocess.run(
            [*CLI, "search", "sint", "--index", url, "--json"], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert [i["name"] for i in json.loads(out.stdout)["items"]] == ["Sintel 4k.mkv"]
        out = subprocess.run([*CLI, "peers", "--index", url, "--json"], capture_output=True, text=True)
        assert json.loads(out.stdout)["total"] == 1
        out = subprocess.run([*CLI, "search", "sintel", "--index", url], capture_output=True, text=True)
        assert "Sintel" in out.stdout
    finally:
        stop(proc)
    proc, info = start(tmp_path)
    try:
        out = subprocess.run(
            [*CLI, "search", "4k", "--index", info["url"], "--json"], capture_output=True, text=True
        )
        assert json.loads(out.stdout)["total"] == 1
    finally:
        stop(proc)


def test_client_errors(tmp_path):
    out = subprocess.run(
        [*CLI, "search", "x", "--index", "http://127.0.0.1:1"], capture_output=True, text=True
    )
    assert out.returncode == 1 and out.stderr.startswith("bitswarm: error:")  # unreachable: 1 (docs/cli.md)
    (tmp_path / "bad.toml").write_text("port = 'x'\n")
    out = subprocess.run(
        [*CLI, "index", "--config", str(tmp_path / "bad.toml")], capture_output=True, text=True
    )
    assert out.returncode == 2 and "port" in out.stderr
