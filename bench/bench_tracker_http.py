"""HTTP announce throughput, bitswarm tracker vs opentracker, same wrk load in the same run.

    python bench/bench_tracker_http.py [--seconds 8] [--rounds 3] [--persist] [--json]
    python bench/bench_tracker_http.py --scale-out [--generators 2] [--no-pin] [--json]
    python bench/bench_tracker_http.py --memory [--json]      # bytes per peer at 10^5 and 10^6 peers
                                                              # (tracemalloc and RSS growth)

Load: ``wrk -t1 -c64 -s /work/shared/tools/announce.lua`` (1,000 info-hashes, keep-alive, compact).
``--persist``: bitswarm keeps its SQLite database (peer journal every second, snapshots) instead of
``--db none``.

``--scale-out``: opentracker, a memory-backed bitswarm tracker, one Redis-backed instance and two
Redis-backed instances sharing one redis-server (write-behind ``--redis``), and one with
``--redis-sync 0`` for reference, in turn, each round under the same offered load (``--generators``
wrk processes of 64 connections at once, spread over the target's instances). The servers are
pinned (opentracker, memory, instance A and the through-Redis one to core 0, instance B to core 1;
``--no-pin``: none); Redis and wrk are not. Reported as by ``bench_tracker_udp.py --scale-out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _tracker_bench_common import (
    TOOLS,
    bitswarm_tracker,
    db_args,
    free_port,
    interleaved,
    opentracker,
    port_of,
    scale_out,
    scale_out_servers,
    scale_ratios,
)


def wrk(port: int, seconds: int) -> float:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is not installed")
    out = subprocess.run(
        [exe, "-t1", "-c64", f"-d{seconds}s", "-s", str(TOOLS / "announce.lua"), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        print(out, file=sys.stderr)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def throughput(seconds: int, rounds: int, persist: bool = False) -> dict[str, Any]:
    """Both trackers side by side, the wrk load alternating between them ``rounds`` times.

    opentracker closes the connection after every reply (no keep-alive), so wrk reconnects for
    each of its requests; bitswarm keeps connections alive.
    """
    http_port = free_port()
    with (
        tempfile.TemporaryDirectory() as tmp,
        bitswarm_tracker("--http", "127.0.0.1:0", "--no-udp", *db_args(tmp, persist)) as info,
        opentracker(http_port, free_port()) as ot_pid,
    ):
        ports = {info["pid"]: port_of(info["http"][0]), ot_pid: http_port}
        for port in ports.values():
            wrk(port, 1)  # warm-up
        return interleaved(
            {"bitswarm": info["pid"], "opentracker": ot_pid}, lambda pid: wrk(ports[pid], seconds), rounds
        )


def scaled(seconds: int, rounds: int, generators: int, pin: bool) -> dict[str, Any]:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is not installed")
    script = str(TOOLS / "announce.lua")

    def start(port: int) -> subprocess.Popen[str]:
        cmd = [exe, "-t1", "-c64", f"-d{seconds}s", "-s", script, f"http://127.0.0.1:{port}"]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def parse(out: str) -> float:
        if "Non-2xx" in out:
            print(out, file=sys.stderr)
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    with scale_out_servers("http", pin) as (targets, redis_pid):
        for servers in targets.values():
            for _, port in servers:
                wrk(port, 1)  # warm-up
        result: dict[str, Any] = dict(scale_out(targets, start, parse, rounds, generators, redis_pid))
    result["ratios"] = scale_ratios(result)
    result["setup"] = {
        "generators": generators,
        "connections_per_generator": 64,
        "seconds": seconds,
        "pinned": pin,
        "cores": os.cpu_count(),
    }
    return result


def _fill(peers: int, per_swarm: int) -> object:
    from bitswarm.tracker.server.state import MemoryStore

    store = MemoryStore(ttl=3780)
    for i in range(peers):
        info_hash = (i // per_swarm).to_bytes(20, "big")
        addr = (0x0A000000 + i).to_bytes(4, "big") + (6881 + i % 1000).to_bytes(2, "big")
        store.announce(info_hash, addr, os.urandom(20), i % 3 == 0, 2, 0)
    return store


def memory(peers: int, per_swarm: int = 100) -> float:
    """tracemalloc bytes per peer for ``peers`` IPv4 peers in swarms of ``per_swarm``."""
    import bitswarm.tracker.server.state  # noqa: F401  (imports are not peers)

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = _fill(peers, per_swarm)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del store
    return used / peers


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss(peers: int, per_swarm: int = 100) -> float:
    """Resident-set growth per peer (no tracemalloc), measured in a fresh interpreter."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bench_tracker_http as b; "
        "import bitswarm.tracker.server.state; "
        "n = int(sys.argv[2]); r = b._rss(); s = b._fill(n, int(sys.argv[3])); print((b._rss() - r) / n)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), str(peers), str(per_swarm)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="measure bytes per peer instead")
    parser.add_argument("--persist", action="store_true", help="bitswarm with its SQLite database")
    parser.add_argument("--scale-out", action="store_true", help="1 and 2 Redis-backed instances")
    parser.add_argument("--generators", type=int, default=2, help="wrk processes at once (--scale-out)")
    parser.add_argument("--no-pin", action="store_true", help="pin no server to a core (--scale-out)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.scale_out:
        out = scaled(args.seconds, args.rounds, args.generators, not args.no_pin)
        print(json.dumps(out) if args.json else json.dumps(out, indent=2))
        return
    if args.memory:
        result: dict[str, Any] = {}
        for n in (10**5, 10**6):
            result[f"tracemalloc_bytes_per_peer_{n}"] = round(memory(n), 1)
            result[f"rss_bytes_per_peer_{n}"] = round(rss(n), 1)
    else:
        result = throughput(args.seconds, args.rounds, args.persist)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
