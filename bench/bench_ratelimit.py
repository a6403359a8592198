#!/usr/bin/env python3
"""Rate limits on a real transfer (issue 24): do the session's limits hold, per transport?

bitswarm sessions on loopback, one process. Each case moves ``--size`` bytes (4 MB) under a
``--limit`` (500 kB/s) and prints the achieved rate and its ratio to the limit (≈1.0 when the limit
holds; a little over from the first burst of the token bucket, a quarter second's worth):

* ``download tcp`` / ``download utp``: the leecher's session download limit, one seeder;
* ``upload tcp`` / ``upload utp``: the seeder's session upload limit, one leecher;
* ``download tcp, 2 seeders`` / ``download tcp, 2 torrents``: the session-wide download limit
  shared by two connections;
* ``upload tcp, 2 leechers``: the session-wide upload limit (the seeder's bytes sent; the leechers
  also trade with each other).

The same code runs over both transports, so uTP is the same-run reference for TCP. To compare two
commits, run the script with ``PYTHONPATH`` set to each tree's ``src``.

    .venv/bin/python bench/bench_ratelimit.py [--size 4000000] [--limit 500000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.config import parse_transports


def config(transports: str, **kw: Any) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        transports=parse_transports(transports),
        enable_dht=False,
        **kw,
    )


def make_torrent(root: Path, size: int, seed: int) -> Torrent:
    root.mkdir(parents=True, exist_ok=True)
    f = root / f"data{seed}.bin"
    f.write_bytes(random.Random(seed).randbytes(size))
    return parse_torrent(create_torrent(f, piece_length=65536))


async def one_pair(d: Path, transports: str, kind: str, size: int, limit: int) -> float:
    t = make_torrent(d / "s", size, 1)
    lim = {f"{kind}_rate_limit": limit}
    up = lim if kind == "upload" else {}
    down = lim if kind == "download" else {}
    async with Session(config(transports, **up)) as s, Session(config(transports, **down)) as leecher:
        await s.add(t, d / "s")
        h = await leecher.add(t, d / "l", peers=[("127.0.0.1", s.port)])
        t0 = time.monotonic()
        await h.wait_complete(timeout=600)
        return size / (time.monotonic() - t0)


async def two_seeders(d: Path, size: int, limit: int) -> float:
    t = make_torrent(d / "s", size, 1)
    async with (
        Session(config("tcp")) as s1,
        Session(config("tcp")) as s2,
        Session(config("tcp", download_rate_limit=limit)) as leecher,
    ):
        await s1.add(t, d / "s")
        await s2.add(t, d / "s")
        h = await leecher.add(t, d / "l", peers=[("127.0.0.1", s1.port), ("127.0.0.1", s2.port)])
        t0 = time.monotonic()
        await h.wait_complete(timeout=600)
        return size / (time.monotonic() - t0)


async def two_torrents(d: Path, size: int, limit: int) -> float:
    ts = [make_torrent(d / "s", size // 2, seed) for seed in (1, 2)]
    async with Session(config("tcp")) as s, Session(config("tcp", download_rate_limit=limit)) as leecher:
        for t in ts:
            await s.add(t, d / "s")
        hs = [await leecher.add(t, d / "l", peers=[("127.0.0.1", s.port)]) for t in ts]
        t0 = time.monotonic()
        await asyncio.gather(*(h.wait_complete(timeout=600) for h in hs))
        return (size // 2) * 2 / (time.monotonic() - t0)


async def two_leechers(d: Path, size: int, limit: int) -> float:
    t = make_torrent(d / "s", size, 1)
    async with (
        Session(config("tcp", upload_rate_limit=limit)) as s,
        Session(config("tcp")) as l1,
        Session(config("tcp")) as l2,
    ):
        hs = await s.add(t, d / "s")
        hl = [await x.add(t, d / f"l{i}", peers=[("127.0.0.1", s.port)]) for i, x in enumerate((l1, l2))]
        t0 = time.monotonic()
        await asyncio.gather(*(h.wait_complete(timeout=600) for h in hl))
        return hs.status().uploaded / (time.monotonic() - t0)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4_000_000)
    ap.add_argument("--limit", type=int, default=500_000)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    cases: list[tuple[str, Any]] = [
        (f"{kind} {tr}", lambda d, kind=kind, tr=tr: one_pair(d, tr, kind, a.size, a.limit))
        for kind in ("download", "upload")
        for tr in ("tcp", "utp")
    ]
    cases += [
        ("download tcp, 2 seeders", lambda d: two_seeders(d, a.size, a.limit)),
        ("download tcp, 2 torrents", lambda d: two_torrents(d, a.size, a.limit)),
        ("upload tcp, 2 leechers", lambda d: two_leechers(d, a.size, a.limit)),
    ]
    if not a.json:
        print(f"{a.size} bytes, limit {a.limit / 1000:.0f} kB/s")
    results = []
    for name, run in cases:
        with tempfile.TemporaryDirectory() as tmp:
            rate = await run(Path(tmp))
        results.append({"case": name, "rate": round(rate), "x_limit": round(rate / a.limit, 3)})
        if not a.json:
            print(f"{name:26} {rate / 1000:7.0f} kB/s  {rate / a.limit:5.2f} x limit", flush=True)
    if a.json:
        print(json.dumps({"size": a.size, "limit": a.limit, "results": results}))


if __name__ == "__main__":
    asyncio.run(main())
