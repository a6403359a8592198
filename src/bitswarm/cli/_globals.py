"""Options every ``bitswarm`` command takes, before or after the command name, and logging.

``-v`` (INFO), ``-vv`` (DEBUG), ``-q`` (errors only, no progress), ``--log-file PATH`` (records go
there too, at least INFO), ``--log-json`` (one JSON object per record), ``--debug`` (DEBUG and full
tracebacks instead of the one-line errors) and ``--version``. ``BITSWARM_LOG=LEVEL`` sets the level
of the stderr log as well (documented in ``docs/cli.md``).

They are taken out of the argument list before Typer parses it, so that ``bitswarm -v download ...``
and ``bitswarm download ... -v`` both work on every command; the root callback declares them too so
``bitswarm --help`` lists them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass

#: flag -> what it sets; ``--log-file`` takes a value
_FLAGS = {"--debug", "-v", "-vv", "-vvv", "--verbose", "-q", "--quiet", "--log-json", "--version"}
_VALUED = {"--log-file"}
#: Every global option name (no command may define one of its own: it would never see it).
GLOBAL_OPTIONS = frozenset(_FLAGS | _VALUED)

#: The text shown after every command's own help.
GLOBAL_HELP = (
    "Global options (before or after the command): -v/-vv more log output on stderr, -q only errors, "
    "--log-file PATH, --log-json, --debug (tracebacks), --version. "
    "Exit codes: 0 success; 1 the operation failed (torrent error, unreachable service, internal error); "
    "2 bad input or usage (one line on stderr); 130 stopped (Ctrl-C, SIGTERM)."
)


@dataclass
class GlobalOptions:
    """What the global options asked for."""

    verbose: int = 0
    quiet: bool = False
    debug: bool = False
    log_file: str | None = None
    log_json: bool = False
    version: bool = False


def split_globals(argv: list[str]) -> tuple[GlobalOptions, list[str]]:
    """The global options in ``argv`` (anywhere before a ``--``) and the remaining arguments."""
    opts = GlobalOptions()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name, eq, value = arg.partition("=")
        if name in _VALUED:
            if not eq:
                if i + 1 >= len(argv):
                    rest.append(arg)  # Click reports the missing value
                    break
                i += 1
                value = argv[i]
            opts.log_file = value
        elif arg in _FLAGS:
            _set_flag(opts, arg)
        else:
            rest.append(arg)
        i += 1
    return opts, rest


def _set_flag(opts: GlobalOptions, arg: str) -> None:
    if arg == "--debug":
        opts.debug = True
    elif arg in ("-q", "--quiet"):
        opts.quiet = True
    elif arg == "--log-json":
        opts.log_json = True
    elif arg == "--version":
        opts.version = True
    else:
        opts.verbose += 1 if arg == "--verbose" else len(arg) - 1


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg`` (and
    ``exc`` with the traceback, when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        obj: dict[str, object] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, separators=(",", ":"))


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def stderr_level(opts: GlobalOptions) -> int | None:
    """The level of the stderr log (None: no stderr log; the default, and ``-q``)."""
    env = os.environ.get("BITSWARM_LOG", "").strip().upper()
    if opts.debug or opts.verbose >= 2:
        return logging.DEBUG
    if opts.verbose == 1:
        return logging.INFO
    if opts.quiet:
        return None
    if env:
        level = logging.getLevelName(env)
        return level if isinstance(level, int) else logging.WARNING
    return None


def setup_logging(opts: GlobalOptions) -> None:
    """Library log records stay quiet on the command line — errors reach the user as the one
    ``bitswarm: error:`` line — unless ``-v``/``--debug``/``BITSWARM_LOG`` asks for them on stderr
    or ``--log-file`` for a file."""
    root = logging.getLogger("bitswarm")
    for handler in list(root.handlers):
        if getattr(handler, "_bitswarm_cli", False):
            root.removeHandler(handler)
            handler.close()
    formatter: logging.Formatter = JsonFormatter() if opts.log_json else logging.Formatter(_TEXT_FORMAT)
    levels: list[int] = []
    handlers: list[logging.Handler] = []
    level = stderr_level(opts)
    if level is not None:
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[-1].setLevel(level)
        levels.append(level)
    if opts.log_file is not None:
        file_level = min(level or logging.INFO, logging.INFO)
        handlers.append(logging.FileHandler(opts.log_file, encoding="utf-8"))
        handlers[-1].setLevel(file_level)
        levels.append(file_level)
    if not handlers:
        handlers.append(logging.NullHandler())  # no last-resort handler printing to stderr
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._bitswarm_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(min(levels) if levels else logging.WARNING)


def version() -> str:
    """``bitswarm X.Y.Z`` (the installed distribution's version)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return f"bitswarm {dist_version('bitswarm')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from bitswarm import __version__

        return f"bitswarm {__version__}"
