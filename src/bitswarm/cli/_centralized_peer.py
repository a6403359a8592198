"""``bitswarm centralized-peer PEER_IP SERVER_IP[:PORT] ACTION_PORT LISTEN_PORT``: the peer program of
the CentralizedP2P REST API (seed 002)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from bitswarm.cli._app import app, fail, print_json


@app.command(
    "centralized-peer",
    help="A peer of the CentralizedP2P REST API (seed 002: POST /resource, POST /heartbeat, GET /resource; "
    "serve it with `bitswarm index`). Arguments in the seed's order: PEER_IP (this peer's address), "
    "SERVER_IP[:PORT] (the index; port 42070 when left out), ACTION_PORT (the peer's command interface, "
    "on 127.0.0.1 unless --action-host says otherwise: one command per line — help, list, find NAME, "
    "get NAME, quit — one JSON reply per line) and "
    "LISTEN_PORT (where this peer serves its files to other peers, over HTTP). "
    "--share DIR registers each file of DIR (peer_port = LISTEN_PORT, resource_hash = its SHA-1), serves "
    "them and sends a heartbeat every 5 minutes until SIGTERM / Ctrl-C. --get NAME --output DIR finds the "
    "holders of NAME (GET /resource) and downloads it from one (the ports are then unused).",
)
def centralized_peer(
    peer_ip: Annotated[str, typer.Argument(metavar="PEER_IP", help="This peer's IPv4 address.")],
    server: Annotated[str, typer.Argument(metavar="SERVER_IP[:PORT]", help="The index server.")],
    action_port: Annotated[
        int, typer.Argument(metavar="ACTION_PORT", help="Command interface port (0: any).")
    ],
    listen_port: Annotated[int, typer.Argument(metavar="LISTEN_PORT", help="File serving port (0: any).")],
    share: Annotated[
        Path | None, typer.Option("--share", help="Register and serve this folder's files.")
    ] = None,
    get: Annotated[str | None, typer.Option("--get", help="Download the resource of this name.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder downloads are written to.")] = Path(
        "."
    ),
    peer_id: Annotated[
        str | None, typer.Option("--peer-id", help="This peer's id (a UUID; default: new).")
    ] = None,
    action_host: Annotated[
        str,
        typer.Option("--action-host", help="Address of the command interface (it takes no password)."),
    ] = "127.0.0.1",
    heartbeat: Annotated[float, typer.Option("--heartbeat", help="Seconds between heartbeats.")] = 300.0,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the server or a peer.")
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print events as JSON lines.")] = False,
) -> None:
    from bitswarm.index.centralized_peer import (
        ActionServer,
        CentralizedClient,
        fetch_resource,
        server_url,
        sharing,
    )

    for what, port in (("ACTION_PORT", action_port), ("LISTEN_PORT", listen_port)):
        if not 0 <= port < 65536:
            fail(f"{what} must be 0 to 65535, got {port}")
    if share is not None and get is not None:
        fail("give --share DIR or --get NAME, not both")
    if share is not None and not share.is_dir():
        fail(f"{share} is not a directory")
    if not output.is_dir():
        fail(f"{output} is not a directory")
    if heartbeat <= 0:
        fail("--heartbeat must be positive")
    if peer_id is not None:
        import uuid

        try:
            peer_id = str(uuid.UUID(peer_id))
        except ValueError:
            fail(f"--peer-id must be a UUID, got {peer_id!r}")
    base = server_url(server)

    async def fetch_one() -> Any:
        async with CentralizedClient(base, timeout=timeout) as client:
            assert get is not None
            return await fetch_resource(client, get, output, timeout=timeout)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with CentralizedClient(base, timeout=timeout) as client, sharing(
            client, share, peer_ip=peer_ip, listen_port=listen_port,
            peer_id=peer_id, heartbeat_every=heartbeat,
        ) as peer:  # fmt: skip
            actions = ActionServer(client, peer.files, output)
            aport = await actions.start(action_host, action_port)
            try:
                info = {"event": "ready", "peer_id": peer.peer_id, "action_port": aport,
                        "listen_port": peer.port, "resources": [f.name for f in peer.files]}  # fmt: skip
                if as_json:
                    print_json(info)
                else:
                    where = f"{peer_ip}:{peer.port}, commands on {action_host}:{aport}"
                    print(f"peer {peer.peer_id}: {len(peer.files)} resource(s) served on {where}", flush=True)
                await stop.wait()
            finally:
                await actions.stop()

    from bitswarm.cli._index_peer import run_peer  # the same error handling as index-peer

    if get is None:
        run_peer(serve)
        return
    holder, path = run_peer(fetch_one)
    if as_json:
        print_json({"event": "complete", "path": str(path), "from": f"{holder.ip}:{holder.port}"})
    else:
        print(f"{path} from {holder.ip}:{holder.port}")
