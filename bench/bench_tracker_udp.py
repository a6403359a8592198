"""UDP (BEP 15) announce throughput, bitswarm tracker vs opentracker, same generator, same run.

    python bench/bench_tracker_udp.py [--seconds 5] [--rounds 3] [--window 256] [--persist] [--json]
    python bench/bench_tracker_udp.py --scale-out [--generators 2] [--no-pin] [--json]

The generator is /work/shared/tools/udpload.c compiled with ``gcc -O2`` into a temporary directory at
run time. Both trackers run side by side; the load alternates between them ``--rounds`` times (other
work on the machine hits both alike). Reported per tracker: best announces/s, the server's CPU
microseconds per answered announce (from /proc, all threads) and the median share of it spent in
the kernel, and the generator's share of a core (below 1.0: the generator was not saturated, it
waited on the server). bitswarm's UDP workers use recvmmsg/sendmmsg on Linux; run the tracker with
BITSWARM_UDP_MMSG=0 in the environment to measure the recvfrom/sendto fallback. ``--persist``: bitswarm
keeps its SQLite database (peer journal every second, snapshots) instead of ``--db none``.

``--scale-out``: opentracker, a memory-backed bitswarm tracker, one Redis-backed instance and two
Redis-backed instances sharing one redis-server (``--redis``: write-behind, each answers from
memory and syncs every 0.25 s), and for reference one instance with ``--redis-sync 0`` (every
announce through Redis), in turn, each round under the same offered load (``--generators`` udpload
processes at once, spread over the target's instances). The servers are pinned (opentracker,
memory, instance A and the through-Redis one to core 0, instance B to core 1; ``--no-pin``: none);
Redis and the generators are not. Reported per target: announces/s, server CPU µs per announce, each
instance's share of a core, Redis CPU µs per announce, generator cores; then the ratios (two vs one
instance, Redis vs memory, vs opentracker, write-behind vs through Redis).
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
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _tracker_bench_common import (
    HASHES,
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


def load(exe: Path, port: int, seconds: int, window: int) -> float:
    out = subprocess.run(
        [str(exe), "127.0.0.1", str(port), str(seconds), str(window), str(HASHES)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"([\d.]+) announces/s", out).group(1))  # type: ignore[union-attr]


def scaled(exe: Path, args: argparse.Namespace) -> dict[str, object]:
    def start(port: int, seconds: int | None = None) -> subprocess.Popen[str]:
        secs = str(seconds or args.seconds)
        cmd = [str(exe), "127.0.0.1", str(port), secs, str(args.window), str(HASHES)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def parse(out: str) -> float:
        found = re.search(r"([\d.]+) announces/s", out)
        if found is None:  # no connect reply within 10 s: counted as 0, said on stderr
            print(f"udpload failed: {out!r}", file=sys.stderr)
            return 0.0
        return float(found.group(1))

    with scale_out_servers("udp", not args.no_pin) as (targets, redis_pid):
        for servers in targets.values():
            for _, port in servers:
                for _attempt in range(3):  # warm-up (a loaded machine may miss the first connect)
                    if start(port, 1).communicate()[0]:
                        break
        result: dict[str, object] = dict(
            scale_out(targets, start, parse, args.rounds, args.generators, redis_pid)
        )
    result["ratios"] = scale_ratios(result)
    result["setup"] = {
        "generators": args.generators,
        "window": args.window,
        "seconds": args.seconds,
        "pinned": not args.no_pin,
        "cores": os.cpu_count(),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--persist", action="store_true", help="bitswarm with its SQLite database")
    parser.add_argument("--scale-out", action="store_true", help="1 and 2 Redis-backed instances")
    parser.add_argument("--generators", type=int, default=2, help="udpload processes at once (--scale-out)")
    parser.add_argument("--no-pin", action="store_true", help="pin no server to a core (--scale-out)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("no C compiler")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "udpload"
        subprocess.run([gcc, "-O2", "-o", str(exe), str(TOOLS / "udpload.c")], check=True)
        if args.scale_out:
            result = scaled(exe, args)
            print(json.dumps(result) if args.json else json.dumps(result, indent=2))
            return
        udp_port = free_port()
        with (
            bitswarm_tracker(
                "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", *db_args(tmp, args.persist)
            ) as info,
            opentracker(free_port(), udp_port) as ot_pid,
        ):
            ports = {info["pid"]: port_of(info["udp"][0]), ot_pid: udp_port}
            for port in ports.values():
                load(exe, port, 1, args.window)  # warm-up
            result = interleaved(
                {"bitswarm": info["pid"], "opentracker": ot_pid},
                lambda pid: load(exe, ports[pid], args.seconds, args.window),
                args.rounds,
            )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
