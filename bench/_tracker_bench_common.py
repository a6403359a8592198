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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOOLS = Path("/work/shared/tools")
HASHES = TOOLS / "announce-hashes.txt"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def bitswarm_tracker(*extra: str) -> Iterator[dict[str, Any]]:
    """Run ``bitswarm tracker --json`` on loopback port 0; yields the bound addresses (+ ``pid``)."""
    cmd = [sys.executable, "-m", "bitswarm", "tracker", "--json", "--db", "none", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError("bitswarm tracker did not start")
        info = json.loads(line)
        info["pid"] = proc.pid
        yield info
    finally:
        proc.terminate()
        proc.wait(10)


def db_args(tmp: str, persist: bool) -> tuple[str, ...]:
    """``bitswarm tracker`` options: a database in ``tmp`` (persistence on), or none (the default: the
    later ``--db`` wins over the ``--db none`` of :func:`bitswarm_tracker`)."""
    return ("--db", str(Path(tmp) / "tracker.sqlite")) if persist else ()


@contextmanager
def opentracker(http_port: int, udp_port: int) -> Iterator[int]:
    """Run opentracker on loopback (whitelist = the generators' info-hashes); yields its pid."""
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
            yield proc.pid
        finally:
            proc.terminate()
            proc.wait(10)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads) from /proc."""
    return sum(cpu_split(pid))


def children_cpu() -> float:
    """CPU seconds used by waited-for children so far (the load generator)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def interleaved(targets: dict[str, int], run: Callable[[int], float], rounds: int) -> dict[str, Any]:
    """Load each target (name → pid) in turn, ``rounds`` times; best rate, CPU per request (and the
    median share of it spent in the kernel) and the generator's share of a core for each, plus the
    median per-round ratio bitswarm/opentracker.
    """
    rates: dict[str, list[float]] = {name: [] for name in targets}
    server_us: dict[str, list[float]] = {name: [] for name in targets}
    sys_share: dict[str, list[float]] = {name: [] for name in targets}
    gen_load: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, pid in targets.items():
            (user0, sys0), gen0, t0 = cpu_split(pid), children_cpu(), time.monotonic()
            rate = run(pid)
            wall = time.monotonic() - t0
            (user1, sys1), gen1 = cpu_split(pid), children_cpu()
            cpu = user1 - user0 + sys1 - sys0
            rates[name].append(rate)
            server_us[name].append(cpu / max(1.0, rate * wall) * 1e6)
            sys_share[name].append((sys1 - sys0) / cpu if cpu else 0.0)
            gen_load[name].append((gen1 - gen0) / wall)
    ratios = sorted(b / o for b, o in zip(rates["bitswarm"], rates["opentracker"], strict=True))
    out: dict[str, Any] = {}
    for name in targets:
        out[f"{name}_best"] = max(rates[name])
        out[f"{name}_runs"] = [round(r) for r in rates[name]]
        out[f"{name}_cpu_us_per_req"] = round(min(server_us[name]), 2)
        out[f"{name}_cpu_kernel_share"] = round(sorted(sys_share[name])[len(sys_share[name]) // 2], 2)
        out[f"{name}_generator_core_share"] = round(max(gen_load[name]), 2)
    out["ratio_best"] = out["bitswarm_best"] / out["opentracker_best"]
    out["ratio_median_round"] = ratios[len(ratios) // 2]
    return out
