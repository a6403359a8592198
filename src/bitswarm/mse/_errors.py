"""Errors raised by the MSE/PE handshake (Message Stream Encryption)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitswarm.errors import LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from bitswarm.mse._state import State


class MSEProtocolError(RemoteProtocolError):
    """The remote peer broke the MSE handshake (or closed during it): close the connection.

    ``hint`` is always ``"close"`` (MSE has no error reply). ``state`` is where our side of the
    handshake was: an initiator that fails in :attr:`State.AWAIT_KEY` never got a valid DH key back,
    which is how a peer without MSE support looks (a ``prefer`` driver retries in plaintext then).
    """

    def __init__(self, message: str, *, state: State | None = None) -> None:
        super().__init__(message, hint="close")
        self.state = state


class LocalMSEError(LocalProtocolError):
    """Our own side misused the handshake (bad argument, call in the wrong state)."""
