"""Runs bitswarm's PortMapper inside a namespace for tests/net (``ip netns exec NS python this.py``).

Listens on the TCP and UDP port it maps (a greeting on TCP, an echo on UDP, both ending with the
host's own address: what the public side dials to prove the mapping forwards, and to whom), prints
one JSON line per status change, and on SIGTERM stops
the mapper (which deletes the mappings) and prints ``{"event": "stopped", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from bitswarm.portmap import PortMapConfig, PortMapper, RenewalPolicy
from bitswarm.portmap.mapper import MappingBackend, default_backends
from bitswarm.portmap.natpmp_client import NatPmpClient, default_gateway

GREETING = b"bitswarm-behind-nat"


def emit(event: str, mapper: PortMapper, **extra: object) -> None:
    line = {
        "event": event,
        "summary": mapper.summary(),
        "external_ip": mapper.external_ip,
        "mappings": [s.as_dict() for s in mapper.status()],
        **extra,
    }
    print(json.dumps(line), flush=True)


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.DatagramTransport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.transport.sendto(
            b"echo:" + data + b" " + self.transport.get_extra_info("sockname")[0].encode(), addr
        )


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(GREETING + b" " + writer.get_extra_info("sockname")[0].encode())
    await writer.drain()
    writer.close()


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="0.0.0.0", help="address to listen on")
    ap.add_argument("--methods", default="upnp,natpmp")
    ap.add_argument("--natpmp-only", action="store_true", help="skip PCP: speak NAT-PMP (RFC 6886)")
    ap.add_argument("--lifetime", type=int, default=3600)
    ap.add_argument("--max-renew", type=float, default=1800.0)
    ap.add_argument("--no-listen", action="store_true", help="map only (another process listens)")
    args = ap.parse_args()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if not args.no_listen:
        server = await asyncio.start_server(greet, args.host, args.port)
        udp, _ = await loop.create_datagram_endpoint(Echo, local_addr=(args.host, args.port))
    policy = RenewalPolicy(lifetime=args.lifetime, max_renew_interval=args.max_renew)
    config = PortMapConfig(methods=tuple(args.methods.split(",")), policy=policy)
    backends = default_backends(config)
    if args.natpmp_only and "natpmp" in backends:

        async def natpmp_only() -> MappingBackend:
            client = NatPmpClient(default_gateway() or "0.0.0.0")
            client.method = "natpmp"
            return client

        backends["natpmp"] = natpmp_only
    external: list[str] = []
    mapper = PortMapper(
        {"tcp": args.port, "udp": args.port},
        config=config,
        backends=backends,
        on_external_address=lambda addr, method: external.append(f"{addr} ({method})"),
    )
    started = loop.time()
    await mapper.start()
    settled = await mapper.wait_settled(30)
    emit("settled", mapper, ok=settled, seconds=round(loop.time() - started, 2), external=external)
    while not stop.is_set():
        mapper.changed.clear()
        waiter = asyncio.ensure_future(mapper.changed.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if not stop.is_set():
            emit("status", mapper)
    await mapper.stop()
    emit("stopped", mapper)
    if not args.no_listen:
        server.close()
        udp.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
