"""The typed exception hierarchy shared by every bitswarm subsystem.

Codecs raise only :class:`RemoteProtocolError` for bytes that came from the network and
:class:`LocalProtocolError` when our own side tries something illegal (the h11 split). Library
callers catch :class:`BitswarmError` to handle every error bitswarm raises on purpose.
"""

from __future__ import annotations


class BitswarmError(Exception):
    """Base class of every error bitswarm raises on purpose."""


class ProtocolError(BitswarmError):
    """A protocol rule was broken. ``hint`` may carry the reply the protocol wants (code, text)."""

    def __init__(self, message: str, *, hint: object | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class RemoteProtocolError(ProtocolError):
    """The remote side (or a file from elsewhere) sent something that breaks the protocol."""


class LocalProtocolError(ProtocolError):
    """Our own side tried to send or do something the protocol does not allow."""
