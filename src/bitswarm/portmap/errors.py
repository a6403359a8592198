"""The port-mapping errors: every failure of a mapping method ends up as one of these."""

from __future__ import annotations

from bitswarm.errors import BitswarmError, RemoteProtocolError


class PortMapError(BitswarmError):
    """A mapping method failed (the text says why; it is what :meth:`PortMapper.status` shows)."""


class NoMappingService(PortMapError):
    """No gateway answered for this method (no UPnP IGD found, nothing on port 5351)."""


class MappingRefused(PortMapError):
    """The gateway answered with an error: ``code`` is its result or UPnP error code."""

    def __init__(self, message: str, *, code: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        #: seconds the gateway says to wait before asking again (a PCP error's lifetime)
        self.retry_after = retry_after


class MalformedResponse(RemoteProtocolError, PortMapError):
    """A gateway sent bytes that are not a valid NAT-PMP / PCP response."""
