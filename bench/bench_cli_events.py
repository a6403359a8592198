#!/usr/bin/env python3
"""The CLI's ``--json`` output, per event and per progress tick (issue 24, target 2).

Every bitswarm peer of the swarm benchmark is a ``bitswarm download --seed --json`` process: one JSON
line per session event (a ``piece_verified`` per piece) and a ``progress`` line every half second.
Two measurements, each run on one or more source trees (``--src DIR``, default this checkout's
``src``; give two to compare, e.g. an export of main and this tree) in interleaved rounds:

* ``micro`` (default): in one process, a real (unstarted) :class:`~bitswarm.session.Session` and
  the CLI's event pump and display (``bitswarm.cli._peer``), stdout a pipe drained by ``cat``.
  ``--events N`` session events (``piece_verified`` with an ``index``) are published, each in its
  own event-loop iteration (``spread``, as in a swarm) or ``--burst K`` per iteration; the CPU time
  of the same loop without a subscriber is subtracted: **µs of CPU per event**. Then the progress
  tick: a seeding torrent (1 MiB, started session on 127.0.0.1) driven by the CLI's ``_drive`` with
  the interval set to 0: **µs of CPU per tick** (status, line, wait).
* ``process``: a ``bitswarm seed`` and a ``bitswarm download --json`` process over loopback (no DHT,
  no port mapping), ``--size`` (64 MiB) in ``--piece`` (32 KiB) pieces on tmpfs; the leecher's CPU
  (user + system from ``wait4``) and wall time, per round. ``--seed-limit 1250k`` paces the seeder
  (10 Mbit/s, a swarm peer's pace: events spread out); ``--leecher-output quiet`` runs the leecher
  with ``-q`` instead (no JSON lines: what the output costs is the difference).

    .venv/bin/python bench/bench_cli_events.py                       # micro, this tree
    .venv/bin/python bench/bench_cli_events.py --src /tmp/main/src --src src --rounds 5
    .venv/bin/python bench/bench_cli_events.py --mode process --src /tmp/main/src --src src
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _cpu() -> float:
    return time.process_time()


async def _micro_events(n: int, burst: int) -> dict[str, float]:
    from bitswarm.cli import _peer
    from bitswarm.session import Session, SessionConfig

    session = Session(SessionConfig(enable_dht=False, port_mapping=False))

    async def publish(count: int) -> float:
        t = _cpu()
        for i in range(0, count, burst):
            for j in range(i, min(count, i + burst)):
                session.publish_session("piece_verified", index=j)
            await asyncio.sleep(0)  # the pump runs, its line is written
            await asyncio.sleep(0)
        return _cpu() - t

    base = await publish(n)  # no subscriber: the loop alone
    display = _peer._Display(True)
    pump = asyncio.get_running_loop().create_task(_peer._pump_events(session, display))
    await asyncio.sleep(0)
    await publish(min(n, 2000))  # warm-up
    used = await publish(n)
    pump.cancel()
    sys.stdout.flush()
    await asyncio.sleep(0)
    session.disk_pool.shutdown(wait=False)
    return {"us_per_event": (used - base) / n * 1e6, "base_us": base / n * 1e6}


async def _micro_ticks(ticks: int, work: Path) -> dict[str, float]:
    from bitswarm.cli import _peer
    from bitswarm.metainfo import make_torrent, parse_torrent
    from bitswarm.session import Session, SessionConfig

    data = work / "tick.bin"
    data.write_bytes(os.urandom(1 << 20))
    torrent = parse_torrent(make_torrent(data, piece_length=32768).data)
    config = SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, port_mapping=False)
    session = Session(config)
    await session.start()
    try:
        handle = await session.add(torrent, work, resume_dir=str(work / "resume"))
        display = _peer._Display(True)
        stop = asyncio.Event()
        _peer.PROGRESS_INTERVAL = 0.0  # every iteration of _drive is a tick
        count = 0
        real_update = display.update

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            count += 1
            if count >= ticks:
                stop.set()
            return real_update(*args, **kwargs)

        display.update = counting  # type: ignore[method-assign]
        t = _cpu()
        await _peer._drive(session, [handle], display, until_complete=False, stop=stop)
        used = _cpu() - t
        sys.stdout.flush()
        return {"us_per_tick": used / count * 1e6}
    finally:
        await session.close()


def _child(args: argparse.Namespace) -> None:
    """One measurement in this process; stdout is a pipe to ``cat``; the result goes to ``--result-fd``."""
    result: dict[str, Any] = {}

    async def main() -> None:
        result.update(await _micro_events(args.events, args.burst))
        with tempfile.TemporaryDirectory(dir=_tmp()) as work:
            result.update(await _micro_ticks(args.ticks, Path(work)))

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
    with os.fdopen(args.result_fd, "w") as out:
        out.write(json.dumps(result))


def _tmp() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def _env(src: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(src), **(extra or {}))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONUNBUFFERED", None)  # stdout block-buffered, as a user's process has it
    return env


def run_micro(src: Path, args: argparse.Namespace) -> dict[str, Any]:
    r, w = os.pipe()
    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    argv = [sys.executable, __file__, "--child", "--events", str(args.events), "--burst", str(args.burst),
            "--ticks", str(args.ticks), "--result-fd", str(w)]  # fmt: skip
    child = subprocess.Popen(argv, stdout=cat.stdin, pass_fds=(w,), env=_env(src))
    os.close(w)
    assert cat.stdin is not None
    cat.stdin.close()
    with os.fdopen(r) as f:
        text = f.read()
    child.wait(300)
    cat.wait(30)
    if child.returncode:
        raise RuntimeError(f"child failed ({child.returncode}) on {src}")
    return dict(json.loads(text))


def run_process(
    src: Path, kind: str, work: Path, tfile: Path, data: Path, args: argparse.Namespace
) -> dict[str, float]:
    """One seed + download over loopback; the leecher's CPU and wall time."""
    state = work / "state"
    down = work / "down"
    for d in (state, down):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    common = ["--port", "0", "--host", "127.0.0.1", "--no-dht", "--no-port-mapping"]
    limit = ["--upload-limit", args.seed_limit] if args.seed_limit else []
    output = {"json": ["--json"], "quiet": ["-q"], "plain": []}[kind]
    env = _env(src, {"XDG_STATE_HOME": str(state)})
    bitswarm = [sys.executable, "-m", "bitswarm"]
    seed = subprocess.Popen([*bitswarm, "seed", str(tfile), "--data", str(data), *common, *limit, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    try:
        assert seed.stdout is not None
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = seed.stdout.readline()
            if not line:
                raise RuntimeError("the seeder exited")
            ev = json.loads(line)
            if ev.get("event") == "seeding":
                port = int(ev["port"])
        t0 = time.perf_counter()
        leech = subprocess.Popen([*bitswarm, "download", str(tfile), "-o", str(down),
                                  "--peer", f"127.0.0.1:{port}", *common, *output],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
        assert leech.stdout is not None
        lines = sum(1 for _ in leech.stdout)
        _, status, ru = os.wait4(leech.pid, 0)
        wall = time.perf_counter() - t0
        leech.returncode = os.waitstatus_to_exitcode(status)
        if leech.returncode != 0:
            raise RuntimeError(f"the leecher exited with {leech.returncode}")
        return {"cpu_s": ru.ru_utime + ru.ru_stime, "wall_s": wall, "lines": lines}
    finally:
        seed.terminate()
        seed.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("micro", "process"), default="micro")
    ap.add_argument("--src", action="append", type=Path, help="source tree(s) to compare (default: ./src)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--burst", type=int, default=1, help="events per loop iteration (micro)")
    ap.add_argument("--ticks", type=int, default=5000)
    ap.add_argument("--size", type=int, default=64 << 20)
    ap.add_argument("--piece", type=int, default=32 << 10)
    ap.add_argument("--seed-limit", metavar="RATE", help="process: the seeder's --upload-limit (e.g. 1250k)")
    ap.add_argument("--leecher-output", default="json",
                    help="process: json (--json), quiet (-q), plain (no option, not a terminal); a list "
                    "(json,quiet) runs each in every round")  # fmt: skip
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result-fd", type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    srcs = [p.resolve() for p in (args.src or [ROOT / "src"])]
    kinds = args.leecher_output.split(",") if args.mode == "process" else ["json"]
    variants = [(s, k) for s in srcs for k in kinds]
    results: dict[str, list[dict[str, Any]]] = {f"{s} {k}": [] for s, k in variants}
    with tempfile.TemporaryDirectory(dir=_tmp()) as tmp:
        work = Path(tmp)
        if args.mode == "process":
            data = work / "data"
            data.mkdir()
            payload = data / "payload.bin"
            with payload.open("wb") as f:
                for _ in range(args.size >> 20):
                    f.write(os.urandom(1 << 20))
            tfile = work / "p.torrent"
            create = [sys.executable, "-m", "bitswarm", "create", str(payload), "-l", str(args.piece)]
            subprocess.run([*create, "-o", str(tfile)], check=True, env=_env(srcs[0]), capture_output=True)
        for rnd in range(args.rounds):
            for src, kind in variants if rnd % 2 == 0 else list(reversed(variants)):
                load = os.getloadavg()[0]
                if args.mode == "micro":
                    r = run_micro(src, args)
                else:
                    r = run_process(src, kind, work, tfile, data, args)
                r["load"] = load
                results[f"{src} {kind}"].append(r)
                if not args.json:
                    shown = ", ".join(f"{k} {v:.2f}" for k, v in r.items())
                    print(f"round {rnd} {src} {kind}: {shown}", flush=True)
    summary = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in results.items()}
    if args.json:
        print(json.dumps({"mode": args.mode, "rounds": results, "median": summary}))
    else:
        for s, med in summary.items():
            print(f"median {s}: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))


if __name__ == "__main__":
    main()
