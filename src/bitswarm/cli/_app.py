"""The Typer application object and the helpers every command module shares.

Each command lives in its own module (``_create.py``, ``_info.py`` ...) that imports :data:`app` and
registers itself with ``@app.command()``; :mod:`bitswarm.cli` imports them all.
"""

from __future__ import annotations

import atexit
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, cast

import typer

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console

from bitswarm.cli._globals import GLOBAL_HELP

app = typer.Typer(
    name="bitswarm",
    help="bitswarm — BitTorrent peer, tracker, DHT node and file index.",
    epilog=GLOBAL_HELP,
    no_args_is_help=True,
    add_completion=True,
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
            if not self._console.is_terminal:
                # piped or redirected: never wrap (a magnet link, a path or a table row is one line
                # for the script reading it) — soft wrapping, and room for the widest table
                self._console.soft_wrap = True
                self._console.width = max(self._console.width, NOT_A_TERMINAL_WIDTH)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


def real_console(c: Console) -> Console:
    """The Rich ``Console`` behind :data:`console` / :data:`err_console` (for ``Progress(console=)``,
    ``Live(console=)``, which need the object itself)."""
    return c.real() if isinstance(c, _LazyConsole) else c


#: Width Rich lays out tables in when the output is not a terminal (lines are not wrapped at all).
NOT_A_TERMINAL_WIDTH = 1000

#: Rich console for human output (stdout) and for progress and errors (stderr).
console = cast("Console", _LazyConsole())
err_console = cast("Console", _LazyConsole(stderr=True))

#: Exit codes of every command (``bitswarm --help``, README, ``docs/cli.md``).
EXIT_OK = 0
#: The operation failed at run time: a torrent error, an unreachable service, an internal error.
EXIT_FAILURE = 1
#: Bad input or usage: one line on stderr.
EXIT_USAGE = 2
#: Stopped by Ctrl-C or SIGTERM before it finished (128 + SIGINT, as shells report).
EXIT_STOPPED = 130


class _State:
    debug = False
    quiet = False
    verbose = 0


state = _State()


def _show_version(value: bool) -> None:
    if value:
        from bitswarm.cli._globals import version

        print(version())
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks on errors, DEBUG logs.")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-v INFO, -vv DEBUG).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors: no progress, no notes.")] = False,
    log_file: Annotated[str | None, typer.Option("--log-file", help="Also log to this file.")] = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log records as JSON lines.")] = False,
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """The global options; :func:`bitswarm.cli.main` takes them out of the arguments wherever they
    are (so they work after the command name too) — this callback sees them when ``app`` is called
    directly."""
    state.debug = state.debug or debug
    state.verbose = max(state.verbose, verbose)
    state.quiet = state.quiet or quiet
    if log_file is not None or log_json or verbose or debug:
        from bitswarm.cli._globals import GlobalOptions, setup_logging

        setup_logging(GlobalOptions(verbose, quiet, debug, log_file, log_json))


def typer_command() -> Any:
    """The Click command of :data:`app`, its help texts shown as written: Typer reads them as Rich
    markup, which takes ``[default: 127.0.0.1]`` or ``[prefer]`` for a style tag and drops it."""
    import typer.main

    def escape(text: str) -> str:  # what Rich would read as a tag: "[" + a letter, "#", "/" or "@"
        return _MARKUP_TAG.sub(r"\\\1", text)

    def walk(command: Any) -> None:
        for attr in ("help", "short_help", "epilog"):
            if isinstance(getattr(command, attr, None), str):
                setattr(command, attr, escape(getattr(command, attr)))
        for param in getattr(command, "params", []):
            if isinstance(getattr(param, "help", None), str):
                param.help = escape(param.help)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    command = typer.main.get_command(app)
    walk(command)
    return command


_BIND_ADDRESS = re.compile(r"\('([^']*)', (\d+)")


