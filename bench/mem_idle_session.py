"""Memory of idle seeds in a bare :class:`~bitswarm.session.Session` (issue 24, target 3).

Adds ``--count`` single-piece torrents (4 KiB each, on tmpfs when there is one), every one seeding
with no peer and no tracker (``--tracker URL`` gives each one), waits until their housekeeping has
saved the resume data and gone quiet (``--restart``: then closes the session and measures a second
one that starts them from that resume data, as the daemon does), and reports:

* the RSS it grew by per torrent (``/proc/self/statm``, measured without tracemalloc), and
* with ``--trace``, tracemalloc's view of the same: the bytes still allocated per torrent, grouped by
  the innermost ``bitswarm`` frame (``--top`` lines) or by the allocating line (``--lines``).

Usage::

    .venv/bin/python bench/mem_idle_session.py --count 2000
    .venv/bin/python bench/mem_idle_session.py --count 500 --trace --top 40

Not a ``bench_*.py``: ``run_all.py`` does not run it; it is the tool behind the "lazy engine parts"
figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bitswarm.bencode import encode  # noqa: E402
from bitswarm.metainfo import parse_torrent  # noqa: E402
from bitswarm.session import Session, SessionConfig  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def make(root: Path, n: int, size: int, tracker: str | None) -> list[tuple[bytes, Path]]:
    """``n`` torrents, each in its own directory with its data (``meta.torrent`` beside it)."""
    out = []
    for i in range(n):
        d = root / f"t{i:05d}"
        d.mkdir(parents=True)
        name = f"f{i:05d}.bin"
        blob = os.urandom(size)
        (d / name).write_bytes(blob)
        info = {
            b"length": size,
            b"name": name.encode(),
            b"piece length": 16384,
            b"pieces": hashlib.sha1(blob).digest(),
        }
        meta: dict[bytes, object] = {b"info": info}
        if tracker:
            meta[b"announce"] = tracker.encode()
        raw = encode(meta)
        (d / "meta.torrent").write_bytes(raw)
        out.append((raw, d))
    return out


def load(root: Path) -> list[tuple[bytes, Path]]:
    return [((d / "meta.torrent").read_bytes(), d) for d in sorted(root.iterdir())]


async def prepare(root: Path) -> None:
    """The first session of ``--restart`` (a child process, so its memory is not in the measured
    one's RSS): hash every torrent and write its resume data."""
    async with Session(session_config()) as first:
        for raw, d in load(root):
            await first.add(parse_torrent(raw), d)
        await settle()


def session_config() -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, transports="tcp", enable_dht=False)  # type: ignore[arg-type]


def innermost(tb: tracemalloc.Traceback, anchor: str = "/bitswarm/") -> str:
    """The innermost frame whose file path contains ``anchor`` (else the innermost frame)."""
    for frame in reversed(tb):  # most recent call last
        if anchor in frame.filename and "/bitswarm/" in frame.filename:
            path = frame.filename.split("/bitswarm/", 1)[1]
            return f"{path}:{frame.lineno}"
    f = tb[-1]
    return f"{f.filename}:{f.lineno}"


async def settle() -> None:
    """Let each torrent's housekeeping loop save its resume data once and return."""
    for _ in range(200):
        await asyncio.sleep(0.1)
        if not [t for t in asyncio.all_tasks() if t.get_name().startswith("housekeeping-")]:
            break
    await asyncio.sleep(0.5)


async def run(args: argparse.Namespace, root: Path) -> dict[str, object]:
    torrents = make(root, args.count, args.size, args.tracker)
    if args.restart:
        subprocess.run([sys.executable, __file__, "--prepare", str(root)], check=True)
    parsed = [(parse_torrent(raw), d) for raw, d in torrents]
    async with Session(session_config()) as session:
        # one torrent first: the session's lazily built parts (and the imports) are not counted
        t0, d0 = parsed[0]
        await session.add(t0, d0)
        await asyncio.sleep(0.5)
        gc.collect()
        base_rss = rss()
        if args.trace:
            tracemalloc.start(args.frames)
            snap0 = tracemalloc.take_snapshot()
        for t, d in parsed[1:]:
            await session.add(t, d)
        await settle()
        gc.collect()
        n = len(parsed) - 1
        result: dict[str, object] = {
            "count": n,
            "rss_kib_per_torrent": round((rss() - base_rss) / 1024 / n, 2),
        }
        if args.trace:
            snap1 = tracemalloc.take_snapshot()
            tracemalloc.stop()
            filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
            s0, s1 = snap0.filter_traces(filters), snap1.filter_traces(filters)
            groups: dict[str, int] = defaultdict(int)
            before: dict[str, int] = defaultdict(int)
            for tr in s1.traces:
                key = innermost(tr.traceback, args.anchor) if not args.lines else str(tr.traceback[-1])
                groups[key] += tr.size
            for tr in s0.traces:
                key = innermost(tr.traceback, args.anchor) if not args.lines else str(tr.traceback[-1])
                before[key] += tr.size
            diff = {k: groups[k] - before.get(k, 0) for k in groups}
            total = sum(diff.values())
            result["traced_kib_per_torrent"] = round(total / 1024 / n, 2)
            top = sorted(diff.items(), key=lambda kv: -kv[1])[: args.top]
            result["top_bytes_per_torrent"] = [(k, round(v / n)) for k, v in top]
        return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--tracker", default=None, help="an announce URL for every torrent (default: none)")
    ap.add_argument(
        "--restart",
        action="store_true",
        help="measure a second session that starts the torrents with the first one's resume data "
        "(the daemon's start; default: the first session, which hashes every piece)",
    )
    ap.add_argument("--trace", action="store_true", help="tracemalloc: where the bytes are")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--lines", action="store_true", help="group by the allocating line, not bitswarm's")
    ap.add_argument(
        "--anchor",
        default="/bitswarm/",
        help="group by the innermost frame in a file whose path contains this (e.g. session/torrent.py: "
        "by the line of the torrent that built the part)",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--prepare", default=None, help=argparse.SUPPRESS)  # --restart's first session
    args = ap.parse_args()
    if args.prepare:
        asyncio.run(prepare(Path(args.prepare)))
        return 0
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="bw-mem-idle-", dir=base) as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['count']} idle seeds: RSS {result['rss_kib_per_torrent']} KiB per torrent", end="")
    if args.trace:
        print(f", traced {result['traced_kib_per_torrent']} KiB per torrent")
        for key, b in result["top_bytes_per_torrent"]:  # type: ignore[attr-defined]
            print(f"  {b:7d} B  {key}")
    else:
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
