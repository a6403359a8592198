"""The daemon's web UI: Jinja2 templates (autoescaped) in ``bitswarm/daemon/templates/`` and static
CSS/JS/SVG files in ``bitswarm/daemon/static/``, both package data (no external assets: works
offline). The pages hold no user data: their scripts read it from the API with the bearer token,
which they take from the URL fragment (``/#token=...``, never sent to the server in a URL) or ask for
once and keep in localStorage.

* ``/`` (index.html, app.js): the torrent list (sortable columns, state, category and tag filters),
  live from the server-sent events of ``/api/v1/events``; the detail drawer with files, peers,
  trackers, the piece map and info (category, tags, queue moves, seeding goals, move).
* ``/settings`` (settings.html, settings.js): every automation setting (automation.SPECS) in groups,
  the categories, and the watch folder's last files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from bitswarm import __version__
from bitswarm.daemon.automation import DAYS, SPECS

if TYPE_CHECKING:
    from jinja2 import Environment

#: files served under /static/ (nothing else is), with their media types
STATIC_TYPES = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "settings.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: the list's sortable columns (key in app.js's SORT, label)
COLUMNS = [
    ("queue", "Queue #"), ("name", "Name"), ("size", "Size"), ("progress", "Progress"), ("state", "State"),
    ("down", "Down"), ("up", "Up"), ("ratio", "Ratio"), ("added", "Added"),
]  # fmt: skip

#: the settings page: (id, title, note, keys); labels from _LABELS, the rest from SPECS
GROUPS: list[tuple[str, str, str, list[str]]] = [
    ("connection", "Connection", "Set in daemon.toml (or on the command line); a restart applies them.",
     ["listen_port", "transports", "encryption", "holepunch", "download_dir"]),
    ("limits", "Speed limits and schedule", "Rates in bytes per second, 0 for unlimited.",
     ["download_limit", "upload_limit", "alt_speed_enabled", "alt_speed_down", "alt_speed_up",
      "alt_speed_time_enabled", "alt_speed_time_begin", "alt_speed_time_end", "alt_speed_time_day"]),
    ("queue", "Queue", "Torrents beyond the limits wait, in queue order; stalled ones hold no slot.",
     ["queue_downloads_enabled", "queue_downloads_max", "queue_seeds_enabled", "queue_seeds_max",
      "queue_stalled_enabled", "queue_stalled_minutes"]),
    ("seeding", "Seeding goals", "Global goals; each torrent may have its own (its Info tab).",
     ["seed_ratio_enabled", "seed_ratio_limit", "seed_time_enabled", "seed_time_minutes",
      "seed_goal_action"]),
    ("watch", "Watch folder", ".torrent and .magnet files dropped there are added, then renamed .added "
     "(or moved); bad ones are renamed .invalid.",
     ["watch_dir", "watch_done_dir", "watch_category", "watch_paused"]),
    ("privacy", "Blocklist and proxy", "The blocklist's addresses are never dialed nor accepted; it is "
     "loaded again when a setting here changes. The proxy carries TCP peers, HTTP trackers and web "
     "seeds (no uTP, DHT or UDP trackers then); a restart applies it.",
     ["blocklist_enabled", "blocklist_path", "blocklist_url", "blocklist_status", "proxy"]),
]  # fmt: skip

_LABELS = {
    "listen_port": "Peer port", "transports": "Transports", "encryption": "Encryption (MSE/PE)",
    "holepunch": "Hole punching",
    "download_dir": "Download folder", "download_limit": "Download limit", "upload_limit": "Upload limit",
    "alt_speed_enabled": "Alternative limits on", "alt_speed_down": "Alternative download limit",
    "alt_speed_up": "Alternative upload limit", "alt_speed_time_enabled": "Scheduled",
    "alt_speed_time_begin": "From", "alt_speed_time_end": "To", "alt_speed_time_day": "On",
    "queue_downloads_enabled": "Limit downloads", "queue_downloads_max": "Active downloads",
    "queue_seeds_enabled": "Limit seeds", "queue_seeds_max": "Active seeds",
    "queue_stalled_enabled": "Skip stalled torrents", "queue_stalled_minutes": "Stalled after (minutes)",
    "seed_ratio_enabled": "Stop at a ratio", "seed_ratio_limit": "Ratio",
    "seed_time_enabled": "Stop after a time",
    "seed_time_minutes": "Seeding time (minutes)", "seed_goal_action": "Then", "watch_dir": "Folder",
    "watch_done_dir": "Move added files to", "watch_category": "Category", "watch_paused": "Add paused",
    "blocklist_enabled": "Use the IP blocklist", "blocklist_path": "Blocklist file",
    "blocklist_url": "Blocklist URL", "proxy": "SOCKS5 proxy", "blocklist_status": "Blocklist",
}  # fmt: skip

_READONLY_DOC = {
    "listen_port": "TCP and uTP",
    "transports": "dialing order",
    "encryption": "policy for peer connections",
    "holepunch": "BEP 55: punch through NATs via a peer both sides reach, and relay for others",
    "download_dir": "where torrents without a save path or category go",
    "blocklist_status": "rules read, merged ranges, addresses and connections refused",
}


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    doc: str
    widget: str  #: checkbox, select, time, days, readonly, input
    kind: str  #: bool, int, float, str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()


def _field(key: str) -> Field:
    label = _LABELS.get(key, key)
    spec = SPECS.get(key)
    if spec is None:
        return Field(key, label, _READONLY_DOC.get(key, ""), "readonly", "str")
    kind = spec.kind.__name__
    if spec.kind is bool:
        widget = "checkbox"
    elif spec.choices:
        widget = "select"
    elif key in ("alt_speed_time_begin", "alt_speed_time_end"):
        widget = "time"
    elif key == "alt_speed_time_day":
        widget = "days"
    else:
        widget = "input"
    return Field(key, label, spec.doc, widget, kind, spec.lo, spec.hi, spec.choices)


@cache
def _env() -> Environment:
    # imported by the first page served: a daemon nobody browses does not hold jinja2 (issue 24)
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("bitswarm.daemon", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(page: str) -> str:
    """The HTML of ``page`` (``index`` or ``settings``)."""
    ctx: dict[str, Any] = {"version": __version__, "page": page}
    if page == "settings":
        ctx["groups"] = [
            {"id": gid, "title": title, "note": note, "fields": [_field(k) for k in keys]}
            for gid, title, note, keys in GROUPS
        ]
        ctx["days"] = [{"name": name.capitalize(), "bit": 1 << i} for i, name in enumerate(DAYS)]
    else:
        ctx["columns"] = COLUMNS
    return _env().get_template(f"{page}.html").render(ctx)


@cache
def static_file(name: str) -> bytes | None:
    """A file of ``bitswarm/daemon/static/`` (only those of STATIC_TYPES), None for any other name."""
    if name not in STATIC_TYPES:
        return None
    return resources.files("bitswarm.daemon").joinpath("static", name).read_bytes()


def favicon() -> bytes:
    data = static_file("favicon.svg")
    assert data is not None
    return data
