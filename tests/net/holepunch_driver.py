"""One bitswarm Session inside a namespace for tests/net (``ip netns exec NS python this.py ...``).

Adds one torrent (seeding when ``--save`` holds its data), dials the ``--peer`` addresses, and prints
one JSON line per session event of interest (``started``, ``peer_connected``, ``holepunch``,
``complete``), a ``peers`` line every second (connected peers: address, transport) and, on SIGTERM,
``{"event": "stopped", "holepunch": {...stats}}`` before closing the session.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
from typing import Any

from bitswarm.session import Session, SessionConfig


def emit(event: str, **data: Any) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("--save", required=True)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--peer", action="append", default=[], help="host:port to dial")
    ap.add_argument("--no-pex", action="store_true")
    ap.add_argument("--no-holepunch", action="store_true")
    ap.add_argument("--download-limit", type=int, default=0)
    ap.add_argument("--transports", default="utp,tcp")
    args = ap.parse_args()
    cfg = SessionConfig(
        listen_host=args.host,
        listen_port=args.port,
        enable_dht=False,
        enable_pex=not args.no_pex,
        enable_holepunch=not args.no_holepunch,
        pex_interval=1.0,
        transports=args.transports,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Session(cfg) as session:
        peers = []
        for spec in args.peer:
            host, _, port = spec.rpartition(":")
            peers.append((host.strip("[]"), int(port)))
        events = session.events()

        async def relay_events() -> None:
            async for ev in events:
                if ev.kind in ("peer_connected", "holepunch"):
                    emit(ev.kind, **ev.data)
                elif ev.kind in ("torrent_completed", "completed", "finished"):
                    emit("complete")

        pump = loop.create_task(relay_events())
        await asyncio.sleep(0)
        handle = await session.add(args.torrent, args.save, peers=peers)
        if args.download_limit:
            handle.set_rate_limits(download=args.download_limit)
        emit("started", port=session.port, state=handle.status().state)

        async def report() -> None:
            done = False
            while True:
                st = handle.status()
                if not done and st.state == "seeding":
                    done = True
                    emit("complete")
                emit(
                    "peers",
                    state=st.state,
                    downloaded=st.downloaded,
                    peers=[{"address": p["address"], "transport": p["transport"]} for p in handle.peers()],
                )
                await asyncio.sleep(1.0)

        reporter = loop.create_task(report())
        await stop.wait()
        reporter.cancel()
        pump.cancel()
        hp = session._torrents[handle.info_hash].peer_manager.holepunch
        emit("stopped", holepunch=dataclasses.asdict(hp.stats) if hp is not None else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