def hostport(host: str, port: int | str) -> str:
    """``HOST:PORT`` (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_failure(exc: OSError, *candidates: str) -> str:
    """The one line for an address that cannot be listened on, naming it: the address asyncio and
    uvloop put in their message, else the one (or ones) the caller was binding."""
    import os

    why = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    m = _BIND_ADDRESS.search(str(exc))
    where = hostport(m.group(1), m.group(2)) if m else " or ".join(candidates) or "its address"
    return f"cannot listen on {where}: {why}"


def error_exit_code(exc: BaseException) -> int:
    """The exit code of a bitswarm error: its own ``exit_code`` when it has one (1: an unreachable or
    failing service, ``docs/cli.md``), else 2 (bad input)."""
    code = getattr(exc, "exit_code", None)
    return code if isinstance(code, int) else EXIT_USAGE


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print a one-line error on stderr and exit with ``code``."""
    first = " ".join(str(message).split("\n")[0].split())
    json_lines.flush()  # the JSON lines made before the error come first
    print(f"bitswarm: error: {first}", file=sys.stderr)
    raise typer.Exit(code)


_MARKUP_TAG = re.compile(r"(\[[a-z#/@])")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?(?:/s)?\s*$", re.IGNORECASE)
HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


def parse_rate(text: str | None, option: str) -> int:
    """``500k``, ``2M``, ``1.5MiB/s``, ``0`` → bytes/s (binary units; 0 and None: no limit)."""
    if text is None:
        return 0
    m = _RATE.match(text)
    if not m:
        fail(f"{option} must be bytes/s such as 500k or 2M (0: no limit), got {text!r}")
    return int(float(m.group(1)) * 1024 ** ("kmg".find(m.group(2).lower()) + 1 if m.group(2) else 0))


def tracker_url(text: str) -> str:
    """A tracker URL as other clients need it in a .torrent: a URL stays, a bare ``HOST:PORT``
    becomes ``http://HOST:PORT/announce``; anything else is a one-line error."""
    if "://" in text:
        return text
    if HOSTPORT.match(text):
        return f"http://{text}/announce"
    fail(f"--tracker must be a URL (http://, https://, udp://) or HOST:PORT, got {text!r}")


def write_new_file(out: Path, data: bytes, force: bool) -> None:
    """Write ``out`` atomically (a temporary file in the same directory, then rename); without
    ``force`` an existing ``out`` is a one-line error, never overwritten."""
    import os
    import tempfile

    directory = out.parent if str(out.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, out)
        else:
            os.link(tmp, out)  # fails if ``out`` appeared meanwhile: never overwrite without --force
            os.unlink(tmp)
    except FileExistsError:
        Path(tmp).unlink(missing_ok=True)
        fail(f"{out} exists (use --force to overwrite)")
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        fail(f"cannot write {out}: {exc.strerror or exc}")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


class JsonLines:
    """The ``--json`` output on stdout: one JSON object per line, each line whole.

    :meth:`write` called while an event loop runs keeps the line and writes everything written in
    the same loop iteration at once, from a callback the loop runs next (``call_soon``): a reader
    sees each line within the iteration that made it, a burst of session events costs one write
    and one flush, and the lines keep their order. Without a running loop a line is written at once.
    :meth:`flush` writes what is kept now (before the process exits, before an error line).
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._handle: asyncio.Handle | None = None  # the flush the loop will run
        self._loop: asyncio.AbstractEventLoop | None = None

    def write(self, line: str, *, now: bool = False) -> None:
        """Output ``line`` (a JSON text and its newline) in this loop iteration (``now``: at once,
        after the lines kept before it)."""
        self._parts.append(line)
        if now:
            self.flush()
            return
        aio = sys.modules.get("asyncio")  # not imported: no loop runs (and none is imported here)
        try:
            loop = aio.get_running_loop() if aio is not None else None
        except RuntimeError:
            loop = None
        if loop is None:
            self.flush()
        elif self._loop is not loop or self._handle is None:  # (a flush left on an ended loop: anew)
            self._loop = loop
            self._handle = loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every kept line now, in one write (stdout as it is now: tests swap it)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            out = sys.stdout
            out.write(text)
            out.flush()


#: The one ``--json`` line writer of the process (:func:`print_json`, the peer commands' events).
json_lines = JsonLines()
atexit.register(json_lines.flush)


def dumps(obj: Any) -> str:
    """The ``--json`` form of ``obj``: compact, ASCII, on one line."""
    return json.dumps(obj, separators=(",", ":"))


def print_json(obj: Any) -> None:
    """Print one JSON object on one line (the ``--json`` output form), now: after any line
    :data:`json_lines` still keeps, so the order holds."""
    json_lines.write(dumps(obj) + "\n", now=True)
