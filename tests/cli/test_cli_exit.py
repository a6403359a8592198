"""``bitswarm download`` ends on the completion event, not on its next progress tick (issue 24).

The downloader runs with a progress interval of an hour: it still exits as soon as its last piece is
verified, after printing ``torrent_completed`` and a final ``progress`` line. Real processes on
loopback; nothing is timed beyond the test's own timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BW = [sys.executable, "-m", "bitswarm"]
LOOP = ["--port", "0", "--host", "127.0.0.1", "--no-dht", "--json"]
#: ``bitswarm`` with the progress tick set to an hour (the attribute must exist: it is the tick)
SLOW_TICK = (
    "import sys, bitswarm.cli._peer as p\n"
    "assert hasattr(p, 'PROGRESS_INTERVAL')\n"
    "p.PROGRESS_INTERVAL = 3600.0\n"
    "from bitswarm.cli import main\n"
    "sys.argv[0] = 'bitswarm'\n"
    "main()\n"
)


@pytest.mark.timeout(90)
def test_download_exits_on_completion_not_on_a_progress_tick(tmp_path: Path) -> None:
    data = tmp_path / "seed" / "f.bin"
    data.parent.mkdir()
    data.write_bytes(os.urandom(300_000))
    torrent = tmp_path / "f.torrent"
    subprocess.run([*BW, "create", str(data), "-o", str(torrent), "-q"], check=True, timeout=60)
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    seeder = subprocess.Popen(
        [*BW, "seed", str(torrent), "--data", str(data.parent), *LOOP],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert seeder.stdout is not None
        port = None
        for line in seeder.stdout:
            msg = json.loads(line) if line.startswith("{") else {}
            if msg.get("event") == "seeding":
                port = msg["port"]
                break
        assert port, "the seeder never started seeding"
        out = tmp_path / "out"
        done = subprocess.run(
            [sys.executable, "-c", SLOW_TICK, "download", str(torrent), "-o", str(out),
             "--peer", f"127.0.0.1:{port}", *LOOP],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
        kinds = [m["event"] for m in lines]
        assert "torrent_completed" in kinds
        # after the completion: the final progress line(s), nothing waited for in between
        tail = lines[kinds.index("torrent_completed") + 1 :]
        assert tail and tail[-1]["event"] == "progress" and tail[-1]["state"] == "seeding"
        assert (out / "f.bin").read_bytes() == data.read_bytes()
    finally:
        seeder.terminate()
        seeder.wait(10)
