#!/usr/bin/env python3
"""Run every ``bench/bench_*.py`` with ``--json`` and collect the results.

Each benchmark runs in its own process (one after the other: the machine's cores are the thing being
measured), with a time limit. Prints a summary, or with ``--json`` one object
``{"date", "machine", "benches": {name: result or {"error": ...}}}``; ``--out FILE`` also writes it.
Extra arguments after ``--`` are passed to every benchmark (e.g. ``-- --repeat 1``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / (1 << 30), 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def discover(only: list[str] | None) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        found = [p for p in found if p.stem.removeprefix("bench_") in only or p.stem in only]
    return found


def run_one(path: Path, extra: list[str], timeout: float) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, str(path), "--json", *extra],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=HERE.parent,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    elapsed = round(time.monotonic() - t0, 1)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}", "elapsed_s": elapsed}
    result = _parse_json(proc.stdout)
    if result is None:
        return {"error": "no JSON object on stdout", "elapsed_s": elapsed}
    result["elapsed_s"] = elapsed
    return result


def _parse_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object a benchmark printed: the whole output, else the last line that is one."""
    candidates = [stdout.strip()] + [ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")]
    for text in candidates:
        try:
            obj = json.loads(text)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="names of benchmarks to run (e.g. create bencode)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per benchmark (default 600)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--out", type=Path, help="also write the JSON object to this file")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]

    report: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "benches": {},
    }
    for path in discover(args.only):
        name = path.stem.removeprefix("bench_")
        if not args.json:
            print(f"running {path.name} ...", file=sys.stderr, flush=True)
        report["benches"][name] = run_one(path, extra, args.timeout)

    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return
    m = report["machine"]
    print(f"{report['date']}  {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}")
    failed = False
    for name, res in report["benches"].items():
        if "error" in res:
            failed = True
            print(f"\n[{name}] FAILED: {res['error']}")
            continue
        print(f"\n[{name}] ({res.get('elapsed_s')} s)")
        rows = res.get("results")
        if isinstance(rows, list):
            for row in rows:
                print("  " + "  ".join(f"{k}={v}" for k, v in row.items()) if isinstance(row, dict) else row)
        else:
            print("  " + "  ".join(f"{k}={v}" for k, v in res.items() if not isinstance(v, (dict, list))))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
