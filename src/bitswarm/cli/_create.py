"""``bitswarm create``: hash a file or directory into a v1, v2 or hybrid .torrent (default hybrid).

Progress goes to stderr (a Rich bar when stderr is a terminal); the result to stdout: where the file
was written and its info-hashes, or with ``--json`` one object. Errors: one line on stderr, exit 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from bitswarm.cli._app import (
    app,
    console,
    err_console,
    fail,
    print_json,
    real_console,
    state,
    tracker_url,
    write_new_file,
)
from bitswarm.metainfo._create import CreatedTorrent, make_torrent
from bitswarm.metainfo._model import MetainfoError, TorrentVersion

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """``262144``, ``256k``, ``256KiB``, ``4M`` → bytes (binary units)."""
    m = _SIZE.match(text)
    if not m:
        raise MetainfoError(f"not a size in bytes: {text!r}", "piece size")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _human(made: CreatedTorrent, out: Path, version: str) -> None:
    console.print(f"wrote [bold]{out}[/bold]", highlight=False)
    console.print(
        f"  {made.name}: {made.num_files} file(s), {made.total_size} bytes, {version}, "
        f"{made.num_pieces} pieces of {made.piece_length} bytes",
        highlight=False,
        markup=False,
    )
    if made.info_hash_v1 is not None:
        console.print(f"  info-hash v1: {made.info_hash_v1.hex()}", highlight=False)
    if made.info_hash_v2 is not None:
        console.print(f"  info-hash v2: {made.info_hash_v2.hex()}", highlight=False)


#: Printed (stderr) when ``create`` makes its default hybrid torrent without being asked to.
HYBRID_NOTE = (
    "note: this is a hybrid (v1+v2) torrent; clients that only know v1, such as Transmission 3.x, "
    "cannot open it: make a v1 torrent for them with --v1 (--hybrid: no note)"
)


@app.command()
def create(
    path: Annotated[Path, typer.Argument(help="File or directory to share.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the .torrent.")],
    tracker: Annotated[
        list[str] | None,
        typer.Option("--tracker", "-t", help="Tracker URL (or HOST:PORT); repeat, one tier each."),
    ] = None,
    web_seed: Annotated[
        list[str] | None, typer.Option("--web-seed", "-w", help="BEP 19 web seed URL; repeatable.")
    ] = None,
    v1: bool = typer.Option(False, "--v1", help="BitTorrent v1 only (BEP 3)."),
    v2: bool = typer.Option(False, "--v2", help="BitTorrent v2 only (BEP 52)."),
    hybrid: bool = typer.Option(False, "--hybrid", help="v1 + v2 in one torrent (the default)."),
    piece_size: str | None = typer.Option(
        None, "--piece-size", "-l", help="Piece length in bytes (power of two ≥ 16 KiB; 256k, 4M ...)."
    ),
    private: bool = typer.Option(False, "--private", help="Set the BEP 27 private flag."),
    comment: str | None = typer.Option(None, "--comment", "-c", help="Free-text comment."),
    source: str | None = typer.Option(None, "--source", "-s", help="info.source (changes the info-hash)."),
    threads: int | None = typer.Option(None, "--threads", help="Hashing threads (default: one per core)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite OUTPUT if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Create a .torrent (hybrid v1+v2 by default) from a file or directory."""
    if v1 + v2 + hybrid > 1:
        fail("choose one of --v1, --v2, --hybrid")
    version: TorrentVersion = "v1" if v1 else "v2" if v2 else "hybrid"
    try:
        plen = parse_size(piece_size) if piece_size is not None else None
    except MetainfoError as exc:
        fail(str(exc))
    if output.exists() and not force:
        fail(f"{output} exists (use --force to overwrite)")
    if output.is_dir():
        fail(f"{output} is a directory")

    quiet = quiet or state.quiet
    trackers = [[tracker_url(url)] for url in tracker or []]
    show = not quiet and err_console.is_terminal
    progress = Progress(
        TextColumn("hashing"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=real_console(err_console),
        transient=True,
        disable=not show,
    )
    task = progress.add_task("hashing", total=None)

    def on_progress(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    try:
        with progress:
            made = make_torrent(
                path,
                version=version,
                piece_length=plen,
                trackers=trackers,
                web_seeds=web_seed or [],
                private=private,
                comment=comment,
                source=source,
                progress=on_progress,
                threads=threads,
            )
        write_new_file(output, made.data, force)
    except MetainfoError as exc:
        fail(str(exc))
    if version == "hybrid" and not hybrid and not quiet and not json_out:
        err_console.print(HYBRID_NOTE, markup=False, highlight=False, soft_wrap=True)

    if json_out:
        print_json(
            {
                "out": str(output),
                "name": made.name,
                "version": version,
                "info_hash_v1": None if made.info_hash_v1 is None else made.info_hash_v1.hex(),
                "info_hash_v2": None if made.info_hash_v2 is None else made.info_hash_v2.hex(),
                "piece_length": made.piece_length,
                "num_pieces": made.num_pieces,
                "total_size": made.total_size,
                "num_files": made.num_files,
            }
        )
    else:
        _human(made, output, version)
