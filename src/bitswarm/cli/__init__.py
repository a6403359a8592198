"""The ``bitswarm`` command line (Typer + Rich).

Every error bitswarm raises on purpose becomes one line on stderr and exit code 2 (``--debug``
shows the traceback instead); exit codes: ``docs/cli.md``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

from bitswarm.cli import _app, _commands
from bitswarm.cli._app import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, HOSTPORT, state
from bitswarm.cli._globals import GLOBAL_HELP, setup_logging, split_globals, version
from bitswarm.errors import BitswarmError

#: Options whose value may be left out (Typer cannot say so): the value they then take.
OPTIONAL_VALUE_OPTIONS = {"--embed-tracker": "0.0.0.0:6969"}


def _fill_optional_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        default = OPTIONAL_VALUE_OPTIONS.get(arg)
        if default is not None and (i + 1 == len(argv) or not HOSTPORT.match(argv[i + 1])):
            out.append(default)
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bitswarm`` console script.

    The error contract of every command: an error bitswarm expects (bad input, a file it cannot
    read, an address it cannot listen on ...) is one ``bitswarm: error: ...`` line on stderr and exit
    code 2; an unexpected one is one line and exit code 1 (``--debug`` shows the traceback instead).
    """
    # httpx imports its own command line (click, pygments, rich.syntax: ~40 ms of CPU) whenever
    # click is installed; this process never runs it, and swarm peers are started by the dozen
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    opts, args = split_globals(_fill_optional_values(list(sys.argv[1:] if argv is None else argv)))
    if opts.version:
        print(version())
        sys.exit(EXIT_OK)
    state.debug, state.quiet, state.verbose = opts.debug, opts.quiet, opts.verbose
    try:
        setup_logging(opts)
    except OSError as exc:
        _error(f"cannot open the log file {opts.log_file}: {exc.strerror or exc}", EXIT_USAGE)
    _commands.load(args)  # command modules register themselves on import: only the one needed
    registered = _app.app.registered_commands
    _app.app.registered_commands = _commands.only_invoked(registered, args)
    for command in _app.app.registered_commands:
        command.epilog = command.epilog or GLOBAL_HELP  # every command's --help lists the globals
    try:
        command = _app.typer_command()
        command(args=args, standalone_mode=True)
    except BitswarmError as exc:
        if state.debug:
            raise
        _error(str(exc), EXIT_USAGE)
    except OSError as exc:
        if state.debug:
            raise
        _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_USAGE)
    except Exception as exc:  # a bug or an unexpected failure: still one line (and a way to see more)
        if state.debug:
            raise
        logging.getLogger("bitswarm.cli").debug("unexpected error", exc_info=True)
        _error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_FAILURE)
    finally:
        _app.app.registered_commands = registered


def _error(message: str, code: int) -> NoReturn:
    print(f"bitswarm: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def __getattr__(name: str) -> Any:
    """``bitswarm.cli.app``: the Typer app with every command registered (for embedding/tests)."""
    if name == "app":
        _commands.load()
        return _app.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
