"""A small asyncio NAT-PMP / PCP client around :mod:`bitswarm.portmap.natpmp`.

One UDP socket connected to ``gateway:5351``; each request is retransmitted on the RFC 6886 schedule
(250 ms, doubled each time) but only ``attempts`` times, so a gateway without the service costs at
most a few seconds (an ICMP port-unreachable ends the wait at once). PCP is asked first; on an
"unsupported version" answer the client switches to NAT-PMP for good (:attr:`NatPmpClient.method`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bitswarm.portmap import natpmp
from bitswarm.portmap.errors import MalformedResponse, MappingRefused, NoMappingService, PortMapError
from bitswarm.portmap.natpmp import Protocol, Response

__all__ = ["Granted", "NatPmpClient", "default_gateway"]


@dataclass(frozen=True)
class Granted:
    """A mapping the gateway made: where the public side reaches us, and for how long."""

    external_ip: str | None
    external_port: int
    lifetime: int


def default_gateway(route_table: str = "/proc/net/route") -> str | None:
    """The IPv4 default gateway from Linux's routing table (None when there is none or no such file)."""
    try:
        lines = Path(route_table).read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "00000000" and fields[2] != "00000000":
            with contextlib.suppress(ValueError):
                return str(ipaddress.IPv4Address(int(fields[2], 16).to_bytes(4, "little")))
    return None


class _NoPcp(PortMapError):
    """The gateway answered a PCP request with "unsupported version": use NAT-PMP."""


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | OSError] = asyncio.Queue(maxsize=64)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(exc)


