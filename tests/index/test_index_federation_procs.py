"""Federation (seed 000 tracker_sync / new_tracker) between real ``bitswarm index`` processes on
port 0: three servers joined with ``--peer-index`` converge after registrations on each; a fourth
joins later, gets the full database at start and takes part in the floods. Also ``--db
postgresql://…`` through the CLI, with a restart."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import httpx
import pytest
from index_testlib import FED_KEY, close_pipes

from testtools import eventually

CLI = [sys.executable, "-m", "bitswarm"]


def start(tmp_path, name, *extra):
    proc = subprocess.Popen(
        [*CLI, "index", "--host", "127.0.0.1", "--port", "0", "--json", "--name", name, *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "BITSWARM_INDEX_FEDERATION_KEY": FED_KEY},
    )
    line = proc.stdout.readline()  # printed once listening and every --peer-index dump is loaded
    if not line:
        proc.kill()
        proc.wait(timeout=5)
        err = proc.stderr.read()
        close_pipes(proc)
        raise AssertionError(err)
    return proc, json.loads(line)["url"]


def stop(proc):
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    finally:
        close_pipes(proc)


def names(url):
    return sorted(f["name"] for f in httpx.get(f"{url}/file_list", timeout=5).json()["files"])


def wait_for(urls, expected, deadline_s=15.0):
    """Poll (bounded in time and count) until every server lists exactly ``expected``."""
    got: dict = {}

    def listed() -> bool:
        got.update({u: names(u) for u in urls})
        return all(v == expected for v in got.values())

    with contextlib.suppress(AssertionError):  # the caller compares what was listed last
        eventually(listed, timeout=deadline_s, interval=0.05)
    return got


def add(url, name, full_hash):
    r = httpx.post(
        f"{url}/add_file",
        json={"name": name, "full_hash": full_hash, "chunks": [], "guid": None, "seq_number": 0},
        timeout=5,
    )
    assert r.json()["success"] is True, r.text
    return r.json()["guid"]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_three_processes_converge_and_a_fourth_joins(tmp_path):
    procs = []
    try:
        a, url_a = start(tmp_path, "a", "--db", str(tmp_path / "a.db"))
        procs.append(a)
        b, url_b = start(tmp_path, "b", "--db", str(tmp_path / "b.db"), "--peer-index", url_a)
        procs.append(b)
        c, url_c = start(tmp_path, "c", "--db", str(tmp_path / "c.db"), "--join", url_a)
        procs.append(c)
        urls = [url_a, url_b, url_c]
        hosts = {u: u.split("://")[1] for u in urls}
        for u in urls:  # a full mesh: everyone knows the two others
            known = {t["ip"] for t in httpx.get(f"{u}/tracker_list").json()["trackers"]}
            assert known == set(hosts.values()) - {hosts[u]}, (u, known)
        guid = add(url_a, "from a.mkv", "HA")
        add(url_b, "from b.mkv", "HB")
        add(url_c, "from c.mkv", "HC")
        expected = ["from a.mkv", "from b.mkv", "from c.mkv"]
        assert wait_for(urls, expected) == {u: expected for u in urls}
        # the peer registered on a is known (same guid) everywhere
        for u in urls:
            assert httpx.get(f"{u}/peer_guid/{guid}").json()["success"] is True
        d, url_d = start(tmp_path, "d", "--db", str(tmp_path / "d.db"), "--peer-index", url_b)
        procs.append(d)
        assert names(url_d) == expected  # the full dump arrived before d said it was ready
        add(url_d, "from d.mkv", "HD")
        add(url_c, "late c.mkv", "HL")
        expected = sorted([*expected, "from d.mkv", "late c.mkv"])
        everyone = [*urls, url_d]
        assert wait_for(everyone, expected) == {u: expected for u in everyone}
        r = httpx.request(
            "DELETE",
            f"{url_b}/deregister_file_by_hash",
            json={"file_hash": "HA", "guid": guid, "seq_number": 1},
        )
        assert r.json() == {"success": True}
        expected.remove("from a.mkv")
        assert wait_for(everyone, expected) == {u: expected for u in everyone}
    finally:
        for p in procs:
            stop(p)


@pytest.mark.timeout(60)
async def test_cli_on_postgresql_keeps_data_across_restart(tmp_path, pg_dsn):
    proc, url = start(tmp_path, "pg", "--db", pg_dsn)
    try:
        add(url, "Elephants Dream.ogv", "E1")
        search = subprocess.run(
            [*CLI, "search", "eleph", "--index", url, "--json"], capture_output=True, text=True, timeout=30
        )
        assert [i["name"] for i in json.loads(search.stdout)["items"]] == ["Elephants Dream.ogv"]
    finally:
        stop(proc)
    proc, url = start(tmp_path, "pg", "--db", pg_dsn)
    try:
        assert names(url) == ["Elephants Dream.ogv"]
        assert httpx.get(f"{url}/api/v1/search", params={"q": '"elephants dream"'}).json()["total"] == 1
    finally:
        stop(proc)
