"""Per-client limits of the HTTP front end: a per-IP connection cap, a request (header + body)
deadline and a keep-alive idle deadline (raising ``RLIMIT_NOFILE`` at start is
:func:`bitswarm.httpguard.raise_nofile_limit`).

:class:`ConnectionGuard` is sans-I/O: it counts connections per address and, given an injected
clock, tells which connections are overdue. The server calls :meth:`ConnectionGuard.sweep` every
:attr:`ConnectionGuard.tick` seconds and closes what it returns; the connections read the coarse
:attr:`ConnectionGuard.now` it leaves behind, so the announce path never reads a clock or arms a
timer.

- A connection must deliver each request's line, headers and body within ``header_timeout``
  seconds of its first byte (of being accepted, for the first request).
- Between requests a keep-alive connection may stay silent ``idle_timeout`` seconds.
- At most ``max_per_ip`` connections per client address (an IPv6 client's /64), except from trusted
  proxies; 0 turns the cap off. A connection over the cap gets ``503`` and is closed at once.

Deadlines are enforced to within one ``tick`` (a quarter of the shorter timeout, between 0.05 and
1 s): the connections stamp themselves with the clock of the last sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar


class Guarded(Protocol):
    """What :meth:`ConnectionGuard.sweep` reads of a connection."""

    #: when the request being received began (or the connection opened); negative when between requests
    began: float
    #: when the last request was complete (or the connection opened)
    last: float

    def busy(self) -> bool:
        """True while replies are still being produced (the idle clock does not run)."""
        ...


C = TypeVar("C", bound=Guarded)


def client_key(packed_ip: bytes) -> bytes:
    """The per-IP cap's key: the IPv4 address, or the /64 of an IPv6 address."""
    return packed_ip if len(packed_ip) == 4 else packed_ip[:8]


class ConnectionGuard:
    """Connection counts per client and the request / idle deadlines (times in seconds)."""

    def __init__(
        self,
        *,
        header_timeout: float,
        idle_timeout: float,
        max_per_ip: int,
        exempt: Iterable[bytes] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if header_timeout <= 0 or idle_timeout <= 0 or max_per_ip < 0:
            raise ValueError("timeouts must be positive and the per-IP cap >= 0")
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.max_per_ip = max_per_ip
        self.exempt = frozenset(client_key(ip) for ip in exempt)
        self._clock = clock
        #: the clock as of the last :meth:`sweep` (what connections stamp themselves with)
        self.now = clock()
        self.per_ip: dict[bytes, int] = {}

    @property
    def tick(self) -> float:
        """How often :meth:`sweep` should run."""
        return min(1.0, max(0.05, min(self.header_timeout, self.idle_timeout) / 4))

    def admit(self, key: bytes) -> bool:
        """Count a new connection from ``key`` (see :func:`client_key`); False when over the cap (not
        counted then)."""
        count = self.per_ip.get(key, 0)
        if self.max_per_ip and count >= self.max_per_ip and key not in self.exempt:
            return False
        self.per_ip[key] = count + 1
        return True

    def release(self, key: bytes) -> None:
        """Forget one admitted connection from ``key``."""
        count = self.per_ip.get(key, 0) - 1
        if count > 0:
            self.per_ip[key] = count
        else:
            self.per_ip.pop(key, None)

    def sweep(self, connections: Iterable[C]) -> list[tuple[C, str]]:
        """Advance :attr:`now`; the connections past a deadline, each with ``"header"`` (a request
        not complete in time) or ``"idle"`` (a silent keep-alive connection)."""
        now = self.now = self._clock()
        header_limit = now - self.header_timeout
        idle_limit = now - self.idle_timeout
        overdue: list[tuple[C, str]] = []
        for conn in connections:
            began = conn.began
            if began >= 0:
                if began < header_limit:
                    overdue.append((conn, "header"))
            elif conn.last < idle_limit and not conn.busy():
                overdue.append((conn, "idle"))
        return overdue
