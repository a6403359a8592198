"""UPnP IGD port mapping (WANIPConnection:1/2, WANPPPConnection:1) through ``async-upnp-client``.

SSDP finds the first InternetGatewayDevice that answers (M-SEARCH, bounded wait); its description is
fetched once; then ``AddPortMapping`` / ``DeletePortMapping`` / ``GetExternalIPAddress`` are plain
SOAP calls made by the library. Every library or network exception is turned into a
:class:`~bitswarm.portmap.errors.PortMapError` here, at the boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from async_upnp_client.aiohttp import AiohttpRequester
from async_upnp_client.client import UpnpDevice, UpnpService
from async_upnp_client.client_factory import UpnpFactory
from async_upnp_client.exceptions import UpnpActionError, UpnpError
from async_upnp_client.search import SsdpSearchListener
from async_upnp_client.utils import CaseInsensitiveDict, async_get_local_ip

from bitswarm.portmap.errors import MappingRefused, NoMappingService, PortMapError
from bitswarm.portmap.natpmp import Protocol
from bitswarm.portmap.natpmp_client import Granted

__all__ = ["IGD_DEVICE_TYPES", "UpnpIgdClient"]

IGD_DEVICE_TYPES = (
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
)
_CONNECTION_SERVICES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
_ONLY_PERMANENT_LEASES = 725  # UPnP IGD error: "OnlyPermanentLeasesSupported"
_CONFLICT_IN_MAPPING_ENTRY = 718  # another internal client holds this external port
_CONFLICT_RETRIES = 3
_CALL_ERRORS = (UpnpError, aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError)


class UpnpIgdClient:
    """One IGD's connection service: discover with :meth:`discover`, then map and unmap ports."""

    method = "upnp"

    def __init__(self, location: str, service: UpnpService, local_ip: str) -> None:
        self.location = location
        self.local_ip = local_ip  #: our address as the gateway sees it: the mapping's internal client
        self.external_ip: str | None = None
        self._service = service

    @classmethod
    async def discover(cls, timeout: float = 3.0, *, request_timeout: int = 5) -> UpnpIgdClient:
        """The first IGD that answers an SSDP search within ``timeout`` seconds, or
        :class:`NoMappingService`."""
        try:
            location = await _search(timeout)
            device = await UpnpFactory(AiohttpRequester(timeout=request_timeout)).async_create_device(
                location
            )
            _, local_ip = await async_get_local_ip(location)
        except PortMapError:
            raise
        except _CALL_ERRORS as exc:
            raise NoMappingService(f"UPnP IGD unusable: {type(exc).__name__}: {exc}") from exc
        service = _connection_service(device)
        if service is None:
            raise NoMappingService(f"UPnP device at {location} has no WANIPConnection service")
        return cls(location, service, local_ip)

    @property
    def gateway(self) -> str:
        return urlsplit(self.location).hostname or ""

    async def _call(self, action: str, **args: Any) -> Mapping[str, Any]:
        try:
            return await self._service.async_call_action(action, **args)
        except UpnpActionError as exc:
            code = exc.error_code if exc.error_code is not None else 0
            raise MappingRefused(
                f"UPnP {action} refused: {code} {exc.error_desc or ''}".rstrip(), code=code
            ) from exc
        except _CALL_ERRORS as exc:
            raise PortMapError(f"UPnP {action} failed: {type(exc).__name__}: {exc}") from exc

    async def get_external_address(self) -> str:
        result = await self._call("GetExternalIPAddress")
        address = result.get("NewExternalIPAddress")
        if not isinstance(address, str) or not address:
            raise PortMapError("UPnP GetExternalIPAddress gave no address")
        self.external_ip = address
        return address

    async def map(self, protocol: Protocol, internal_port: int, external_port: int, lifetime: int) -> Granted:
        """``AddPortMapping`` (also a renewal: the same mapping again). When another host holds the
        external port (error 718) a few other ports are tried instead; the grant says which one.
        Those are drawn from a generator seeded with our address and ``internal_port``, so the TCP and
        the UDP mapping of one port try the same ones (peers expect one port for both) while two
        hosts of one home try different ones. Falls back to a permanent lease when the IGD supports
        only those (error 725)."""
        rng = random.Random(f"{self.local_ip}/{internal_port}")
        candidates = [external_port] + [rng.randint(1024, 65535) for _ in range(_CONFLICT_RETRIES)]
        for i, port in enumerate(candidates):
            try:
                lifetime = await self._add(protocol, internal_port, port, lifetime)
            except MappingRefused as exc:
                if exc.code == _CONFLICT_IN_MAPPING_ENTRY and i + 1 < len(candidates):
                    continue
                raise
            if self.external_ip is None:
                with contextlib.suppress(PortMapError):
                    await self.get_external_address()
            return Granted(self.external_ip, port, lifetime)
        raise AssertionError("unreachable: the last candidate raises or returns")

    async def _add(self, protocol: Protocol, internal_port: int, external_port: int, lifetime: int) -> int:
        """One ``AddPortMapping``; the lease granted (0 when only permanent ones are supported)."""
        args = {
            "NewRemoteHost": "",
            "NewExternalPort": external_port,
            "NewProtocol": protocol.upper(),
            "NewInternalPort": internal_port,
            "NewInternalClient": self.local_ip,
            "NewEnabled": True,
            "NewPortMappingDescription": f"bitswarm {protocol} {internal_port}",
            "NewLeaseDuration": lifetime,
        }
        try:
            await self._call("AddPortMapping", **args)
        except MappingRefused as exc:
            if exc.code != _ONLY_PERMANENT_LEASES or lifetime == 0:
                raise
            await self._call("AddPortMapping", **{**args, "NewLeaseDuration": 0})
            return 0
        return lifetime

    async def unmap(self, protocol: Protocol, internal_port: int, external_port: int) -> None:
        await self._call(
            "DeletePortMapping", NewRemoteHost="", NewExternalPort=external_port, NewProtocol=protocol.upper()
        )

    def close(self) -> None:
        """Nothing to release: the library opens an HTTP session per call."""


def _connection_service(device: UpnpDevice) -> UpnpService | None:
    for service_type in _CONNECTION_SERVICES:
        service = device.find_service(service_type)
        if service is not None and service.has_action("AddPortMapping"):
            return service
    return None


async def _search(timeout: float) -> str:
    """SSDP M-SEARCH for an IGD; the LOCATION of the first answer."""
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_response(headers: CaseInsensitiveDict) -> None:
        location = headers.get_lower("location")
        st = headers.get_lower("st", "")
        if location and st in IGD_DEVICE_TYPES and not found.done():
            found.set_result(str(location))

    started: list[SsdpSearchListener] = []

    def make_listener(st: str) -> SsdpSearchListener:
        # the search goes out once the socket is connected (connection_made runs after async_start)
        listener = SsdpSearchListener(
            callback=on_response,
            search_target=st,
            timeout=max(1, int(timeout)),
            connect_callback=lambda: listener.async_search(),
        )
        return listener

    try:
        for st in IGD_DEVICE_TYPES:
            listener = make_listener(st)
            await listener.async_start()
            started.append(listener)
        async with asyncio.timeout(timeout):
            return await found
    except TimeoutError:
        raise NoMappingService(f"no UPnP IGD answered SSDP within {timeout:g} s") from None
    except OSError as exc:
        raise NoMappingService(f"SSDP search failed: {exc}") from exc
    finally:
        for listener in started:
            listener.async_stop()
