"""``bitswarm top``: one frame of the terminal dashboard (Rich), built from the API's JSON."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

#: The style of each lifecycle state's name (``lifecycle.DISPLAY_NAME``; not imported: ``top`` and
#: ``ctl`` would load the whole engine for it; a daemon test checks every state has a style).
_STATE_STYLE = {
    "downloading": "bold blue",
    "seeding": "bold green",
    "paused": "dim",
    "stopped": "dim",
    "error": "bold red",
    "checking": "yellow",
    "queued": "yellow",
    "metadata": "yellow",
    "moving": "yellow",
}


def size(n: float | None) -> str:
    if n is None:
        return "-"
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} {units[i]}" if i == 0 else f"{n:.1f} {units[i]}"


def rate(r: float | None) -> str:
    return f"{size(r or 0)}/s"


def eta(s: float | None) -> str:
    if s is None:
        return "∞"
    if s <= 0:
        return "-"
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


#: The columns after ``#``, Name, State and Progress, in the order they are dropped from a narrow
#: terminal (last first): (header, width).
_OPTIONAL_COLUMNS = (("Down", 11), ("Size", 10), ("Peers", 5), ("Up", 11), ("ETA", 7))
_DISPLAY_ORDER = ("Size", "Down", "Up", "Peers", "ETA")
#: The narrowest Name and Progress columns a terminal table keeps (they are never dropped).
NAME_MIN, PROGRESS_MIN = 16, 14


def _columns(width: int | None) -> list[str]:
    """The optional columns that fit ``width`` next to the ones always shown (all when not a terminal)."""
    if width is None:
        return [name for name, _ in _OPTIONAL_COLUMNS]
    used = 3 + NAME_MIN + 11 + PROGRESS_MIN + 4 * 2 + 2  # each column is padded by one space a side
    shown = []
    for name, w in _OPTIONAL_COLUMNS:
        if used + w + 2 > width:
            break
        used += w + 2
        shown.append(name)
    return shown


def _mapping(stats: dict[str, Any]) -> str:
    """The port's mapping for the header: mapped, not mapped or mapping... (stats ``reachability``)."""
    reach = stats.get("reachability") or {}
    if not isinstance(reach, dict) or reach.get("port_mapping") != "on":
        return ""
    summary = str(reach.get("summary", ""))
    if summary.startswith("mapped"):
        return " mapped"
    return " mapping..." if summary.endswith("trying") else " not mapped"


def render(
    torrents: list[dict[str, Any]], stats: dict[str, Any], api: str, *, width: int | None = None
) -> Group:
    """The dashboard: a header line with session totals and one table row per torrent.

    ``width``: the terminal's width — the table fills it, and the columns that do not fit are left out
    (Name and Progress always stay). ``None``: not a terminal (``top --once`` piped or redirected) —
    the table is as wide as its contents, every name in full."""
    terminal = width is not None
    head = Text.assemble(
        ("bitswarm ", "bold magenta"),
        (f"{api}  ", "dim"),
        ("↓ ", "cyan"),
        (rate(stats.get("download_rate")), "bold cyan"),
        ("  ↑ ", "green"),
        (rate(stats.get("upload_rate")), "bold green"),
        (f"  {stats.get('torrents', 0)} torrents, {stats.get('peers', 0)} peers", ""),
        (f"  port {stats.get('listen_port', '?')}{_mapping(stats)}", "dim"),
    )
    optional = _columns(width)
    table = Table(box=box.SIMPLE_HEAD, expand=terminal, header_style="bold")
    table.add_column("#", justify="right", width=3)
    if terminal:
        table.add_column("Name", ratio=3, min_width=NAME_MIN, no_wrap=True, overflow="ellipsis")
    else:
        table.add_column("Name", no_wrap=True)
    table.add_column("State", width=11)
    table.add_column("Progress", ratio=2 if terminal else None, min_width=PROGRESS_MIN)
    widths = dict(_OPTIONAL_COLUMNS)
    optional = [name for name in _DISPLAY_ORDER if name in optional]
    for name in optional:
        table.add_column(name, justify="right", width=widths[name])
    for n, t in enumerate(torrents, 1):
        p = float(t.get("progress") or 0.0)
        state = str(t.get("state", "?"))
        bar = Table.grid(expand=terminal)
        bar.add_column(ratio=1 if terminal else None)
        bar.add_column(width=7, justify="right")
        bar.add_row(ProgressBar(total=1.0, completed=p, width=None if terminal else 20), f"{p * 100:5.1f}%")
        cells = {
            "Size": size(t.get("wanted_size") or t.get("total_size")),
            "Down": rate(t.get("download_rate")),
            "Up": rate(t.get("upload_rate")),
            "Peers": str(t.get("peers", 0)),
            "ETA": eta(t.get("eta")) if state == "downloading" else "",
        }
        table.add_row(
            str(n),
            str(t.get("name", "")),
            Text(state, style=_STATE_STYLE.get(state, "")),
            bar,
            *(cells[name] for name in optional),
        )
    if not torrents:
        table.add_row(
            "", Text("no torrents — bitswarm ctl add FILE|MAGNET", style="dim"), *[""] * (2 + len(optional))
        )
    panel = Panel(head, box=box.ROUNDED, padding=(0, 1), expand=terminal)
    return Group(panel, table, Text("q / Ctrl-C: quit", style="dim"))
