"""``config.toml`` of an index server (seed 000: "By default the tracker will load settings from
config.toml"; default port 42070)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitswarm.index._errors import ValidationError
from bitswarm.index._model import Tracker

DEFAULT_PORT = 42070
DEFAULT_MAX_BODY = 1 << 20
MIN_FEDERATION_KEY = 16


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """Settings of ``bitswarm index``. ``advertise`` is the ``host:port`` other trackers use to reach
    this one (federation); ``trackers`` are the seed 000 ``tracker_list`` entries."""

    name: str = "bitswarm-index"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    binary_port: int | None = None
    db: str = "index.sqlite3"
    advertise: str | None = None
    trackers: tuple[Tracker, ...] = field(default_factory=tuple)
    max_body: int = DEFAULT_MAX_BODY
    login_timeout: float = 30.0
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
    [[trackers]]
    name = "tracker-b"
    ip = "10.0.0.2:42070"
    """
    try:
        with open(path, "rb") as fh:
            raw: dict[str, Any] = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{path}: {exc}") from None
    known = {
        "name",
        "host",
        "port",
        "binary_port",
        "db",
        "advertise",
        "trackers",
        "max_body",
        "login_timeout",
        "federation_key",
    }
    unknown = set(raw) - known
    if unknown:
        raise ValidationError(f"{path}: unknown keys {sorted(unknown)}")
    trackers = []
    for t in raw.pop("trackers", []):
        if not isinstance(t, dict) or not isinstance(t.get("ip"), str):
            raise ValidationError(f"{path}: each [[trackers]] needs ip (and name)")
        trackers.append(Tracker(str(t.get("name", t["ip"])), t["ip"]))
    for key, kind in (("port", int), ("binary_port", int), ("max_body", int)):
        if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], kind)):
            raise ValidationError(f"{path}: {key} must be an integer")
    for key in ("name", "host", "db", "advertise", "federation_key"):
        if key in raw and not isinstance(raw[key], str):
            raise ValidationError(f"{path}: {key} must be a string")
    if "federation_key" in raw and len(raw["federation_key"]) < MIN_FEDERATION_KEY:
        raise ValidationError(f"{path}: federation_key must have at least {MIN_FEDERATION_KEY} characters")
    if "login_timeout" in raw:
        raw["login_timeout"] = float(raw["login_timeout"])
    return IndexConfig(trackers=tuple(trackers), **raw)
