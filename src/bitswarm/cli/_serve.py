"""``bitswarm serve``: everything a LAN needs in one process — tracker (HTTP + UDP), index (every
front end and the web UI) and a DHT bootstrap node — with one config file and one data directory.

Data directory layout: ``tracker.sqlite`` (whitelist, passkeys, counters, peer snapshot),
``index.sqlite3`` (accounts, peers, files), ``dht.state`` (node id and contacts for a fast restart).
Config file (``--config serve.toml``): top-level keys named like the options, e.g.::

    host = "0.0.0.0"
    dir = "/var/lib/bitswarm"
    tracker_port = 6969
    index_port = 42070
    binary_port = 42071     # omit for no binary protocol
    dht_port = 6881         # omit or dht = false for no DHT node
    bootstrap = ["10.0.0.2:6881"]

Command-line options win over the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from bitswarm.cli._app import app, console, fail, hostport, listen_failure, load_toml, print_json
from bitswarm.cli._peer import parse_hostport

_KEYS = {"host", "dir", "tracker_port", "index_port", "binary_port", "dht_port", "dht", "bootstrap", "name"}


def _load_config(path: Path) -> dict[str, Any]:
    return load_toml(path, _KEYS)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1" if host != "::" else "[::1]"
    return f"[{host}]" if ":" in host else host


async def _serve(
    host: str,
    data_dir: Path,
    tracker_port: int,
    index_port: int,
    binary_port: int | None,
    dht_port: int | None,
    bootstrap: list[tuple[str, int]],
    name: str,
    json_out: bool,
) -> None:
    from bitswarm.dht.server import DHTServer
    from bitswarm.index._config import IndexConfig
    from bitswarm.index._service import IndexService
    from bitswarm.index.server import IndexServer
    from bitswarm.tracker.server.app import TrackerServer
    from bitswarm.tracker.server.config import TrackerConfig

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    data_dir.mkdir(parents=True, exist_ok=True)
    tracker = TrackerServer(
        TrackerConfig(
            http=((host, tracker_port),), udp=((host, tracker_port),), db=data_dir / "tracker.sqlite"
        )
    )
    service = await IndexService.open(str(data_dir / "index.sqlite3"))
    index = IndexServer(
        IndexConfig(name=name, host=host, port=index_port, binary_port=binary_port, db=str(data_dir)),
        service,
    )
    dht: DHTServer | None = None
    started: list[Any] = []
    try:
        try:  # each error names the address (asyncio's own message does for TCP, the DHT's too)
            where = [f"{hostport(host, tracker_port)} (tracker UDP)"]
            await tracker.start()
            started.append(tracker)
            where = [f"{hostport(host, index_port)} (index)"]
            bound = await index.start()
            started.append(index)
            if dht_port is not None:
                where = [f"{hostport(host, dht_port)} (DHT UDP)"]
                dht = DHTServer(host, dht_port, bootstrap=bootstrap, state_file=data_dir / "dht.state")
                await dht.start()
        except OSError as exc:
            fail(listen_failure(exc, *where))
        th, tp = tracker.http_addresses[0][:2]
        uh, up = tracker.udp_addresses[0][:2]
        info: dict[str, Any] = {
            "tracker_http": f"http://{_url_host(str(th))}:{tp}/announce",
            "tracker_udp": f"udp://{_url_host(str(uh))}:{up}",
            "index": f"http://{_url_host(host)}:{bound.http_port}",
            "index_binary_port": bound.binary_port,
            "dht": None if dht is None else f"{dht.address[0]}:{dht.address[1]}",
            "dht_id": None if dht is None else dht.node_id.hex(),
            "dir": str(data_dir),
        }
        if json_out:
            print_json(info)
        else:
            console.print(f"tracker   {info['tracker_http']}  {info['tracker_udp']}")
            console.print(f"index     {info['index']}/  (web UI, /api/v1, P2PFlix, CentralizedP2P)")
            if bound.binary_port is not None:
                console.print(f"binary    {host}:{bound.binary_port}")
            if dht is not None:
                console.print(f"dht       {info['dht']}  id {info['dht_id']}")
            console.print(f"data      {data_dir}   (Ctrl-C to stop)")
        await stop.wait()
    finally:
        if dht is not None:
            await dht.stop()
        if index in started:
            await index.stop()
        await service.close()
        if tracker in started:
            await tracker.stop()


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address for every service (default 0.0.0.0).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--dir", help="Data directory (default ./bitswarm-data).")
    ] = None,
    tracker_port: Annotated[
        int | None, typer.Option("--tracker-port", help="Tracker HTTP+UDP port (6969).")
    ] = None,
    index_port: Annotated[int | None, typer.Option("--index-port", help="Index HTTP port (42070).")] = None,
    binary_port: Annotated[
        int | None, typer.Option("--binary-port", help="Index binary protocol port.")
    ] = None,
    dht_port: Annotated[int | None, typer.Option("--dht-port", help="DHT UDP port (6881).")] = None,
    no_dht: Annotated[bool, typer.Option("--no-dht", help="Do not run a DHT node.")] = False,
    bootstrap: Annotated[
        list[str] | None, typer.Option("--bootstrap", "-b", help="DHT node to join, HOST:PORT; repeatable.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="serve.toml with the same settings.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the bound addresses as one JSON line.")
    ] = False,
) -> None:
    """Run tracker + index (+ web UI) + DHT node in one process: what a LAN needs."""
    cfg = _load_config(config) if config is not None else {}
    h = host or str(cfg.get("host", "0.0.0.0"))
    d = data_dir or Path(str(cfg.get("dir", "bitswarm-data")))
    tp = tracker_port if tracker_port is not None else int(cfg.get("tracker_port", 6969))
    ip = index_port if index_port is not None else int(cfg.get("index_port", 42070))
    bp = binary_port if binary_port is not None else cfg.get("binary_port")
    dht_on = not no_dht and bool(cfg.get("dht", True))
    dp = (dht_port if dht_port is not None else int(cfg.get("dht_port", 6881))) if dht_on else None
    boots = [parse_hostport(b, "--bootstrap") for b in (bootstrap or cfg.get("bootstrap", []))]
    for what, port in (
        ("--tracker-port", tp),
        ("--index-port", ip),
        ("--binary-port", bp),
        ("--dht-port", dp),
    ):
        if port is not None and not 0 <= int(port) < 65536:
            fail(f"{what} must be 0..65535, got {port}")
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    runner(
        _serve(
            h,
            d,
            tp,
            ip,
            None if bp is None else int(bp),
            dp,
            boots,
            str(cfg.get("name", "bitswarm")),
            json_out,
        )
    )
