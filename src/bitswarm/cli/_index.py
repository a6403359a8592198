"""``bitswarm index`` (run the file index server) and its clients ``bitswarm search`` and
``bitswarm peers`` (over the native ``/api/v1`` REST API)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from bitswarm.cli._app import (
    EXIT_FAILURE,
    EXIT_USAGE,
    app,
    console,
    error_exit_code,
    fail,
    hostport,
    listen_failure,
    print_json,
)


@app.command("index")
def index_command(
    host: str | None = typer.Option(None, "--host", help="Address to listen on [default: 127.0.0.1]."),
    port: int | None = typer.Option(None, "--port", help="HTTP port (0 = any free port) [default: 42070]."),
    binary_port: int | None = typer.Option(
        None, "--binary-port", help="Port of the binary protocol (seed 001); off unless given."
    ),
    db: str | None = typer.Option(
        None,
        "--db",
        help="SQLite database file, or a postgresql://user@host:port/dbname DSN [default: index.sqlite3].",
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help="config.toml to load (seed 000: tracker.py -c FILE) [default: ./config.toml when it exists].",
    ),
    name: str | None = typer.Option(None, "--name", help="Tracker name (federation)."),
    advertise: str | None = typer.Option(None, "--advertise", help="host:port other trackers reach us at."),
    peer_index: Annotated[
        list[str] | None,
        typer.Option(
            "--peer-index",
            "--join",
            help="Join the federation of the index at this URL (seed 000 new_tracker: its database is "
            "loaded and both flood registrations to each other); repeatable. Needs the federation key "
            "both share (federation_key in config.toml or $BITSWARM_INDEX_FEDERATION_KEY).",
        ),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print the bound ports as one JSON line."),
) -> None:
    """Run the file index: P2PFlix, CentralizedP2P and native REST APIs on one port, plus the binary
    protocol. Stops cleanly on SIGTERM or Ctrl-C."""
    from bitswarm.index._config import IndexConfig, load_config
    from bitswarm.index.server import Bound, run_index

    cfg = IndexConfig()
    if config is not None:
        cfg = load_config(config)
    elif os.path.exists("config.toml"):
        cfg = load_config("config.toml")
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "binary_port": binary_port,
            "db": db,
            "name": name,
            "advertise": advertise,
            "federation_key": os.environ.get("BITSWARM_INDEX_FEDERATION_KEY") or None,
        }.items()
        if v is not None
    }
    cfg = dataclasses.replace(cfg, **overrides)
    for p in (cfg.port, cfg.binary_port):
        if p is not None and not 0 <= p <= 65535:
            fail(f"bad port {p}")

    def ready(bound: Bound) -> None:
        if as_json:
            print_json(bound.as_json())
        else:
            info = bound.as_json()
            line = f"index listening on {info['url']}"
            if bound.binary_port is not None:
                line += f", binary protocol on {bound.host}:{bound.binary_port}"
            print(line, flush=True)

    try:
        asyncio.run(run_index(cfg, on_ready=ready, join=peer_index or []))
    except httpx.HTTPError as exc:  # --peer-index: the other index did not answer
        fail(f"cannot join the index at {_failed_url(exc)}: {exc or type(exc).__name__}", EXIT_FAILURE)
    except json.JSONDecodeError:
        fail(
            f"cannot join {', '.join(peer_index or [])}: the answer is not JSON (not an index?)", EXIT_FAILURE
        )
    except OSError as exc:  # the binary port's error names its address; the HTTP one's does not
        fail(listen_failure(exc, hostport(cfg.host, cfg.port)))
    except KeyboardInterrupt:
        pass


def _failed_url(exc: httpx.HTTPError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return "?"
    return f"{url.scheme}://{url.netloc.decode()}"


def _get(index: str, path: str, params: dict[str, Any]) -> Any:
    url = index.rstrip("/") + "/api/v1" + path
    try:
        reply = httpx.get(url, params=params, timeout=10)
    except httpx.HTTPError as exc:  # unreachable: the operation failed (1), not bad input
        fail(f"cannot reach the index at {index}: {exc or type(exc).__name__}", EXIT_FAILURE)
    try:
        body = reply.json()
    except ValueError:
        fail(f"{index}: not an index server (HTTP {reply.status_code})", EXIT_FAILURE)
    if reply.status_code != 200:
        message = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
        code = EXIT_FAILURE if reply.status_code >= 500 else EXIT_USAGE
        fail(f"{index}: HTTP {reply.status_code} {message}".rstrip(), code)
    return body


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


@app.command("search")
def search_command(
    query: str = typer.Argument(
        ..., help='Words (prefix match) or a "quoted phrase"; a file matching any of them is found.'
    ),
    index: str = typer.Option(..., "--index", help="Index server URL, e.g. http://127.0.0.1:42070"),
    limit: int = typer.Option(20, "--limit", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON line."),
) -> None:
    """Search an index by file name: the files matching every word first, then by online peers."""
    body = _get(index, "/search", {"q": query, "limit": limit})
    if as_json:
        print_json(body)
        return
    table = Table("id", "name", "size", "online", "magnet / hash")
    for f in body["items"]:
        ref = f["magnet"] or f["sha256"] or f["sha1"] or f["md5"] or ""
        table.add_row(str(f["id"]), f["name"], _size(f["size"]), str(f["online_peers"]), ref)
    console.print(table)
    console.print(f"{body['total']} match(es)")


@app.command("peers")
def peers_command(
    index: str = typer.Option(..., "--index", help="Index server URL, e.g. http://127.0.0.1:42070"),
    status: str = typer.Option("all", "--status", help="online, offline or all"),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON line."),
) -> None:
    """List the peers an index knows."""
    if status not in ("online", "offline", "all"):
        fail("--status is online, offline or all")
    body = _get(index, "/peers", {"status": status, "limit": limit})
    if as_json:
        print_json(body)
        return
    table = Table("peer", "user", "address", "status")
    for p in body["items"]:
        addr = f"{p['ip'] or '?'}:{p['port'] or '?'}"
        table.add_row(p["id"], p["username"] or "", addr, "online" if p["online"] else "offline")
    console.print(table)
    console.print(f"{body['total']} peer(s)")


@app.command("get")
def get_command(
    name_or_hash: str = typer.Argument(..., metavar="NAME_OR_HASH", help="File name or any of its hashes."),
    index: str = typer.Option(..., "--index", help="Index server URL, e.g. http://127.0.0.1:42070"),
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to download into.")] = Path("."),
    host: str = typer.Option(
        "::",
        "--host",
        help="Address to listen on for peers: '::' every IPv6 and IPv4 address (IPv4 only when the host "
        "has no IPv6), 0.0.0.0 IPv4 only, an address only that one.",
    ),
    port: int = typer.Option(0, "--port", help="TCP port for peers (0: any free)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Give up after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON line."),
) -> None:
    """Look a file up on an index (by name or hash) and download it over BitTorrent from the peers
    the index lists (a file a seed-001/002 peer registered without a .torrent: over HTTP from that
    peer, SHA-1 checked); exits 0 once every piece is verified."""
    from bitswarm.cli._peer import resume_dir
    from bitswarm.errors import BitswarmError
    from bitswarm.index.client import get

    output.mkdir(parents=True, exist_ok=True)

    async def resume_dir_of(swarm_hash: bytes) -> str:  # the XDG state dir, as download's (migrated)
        return await resume_dir(output, swarm_hash)

    try:
        got = asyncio.run(
            get(
                index,
                name_or_hash,
                str(output),
                host=host,
                port=port,
                timeout=timeout,
                resume_dir=resume_dir_of,
            )
        )
    except TimeoutError:
        fail(f"{name_or_hash}: not complete after {timeout:g} s", code=1)
    except BitswarmError as exc:
        fail(str(exc), error_exit_code(exc))
    except OSError as exc:
        fail(listen_failure(exc, hostport(host, port)))
    result: dict[str, Any] = {
        "name": got.name,
        "file_id": got.file.id,
        "size": got.size,
        "info_hash": got.info_hash,
        "path": str(output / got.name),
        "peers": len(got.file.peers),
    }
    if as_json:
        print_json({"event": "complete", **result})
    else:
        console.print(f"[green]complete[/]: {result['name']} ({_size(result['size'])}) in {output}")
