"""Typed errors of the index service.

Every error the index raises on purpose is an :class:`IndexServiceError`; each front end maps the
subclasses to its own error form (P2PFlix ``{"success": false, "error": ...}``, CentralizedP2P
``{"error": ...}``, the native ``{"error": {"code", "message"}}`` and the binary ``*_KO`` replies).
"""

from __future__ import annotations

from bitswarm.errors import BitswarmError, RemoteProtocolError


class IndexServiceError(BitswarmError):
    """Base class of the index service errors. ``code`` is a stable machine-readable name."""

    code = "index_error"
    status = 400


class NotFound(IndexServiceError):
    """The file, peer, user or session does not exist (or has expired)."""

    code = "not_found"
    status = 404


class Conflict(IndexServiceError):
    """The request clashes with what is stored (username taken, peer owned by someone else)."""

    code = "conflict"
    status = 409


class AuthError(IndexServiceError):
    """Bad credentials, a missing/expired token, or acting on another user's peer."""

    code = "unauthorized"
    status = 401


class Forbidden(IndexServiceError):
    """The caller is not trusted for this (federation without the shared federation key)."""

    code = "forbidden"
    status = 403


class Throttled(IndexServiceError):
    """Too many failed logins for this account or from this address; ``retry_after`` seconds."""

    code = "throttled"
    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ValidationError(IndexServiceError):
    """A field has the wrong type, size or form."""

    code = "invalid"
    status = 400


class StaleSequence(IndexServiceError):
    """A sequence number at or below one already accepted: a replayed or stale message (seed 000)."""

    code = "stale_sequence"
    status = 409


class IndexCodecError(RemoteProtocolError):
    """Bytes received on the binary index protocol do not form a valid frame or payload."""


__all__ = [
    "AuthError",
    "Conflict",
    "Forbidden",
    "IndexCodecError",
    "IndexServiceError",
    "NotFound",
    "StaleSequence",
    "Throttled",
    "ValidationError",
]
