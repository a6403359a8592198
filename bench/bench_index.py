"""Benchmark of the index: bulk registration into SQLite, search latency, REST requests/s.

    .venv/bin/python bench/bench_index.py --files 1000000 [--json] [--db PATH]

Builds a catalogue of N synthetic files (names of 3-5 words from a 5,000-word vocabulary, hosted by
1,000 peers, half online), then times (1) registrations/s of the bulk insert, (2) p50/p99 latency of
full-text searches (prefix words, two-word queries, phrases) through :class:`IndexService`, and (3)
requests/s of ``GET /api/v1/search`` against a real uvicorn on 127.0.0.1 with 16 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bitswarm.index import FileSpec, IndexService
from bitswarm.index._config import IndexConfig
from bitswarm.index.server import IndexServer


def vocabulary(rng: random.Random, n: int = 5000) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 9))))
    return sorted(words)


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


async def run(n_files: int, db: str, n_queries: int, n_requests: int) -> dict[str, float | int]:
    rng = random.Random(42)
    words = vocabulary(rng)
    svc = await IndexService.open(db)
    peers = []
    for i in range(1000):
        peer = await svc.register_peer(ip=f"10.{i // 250}.{i % 250}.1", port=6881, online=i % 2 == 0)
        peers.append(peer.guid)
    batch = 20_000
    t0, c0 = time.perf_counter(), time.process_time()
    done = 0
    while done < n_files:
        rows = []
        for i in range(done, min(n_files, done + batch)):
            ext = rng.choice([".mkv", ".iso", ".txt"])
            name = " ".join(rng.choice(words) for _ in range(rng.randint(3, 5))) + ext
            spec = FileSpec(name=name, sha1=f"{i:040x}", size=rng.randint(1, 1 << 32))
            rows.append((spec, rng.choice(peers)))
        await svc.bulk_add(rows)
        done += len(rows)
    build, build_cpu = time.perf_counter() - t0, time.process_time() - c0

    queries = []
    for _ in range(n_queries):
        kind = rng.random()
        if kind < 0.4:
            queries.append(rng.choice(words)[:4])  # prefix
        elif kind < 0.8:
            queries.append(f"{rng.choice(words)} {rng.choice(words)[:3]}")  # two words
        else:
            queries.append(f'"{rng.choice(words)} {rng.choice(words)}"')  # phrase
    lat = []
    c0 = time.process_time()
    for q in queries:
        t = time.perf_counter()
        await svc.search(q, limit=20)
        lat.append((time.perf_counter() - t) * 1000)
    search_cpu = time.process_time() - c0

    server = IndexServer(IndexConfig(host="127.0.0.1", port=0), svc)
    bound = await server.start()
    url = f"http://127.0.0.1:{bound.http_port}/api/v1/search"
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=16)) as client:
        sem = asyncio.Semaphore(16)

        async def one(q: str) -> None:
            async with sem:
                r = await client.get(url, params={"q": q, "limit": 20})
                assert r.status_code == 200

        t = time.perf_counter()
        await asyncio.gather(*(one(queries[i % len(queries)]) for i in range(n_requests)))
        rest = time.perf_counter() - t
    await server.stop()
    await svc.close()
    return {
        "files": n_files,
        "build_seconds": round(build, 2),
        "registrations_per_s": round(n_files / build),
        "build_cpu_seconds": round(build_cpu, 2),  # CPU time of the process (all threads): less noisy
        "search_cpu_ms_per_query": round(search_cpu * 1000 / max(1, n_queries), 3),
        "search_queries": n_queries,
        "search_p50_ms": round(statistics.median(lat), 3),
        "search_p99_ms": round(percentile(lat, 99), 3),
        "search_max_ms": round(max(lat), 3),
        "rest_requests": n_requests,
        "rest_requests_per_s": round(n_requests / rest),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument(
        "--db", default=None, help="SQLite file or postgresql:// DSN (default: a temporary SQLite file)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "bench.db")
        result = asyncio.run(run(args.files, db, args.queries, args.requests))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    sys.exit(0)


if __name__ == "__main__":
    main()
