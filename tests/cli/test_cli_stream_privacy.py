"""``bitswarm stream --proxy/--blocklist`` (issue 21), as ``download`` has them: bad values are one
line with the documented exit code; a blocklisted seeder is never dialed; through a real SOCKS5
server (Dante) the stream serves its bytes and the seeder sees only the proxy's address."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.cli.test_cli_privacy import BW, ENV, _json_lines_until, make_torrent, one_error_line

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "session"))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--proxy", "http://proxy:3128"], 2, "--proxy: proxy must be socks5://"),
        (["--proxy", "socks5://h:1", "--transports", "utp"], 2, "TCP only"),
        (["--blocklist", "no-such.p2p"], 1, "No such file"),
    ],
)
def test_stream_bad_proxy_or_blocklist_is_one_line(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    make_torrent(tmp_path, 1000)
    proc = subprocess.run(
        [*BW, "stream", "t.torrent", "-o", "out", "--port", "0", "--peer-port", "0", "--no-dht", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    assert message in one_error_line(proc, code)
    assert not (tmp_path / "out").exists()  # refused before anything started


def _stream(tmp_path: Path, out: str, *extra: str, port: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BW, "-vv", "stream", "t.torrent", "-o", out, "--port", "0", "--peer-port", "0",
         "--host", "127.0.0.1", "--http-host", "127.0.0.1", "--no-dht", "--peer", f"127.0.0.2:{port}",
         "--json", *extra],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip


@pytest.mark.timeout(120)
async def test_stream_blocklist_and_proxy(tmp_path: Path) -> None:
    from test_session_proxy import dante

    src = make_torrent(tmp_path, 400_000)
    data = src.read_bytes()
    seeder = subprocess.Popen(
        [*BW, "seed", str(tmp_path / "t.torrent"), "--data", str(src.parent), "--host", "127.0.0.2",
         "--port", "0", "--no-dht", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
    )  # fmt: skip
    try:
        started = await asyncio.to_thread(_json_lines_until, seeder, "seeding", 30)
        port = started[-1]["port"]
        # the only peer is blocklisted: the stream never dials it
        (tmp_path / "block.p2p").write_text("the seeder:127.0.0.2-127.0.0.2\n")
        blocked = _stream(tmp_path, "blocked", "--blocklist", "block.p2p", port=port)
        try:
            assert blocked.stderr is not None
            err = ""
            while "127.0.0.2 is blocklisted" not in err:
                line = await asyncio.wait_for(asyncio.to_thread(blocked.stderr.readline), 30)
                assert line, err
                err += line
        finally:
            blocked.terminate()
            out, rest_err = await asyncio.to_thread(blocked.communicate, timeout=10)
        assert "blocklist: 1 rules, 1 ranges" in err + rest_err
        assert "peer_connected" not in out
        # through Dante (connecting out from 127.0.0.5): the stream serves the file's bytes
        async with dante(tmp_path) as proxy:
            proxied = _stream(tmp_path, "out", "--proxy", proxy, port=port)
            try:
                lines = await asyncio.to_thread(_json_lines_until, proxied, "streaming", 30)
                url = str(lines[-1]["files"][0])  # type: ignore[index]
                async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
                    r = await client.get(url, headers={"Range": "bytes=200000-200999"})
                assert r.status_code == 206 and r.content == data[200_000:201_000]
            finally:
                proxied.terminate()
                await asyncio.to_thread(proxied.communicate, timeout=10)
    finally:
        seeder.terminate()
        rest, _ = seeder.communicate(timeout=10)
    connected = [json.loads(x) for x in rest.splitlines() if x.startswith("{") and "peer_connected" in x]
    assert connected and {str(m["address"]).rsplit(":", 1)[0] for m in connected} == {"127.0.0.5"}
