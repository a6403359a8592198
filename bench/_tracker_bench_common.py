"""Shared helpers of the tracker benchmarks: start bitswarm's tracker and opentracker on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOOLS = Path("/work/shared/tools")
HASHES = TOOLS / "announce-hashes.txt"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def bitswarm_tracker(*extra: str) -> Iterator[dict[str, list[str]]]:
    """Run ``bitswarm tracker --json`` on loopback port 0; yields the bound addresses."""
    cmd = [sys.executable, "-m", "bitswarm", "tracker", "--json", "--db", "none", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError("bitswarm tracker did not start")
        yield json.loads(line)
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def opentracker(http_port: int, udp_port: int) -> Iterator[None]:
    exe = shutil.which("opentracker")
    if exe is None:
        raise RuntimeError("opentracker is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(HASHES, Path(tmp) / "whitelist")
        os.chmod(tmp, 0o755)
        cmd = [
            exe,
            "-i",
            "127.0.0.1",
            "-p",
            str(http_port),
            "-P",
            str(udp_port),
            "-d",
            tmp,
            "-w",
            "whitelist",
        ]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", http_port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield
        finally:
            proc.terminate()
            proc.wait(10)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])
