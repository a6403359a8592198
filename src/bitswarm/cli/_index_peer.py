"""``bitswarm index-peer``: a peer of the binary index protocol (seed 001) — ``share`` a folder,
``search``, ``browse``, ``peers`` and ``get`` (download a search hit from the peer that has it)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from bitswarm.cli._app import EXIT_FAILURE, EXIT_STOPPED, app, console, error_exit_code, fail, print_json

if TYPE_CHECKING:
    from bitswarm.index.binary_client import BinaryIndexClient
    from bitswarm.index.binary_peer import SharingPeer

_T = TypeVar("_T")

index_peer_app = typer.Typer(
    name="index-peer",
    help="A peer of the binary index protocol (seed 001: REGISTER, REGISTER_UPDATE, LOGIN, KEEP_ALIVE, "
    "LOGOUT, SEARCH, BROWSE, SHOW_PEERS over TCP; 5-byte header: payload length uint32 + message type). "
    "`share` registers a folder's files (name|MB|sha1), logs in with the port it serves them on, keeps "
    "alive every 5 minutes, sends REGISTER_UPDATE when the folder changes and LOGOUT on exit; `search`, "
    "`browse` and `peers` log in, ask and log out; `get` downloads a search hit from the peer holding it "
    "(HTTP on that peer's port, SHA-1 checked). Serve the protocol with `bitswarm index --binary-port`.",
    no_args_is_help=True,
)
app.add_typer(index_peer_app)

ServerOption = Annotated[
    str, typer.Option("--server", "-s", help="The index's binary protocol address, HOST:PORT.")
]
UserOption = Annotated[str, typer.Option("--username", "-u", help="Account name (created by REGISTER).")]
PasswordOption = Annotated[
    str,
    typer.Option(
        "--password", "-p", envvar="BITSWARM_INDEX_PASSWORD", help="Password ($BITSWARM_INDEX_PASSWORD)."
    ),
]
IdOption = Annotated[
    str | None,
    typer.Option(
        "--id",
        help="Peer id from an earlier REGISTER (what `share` printed). Without it a new peer id is "
        "REGISTERed, which drops the account's older ids (the seed's rule).",
    ),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for each reply.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print results as JSON lines.")]


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        fail(f"--server must be HOST:PORT, got {text!r}")
    return host, int(port)


def _account(server: str, username: str, password: str, peer_id: str | None, timeout: float) -> Any:
    from bitswarm.index.binary_peer import Account

    host, port = _hostport(server)
    return Account(host, port, username, password, peer_id, timeout)


def run_peer(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a peer's coroutine: a bitswarm error or an OS error (a port taken ...) is one line and
    exit code 2; Ctrl-C before the stop handlers are in place exits 130 (also ``centralized-peer``)."""
    from bitswarm.errors import BitswarmError

    try:
        return asyncio.run(make())
    except KeyboardInterrupt:  # Ctrl-C before the stop handlers are in place
        raise typer.Exit(EXIT_STOPPED) from None
    except BitswarmError as exc:
        fail(str(exc), error_exit_code(exc))
    except OSError as exc:
        fail(f"{exc.strerror or exc}")


def _ask(
    server: str, username: str, password: str, peer_id: str | None, timeout: float,
    call: Callable[[BinaryIndexClient], Awaitable[_T]],
) -> _T:  # fmt: skip
    """Log in (see :func:`~bitswarm.index.binary_peer.logged_in`), make one call, return its result."""
    from bitswarm.index.binary_peer import logged_in

    account = _account(server, username, password, peer_id, timeout)

    async def main() -> _T:
        async with logged_in(account) as client:
            return await call(client)

    return run_peer(main)


async def _update(peer: SharingPeer) -> bool:
    """Rescan and REGISTER_UPDATE; a failure is logged (the keep-alive logs in again) and retried."""
    from bitswarm.errors import BitswarmError

    try:
        return await peer.update()
    except BitswarmError as exc:
        logging.getLogger("bitswarm.index.binary_peer").warning("REGISTER_UPDATE failed: %s", exc)
        return False


