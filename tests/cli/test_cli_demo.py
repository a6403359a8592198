"""``bitswarm demo``: the whole local swarm (tracker, seeder, 3 leechers) in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_demo_swarm_completes_and_verifies() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bitswarm", "demo", "--size", "6", "--json", "--timeout", "100"],
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert len(summary["leechers"]) == 3
    assert all(r["sha256_ok"] and r["exit_code"] == 0 for r in summary["leechers"])
    # one leecher each: by the .torrent (tracker), by a magnet over the DHT only, by name via the index
    assert [r["via"] for r in summary["leechers"]] == ["torrent", "magnet/DHT", "index"]
    assert "tr=" not in summary["magnet"] and "x.pe=" not in summary["magnet"]


def test_demo_rejects_bad_options() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bitswarm", "demo", "--leechers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("bitswarm: error:")
    assert len(proc.stderr.strip().splitlines()) == 1
