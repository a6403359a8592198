"""One error contract for every command (issue 22): a usage error is one line and exit 2 (Typer drew a
box under the usage), a service that does not answer is one line naming it and exit 1 (they exited 2,
and ``dht lookup`` printed an empty ``bitswarm: error:``)."""

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
ZERO = "0" * 40


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BW, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=ENV)


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswarm: error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


USAGE = {
    "unknown command": (["tracker-status"], "No such command 'tracker-status'"),
    "unknown option": (["info", "--bogus"], "No such option: --bogus"),
    "missing argument": (["info"], "Missing argument"),
    "bad value": (["download", "x.torrent", "--port", "abc"], "'abc' is not a valid integer"),
    "bad choice": (["daemon", "--encryption", "bad"], "'bad' is not one of"),
    "missing value": (["ctl", "list", "--api"], "requires an argument"),
}


@pytest.mark.parametrize("case", sorted(USAGE))
def test_a_usage_error_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    args, text = USAGE[case]
    assert text in one_error_line(run(args, tmp_path), 2)


@pytest.fixture
def dead() -> Iterator[int]:
    """A loopback port bound for TCP and UDP, never listening nor answering: connections are refused."""
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip("UDP port of the same number taken")
        yield port


UNREACHABLE = {
    "search": (["search", "x", "--index", "http://127.0.0.1:{p}"], "cannot reach the index at http://127.0.0.1:{p}"),
    "peers": (["peers", "--index", "http://127.0.0.1:{p}"], "cannot reach the index at http://127.0.0.1:{p}"),
    "get": (["get", "x", "--index", "http://127.0.0.1:{p}", "-o", "out"], "http://127.0.0.1:{p}"),
    "index-peer": (["index-peer", "search", "x", "--server", "127.0.0.1:{p}", "-u", "a", "-p", "b"],
                   "cannot connect to 127.0.0.1:{p}"),
    "centralized-peer": (["centralized-peer", "127.0.0.1", "127.0.0.1:{p}", "0", "0", "--get", "x",
                          "--output", "."], "http://127.0.0.1:{p}"),
    "dht lookup": (["dht", "lookup", ZERO, "--bootstrap", "127.0.0.1:{p}", "--timeout", "2"],
                   "no DHT answer within 2 s (bootstrap 127.0.0.1:{p})"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(UNREACHABLE))
def test_a_service_that_does_not_answer_is_one_line_and_exit_1(case: str, dead: int, tmp_path: Path) -> None:
    args, text = UNREACHABLE[case]
    line = one_error_line(run([a.format(p=dead) for a in args], tmp_path), 1)
    assert text.format(p=dead) in line, line
