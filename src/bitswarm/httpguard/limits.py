"""The limits of bitswarm's own HTTP servers and the bookkeeping behind them, free of any server
library (the streaming server imports this without uvicorn).

* :class:`HttpLimits` - the timeouts and caps of one server.
* :class:`ConnectionCounter` - open connections per client address (an IPv4 address, an IPv6 /64;
  see :func:`client_key`) and in all, within those caps.
* :class:`Deadline` - one re-armable timer of a connection.
* :func:`raise_nofile_limit` - the soft ``RLIMIT_NOFILE`` up to the hard limit at start: every
  connection is a descriptor, and the caps (not the soft limit) are what should refuse a flood.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("bitswarm.httpguard")

__all__ = ["ConnectionCounter", "Deadline", "HttpLimits", "client_key", "raise_nofile_limit"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Per-client limits of one of bitswarm's HTTP servers. The defaults are the daemon API's and the
    streaming server's; the index sets its own (``IndexConfig``, ``bitswarm.index.server``)."""

    #: a request's line and headers must arrive within this many seconds of its first byte (for the
    #: first request of a connection: of the accept); else ``408`` and close
    header_timeout: float = 10.0
    #: a request body must arrive within this many seconds of the end of the headers; else ``408``
    body_timeout: float = 60.0
    #: a keep-alive connection is closed after this many seconds of silence between requests, and a
    #: client that stops reading a response for this long is cut off
    idle_timeout: float = 30.0
    #: open connections per client address (an IPv4 address, an IPv6 /64); 0: no cap; ``503`` beyond
    max_per_ip: int = 64
    #: open connections in all; ``503`` beyond
    max_connections: int = 1024
    #: request line plus headers, in bytes; ``431`` beyond
    max_head_bytes: int = 16 * 1024


class ConnectionCounter:
    """Open connections per client address and in all, within the caps of :class:`HttpLimits`."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.per_ip: dict[str, int] = {}
        self.total = 0

    def admit(self, host: str) -> str | None:
        """Count a new connection from ``host``; its key for :meth:`release`, or None when refused."""
        key = client_key(host)
        count = self.per_ip.get(key, 0)
        lim = self.limits
        if (lim.max_per_ip and count >= lim.max_per_ip) or self.total >= lim.max_connections:
            return None
        self.per_ip[key] = count + 1
        self.total += 1
        return key

    def release(self, key: str) -> None:
        count = self.per_ip.pop(key, 0) - 1
        if count > 0:
            self.per_ip[key] = count
        self.total -= 1


def client_key(host: str) -> str:
    """The per-IP cap's key: the IPv4 address, or the /64 of an IPv6 address."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class Deadline:
    """One re-armable timer of a connection: ``expire`` runs unless it is re-armed or cancelled."""

    def __init__(self, expire: Callable[[], None]) -> None:
        self._expire = expire
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, seconds: float) -> None:
        self.cancel()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def raise_nofile_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (capped at 2^20 when unlimited); returns the
    soft limit in force afterwards, None where there is no such limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # e.g. macOS caps below an unlimited hard limit
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
    return int(soft)