class NatPmpClient:
    """Maps ports on ``gateway`` with PCP, or NAT-PMP when the gateway only speaks that."""

    def __init__(
        self,
        gateway: str,
        *,
        port: int = natpmp.NATPMP_PORT,
        attempts: int = 4,
        first_timeout: float = 0.25,
        nonce: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.gateway = gateway
        self.port = port
        self.attempts = attempts
        self.first_timeout = first_timeout
        self.method = "pcp"  #: "pcp", or "natpmp" after the gateway refused version 2
        self._nonce = nonce
        self._nonces: dict[tuple[Protocol, int], bytes] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._endpoint: _Endpoint | None = None
        self._lock = asyncio.Lock()
        self.external_ip: str | None = None  #: last address the gateway reported

    async def _open(self) -> tuple[asyncio.DatagramTransport, _Endpoint]:
        if self._transport is None or self._endpoint is None:
            loop = asyncio.get_running_loop()
            try:
                transport, endpoint = await loop.create_datagram_endpoint(
                    _Endpoint, remote_addr=(self.gateway, self.port)
                )
            except OSError as exc:
                raise NoMappingService(f"cannot reach {self.gateway}:{self.port}: {exc}") from exc
            self._transport, self._endpoint = transport, endpoint
        return self._transport, self._endpoint

    def _client_ip(
        self, transport: asyncio.DatagramTransport
    ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        sockname = transport.get_extra_info("sockname")
        return ipaddress.ip_address(sockname[0])

    async def _exchange(self, request: bytes, accept: Callable[[Response], bool]) -> Response:
        """Send ``request`` until an answer ``accept`` takes arrives; errors are typed."""
        async with self._lock:
            transport, endpoint = await self._open()
            while not endpoint.queue.empty():  # stale answers to earlier requests
                endpoint.queue.get_nowait()
            timeout = self.first_timeout
            for _ in range(self.attempts):
                transport.sendto(request)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout
                while (left := deadline - loop.time()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            item = await endpoint.queue.get()
                    except TimeoutError:
                        break
                    if isinstance(item, OSError):
                        raise NoMappingService(
                            f"no NAT-PMP/PCP service at {self.gateway}:{self.port} ({item.strerror or item})"
                        )
                    try:
                        response = natpmp.decode_response(item)
                    except MalformedResponse:
                        continue  # not for us or garbage: keep waiting (counted by the deadline)
                    if accept(response):
                        return response
                timeout *= 2
            raise NoMappingService(
                f"no NAT-PMP/PCP answer from {self.gateway}:{self.port} after {self.attempts} tries"
            )

    async def map(self, protocol: Protocol, internal_port: int, external_port: int, lifetime: int) -> Granted:
        """Map (or renew) ``internal_port``; ``lifetime`` 0 deletes the mapping."""
        if self.method == "pcp":
            try:
                return await self._map_pcp(protocol, internal_port, external_port, lifetime)
            except _NoPcp:
                self.method = "natpmp"
        return await self._map_natpmp(protocol, internal_port, external_port, lifetime)

    async def unmap(self, protocol: Protocol, internal_port: int, external_port: int) -> None:
        await self.map(protocol, internal_port, external_port, 0)
        self._nonces.pop((protocol, internal_port), None)

    async def _map_pcp(
        self, protocol: Protocol, internal_port: int, external_port: int, lifetime: int
    ) -> Granted:
        transport, _ = await self._open()
        key = (protocol, internal_port)
        nonce = self._nonces.setdefault(key, self._nonce(12))
        request = natpmp.encode_pcp_map_request(
            nonce=nonce,
            protocol=protocol,
            internal_port=internal_port,
            external_port=external_port,
            lifetime=lifetime,
            client_ip=self._client_ip(transport),
        )

        def accept(r: Response) -> bool:
            if isinstance(r, natpmp.PcpMapResponse):
                return r.nonce == nonce and r.protocol == protocol and r.internal_port == internal_port
            return isinstance(r, natpmp.PcpErrorResponse | natpmp.NatPmpErrorResponse)

        response = await self._exchange(request, accept)
        if isinstance(response, natpmp.NatPmpErrorResponse):  # a NAT-PMP-only gateway
            raise _NoPcp("the gateway speaks NAT-PMP, not PCP")
        if isinstance(response, natpmp.PcpErrorResponse):
            if response.result == natpmp.PcpResult.UNSUPP_VERSION:
                raise _NoPcp("the gateway does not speak PCP version 2")
            name = natpmp.result_name(2, response.result)
            raise MappingRefused(
                f"PCP MAP refused: {name}", code=response.result, retry_after=float(response.lifetime)
            )
        assert isinstance(response, natpmp.PcpMapResponse)
        ext = response.external_ip
        self.external_ip = None if ext.is_unspecified else str(ext)
        return Granted(self.external_ip, response.external_port, response.lifetime)

    async def _map_natpmp(
        self, protocol: Protocol, internal_port: int, external_port: int, lifetime: int
    ) -> Granted:
        if lifetime and self.external_ip is None:
            with contextlib.suppress(PortMapError):
                await self.get_external_address()
        request = natpmp.encode_natpmp_map_request(protocol, internal_port, external_port, lifetime)

        def accept(r: Response) -> bool:
            if isinstance(r, natpmp.NatPmpMapResponse):
                return r.protocol == protocol and r.internal_port == internal_port
            return isinstance(r, natpmp.NatPmpErrorResponse)

        response = await self._exchange(request, accept)
        if isinstance(response, natpmp.NatPmpErrorResponse):
            raise MappingRefused(
                f"NAT-PMP mapping refused: {natpmp.result_name(0, response.result)}", code=response.result
            )
        assert isinstance(response, natpmp.NatPmpMapResponse)
        return Granted(self.external_ip, response.external_port, response.lifetime)

    async def get_external_address(self) -> str:
        """NAT-PMP's external address request (PCP has none: its MAP answers carry the address)."""

        def accept(r: Response) -> bool:
            return isinstance(r, natpmp.NatPmpAddressResponse | natpmp.NatPmpErrorResponse)

        response = await self._exchange(natpmp.encode_natpmp_address_request(), accept)
        if isinstance(response, natpmp.NatPmpErrorResponse):
            raise MappingRefused(
                f"NAT-PMP address request refused: {natpmp.result_name(0, response.result)}",
                code=response.result,
            )
        assert isinstance(response, natpmp.NatPmpAddressResponse)
        self.external_ip = str(response.external_ip)
        return self.external_ip

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = self._endpoint = None
