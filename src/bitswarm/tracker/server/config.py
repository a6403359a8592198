"""Tracker server configuration: one frozen dataclass, loadable from a TOML file.

Addresses are ``(host, port)`` pairs; port 0 asks the OS for a free port (tests use it and read the
bound addresses back from :class:`~bitswarm.tracker.server.TrackerServer`).
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from bitswarm.tracker.server.errors import TrackerConfigError


class Mode(StrEnum):
    """Who may announce: anyone (``open``), listed info-hashes (``whitelist``), or holders of a
    passkey in the announce path ``/announce/<passkey>`` (``private``, HTTP only)."""

    OPEN = "open"
    WHITELIST = "whitelist"
    PRIVATE = "private"


Address = tuple[str, int]


def parse_address(text: str) -> Address:
    """``HOST:PORT`` or ``[V6]:PORT`` → ``(host, port)``."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 0xFFFF:
        raise TrackerConfigError(f"address {text!r} is not HOST:PORT")
    return host or "0.0.0.0", int(port)


@dataclass(frozen=True)
class TrackerConfig:
    """Everything the tracker server needs. Times are seconds."""

    http: tuple[Address, ...] = (("0.0.0.0", 6969),)
    udp: tuple[Address, ...] = (("0.0.0.0", 6969),)
    db: Path | None = Path("tracker.sqlite")
    redis: str | None = None
    #: With ``redis``: seconds between an instance's syncs with the cluster (write-behind; a peer
    #: reaches the other instances within about two of them). 0: every announce goes to Redis
    #: (one Lua script call per batch, no lag, Redis on the hot path).
    redis_sync: float = 0.25
    mode: Mode = Mode.OPEN
    admin_token: str | None = None
    #: Requests from these addresses may set the peer address with ``ip=`` or ``X-Forwarded-For``.
    trusted_proxies: frozenset[str] = frozenset()
    interval: int = 1800
    min_interval: int = 300
    #: Each reply's interval is ``interval + [0, jitter)`` so announces spread out.
    interval_jitter: int = 180
    #: A peer not heard from for this long is dropped (default: 2 intervals + jitter).
    peer_ttl: int | None = None
    numwant_default: int = 50
    numwant_max: int = 200
    #: Connection-id time slot (BEP 15): ids stay valid for the current and the previous slot.
    udp_slot: int = 60
    sweep_every: float = 1.0
    #: Most peer entries one sweep step examines (bounded work per tick).
    sweep_budget: int = 50_000
    #: Full peer snapshot (refreshes last-seen times, drops expired rows) to SQLite.
    snapshot_every: float = 60.0
    #: Peer joins/moves/leaves and completed counters go to SQLite this often (the crash-loss bound).
    flush_every: float = 1.0
    max_request_bytes: int = 8192
    #: An HTTP request's line, headers and body must arrive within this of its first byte.
    http_header_timeout: float = 10.0
    #: A keep-alive HTTP connection silent this long between requests is closed.
    http_idle_timeout: float = 30.0
    #: Open HTTP connections allowed per client address (IPv6: per /64), trusted proxies exempt; 0 = no cap.
    http_max_per_ip: int = 64
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("http_header_timeout", "http_idle_timeout", "flush_every", "snapshot_every"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value <= 86400:
                raise TrackerConfigError(f"{name} must be a number of seconds in (0, 86400], not {value!r}")
        if not isinstance(self.redis_sync, int | float) or not 0 <= self.redis_sync <= 60:
            raise TrackerConfigError(f"redis_sync must be seconds in [0, 60], not {self.redis_sync!r}")
        if not isinstance(self.http_max_per_ip, int) or self.http_max_per_ip < 0:
            raise TrackerConfigError(f"http_max_per_ip must be an integer >= 0, not {self.http_max_per_ip!r}")

    @property
    def ttl(self) -> int:
        return self.peer_ttl if self.peer_ttl is not None else 2 * self.interval + self.interval_jitter

    def with_(self, **changes: Any) -> TrackerConfig:
        return replace(self, **changes)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrackerConfig:
        """Read a ``tracker.toml``: top-level keys named like the fields (``http``/``udp`` are
        lists of ``"HOST:PORT"`` strings), ``[tracker]`` table also accepted."""
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        data = data.get("tracker", data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TrackerConfigError(f"unknown tracker.toml keys: {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("http", "udp"):
                value = [value] if isinstance(value, str) else value
                kwargs[key] = tuple(parse_address(v) for v in value)
            elif key == "db":
                kwargs[key] = Path(value) if value else None
            elif key == "mode":
                kwargs[key] = Mode(value)
            elif key == "trusted_proxies":
                kwargs[key] = frozenset(normalize_ip(v) for v in value)
            else:
                kwargs[key] = value
        kwargs.update(overrides)
        return cls(**kwargs)


def normalize_ip(text: str) -> str:
    """Canonical text of an IP address (IPv4-mapped IPv6 becomes IPv4)."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        raise TrackerConfigError(f"{text!r} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)
