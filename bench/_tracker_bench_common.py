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
    """A loopback port free for both TCP and UDP (opentracker binds both; on a busy machine
    another process's UDP sockets may hold a port that TCP sees free)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


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


# ------------------------------------------------------------------------------------ scale-out


def pin(pid: int, cpu: int | None) -> None:
    """Pin every thread of ``pid`` to the ``cpu``-th usable core (None: leave it free)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cores[cpu % len(cores)]})


@contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    """A throw-away ``redis-server`` on loopback (no persistence, unpinned); yields (URL, pid)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen([*cmd, "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.1) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", proc.pid
        finally:
            proc.terminate()
            proc.wait(10)


def scale_out(
    targets: dict[str, list[tuple[int, int]]],
    start_load: Callable[[int], subprocess.Popen[str]],
    parse: Callable[[str], float],
    rounds: int,
    generators: int,
    redis_pid: int,
) -> dict[str, Any]:
    """Load each target (name → [(pid, port)] of its server processes) in turn, ``rounds`` times,
    with ``generators`` generator processes at once, spread round-robin over the target's ports
    (the same offered load for one instance and for two). Per target: best and per-round
    announces/s, the servers' CPU µs per announce (all instances), Redis's CPU µs per announce
    (counted for every target: it idles for opentracker and the memory store), and the
    generators' CPU in cores.
    """
    rates: dict[str, list[float]] = {name: [] for name in targets}
    server_us: dict[str, list[float]] = {name: [] for name in targets}
    per_instance_cores: dict[str, list[list[float]]] = {name: [] for name in targets}
    redis_us: dict[str, list[float]] = {name: [] for name in targets}
    gen_cores: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, servers in targets.items():
            pids = [pid for pid, _ in servers]
            cpu0 = [cpu_seconds(pid) for pid in pids]
            redis0, gen0, t0 = cpu_seconds(redis_pid), children_cpu(), time.monotonic()
            procs = [start_load(servers[i % len(servers)][1]) for i in range(generators)]
            rate = sum(parse(proc.communicate()[0]) for proc in procs)
            wall = time.monotonic() - t0
            used = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
            answered = max(1.0, rate * wall)
            rates[name].append(rate)
            server_us[name].append(sum(used) / answered * 1e6)
            per_instance_cores[name].append([u / wall for u in used])
            redis_us[name].append((cpu_seconds(redis_pid) - redis0) / answered * 1e6)
            gen_cores[name].append((children_cpu() - gen0) / wall)
    out: dict[str, Any] = {}
    for name in targets:
        best = max(range(rounds), key=lambda r: rates[name][r])
        out[name] = {
            "instances": len(targets[name]),
            "announces_per_s": round(rates[name][best]),
            "runs": [round(r) for r in rates[name]],
            "server_cpu_us_per_announce": round(min(server_us[name]), 2),
            "server_cores_per_instance": [round(c, 2) for c in per_instance_cores[name][best]],
            "redis_cpu_us_per_announce": round(redis_us[name][best], 2),
            "generator_cores": round(gen_cores[name][best], 2),
        }
    return out


def scale_ratios(result: dict[str, Any]) -> dict[str, float]:
    """The ratios of a :func:`scale_out` result with targets opentracker, memory, redis1, redis2."""

    def rate(name: str) -> float:
        return float(result[name]["announces_per_s"])

    def cpu(name: str) -> float:
        return float(result[name]["server_cpu_us_per_announce"])

    return {
        "two_vs_one_instance": round(rate("redis2") / rate("redis1"), 3),
        "per_instance_ratio": round(rate("redis2") / 2 / rate("redis1"), 3),
        "redis_vs_memory": round(rate("redis1") / rate("memory"), 3),
        "memory_vs_opentracker": round(rate("memory") / rate("opentracker"), 3),
        "redis1_vs_opentracker": round(rate("redis1") / rate("opentracker"), 3),
        # CPU per announce of the tracker processes (all instances together): 1.0 = two instances
        # cost no more per announce than one, so they scale with the cores they get
        "cpu_per_announce_two_vs_one": round(cpu("redis2") / cpu("redis1"), 3),
        "cpu_per_announce_redis_vs_memory": round(cpu("redis1") / cpu("memory"), 3),
        # the write-behind instance against one that sends every announce through Redis
        "redis1_vs_through_redis": round(rate("redis1") / rate("redis1_through"), 3),
    }


@contextmanager
def scale_out_servers(kind: str, pin_servers: bool) -> Iterator[tuple[dict[str, list[tuple[int, int]]], int]]:
    """opentracker, a memory-backed ``bitswarm tracker``, two Redis-backed ones sharing one
    ``redis-server`` (write-behind cluster mode, the default) and a third on the same Redis with
    ``--redis-sync 0`` (every announce through Redis, the reference), serving ``kind`` ("udp" or
    "http") on loopback. Yields the targets of :func:`scale_out` — ``opentracker``, ``memory``,
    ``redis1`` (instance A), ``redis2`` (A and B), ``redis1_through`` — and Redis's pid. With
    ``pin_servers`` opentracker, the memory instance, instance A and the through-Redis instance are
    pinned to the first core and instance B to the second; Redis and the generators are never
    pinned (two cores: they run wherever the scheduler finds room).
    """
    udp_flags = ("--udp", "127.0.0.1:0", "--http", "127.0.0.1:0")  # HTTP idle: there is no --no-http
    # every generator connection comes from 127.0.0.1: no per-IP cap
    flags = udp_flags if kind == "udp" else ("--http", "127.0.0.1:0", "--no-udp", "--http-max-per-ip", "0")
    key = "udp" if kind == "udp" else "http"
    ot_http, ot_udp = free_port(), free_port()
    with (
        redis_server() as (url, redis_pid),
        opentracker(ot_http, ot_udp) as ot_pid,
        bitswarm_tracker(*flags) as mem,
        bitswarm_tracker(*flags, "--redis", url) as one,
        bitswarm_tracker(*flags, "--redis", url) as two,
        bitswarm_tracker(*flags, "--redis", url, "--redis-sync", "0") as through,
    ):
        cores = (0, 0, 0, 1, 0) if pin_servers else (None,) * 5
        pids = (ot_pid, mem["pid"], one["pid"], two["pid"], through["pid"])
        for pid, cpu in zip(pids, cores, strict=True):
            pin(pid, cpu)
        a = (one["pid"], port_of(one[key][0]))
        yield (
            {
                "opentracker": [(ot_pid, ot_udp if kind == "udp" else ot_http)],
                "memory": [(mem["pid"], port_of(mem[key][0]))],
                "redis1": [a],
                "redis2": [a, (two["pid"], port_of(two[key][0]))],
                "redis1_through": [(through["pid"], port_of(through[key][0]))],
            },
            redis_pid,
        )
