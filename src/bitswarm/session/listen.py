"""The session's listening sockets: dual-stack by default, one family when told.

``listen_host``:

* ``"::"`` (the default) or ``""``: every address of both families — one ``AF_INET6`` socket on
  ``::`` with ``IPV6_V6ONLY`` off, so IPv4 peers arrive as IPv4-mapped addresses (turned back into
  IPv4 by :func:`~bitswarm.session.peer_priority.canonical_ip`). A host without IPv6 (no ``AF_INET6``,
  or ``::`` cannot be bound) gets ``0.0.0.0`` instead.
* ``"0.0.0.0"``: every IPv4 address, IPv4 only.
* an IP address: that address only (an IPv6 one with ``IPV6_V6ONLY`` on).
* a host name: what the resolver gives first (``localhost``: as before, asyncio's choice).

:func:`bind_socket` returns the bound socket and :class:`Bound` says which families it carries.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass

__all__ = ["WILDCARDS", "Bound", "bind_socket", "families_of", "is_wildcard", "route_source"]

#: ``listen_host`` values meaning "every address of both families".
WILDCARDS = ("::", "")

#: bind errors that mean "this host has no IPv6", not "the port is taken"
_NO_IPV6 = {errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT, errno.EINVAL}


def is_wildcard(host: str) -> bool:
    return host in WILDCARDS


@dataclass(frozen=True, slots=True)
class Bound:
    """A bound socket and the address families it carries (4, 6 or both)."""

    sock: socket.socket
    families: tuple[int, ...]

    @property
    def host(self) -> str:
        return str(self.sock.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])


def families_of(host: str) -> tuple[int, ...]:
    """The families a socket bound to ``host`` (after :func:`bind_socket`'s fallback) carries."""
    if is_wildcard(host):
        return (4, 6)
    return (6,) if ":" in host else (4,)


def _open(family: int, kind: int, host: str, port: int, *, v6only: bool | None) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and v6only is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_socket(host: str, port: int, kind: int = socket.SOCK_STREAM) -> Bound:
    """A socket of ``kind`` (``SOCK_STREAM``/``SOCK_DGRAM``) bound to ``host:port`` under the rules
    of the module docstring. OSError when the port is taken (or ``host`` is not ours)."""
    if is_wildcard(host):
        if socket.has_ipv6:
            try:
                return Bound(_open(socket.AF_INET6, kind, "::", port, v6only=False), (4, 6))
            except OSError as exc:
                if exc.errno not in _NO_IPV6:
                    raise
        return Bound(_open(socket.AF_INET, kind, "0.0.0.0", port, v6only=None), (4,))
    infos = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    v6 = family == socket.AF_INET6
    sock = _open(family, kind, str(addr[0]), port, v6only=True if v6 else None)
    return Bound(sock, (6,) if v6 else (4,))


def route_source(family: int, probe: str | None = None) -> str | None:
    """The source address the kernel would use towards ``probe`` (default: a global address of
    ``family``, 4 or 6), or None when there is no route. Connecting a UDP socket sends nothing."""
    target = probe or ("2001:db8::1" if family == 6 else "198.18.0.1")
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(af, socket.SOCK_DGRAM) as s:
        s.connect((target, 9))
        return str(s.getsockname()[0]).partition("%")[0]
    return None
