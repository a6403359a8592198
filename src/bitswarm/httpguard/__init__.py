"""Hardening shared by bitswarm's own HTTP servers (the daemon's API, the index's HTTP port, the
streaming server): header, body and keep-alive deadlines, caps on connections per client address
and in all, a cap on the request head, and raising ``RLIMIT_NOFILE`` at start.

* :mod:`bitswarm.httpguard.limits` - :class:`HttpLimits`, :class:`ConnectionCounter`,
  :func:`client_key`, :class:`Deadline`, :func:`raise_nofile_limit` (no server library needed).
* :mod:`bitswarm.httpguard.protocol` - :func:`guarded_protocol`, uvicorn's httptools protocol with
  those limits, and :func:`server_config` (needs uvicorn: ``bitswarm[server]``).

The limits each server enforces are listed in ``docs/security.md``.
"""

from typing import TYPE_CHECKING

from bitswarm.httpguard.limits import ConnectionCounter, Deadline, HttpLimits, client_key, raise_nofile_limit

# Lazy re-exports of the uvicorn part: the streaming server (no uvicorn) imports this package.
if TYPE_CHECKING:
    from bitswarm.httpguard.protocol import guarded_protocol, server_config
else:
    from bitswarm._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(
        globals(), {"guarded_protocol": ".protocol", "server_config": ".protocol"}
    )

__all__ = [
    "ConnectionCounter",
    "Deadline",
    "HttpLimits",
    "client_key",
    "guarded_protocol",
    "raise_nofile_limit",
    "server_config",
]
