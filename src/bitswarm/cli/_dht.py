"""``bitswarm dht``: a standalone Mainline DHT node (e.g. a LAN bootstrap), ``dht lookup`` and ``dht scrape``.

``bitswarm dht [--port N] [--bootstrap HOST:PORT]... [--state FILE]`` runs a node and prints its id,
address and routing-table size every few seconds (``--json``: one object per line).
``bitswarm dht lookup INFOHASH [--bootstrap HOST:PORT]...`` prints the peers found, one
``HOST:PORT`` per line. ``bitswarm dht scrape INFOHASH --bootstrap HOST:PORT`` estimates its seeds
and peers from the nodes' BEP 33 bloom filters (``--json``: one object). Loopback and private
addresses are accepted when the bootstrap node (or the bound address) is itself loopback/private, so
a LAN or a test needs no extra flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bitswarm.cli._app import EXIT_FAILURE, app, console, err_console, fail, print_json
from bitswarm.cli._peer import parse_hostport

if TYPE_CHECKING:
    from bitswarm.dht.lookup import LookupResult

dht_app = typer.Typer(
    name="dht",
    help="Run a standalone Mainline DHT node, or look up the peers of an info-hash.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(dht_app)

BootstrapOption = Annotated[
    list[str] | None,
    typer.Option("--bootstrap", "-b", help="A DHT node to join through, HOST:PORT; repeatable."),
]


def _run(coro_fn: object) -> None:
    try:
        import uvloop

        uvloop.run(coro_fn())  # type: ignore[operator]
    except ImportError:  # pragma: no cover
        asyncio.run(coro_fn())  # type: ignore[operator]


def _local(host: str) -> bool:
    from bitswarm.dht.bep42 import is_local_address

    return is_local_address(host)


def _bind_host(host: str) -> str:
    """``host`` for the node's socket: a wildcard (``::``, the default) is ``::`` dual-stack (BEP 32,
    both routing tables) when this host has IPv6, else ``0.0.0.0``; any other address as given."""
    import socket

    from bitswarm.session.listen import bind_socket, is_wildcard

    if not is_wildcard(host):
        return host
    probe = bind_socket(host, 0, socket.SOCK_DGRAM)  # port 0: asks only whether IPv6 is there
    probe.sock.close()
    return "::" if 6 in probe.families else "0.0.0.0"


def _config(bootstrap: list[tuple[str, int]], host: str) -> object:
    from bitswarm.dht.node import DHTConfig

    config = DHTConfig()
    if bootstrap and all(_local(h) for h, _ in bootstrap):
        config.lan = True  # a private/loopback bootstrap: a LAN or a test network
    elif _local(host) and host not in ("0.0.0.0", "::"):
        config.lan = True
    return config


@dht_app.callback()
def dht(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", "-p", help="UDP port (0: any free port).")] = 6881,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to bind: '::' every IPv6 and IPv4 address, both routing tables (IPv4 only when "
            "the host has no IPv6), 0.0.0.0 IPv4 only, an address only that one.",
        ),
    ] = "::",
    bootstrap: BootstrapOption = None,
    state: Annotated[Path | None, typer.Option("--state", help="Save/restore id and contacts here.")] = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between status lines.")] = 10.0,
    json_out: Annotated[bool, typer.Option("--json", help="Status as JSON lines.")] = False,
) -> None:
    """Run a DHT node until Ctrl-C / SIGTERM, printing its id, address and table size."""
    if ctx.invoked_subcommand is not None:
        return
    from bitswarm.dht.server import DHTServer

    contacts = [parse_hostport(b, "--bootstrap") for b in bootstrap or []]
    try:
        host = _bind_host(host)
    except OSError as exc:
        fail(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        server = DHTServer(host, port, bootstrap=contacts, config=_config(contacts, host), state_file=state)  # type: ignore[arg-type]
        try:
            await server.start()
        except OSError as exc:
            fail(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}")
        try:
            while not stop.is_set():
                size = sum(len(t) for t in server.node.tables.values())
                addr = server.address
                if json_out:
                    print_json({"id": server.node_id.hex(), "address": f"{addr[0]}:{addr[1]}", "nodes": size})
                else:
                    console.print(f"dht node {server.node_id.hex()} on {addr[0]}:{addr[1]} — {size} nodes")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
        finally:
            await server.stop()

    _run(main)


InfoHashArgument = Annotated[str, typer.Argument(help="40 hex digits (v1, or a truncated v2 hash).")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")]


def _search(info_hash: str, bootstrap: list[str] | None, timeout: float, *, scrape: bool) -> LookupResult:
    """Join the DHT through ``bootstrap`` and run one get_peers lookup for ``info_hash`` (``scrape``:
    BEP 33, with bloom filters). Bad input exits 2."""
    from bitswarm.dht.server import DHTServer

    try:
        target = bytes.fromhex(info_hash)
    except ValueError:
        target = b""
    if len(target) != 20:
        fail(f"info-hash must be 40 hex digits, got {info_hash!r}")
    contacts = [parse_hostport(b, "--bootstrap") for b in bootstrap or []]
    if not contacts:
        fail("give at least one --bootstrap HOST:PORT")
    # loopback routers: loopback; else every address, dual-stack when the host has IPv6 (BEP 32)
    host = "127.0.0.1" if all(h.startswith("127.") for h, _ in contacts) else _bind_host("::")
    results: list[LookupResult] = []

    async def main() -> None:
        async with DHTServer(host, 0, bootstrap=contacts, config=_config(contacts, host)) as server:  # type: ignore[arg-type]
            await server.bootstrap(contacts, timeout=timeout)
            run = server.scrape if scrape else server.get_peers
            results.append(await run(target, timeout=timeout))

    try:
        _run(main)
    except TimeoutError:  # no answer from the bootstrap nodes (or the lookup): the operation failed
        fail(f"no DHT answer within {timeout:g} s (bootstrap {', '.join(bootstrap or [])})", EXIT_FAILURE)
    return results[0]


@dht_app.command()
def lookup(
    info_hash: InfoHashArgument,
    bootstrap: BootstrapOption = None,
    timeout: TimeoutOption = 30.0,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object with the peers.")] = False,
) -> None:
    """Find the peers of INFOHASH on the DHT; prints HOST:PORT lines."""
    res = _search(info_hash, bootstrap, timeout, scrape=False)
    peers = res.peers
    if json_out:
        print_json({"info_hash": res.target.hex(), "peers": [f"{h}:{p}" for h, p in peers]})
    else:
        for h, p in peers:
            print(f"[{h}]:{p}" if ":" in h else f"{h}:{p}")
    if not peers:
        err_console.print("no peers found")


@dht_app.command()
def scrape(
    info_hash: InfoHashArgument,
    bootstrap: BootstrapOption = None,
    timeout: TimeoutOption = 30.0,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object with the counts.")] = False,
) -> None:
    """Estimate the seeds and peers of INFOHASH on the DHT (BEP 33 scrape)."""
    res = _search(info_hash, bootstrap, timeout, scrape=True)
    out = {
        "info_hash": res.target.hex(),
        "seeds": res.seeds_estimate,
        "peers": res.peers_estimate,
        "nodes_answered": res.scrapes,
        "peers_found": len(res.peers),
    }
    if json_out:
        print_json(out)
    else:
        print(f"seeds: {out['seeds']}  peers: {out['peers']}  (BEP 33 estimate from {res.scrapes} nodes)")
    if not res.scrapes:
        err_console.print("no node answered with a scrape")
