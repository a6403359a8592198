"""The ``bitswarm`` command line (Typer + Rich).

Every error bitswarm raises on purpose becomes one line on stderr and exit code 2 (``--debug``
shows the traceback instead).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

from bitswarm.cli import _app, _commands
from bitswarm.cli._app import EXIT_USAGE, state
from bitswarm.errors import BitswarmError

#: Options whose value may be left out (Typer cannot say so): the value they then take.
OPTIONAL_VALUE_OPTIONS = {"--embed-tracker": "0.0.0.0:6969"}
_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


def _fill_optional_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        default = OPTIONAL_VALUE_OPTIONS.get(arg)
        if default is not None and (i + 1 == len(argv) or not _HOSTPORT.match(argv[i + 1])):
            out.append(default)
    return out


def _setup_logging(args: list[str]) -> None:
    """Library log records stay quiet on the command line — errors reach the user as the one
    ``bitswarm: error:`` line — unless ``--debug`` (everything) or ``BITSWARM_LOG=LEVEL`` asks."""
    root = logging.getLogger("bitswarm")
    level = os.environ.get("BITSWARM_LOG")
    if "--debug" in args[:1] or level:
        logging.basicConfig(
            level=logging.DEBUG if not level else level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    elif not root.handlers:
        root.addHandler(logging.NullHandler())  # no last-resort handler printing to stderr


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bitswarm`` console script."""
    # httpx imports its own command line (click, pygments, rich.syntax: ~40 ms of CPU) whenever
    # click is installed; this process never runs it, and swarm peers are started by the dozen
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    args = _fill_optional_values(list(sys.argv[1:] if argv is None else argv))
    _setup_logging(args)
    _commands.load(args)  # command modules register themselves on import: only the one needed
    registered = _app.app.registered_commands
    _app.app.registered_commands = _commands.only_invoked(registered, args)
    try:
        _app.app(args=args, standalone_mode=True)
    except BitswarmError as exc:
        if state.debug:
            raise
        print(f"bitswarm: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        if state.debug:
            raise
        print(f"bitswarm: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        sys.exit(EXIT_USAGE)
    finally:
        _app.app.registered_commands = registered


def __getattr__(name: str) -> Any:
    """``bitswarm.cli.app``: the Typer app with every command registered (for embedding/tests)."""
    if name == "app":
        _commands.load()
        return _app.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
