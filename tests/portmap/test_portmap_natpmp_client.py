"""The asyncio NAT-PMP/PCP client against fake gateways on loopback (port 0): PCP, the fall-back to
NAT-PMP, and bounded failure when nothing answers."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable

import pytest

from bitswarm.portmap import MappingRefused, NoMappingService
from bitswarm.portmap.natpmp_client import NatPmpClient, default_gateway

Reply = Callable[[bytes], bytes | None]


class FakeGateway(asyncio.DatagramProtocol):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.requests.append(data)
        answer = self.reply(data)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


async def gateway(reply: Reply) -> tuple[FakeGateway, int, asyncio.DatagramTransport]:
    transport, proto = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: FakeGateway(reply), local_addr=("127.0.0.1", 0)
    )
    return proto, transport.get_extra_info("sockname")[1], transport


def pcp_gateway(data: bytes) -> bytes | None:
    if data[0] != 2:
        return None
    lifetime = struct.unpack_from("!I", data, 4)[0]
    header = struct.pack("!BBBBII12x", 2, 0x81, 0, 0, min(lifetime, 600), 1)
    body = bytearray(data[24:60])
    body[20:36] = b"\0" * 10 + b"\xff\xff" + bytes([203, 0, 114, 1])
    return header + bytes(body)


def natpmp_only_gateway(data: bytes) -> bytes | None:
    if data[0] != 0:
        return struct.pack("!BBHI", 0, 128 + data[1] % 128, 1, 5)  # UNSUPPORTED_VERSION
    if data[1] == 0:
        return struct.pack("!BBHI4s", 0, 128, 0, 5, bytes([203, 0, 114, 2]))
    _, op, _, internal, external, lifetime = struct.unpack("!BBHHHI", data)
    if internal == 1:
        return struct.pack("!BBHI", 0, 128 + op, 2, 5)  # NOT_AUTHORIZED
    return struct.pack("!BBHIHHI", 0, 128 + op, 0, 5, internal, external + 1, lifetime)


async def test_pcp_map_renew_and_delete() -> None:
    gw, port, transport = await gateway(pcp_gateway)
    client = NatPmpClient("127.0.0.1", port=port)
    try:
        granted = await client.map("tcp", 6881, 6881, 3600)
        assert (granted.external_ip, granted.external_port, granted.lifetime) == ("203.0.114.1", 6881, 600)
        await client.map("tcp", 6881, 6881, 3600)
        await client.unmap("tcp", 6881, 6881)
        assert client.method == "pcp"
        nonces = {req[24:36] for req in gw.requests}
        assert len(nonces) == 1  # renewals and the delete reuse the mapping's nonce
        assert struct.unpack_from("!I", gw.requests[-1], 4)[0] == 0  # delete = lifetime 0
    finally:
        client.close()
        transport.close()


async def test_falls_back_to_natpmp_and_reports_refusals() -> None:
    gw, port, transport = await gateway(natpmp_only_gateway)
    client = NatPmpClient("127.0.0.1", port=port)
    try:
        granted = await client.map("udp", 6881, 6881, 3600)
        assert client.method == "natpmp"
        assert (granted.external_ip, granted.external_port) == ("203.0.114.2", 6882)
        with pytest.raises(MappingRefused, match="NOT_AUTHORIZED") as info:
            await client.map("udp", 1, 1, 60)
        assert info.value.code == 2
        assert [r[0] for r in gw.requests].count(2) == 1  # PCP asked once only
    finally:
        client.close()
        transport.close()


async def test_nothing_listening_fails_fast() -> None:
    """An ICMP port-unreachable ends the wait at once: no gateway service."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = NatPmpClient("127.0.0.1", port=port)
    started = time.monotonic()
    try:
        with pytest.raises(NoMappingService, match="no NAT-PMP/PCP service"):
            await client.map("tcp", 6881, 6881, 60)
    finally:
        client.close()
    assert time.monotonic() - started < 1.0


async def test_silent_gateway_gives_up_after_bounded_retries() -> None:
    gw, port, transport = await gateway(lambda data: None)
    client = NatPmpClient("127.0.0.1", port=port, attempts=3, first_timeout=0.05)
    try:
        with pytest.raises(NoMappingService, match="after 3 tries"):
            await client.map("tcp", 6881, 6881, 60)
        assert len(gw.requests) == 3
    finally:
        client.close()
        transport.close()


def test_default_gateway_from_the_route_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    )
    assert default_gateway(str(table)) == "192.168.1.1"
    assert default_gateway(str(tmp_path / "missing")) is None
