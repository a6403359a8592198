"""``bitswarm dht`` (a standalone node) and ``bitswarm get`` listen dual-stack by default like the
other peer commands (issue 19): ``::`` with IPv4-mapped peers, ``0.0.0.0`` on a host without IPv6."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys

import pytest

from bitswarm.bencode import decode, encode
from bitswarm.cli import _dht

BW = [sys.executable, "-m", "bitswarm"]
ENV = {**os.environ, "BITSWARM_NO_PUBLIC_DHT": "1", "COLUMNS": "80"}


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _ping(family: int, host: str, port: int) -> dict[bytes, object]:
    """A KRPC ping to ``host:port`` from a socket of ``family``; the decoded answer."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(
            encode({b"t": b"pp", b"y": b"q", b"q": b"ping", b"a": {b"id": os.urandom(20)}}), (host, port)
        )
        data, _ = s.recvfrom(2048)
    answer = decode(data)
    assert isinstance(answer, dict)
    return answer


def test_bind_host_falls_back_to_ipv4_without_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _dht._bind_host("127.0.0.1") == "127.0.0.1"
    assert _dht._bind_host("0.0.0.0") == "0.0.0.0"
    if _has_ipv6_loopback():
        assert _dht._bind_host("::") == "::"
    monkeypatch.setattr(socket, "has_ipv6", False)
    assert _dht._bind_host("::") == "0.0.0.0"


@pytest.mark.timeout(60)
async def test_standalone_node_answers_both_families_by_default() -> None:
    if not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    node = await asyncio.create_subprocess_exec(
        *BW, "dht", "--port", "0", "--interval", "30", "--json", env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        first = json.loads(await asyncio.wait_for(node.stdout.readline(), 20))
        host, port = first["address"].rsplit(":", 1)
        assert host == "::"
        for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            answer = await asyncio.to_thread(_ping, family, addr, int(port))
            assert answer[b"t"] == b"pp" and answer[b"y"] == b"r", (addr, answer)
    finally:
        node.terminate()
        await asyncio.wait_for(node.wait(), 10)


_FAKE_GET = """
import sys
import bitswarm.index.client as client

async def fake(index, name, output, *, host, port, **kw):
    print("HOST=" + host, flush=True)
    raise SystemExit(0)

client.get = fake
from bitswarm.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize(("args", "host"), [([], "::"), (["--host", "0.0.0.0"], "0.0.0.0")])
def test_get_listens_dual_stack_by_default(args: list[str], host: str, tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FAKE_GET, "get", "x", "--index", "http://127.0.0.1:9", "-o", str(tmp_path),
         *args],
        capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    assert f"HOST={host}" in done.stdout.splitlines(), (done.stdout, done.stderr)
