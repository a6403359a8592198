"""``bitswarm demo``: a complete local swarm in one command.

It starts the embedded services in this process — bitswarm's tracker (HTTP), the file index (web UI
and APIs) and a DHT bootstrap node, state in SQLite in a temporary directory — makes a sample file,
shares it from one seeder process (``bitswarm share``: torrent + tracker + index registration + DHT
announce) and downloads it with three leecher processes that each find it another way: one by the
.torrent file (tracker), one by a magnet link through the DHT only (no tracker, no peer given), one by
name through the index (``bitswarm get``). A live Rich table shows every peer; at the end each
leecher's bytes are checked against the original (SHA-256), a summary and the web UI address are
printed. Ctrl-C stops everything cleanly. Exit 0 when every leecher finished with identical bytes.
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

from bitswarm.cli._app import app, console, fail, print_json, real_console


@dataclass
class _Peer:
    name: str
    role: str  #: how it finds the file
    proc: asyncio.subprocess.Process | None = None
    status: dict[str, Any] = field(default_factory=dict)
    done_at: float | None = None
    log: list[str] = field(default_factory=list)


def _bar(fraction: float, width: int = 10) -> str:
    full = int(fraction * width)
    return "█" * full + "░" * (width - full)


def _table(peers: list[_Peer], started: float, tracker: str) -> Table:
    t = Table(title=f"bitswarm demo · {time.monotonic() - started:4.1f} s", expand=False)
    for col in ("peer", "finds it by", "progress", "%", "↓MB/s", "↑MB/s", "peers", "state"):
        left = col in ("peer", "finds it by", "progress", "state")
        t.add_column(col, justify="left" if left else "right", no_wrap=True)
    for p in peers:
        st = p.status
        frac = float(st.get("progress", 0.0))
        t.add_row(
            p.name,
            p.role,
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
        event = msg.get("event")
        if event == "progress":
            peer.status = msg
            if msg.get("state") == "seeding" and peer.done_at is None:
                peer.done_at = time.monotonic()
        elif event == "complete":  # ``bitswarm get`` prints one line at the end
            peer.status = {**peer.status, "progress": 1.0, "state": "complete"}
            if peer.done_at is None:
                peer.done_at = time.monotonic()
        elif event in ("shared", "seeding"):
            peer.status = {**peer.status, **{k: v for k, v in msg.items() if k != "event"}}


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


async def _wait_indexed(index_url: str, name: str, timeout: float) -> None:
    """Until the index lists ``name`` (the seeder registers right after it starts listening)."""
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=index_url, timeout=5) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                page = (await http.get("/api/v1/search", params={"q": name})).json()
                if any(item.get("name") == name for item in page.get("items", [])):
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the index did not list {name} within {timeout:.0f} s")


async def _demo(workdir: Path, size: int, leechers: int, timeout: float, json_out: bool) -> dict[str, Any]:
    from bitswarm.dht.server import DHTServer
    from bitswarm.index._config import IndexConfig
    from bitswarm.index._service import IndexService
    from bitswarm.index.server import IndexServer
    from bitswarm.tracker.server.app import TrackerServer
    from bitswarm.tracker.server.config import TrackerConfig

    tracker = TrackerServer(
        TrackerConfig(http=(("127.0.0.1", 0),), udp=(("127.0.0.1", 0),), db=workdir / "tracker.sqlite")
    )
    service = await IndexService.open(str(workdir / "index.sqlite3"))
    index = IndexServer(IndexConfig(name="demo", host="127.0.0.1", port=0, db=str(workdir)), service)
    dht = DHTServer("127.0.0.1", 0, state_file=workdir / "dht.state")
    await tracker.start()
    bound = await index.start()
    await dht.start()
    host, port = tracker.http_addresses[0][:2]
    announce = f"http://{host}:{port}/announce"
    index_url = f"http://127.0.0.1:{bound.http_port}"
    dht_addr = f"{dht.address[0]}:{dht.address[1]}"
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
        torrent_path = workdir / "bitswarm-sample.torrent"
        common = ["--port", "0", "--host", "127.0.0.1", "--json"]
        boot = ["--bootstrap", dht_addr]
        seeder = _Peer("seeder", "shares it")
        seeder.proc = await _spawn(
            ["share", str(sample), "-o", str(torrent_path), "--tracker", announce, "--index", index_url,
             *boot, *common],
            workdir,
        )  # fmt: skip
        procs.append(seeder)
        readers.append(loop.create_task(_read_lines(seeder)))
        started = time.monotonic()
        while "info_hash" not in seeder.status or "magnet" not in seeder.status:  # shared + seeding
            if seeder.proc.returncode is not None or time.monotonic() - started > 60 or stop.is_set():
                raise typer.Exit(130 if stop.is_set() else 1)
            await asyncio.sleep(0.05)
        info_hash = str(seeder.status["info_hash"])
        # DHT only: no tr= and no x.pe in this magnet
        magnet = f"magnet:?xt=urn:btih:{info_hash}&dn={sample.name}"
        await _wait_indexed(index_url, sample.name, 30)
        ways = [
            ("torrent", ["download", str(torrent_path)]),
            ("magnet/DHT", ["download", magnet, *boot]),
            ("index", ["get", sample.name, "--index", index_url]),
        ]
        for i in range(leechers):
            way, args = ways[i % len(ways)]
            d = workdir / f"leech{i + 1}"
            p = _Peer(f"leech{i + 1}", way)
            p.proc = await _spawn([*args, "-o", str(d), *common], workdir)
            procs.append(p)
            readers.append(loop.create_task(_read_lines(p)))
        deadline = started + timeout
        with Live(
            _table(procs, started, announce),
            console=real_console(console),
            refresh_per_second=8,
            transient=json_out,
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
                    "via": p.role,
                    "exit_code": p.proc.returncode,
                    "seconds": None if p.done_at is None else round(p.done_at - started, 2),
                    "sha256_ok": got == want,
                }
            )
        return {
            "ok": all(r["sha256_ok"] and r["exit_code"] == 0 for r in results),
            "tracker": announce,
            "index": index_url,
            "dht": dht_addr,
            "torrent": str(torrent_path),
            "magnet": magnet,
            "size": size,
            "info_hash": info_hash,
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
        await dht.stop()
        await index.stop()
        await service.close()
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
        console.print()
        for r in summary["leechers"]:
            mark = "[green]✓ bytes identical[/]" if r["sha256_ok"] else "[red]✗ bytes differ[/]"
            console.print(f"{r['peer']} ({r['via']}): {r['seconds']} s  {mark}")
        console.print(
            f"swarm of {leechers} leechers finished {size} MiB in {summary['seconds']} s "
            f"({'all verified' if summary['ok'] else 'FAILED'})"
        )
        console.print(
            f"services were: tracker {summary['tracker']}, index + web UI {summary['index']}/, "
            f"DHT {summary['dht']} (run `bitswarm serve` to keep them)"
        )
        if keep:
            console.print(f"files kept in {workdir}")
    if not summary["ok"]:
        raise typer.Exit(1)
