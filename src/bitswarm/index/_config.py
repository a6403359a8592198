"""``config.toml`` of an index server (seed 000: "By default the tracker will load settings from
config.toml"; default port 42070)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bitswarm.index._errors import ValidationError
from bitswarm.index._model import Tracker

DEFAULT_PORT = 42070
DEFAULT_MAX_BODY = 1 << 20
MIN_FEDERATION_KEY = 16

_INTS = ("port", "binary_port", "max_body", "http_max_per_ip", "http_max_connections", "binary_max_per_ip")
_FLOATS = ("login_timeout", "http_header_timeout", "http_body_timeout", "http_idle_timeout")
_STRS = ("name", "host", "db", "advertise", "federation_key")


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """Settings of ``bitswarm index``. ``advertise`` is the ``host:port`` other trackers use to reach
    this one (federation); ``trackers`` are the seed 000 ``tracker_list`` entries.

    Limits (docs/security.md, "Index"): the HTTP port gives a request ``http_header_timeout`` s for
    its line and headers and ``http_body_timeout`` s for its body, closes a keep-alive connection idle
    for ``http_idle_timeout`` s, and admits ``http_max_per_ip`` connections per address
    (``http_max_connections`` in all). The binary port admits ``binary_max_per_ip`` connections per
    address and closes one that has not logged in within ``login_timeout`` s."""

    name: str = "bitswarm-index"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    binary_port: int | None = None
    db: str = "index.sqlite3"
    advertise: str | None = None
    trackers: tuple[Tracker, ...] = field(default_factory=tuple)
    max_body: int = DEFAULT_MAX_BODY
    login_timeout: float = 10.0
    http_header_timeout: float = 10.0
    http_body_timeout: float = 30.0
    http_idle_timeout: float = 30.0
    http_max_per_ip: int = 64
    http_max_connections: int = 4096
    binary_max_per_ip: int = 16
    #: Shared secret of the indexes that federate (tracker_sync / new_tracker carry peer guids).
    federation_key: str | None = field(default=None, repr=False)


def load_config(path: str | Path) -> IndexConfig:
    """Read a ``config.toml``; unknown keys are an error (a typo should not be silently ignored)::

    name = "tracker-a"
    host = "0.0.0.0"
    port = 42070
    binary_port = 42071
    db = "index.sqlite3"
    advertise = "10.0.0.1:42070"
    max_body = 1048576
    federation_key = "a long random secret shared by every trusted index"
    http_max_per_ip = 64
    [[trackers]]
    name = "tracker-b"
    ip = "10.0.0.2:42070"
    """
    try:
        with open(path, "rb") as fh:
            raw: dict[str, Any] = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{path}: {exc}") from None
    known = {f.name for f in fields(IndexConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValidationError(f"{path}: unknown keys {sorted(unknown)}")
    trackers = []
    for t in raw.pop("trackers", []):
        if not isinstance(t, dict) or not isinstance(t.get("ip"), str):
            raise ValidationError(f"{path}: each [[trackers]] needs ip (and name)")
        trackers.append(Tracker(str(t.get("name", t["ip"])), t["ip"]))
    for key in _INTS:
        if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], int)):
            raise ValidationError(f"{path}: {key} must be an integer")
    for key in _FLOATS:
        if key in raw:
            if isinstance(raw[key], bool) or not isinstance(raw[key], int | float) or not raw[key] > 0:
                raise ValidationError(f"{path}: {key} must be a positive number of seconds")
            raw[key] = float(raw[key])
    for key in _STRS:
        if key in raw and not isinstance(raw[key], str):
            raise ValidationError(f"{path}: {key} must be a string")
    if "federation_key" in raw and len(raw["federation_key"]) < MIN_FEDERATION_KEY:
        raise ValidationError(f"{path}: federation_key must have at least {MIN_FEDERATION_KEY} characters")
    return IndexConfig(trackers=tuple(trackers), **raw)
