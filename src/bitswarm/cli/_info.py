"""``bitswarm info`` (show a .torrent or magnet link) and ``bitswarm magnet`` (print a torrent's magnet).

Bad input (unreadable file, malformed torrent or magnet) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from bitswarm.cli._app import app, console, fail, print_json
from bitswarm.metainfo import (
    Magnet,
    MetainfoError,
    Torrent,
    load_torrent,
    magnet_from_torrent,
    parse_magnet,
)

#: Most files the human view lists before it summarises the rest.
MAX_SHOWN_FILES = 500


def _is_magnet(arg: str) -> bool:
    return arg[:7].lower() == "magnet:"


def _load(arg: str) -> Torrent:
    try:
        return load_torrent(Path(arg))
    except MetainfoError as exc:
        fail(f"{arg}: {exc}")
    except OSError as exc:
        fail(f"{arg}: {exc.strerror or exc}")


def _hex(h: bytes | None) -> str | None:
    return None if h is None else h.hex()


def _version(m: Magnet) -> str:
    if m.info_hash_v1 is not None and m.info_hash_v2 is not None:
        return "hybrid"
    return "v2" if m.info_hash_v2 is not None else "v1"


def torrent_json(t: Torrent) -> dict[str, Any]:
    """The ``info --json`` object of a torrent."""
    info = t.info
    return {
        "name": t.name,
        "version": t.version,
        "info_hash_v1": _hex(t.info_hash_v1),
        "info_hash_v2": _hex(t.info_hash_v2),
        "total_size": info.total_size,
        "piece_length": info.piece_length,
        "num_pieces": info.num_pieces,
        "files": [{"path": f.path_str, "size": f.length} for f in info.data_files],
        "trackers": t.trackers,
        "web_seeds": t.url_list,
        "private": info.private,
        "comment": t.comment,
        "created_by": t.created_by,
        "creation_date": t.creation_date,
        "magnet": magnet_from_torrent(t).to_uri(),
    }


def magnet_json(m: Magnet) -> dict[str, Any]:
    """The ``info --json`` object of a magnet link: what it knows, the rest null."""
    return {
        "name": m.name,
        "version": _version(m),
        "info_hash_v1": _hex(m.info_hash_v1),
        "info_hash_v2": _hex(m.info_hash_v2),
        "total_size": None,
        "piece_length": None,
        "num_pieces": None,
        "files": None,
        "trackers": [[t] for t in m.trackers],
        "web_seeds": m.web_seeds,
        "private": None,
        "comment": None,
        "created_by": None,
        "creation_date": None,
        "magnet": m.to_uri(),
    }


def _size(n: int) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    x = float(n)
    for u in units:
        if x < 1024 or u == units[-1]:
            return f"{n} B" if u == "B" else f"{x:.2f} {u} ({n} bytes)"
        x /= 1024
    raise AssertionError("unreachable")


def _show(rows: dict[str, Any], title: str) -> None:
    table = Table(show_header=False, box=None, title=title, title_justify="left", pad_edge=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for k, v in rows.items():
        if v is not None and v != []:
            table.add_row(k, Text(str(v)))
    console.print(table)


def _show_torrent(t: Torrent) -> None:
    info = t.info
    date = None
    if t.creation_date is not None:
        try:
            date = _dt.datetime.fromtimestamp(t.creation_date, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError):
            date = str(t.creation_date)
    _show(
        {
            "name": t.name,
            "version": t.version,
            "info-hash v1": _hex(t.info_hash_v1),
            "info-hash v2": _hex(t.info_hash_v2),
            "size": _size(info.total_size),
            "piece length": _size(info.piece_length),
            "pieces": info.num_pieces,
            "files": len(info.data_files),
            "private": "yes" if info.private else "no",
            "comment": t.comment,
            "created by": t.created_by,
            "creation date": date,
            "source": info.source,
        },
        "torrent",
    )
    tree = Tree(f"[bold]{escape(t.name)}[/bold]" if not info.single_file else "[bold]files[/bold]")
    nodes: dict[tuple[str, ...], Tree] = {(): tree}
    for i, f in enumerate(info.data_files):
        if i >= MAX_SHOWN_FILES:
            tree.add(f"… and {len(info.data_files) - MAX_SHOWN_FILES} more files")
            break
        for k in range(1, len(f.path)):
            if f.path[:k] not in nodes:
                nodes[f.path[:k]] = nodes[f.path[: k - 1]].add(escape(f"{f.path[k - 1]}/"), style="blue")
        nodes[f.path[:-1]].add(f"{escape(f.path[-1])}  [dim]{_size(f.length)}[/dim]")
    console.print(tree)
    if t.trackers:
        console.print("[bold]trackers[/bold]")
        for n, tier in enumerate(t.trackers):
            for url in tier:
                console.print(f"  tier {n}: {url}", markup=False, highlight=False)
    if t.url_list:
        console.print("[bold]web seeds[/bold]")
        for url in t.url_list:
            console.print(f"  {url}", markup=False, highlight=False)


def _show_magnet(m: Magnet) -> None:
    _show(
        {
            "name": m.name,
            "version": _version(m),
            "info-hash v1": _hex(m.info_hash_v1),
            "info-hash v2": _hex(m.info_hash_v2),
            "trackers": "\n".join(m.trackers) or None,
            "web seeds": "\n".join(m.web_seeds) or None,
            "peers": "\n".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in m.peers) or None,
            "select only": ",".join(map(str, m.select_only)) or None,
        },
        "magnet link",
    )


@app.command("info")
def info_command(
    source: str = typer.Argument(..., metavar="TORRENT_OR_MAGNET", help="A .torrent file or a magnet link."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
) -> None:
    """Show what a .torrent file or magnet link describes."""
    if _is_magnet(source):
        try:
            m = parse_magnet(source)
        except MetainfoError as exc:
            fail(str(exc))
        if as_json:
            print_json(magnet_json(m))
        else:
            _show_magnet(m)
        return
    t = _load(source)
    if as_json:
        print_json(torrent_json(t))
    else:
        _show_torrent(t)


@app.command("magnet")
def magnet_command(
    torrent: str = typer.Argument(..., metavar="TORRENT", help="A .torrent file."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object: magnet, name, info-hashes."),
) -> None:
    """Print the magnet link of a .torrent file (one line, never wrapped)."""
    t = _load(torrent)
    uri = magnet_from_torrent(t).to_uri()
    if json_out:
        print_json({"magnet": uri, "name": t.name, "info_hash_v1": _hex(t.info_hash_v1),
                    "info_hash_v2": _hex(t.info_hash_v2)})  # fmt: skip
    else:
        typer.echo(uri)
