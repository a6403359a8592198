"""The Typer application object and the helpers every command module shares.

Each command lives in its own module (``_create.py``, ``_info.py`` ...) that imports :data:`app` and
registers itself with ``@app.command()``; :mod:`bitswarm.cli` imports them all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import typer

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="bitswarm",
    help="bitswarm — BitTorrent peer, tracker, DHT node and file index.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _LazyConsole:
    """A Rich ``Console`` made on first use: ``--json`` runs (every swarm peer the benchmarks start)
    never import Rich's console and progress modules (~20 ms of CPU per process)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


def real_console(c: Console) -> Console:
    """The Rich ``Console`` behind :data:`console` / :data:`err_console` (for ``Progress(console=)``,
    ``Live(console=)``, which need the object itself)."""
    return c.real() if isinstance(c, _LazyConsole) else c


#: Rich console for human output (stdout) and for progress and errors (stderr).
console = cast("Console", _LazyConsole())
err_console = cast("Console", _LazyConsole(stderr=True))

EXIT_USAGE = 2


class _State:
    debug = False


state = _State()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    state.debug = debug


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print a one-line error on stderr and exit with ``code``."""
    first = " ".join(str(message).split("\n")[0].split())
    print(f"bitswarm: error: {first}", file=sys.stderr)
    raise typer.Exit(code)


def load_toml(path: Path, known: set[str]) -> dict[str, Any]:
    """A command's TOML config file; unreadable, malformed or unknown keys are a one-line error
    (a typo should not be silently ignored)."""
    import tomllib  # only commands given a config file read one

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except tomllib.TOMLDecodeError as exc:
        fail(f"{path}: {exc}")
    unknown = set(data) - known
    if unknown:
        fail(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    return data


def print_json(obj: Any) -> None:
    """Print one JSON object on one line (the ``--json`` output form)."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()
