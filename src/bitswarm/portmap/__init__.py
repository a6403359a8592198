"""Port mapping on the home router: UPnP IGD and NAT-PMP / PCP (RFC 6886 / 6887), so that peers
behind a NAT accept incoming connections.

:class:`PortMapper` is the service (start, status, stop); :mod:`~bitswarm.portmap.natpmp` is the
sans-I/O NAT-PMP/PCP codec, :mod:`~bitswarm.portmap.natpmp_client` its asyncio client,
:mod:`~bitswarm.portmap.upnp` the IGD client (``async-upnp-client``), :mod:`~bitswarm.portmap.lease`
the renewal schedule. See docs/testing-net.md for the namespace internet that tests them.
"""

from bitswarm.portmap.errors import MalformedResponse, MappingRefused, NoMappingService, PortMapError
from bitswarm.portmap.lease import RenewalPolicy
from bitswarm.portmap.mapper import MappingStatus, PortMapConfig, PortMapper

__all__ = [
    "MalformedResponse",
    "MappingRefused",
    "MappingStatus",
    "NoMappingService",
    "PortMapConfig",
    "PortMapError",
    "PortMapper",
    "RenewalPolicy",
]
