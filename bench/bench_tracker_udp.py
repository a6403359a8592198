"""UDP (BEP 15) announce throughput, bitswarm tracker vs opentracker, same generator, same run.

    python bench/bench_tracker_udp.py [--seconds 5] [--rounds 3] [--window 256] [--persist] [--json]

The generator is /work/shared/tools/udpload.c compiled with ``gcc -O2`` into a temporary directory at
run time. Both trackers run side by side; the load alternates between them ``--rounds`` times (other
work on the machine hits both alike). Reported per tracker: best announces/s, the server's CPU
microseconds per answered announce (from /proc, all threads) and the median share of it spent in
the kernel, and the generator's share of a core (below 1.0: the generator was not saturated, it
waited on the server). bitswarm's UDP workers use recvmmsg/sendmmsg on Linux; run the tracker with
BITSWARM_UDP_MMSG=0 in the environment to measure the recvfrom/sendto fallback. ``--persist``: bitswarm
keeps its SQLite database (peer journal every second, snapshots) instead of ``--db none``.
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
)


def load(exe: Path, port: int, seconds: int, window: int) -> float:
    out = subprocess.run(
        [str(exe), "127.0.0.1", str(port), str(seconds), str(window), str(HASHES)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"([\d.]+) announces/s", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--persist", action="store_true", help="bitswarm with its SQLite database")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("no C compiler")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "udpload"
        subprocess.run([gcc, "-O2", "-o", str(exe), str(TOOLS / "udpload.c")], check=True)
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
