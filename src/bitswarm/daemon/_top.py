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


def render(torrents: list[dict[str, Any]], stats: dict[str, Any], api: str) -> Group:
    """The dashboard: a header line with session totals and one table row per torrent."""
    head = Text.assemble(
        ("bitswarm ", "bold magenta"),
        (f"{api}  ", "dim"),
        ("↓ ", "cyan"),
        (rate(stats.get("download_rate")), "bold cyan"),
        ("  ↑ ", "green"),
        (rate(stats.get("upload_rate")), "bold green"),
        (f"  {stats.get('torrents', 0)} torrents, {stats.get('peers', 0)} peers", ""),
        (f"  port {stats.get('listen_port', '?')}", "dim"),
    )
    table = Table(box=box.SIMPLE_HEAD, expand=True, header_style="bold")
    table.add_column("#", justify="right", width=3)
    table.add_column("Name", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("State", width=11)
    table.add_column("Progress", ratio=2)
    table.add_column("Size", justify="right", width=10)
    table.add_column("Down", justify="right", width=11)
    table.add_column("Up", justify="right", width=11)
    table.add_column("Peers", justify="right", width=5)
    table.add_column("ETA", justify="right", width=7)
    for n, t in enumerate(torrents, 1):
        p = float(t.get("progress") or 0.0)
        state = str(t.get("state", "?"))
        bar = Table.grid(expand=True)
        bar.add_column(ratio=1)
        bar.add_column(width=7, justify="right")
        bar.add_row(ProgressBar(total=1.0, completed=p, width=None), f"{p * 100:5.1f}%")
        table.add_row(
            str(n),
            str(t.get("name", "")),
            Text(state, style=_STATE_STYLE.get(state, "")),
            bar,
            size(t.get("wanted_size") or t.get("total_size")),
            rate(t.get("download_rate")),
            rate(t.get("upload_rate")),
            str(t.get("peers", 0)),
            eta(t.get("eta")) if state == "downloading" else "",
        )
    if not torrents:
        table.add_row("", Text("no torrents — bitswarm ctl add FILE|MAGNET", style="dim"), *[""] * 7)
    return Group(Panel(head, box=box.ROUNDED, padding=(0, 1)), table, Text("q / Ctrl-C: quit", style="dim"))
