"""``--proxy`` and ``--blocklist`` on the peer commands (issue 21): bad values are one line with the
documented exit code; a download through a real SOCKS5 server (Dante) completes and the seeder sees
the proxy's address only; a blocklist that covers the only peer keeps it from ever being dialed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "session"))

BW = [sys.executable, "-m", "bitswarm"]
ENV = {**os.environ, "BITSWARM_NO_PUBLIC_DHT": "1", "BITSWARM_NO_PORT_MAPPING": "1", "COLUMNS": "80"}


def make_torrent(tmp_path: Path, size: int = 300_000) -> Path:
    src = tmp_path / "src" / "data.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(size))
    subprocess.run([*BW, "create", str(src), "-o", str(tmp_path / "t.torrent"), "-q"], check=True,
                   capture_output=True, env=ENV)  # fmt: skip
    return src


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswarm: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--proxy", "http://proxy:3128"], 2, "--proxy: proxy must be socks5://"),
        (["--proxy", "socks5://proxy"], 2, "needs a host and a port"),
        (["--proxy", "socks5://h:1", "--transports", "utp"], 2, "TCP only"),
        (["--blocklist", "no-such.p2p"], 1, "No such file"),
        (["--blocklist", "junk.txt"], 1, "no blocklist rule"),
    ],
)
def test_bad_proxy_or_blocklist_is_one_line(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    make_torrent(tmp_path, 1000)
    (tmp_path / "junk.txt").write_text("<html>\n")
    proc = subprocess.run([*BW, "download", "t.torrent", "-o", "out", "--port", "0", "--no-dht", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, env=ENV)  # fmt: skip
    assert message in one_error_line(proc, code)


def _json_lines_until(proc: subprocess.Popen[str], want: str, timeout: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, object]] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            seen.append(json.loads(line))
            if seen[-1].get("event") == want:
                return seen
    raise AssertionError(f"no {want!r} line within {timeout} s: {[m.get('event') for m in seen][:20]}")


@pytest.mark.timeout(120)
async def test_download_through_dante_and_a_blocklisted_seeder(tmp_path: Path) -> None:
    import asyncio

    from test_session_proxy import dante

    src = make_torrent(tmp_path)
    seeder = subprocess.Popen(
        [*BW, "seed", str(tmp_path / "t.torrent"), "--data", str(src.parent), "--host", "127.0.0.2",
         "--port", "0", "--no-dht", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
    )  # fmt: skip
    try:
        started = await asyncio.to_thread(_json_lines_until, seeder, "seeding", 30)
        port = started[-1]["port"]
        # the only peer is blocklisted (DAT format, gzip'd not needed here): no connection, ever
        (tmp_path / "block.dat").write_text("127.000.000.002 - 127.000.000.002 , 000 , the seeder\n")
        blocked_proc = subprocess.Popen(
            [*BW, "-vv", "download", "t.torrent", "-o", "blocked", "--host", "127.0.0.1", "--port", "0",
             "--no-dht", "--peer", f"127.0.0.2:{port}", "--blocklist", "block.dat", "--json"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
        try:
            assert blocked_proc.stderr is not None
            err = ""
            while "127.0.0.2 is blocklisted" not in err:  # the --peer address was refused (DEBUG log)
                line = await asyncio.wait_for(asyncio.to_thread(blocked_proc.stderr.readline), 30)
                assert line, err
                err += line
        finally:
            blocked_proc.terminate()
            out, rest_err = await asyncio.to_thread(blocked_proc.communicate, timeout=10)
        err += rest_err
        assert "blocklist: 1 rules, 1 ranges" in err
        assert "peer_connected" not in out
        async with dante(tmp_path) as proxy:
            done = await asyncio.to_thread(
                subprocess.run,
                [*BW, "download", "t.torrent", "-o", "out", "--host", "127.0.0.1", "--port", "0", "--no-dht",
                 "--peer", f"127.0.0.2:{port}", "--proxy", proxy, "--json"],
                cwd=tmp_path, capture_output=True, text=True, timeout=60, env=ENV,
            )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out" / "data.bin").read_bytes() == src.read_bytes()
    finally:
        seeder.terminate()
        rest, _ = seeder.communicate(timeout=10)
    connected = [json.loads(x) for x in rest.splitlines() if x.startswith("{") and "peer_connected" in x]
    assert connected and {str(m["address"]).rsplit(":", 1)[0] for m in connected} == {"127.0.0.5"}
