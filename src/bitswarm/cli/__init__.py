"""The ``bitswarm`` command line (Typer + Rich).

Every error bitswarm raises on purpose becomes one line on stderr and exit code 2 (``--debug``
shows the traceback instead); exit codes: ``docs/cli.md``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import typer

from bitswarm.cli import _app, _commands
from bitswarm.cli._app import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_USAGE,
    HOSTPORT,
    error_exit_code,
    state,
)
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
    code: object = EXIT_OK
    try:
        command = _app.typer_command()
        code = command(args=args, standalone_mode=False)  # an exit code (typer.Exit), or None
    except typer.Abort:  # Ctrl-C while Click was still parsing
        code = EXIT_STOPPED
    except BitswarmError as exc:
        if state.debug:
            raise
        _error(str(exc), error_exit_code(exc))
    except OSError as exc:
        if state.debug:
            raise
        if isinstance(exc, TimeoutError | ConnectionError):  # a service that does not answer
            _error(f"{exc.strerror or exc or 'timed out'}", EXIT_FAILURE)
        _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_USAGE)
    except Exception as exc:  # a bug or an unexpected failure: still one line (and a way to see more)
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is shown already
            code = exc.exit_code  # type: ignore[attr-defined]
        elif _is_click_error(exc):  # an unknown command or option, a bad or missing value ...
            _error(_click_message(exc), exc.exit_code)  # type: ignore[attr-defined]
        else:
            if state.debug:
                raise
            logging.getLogger("bitswarm.cli").debug("unexpected error", exc_info=True)
            _error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_FAILURE)
    finally:
        _app.app.registered_commands = registered
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _is_click_error(exc: Exception) -> bool:
    """A Click error (``ClickException``: usage errors and the like; Typer vendors Click and exports
    only some of its exception classes, so told apart by its interface)."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _click_message(exc: Exception) -> str:
    """Click's error as the one line of the contract (Typer's own form is a box under the usage)."""
    message = str(exc.format_message())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" (see {ctx.command_path} --help)"
    return message


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
