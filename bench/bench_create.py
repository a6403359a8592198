#!/usr/bin/env python3
"""Torrent creation speed: bitswarm against mktorrent (v1) and libtorrent (v2, hybrid).

One data file on tmpfs (/dev/shm, so the disk is out of the picture); every tool hashes it with the
same piece length, best of ``--repeat`` runs each, runs interleaved. bitswarm runs in this process
(``make_torrent``), mktorrent as a subprocess with ``-t <cores>``, libtorrent through its Python
binding (``create_torrent`` + ``set_piece_hashes``). Ratio = bitswarm time / reference time (< 1 is
faster). Prints a table, or with ``--json`` one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bitswarm.metainfo._create import auto_piece_length, make_torrent
from bitswarm.metainfo._hashing import default_threads

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1] if t and t[-1] in "kmg" else ""
    return int(t[: len(t) - len(unit)]) * _UNITS[unit]


def make_file(directory: Path, size: int) -> Path:
    path = directory / "data.bin"
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        left = size
        i = 0
        while left:
            n = min(left, len(block))
            # vary every block a little so no two pieces are equal
            f.write(i.to_bytes(8, "little") + block[8:n] if n >= 8 else block[:n])
            left -= n
            i += 1
    return path


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its waited-for children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    c0, t0 = _cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, _cpu() - c0


def run_mktorrent(exe: str, path: Path, plen: int, threads: int, out: Path) -> None:
    out.unlink(missing_ok=True)
    subprocess.run(
        [exe, "-t", str(threads), "-l", str(plen.bit_length() - 1), "-o", str(out), str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )


def run_libtorrent(lt: Any, path: Path, plen: int, version: str) -> bytes:
    files = lt.list_files(str(path))
    flags = (
        lt.create_torrent.v2_only if version == "v2" else lt.create_torrent.canonical_files_no_tail_padding
    )
    ct = lt.create_torrent(files, plen, flags)
    lt.set_piece_hashes(ct, str(path.parent))
    return bytes(lt.bencode(ct.generate()))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G", help="data size (default 1G; e.g. 256M)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool, best taken (default 3)")
    ap.add_argument("--piece-length", default=None, help="default: bitswarm's auto piece length")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    size = parse_size(args.size)
    plen = parse_size(args.piece_length) if args.piece_length else auto_piece_length(size)
    threads = default_threads()
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    tmp = Path(tempfile.mkdtemp(prefix="bitswarm-bench-", dir=base))
    rows: list[dict[str, Any]] = []
    try:
        path = make_file(tmp, size)
        mk = shutil.which("mktorrent")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            import libtorrent as lt
        except ImportError:  # pragma: no cover - the venv has it
            lt = None
        cases: list[tuple[str, Callable[[], object], str, Callable[[], object] | None]] = [
            (
                "v1",
                lambda: make_torrent(path, version="v1", piece_length=plen),
                f"mktorrent -t {threads}",
                (lambda: run_mktorrent(mk, path, plen, threads, tmp / "mk.torrent")) if mk else None,
            ),
            (
                "v2",
                lambda: make_torrent(path, version="v2", piece_length=plen),
                "libtorrent",
                (lambda: run_libtorrent(lt, path, plen, "v2")) if lt else None,
            ),
            (
                "hybrid",
                lambda: make_torrent(path, version="hybrid", piece_length=plen),
                "libtorrent",
                (lambda: run_libtorrent(lt, path, plen, "hybrid")) if lt else None,
            ),
        ]
        for name, ours, ref_name, ref in cases:
            ours()  # warm-up (imports, first touch of the data)
            runs_ours, runs_ref = [], []
            for _ in range(args.repeat):  # interleaved, so both see the same machine load
                runs_ours.append(timed(ours))
                if ref:
                    runs_ref.append(timed(ref))
            t_ours, cpu_ours = min(runs_ours)
            t_ref, cpu_ref = min(runs_ref) if runs_ref else (None, None)
            rows.append(
                {
                    "case": name,
                    "bitswarm_s": round(t_ours, 4),
                    "bitswarm_cpu_s": round(cpu_ours, 4),
                    "bitswarm_gib_s": round(size / t_ours / (1 << 30), 3),
                    "reference": ref_name if ref else None,
                    "reference_s": None if t_ref is None else round(t_ref, 4),
                    "reference_cpu_s": None if cpu_ref is None else round(cpu_ref, 4),
                    "ratio": None if t_ref is None else round(t_ours / t_ref, 3),
                }
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    result = {
        "bench": "create",
        "size": size,
        "piece_length": plen,
        "threads": threads,
        "repeat": args.repeat,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "results": rows,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"torrent creation, {size / (1 << 20):.0f} MiB on tmpfs, piece length {plen // 1024} KiB, ")
    print(f"{threads} hashing threads, best of {args.repeat} ({result['cpu']})")
    print(
        f"{'case':<8} {'bitswarm s':>11} {'cpu s':>7} {'GiB/s':>7}  {'reference':<16} {'ref s':>8} "
        f"{'cpu s':>7} {'ratio':>6}"
    )
    for r in rows:
        ref_s = "-" if r["reference_s"] is None else f"{r['reference_s']:.3f}"
        ref_cpu = "-" if r["reference_cpu_s"] is None else f"{r['reference_cpu_s']:.3f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(
            f"{r['case']:<8} {r['bitswarm_s']:>11.3f} {r['bitswarm_cpu_s']:>7.3f} "
            f"{r['bitswarm_gib_s']:>7.2f}  "
            f"{r['reference'] or '-':<16} {ref_s:>8} {ref_cpu:>7} {ratio:>6}"
        )
    print("ratio = bitswarm wall time / reference wall time (< 1: bitswarm is faster)")


if __name__ == "__main__":
    main()
