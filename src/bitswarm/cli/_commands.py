"""Which module registers each command on :data:`bitswarm.cli._app.app`, and loading them.

A command module registers its commands when imported. ``bitswarm download ...`` imports only the
module of ``download`` (``_peer``): a peer process then starts without the tracker server, index,
daemon and torrent-creation code it never runs (each swarm peer is its own process, and 17 of
them starting at once on 2 cores is where the milliseconds count; ``docs/benchmarks.md``). Help,
an unknown command or no command imports them all. Add one entry here per command.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typer.models import CommandInfo

#: top-level command (or sub-app) name -> the module under ``bitswarm.cli`` that registers it
COMMAND_MODULES: dict[str, str] = {
    "create": "_create",
    "info": "_info",
    "magnet": "_info",
    "download": "_peer",
    "seed": "_peer",
    "share": "_peer",
    "stream": "_stream",
    "tracker": "_tracker",
    "dht": "_dht",
    "index": "_index",
    "search": "_index",
    "peers": "_index",
    "get": "_index",
    "index-peer": "_index_peer",
    "centralized-peer": "_centralized_peer",
    "serve": "_serve",
    "demo": "_demo",
    "daemon": "_daemon",
    "ctl": "_daemon",
    "top": "_daemon",
}

#: options of the root callback that come before the command name
_ROOT_FLAGS = {"--debug"}


def command_of(argv: list[str]) -> str | None:
    """The command name ``argv`` invokes (None: none, or help)."""
    for arg in argv:
        if arg in _ROOT_FLAGS:
            continue
        if arg.startswith("-"):
            return None  # --help, or an option Typer will reject: load everything
        return arg
    return None


def load(argv: list[str] | None = None) -> None:
    """Register the commands ``argv`` needs: one module when it names a known command, else all."""
    name = command_of(argv) if argv is not None else None
    module = COMMAND_MODULES.get(name) if name is not None else None
    try:
        for mod in [module] if module is not None else sorted(set(COMMAND_MODULES.values())):
            import_module(f"bitswarm.cli.{mod}")
    except KeyboardInterrupt:  # Ctrl-C while starting: a quiet exit (128 + SIGINT), not a traceback
        raise SystemExit(130) from None


def only_invoked(commands: list[CommandInfo], argv: list[str]) -> list[CommandInfo]:
    """The registered commands Typer needs to build for ``argv``: just the one it names, if it names
    one (Typer makes a Click command of every registered command on each run, evaluating each
    function's annotations: ~1 ms per command), else all of them. Help, errors and the root options
    (``--debug``) are the same either way: Click only looks up the command named."""
    name = command_of(argv)
    if name is None:
        return commands
    found = [c for c in commands if _typer_name(c) == name]
    return found if len(found) == 1 else commands


def _typer_name(command: CommandInfo) -> str:
    """The name Typer gives a registered command (``typer.main.get_command_name``)."""
    return command.name or getattr(command.callback, "__name__", "").lower().replace("_", "-")
