"""Servers that cannot listen say on which address, in one line, exit 2; ``index --peer-index`` to an
index that does not answer is one line naming it, exit 1 (issue 22: ``cannot listen: Address already
in use``, and a ~60-line httpx traceback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BW = [sys.executable, "-m", "bitswarm"]
ENV = {**os.environ, "BITSWARM_NO_PUBLIC_DHT": "1", "COLUMNS": "80"}


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BW, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env or ENV)


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswarm: error: "), proc.stderr
    return lines[0]


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port held for TCP (listening) and UDP both."""
    for _ in range(20):
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            tcp.close()
            udp.close()
            continue
        tcp.listen()
        try:
            yield port
        finally:
            tcp.close()
            udp.close()
        return
    raise AssertionError("no port free for both TCP and UDP")


SERVE = ["serve", "--dir", "d", "--host", "127.0.0.1"]
INDEX = ["index", "--host", "127.0.0.1", "--db", "i.sqlite3"]
CASES = {
    "tracker-http": (["tracker", "--http", "127.0.0.1:{p}", "--no-udp"], ""),
    "tracker-udp": (["tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:{p}"], ""),
    "serve-tracker": ([*SERVE, "--tracker-port", "{p}", "--no-dht"], ""),
    "serve-index": ([*SERVE, "--tracker-port", "0", "--index-port", "{p}", "--no-dht"], " (index)"),
    "serve-dht": ([*SERVE, "--tracker-port", "0", "--index-port", "0", "--dht-port", "{p}"], ""),
    "index-http": ([*INDEX, "--port", "{p}"], ""),
    "index-binary": ([*INDEX, "--port", "0", "--binary-port", "{p}"], ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cannot_listen_names_the_address(case: str, taken: int, tmp_path: Path) -> None:
    args, suffix = CASES[case]
    line = one_error_line(run([a.format(p=taken) for a in args], tmp_path), 2)
    assert f"cannot listen on 127.0.0.1:{taken}{suffix}" in line, line


def test_joining_an_index_that_does_not_answer_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as unused:  # bound, never listening: a connection to it is refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        env = {**ENV, "BITSWARM_INDEX_FEDERATION_KEY": "k" * 32}
        args = ["index", "--host", "127.0.0.1", "--port", "0", "--db", "i.sqlite3",
                "--peer-index", f"http://127.0.0.1:{port}"]  # fmt: skip
        line = one_error_line(run(args, tmp_path, env), 1)
    assert f"cannot join the index at http://127.0.0.1:{port}" in line, line
