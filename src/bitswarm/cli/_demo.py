"""``bitswarm demo``: a complete local swarm in one command.

It starts bitswarm's own tracker (HTTP, SQLite in a temporary directory), makes a sample file and a
hybrid torrent announcing to that tracker, starts one seeder and three leechers as separate
``bitswarm`` processes on 127.0.0.1, shows every peer live (Rich), verifies each leecher's bytes
against the original and prints a summary. Ctrl-C stops everything cleanly. Exit 0 when every
leecher finished with identical bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from bitswarm.cli._app import app, console, fail, print_json


@dataclass
class _Peer:
    name: str
    role: str
    proc: asyncio.subprocess.Process | None = None
    status: dict[str, Any] = field(default_factory=dict)
    done_at: float | None = None
    log: list[str] = field(default_factory=list)


def _bar(fraction: float, width: int = 16) -> str:
    full = int(fraction * width)
    return "█" * full + "░" * (width - full)


def _table(peers: list[_Peer], started: float, tracker: str) -> Table:
    t = Table(title=f"bitswarm demo · tracker {tracker} · {time.monotonic() - started:5.1f} s", expand=False)
    for col in ("peer", "progress", "%", "↓ MB/s", "↑ MB/s", "peers", "state"):
        t.add_column(col, justify="left" if col in ("peer", "progress", "state") else "right", no_wrap=True)
    for p in peers:
        st = p.status
        frac = float(st.get("progress", 0.0))
        t.add_row(
            p.name,
            _bar(frac),
            f"{frac:.0%}",
            f"{st.get('download_rate', 0) / 1e6:.1f}",
            f"{st.get('upload_rate', 0) / 1e6:.1f}",
            str(st.get("peers", 0)),
            str(st.get("state", "starting")),
        )
    return t


async def _read_lines(peer: _Peer) -> None:
    assert peer.proc is not None and peer.proc.stdout is not None
    async for raw in peer.proc.stdout:
        line = raw.decode(errors="replace").strip()
        if not line.startswith("{"):
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("event") == "progress":
            peer.status = msg
            if msg.get("state") == "seeding" and peer.done_at is None:
                peer.done_at = time.monotonic()


async def _spawn(args: list[str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bitswarm",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


async def _demo(workdir: Path, size: int, leechers: int, timeout: float, json_out: bool) -> dict[str, Any]:
    from bitswarm.metainfo._create import make_torrent
    from bitswarm.tracker.server.app import TrackerServer
    from bitswarm.tracker.server.config import TrackerConfig

    tracker = TrackerServer(
        TrackerConfig(http=(("127.0.0.1", 0),), udp=(("127.0.0.1", 0),), db=workdir / "tracker.sqlite")
    )
    await tracker.start()
    host, port = tracker.http_addresses[0][:2]
    announce = f"http://{host}:{port}/announce"
    procs: list[_Peer] = []
    readers: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        seed_dir = workdir / "seeder"
        seed_dir.mkdir()
        sample = seed_dir / "bitswarm-sample.bin"
        with open(sample, "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 20)
                f.write(os.urandom(n))
                left -= n
        made = make_torrent(sample, version="hybrid", trackers=[[announce]])
        torrent_path = workdir / "bitswarm-sample.torrent"
        torrent_path.write_bytes(made.data)
        common = ["--port", "0", "--host", "127.0.0.1", "--json"]
        seeder = _Peer("seeder", "seed")
        seeder.proc = await _spawn(["seed", str(torrent_path), "--data", str(seed_dir), *common], workdir)
        procs.append(seeder)
        for i in range(leechers):
            d = workdir / f"leecher{i + 1}"
            p = _Peer(f"leecher{i + 1}", "download")
            p.proc = await _spawn(["download", str(torrent_path), "-o", str(d), *common], workdir)
            procs.append(p)
        readers = [loop.create_task(_read_lines(p)) for p in procs]
        started = time.monotonic()
        deadline = started + timeout
        with Live(
            _table(procs, started, announce), console=console, refresh_per_second=8, transient=json_out
        ) as live:
            while not stop.is_set():
                live.update(_table(procs, started, announce))
                if all(p.done_at is not None for p in procs[1:]):
                    break
                dead = [p for p in procs[1:] if p.proc is not None and p.proc.returncode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
            live.update(_table(procs, started, announce))
        elapsed = time.monotonic() - started
        if stop.is_set():
            raise typer.Exit(130)
        want = _sha256(sample)
        results = []
        for p in procs[1:]:
            assert p.proc is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.proc.wait(), 10)
            got_path = workdir / p.name / sample.name
            got = _sha256(got_path) if got_path.exists() else None
            results.append(
                {
                    "peer": p.name,
                    "exit_code": p.proc.returncode,
                    "seconds": None if p.done_at is None else round(p.done_at - started, 2),
                    "sha256_ok": got == want,
                }
            )
        return {
            "ok": all(r["sha256_ok"] and r["exit_code"] == 0 for r in results),
            "tracker": announce,
            "torrent": str(torrent_path),
            "size": size,
            "info_hash": (made.info_hash_v1 or b"").hex(),
            "seconds": round(elapsed, 2),
            "leechers": results,
            "workdir": str(workdir),
        }
    finally:
        for p in procs:
            if p.proc is not None and p.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.proc.send_signal(signal.SIGTERM)
        for p in procs:
            if p.proc is not None:
                try:
                    await asyncio.wait_for(p.proc.wait(), 10)
                except TimeoutError:
                    p.proc.kill()
                    await p.proc.wait()
        for r in readers:
            r.cancel()
        await tracker.stop()


@app.command()
def demo(
    size: Annotated[int, typer.Option("--size", help="Sample file size in MiB.")] = 48,
    leechers: Annotated[int, typer.Option("--leechers", help="How many downloading peers.")] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")] = 120.0,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the working directory.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Run a local swarm: tracker + 1 seeder + N leechers on 127.0.0.1, verified end to end."""
    if size < 1 or not 1 <= leechers <= 16:
        fail("--size must be ≥ 1 MiB and --leechers between 1 and 16")
    workdir = Path(tempfile.mkdtemp(prefix="bitswarm-demo-"))
    try:
        try:
            import uvloop

            summary = uvloop.run(_demo(workdir, size << 20, leechers, timeout, json_out))
        except ImportError:  # pragma: no cover
            summary = asyncio.run(_demo(workdir, size << 20, leechers, timeout, json_out))
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if json_out:
        print_json(summary)
    else:
        for r in summary["leechers"]:
            mark = "[green]✓ bytes identical[/]" if r["sha256_ok"] else "[red]✗ bytes differ[/]"
            console.print(f"{r['peer']}: {r['seconds']} s  {mark}")
        console.print(
            f"swarm of {leechers} leechers finished {size} MiB in {summary['seconds']} s "
            f"({'all verified' if summary['ok'] else 'FAILED'})"
        )
        if keep:
            console.print(f"files kept in {workdir}")
    if not summary["ok"]:
        raise typer.Exit(1)
