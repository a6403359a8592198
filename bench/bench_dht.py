"""DHT benchmark: a network of real-UDP DHT nodes on loopback, get_peers lookup latency.

Starts ``--nodes`` DHTServers on 127.0.0.1 (port 0) in one asyncio loop (uvloop when available),
bootstraps them, announces ``--hashes`` random info-hashes from random nodes, then runs ``--lookups``
sequential get_peers lookups from random other nodes and reports latency p50/p99, success rate
(the announcer was found), queries per lookup and memory per node.

    .venv/bin/python bench/bench_dht.py --nodes 1000 --json

Targets: p50 < 50 ms, p99 < 250 ms, 100 % success.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import sys
import time
import tracemalloc

from bitswarm.dht.server import DHTServer


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100.0 * (len(s) - 1)))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    tracemalloc.start()
    mem0 = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    first = DHTServer("127.0.0.1", 0, tick_interval=args.tick, rng=random.Random(rng.getrandbits(64)))
    await first.start()
    servers = [first]
    for _ in range(args.nodes - 1):
        s = DHTServer(
            "127.0.0.1",
            0,
            bootstrap=[first.address],
            tick_interval=args.tick,
            rng=random.Random(rng.getrandbits(64)),
        )
        await s.start(wait_bootstrap=30)  # join one by one, like a growing network
        servers.append(s)
    # wait (bounded) for the post-bootstrap bucket refreshes to finish everywhere
    deadline = time.perf_counter() + 120
    while any(s.node.active_lookups for s in servers) and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    boot_s = time.perf_counter() - t0
    await asyncio.sleep(1.0)  # let confirmation pings settle
    mem_nodes = tracemalloc.get_traced_memory()[0] - mem0
    tracemalloc.stop()
    table_sizes = [s.node.routing_table_size() for s in servers]

    announced: list[tuple[bytes, int, DHTServer]] = []
    for i in range(args.hashes):
        ih = rng.randbytes(20)
        who = rng.choice(servers)
        port = 10000 + i
        res = await who.announce(ih, port, timeout=30)
        announced.append((ih, port, who))
        if res.stored == 0:
            print(f"warning: announce {i} stored on no node", file=sys.stderr)

    latencies: list[float] = []
    messages: list[int] = []
    ok = 0
    for j in range(args.lookups):
        ih, port, who = announced[j % len(announced)]
        searcher = rng.choice(servers)
        while searcher is who:
            searcher = rng.choice(servers)
        t = time.perf_counter()
        try:
            res = await searcher.get_peers(ih, timeout=30)
        except TimeoutError:
            latencies.append(30.0)
            continue
        latencies.append(time.perf_counter() - t)
        messages.append(res.messages)
        ok += ("127.0.0.1", port) in res.peers
    for s in servers:
        await s.stop()
    return {
        "nodes": args.nodes,
        "bootstrap_seconds": round(boot_s, 2),
        "routing_table_mean": round(statistics.mean(table_sizes), 1),
        "routing_table_min": min(table_sizes),
        "lookups": args.lookups,
        "success_rate": ok / args.lookups,
        "latency_ms_p50": round(_pct(latencies, 50) * 1000, 2),
        "latency_ms_p99": round(_pct(latencies, 99) * 1000, 2),
        "latency_ms_max": round(max(latencies) * 1000, 2),
        "queries_per_lookup_mean": round(statistics.mean(messages), 1) if messages else None,
        "queries_per_lookup_max": max(messages) if messages else None,
        "memory_kib_per_node": round(mem_nodes / args.nodes / 1024, 1),
        "max_rss_mb": round(_rss_mb(), 1),
        "event_loop": type(asyncio.get_running_loop()).__module__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--hashes", type=int, default=20)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--tick", type=float, default=0.25, help="timer interval per node, seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.nodes + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if not args.no_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    result = asyncio.run(asyncio.wait_for(run(args), timeout=600))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:28} {v}")


if __name__ == "__main__":
    main()
