"""Errors raised by the peer wire codec (BEP 3)."""

from __future__ import annotations

from bitswarm.errors import LocalProtocolError, RemoteProtocolError


class WireProtocolError(RemoteProtocolError):
    """The remote peer broke the peer wire protocol (BEP 3/6/10): close the connection.

    ``hint`` is always ``"close"``: there is no error reply on the wire, only a disconnect.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="close")


class LocalWireError(LocalProtocolError):
    """Our own side tried to send something the peer wire protocol does not allow."""