@index_peer_app.command("share")
def share_command(
    directory: Annotated[Path, typer.Argument(help="Folder whose files are shared.")],
    server: ServerOption,
    username: UserOption,
    password: PasswordOption,
    peer_id: IdOption = None,
    host: Annotated[str, typer.Option("--host", help="Address the file server listens on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option("--port", help="Port the files are served on (0: any free).")] = 0,
    rescan: Annotated[
        float, typer.Option("--rescan", help="Seconds between folder rescans (REGISTER_UPDATE); 0: never.")
    ] = 60.0,
    keep_alive: Annotated[float, typer.Option("--keep-alive", help="Seconds between KEEP_ALIVEs.")] = 300.0,
    timeout: TimeoutOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """REGISTER the folder's files, LOGIN, serve them, KEEP_ALIVE; LOGOUT on SIGTERM / Ctrl-C."""
    from bitswarm.index.binary_peer import sharing

    if not directory.is_dir():
        fail(f"{directory} is not a directory")
    if not 0 <= port < 65536:
        fail(f"bad --port {port}")
    if keep_alive <= 0 or rescan < 0:
        fail("--keep-alive must be positive and --rescan not negative")
    account = _account(server, username, password, peer_id, timeout)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with sharing(
            account, directory, listen_host=host, listen_port=port, keep_alive_every=keep_alive
        ) as peer:
            info = {
                "event": "registered",
                "peer_id": peer.peer_id,
                "port": peer.port,
                "files": len(peer.files),
            }
            if as_json:
                print_json(info)
            else:
                print(
                    f"registered as {peer.peer_id}: {len(peer.files)} file(s) served on port {peer.port}",
                    flush=True,
                )
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), rescan or None)
                if not stop.is_set() and await _update(peer):
                    if as_json:
                        print_json({"event": "updated", "files": len(peer.files)})
                    else:
                        print(f"REGISTER_UPDATE: {len(peer.files)} file(s)", flush=True)
        if as_json:
            print_json({"event": "logged_out", "peer_id": peer.peer_id})

    run_peer(main)


@index_peer_app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="File name words.")],
    server: ServerOption,
    username: UserOption,
    password: PasswordOption,
    peer_id: IdOption = None,
    timeout: TimeoutOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """LOGIN, SEARCH (then LOGOUT, unless --id): the files matching QUERY and who holds them."""
    hits = _ask(server, username, password, peer_id, timeout, lambda c: c.search(query))
    if as_json:
        for h in hits:
            print_json(dataclasses.asdict(h))
        return
    from rich.table import Table

    table = Table("filename", "MB", "sha1", "user", "peer", "address")
    for h in hits:
        table.add_row(h.filename, h.size_mb, h.sha1, h.username, h.peer_id, f"{h.peer_ip}:{h.peer_port}")
    console.print(table)


@index_peer_app.command("browse")
def browse_command(
    peer: Annotated[str, typer.Argument(help="The peer's id as SEARCH / SHOW_PEERS list it.")],
    server: ServerOption,
    username: UserOption,
    password: PasswordOption,
    peer_id: IdOption = None,
    timeout: TimeoutOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """LOGIN, BROWSE (then LOGOUT, unless --id): every file a peer shares (filename, dimension, sha1)."""
    for f in _ask(server, username, password, peer_id, timeout, lambda c: c.browse(peer)):
        if as_json:
            print_json(dataclasses.asdict(f))
        else:
            print(f"{f.filename}|{f.size_mb}|{f.sha1}")


@index_peer_app.command("peers")
def peers_command(
    server: ServerOption,
    username: UserOption,
    password: PasswordOption,
    which: Annotated[str, typer.Option("--status", help="online, offline or all.")] = "all",
    peer_id: IdOption = None,
    timeout: TimeoutOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """LOGIN, SHOW_PEERS (then LOGOUT, unless --id): the online / offline / all peers."""

    if which not in ("online", "offline", "all"):
        fail("--status is online, offline or all")
    status: Literal["online", "offline", "all"] = which  # type: ignore[assignment]
    for p in _ask(server, username, password, peer_id, timeout, lambda c: c.show_peers(status)):
        if as_json:
            print_json(
                {"peer_id": p.peer_id, "username": p.username, "ip": p.ip, "port": p.port, "online": p.online}
            )
        else:
            print(f"{p.peer_id} {p.username} {p.ip}:{p.port} {'online' if p.online else 'offline'}")


@index_peer_app.command("get")
def get_command(
    name: Annotated[
        str, typer.Argument(help="File name (a SEARCH query; an exact name match is preferred).")
    ],
    server: ServerOption,
    username: UserOption,
    password: PasswordOption,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write the file into.")] = Path(
        "."
    ),
    peer_id: IdOption = None,
    timeout: TimeoutOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """LOGIN, SEARCH NAME (then LOGOUT, unless --id), download it from a holder (SHA-1 checked)."""
    from bitswarm.index.binary_peer import fetch, logged_in, pick

    if not output.is_dir():
        fail(f"{output} is not a directory")
    account = _account(server, username, password, peer_id, timeout)

    async def main() -> Any:
        async with logged_in(account) as client:
            hits = pick(await client.search(name), name)
        if not hits:
            fail(f"no online peer holds {name!r}", EXIT_FAILURE)
        return await fetch(hits, output, timeout=max(timeout, 60.0))

    hit, path = run_peer(main)
    if as_json:
        print_json({"event": "complete", "path": str(path), "sha1": hit.sha1, "peer_id": hit.peer_id})
    else:
        print(f"{path} ({hit.size_mb} MB, sha1 {hit.sha1}) from {hit.peer_ip}:{hit.peer_port}")
