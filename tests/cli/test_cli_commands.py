"""The command table: ``bitswarm CMD`` imports only CMD's module, and the table matches the app."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bitswarm.cli._commands import COMMAND_MODULES, command_of


def _registered(code: str) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; it leaves the app in ``app``: names and modules loaded."""
    prog = (
        "import json, sys\n"
        + code
        + "\nnames = [c.name or c.callback.__name__ for c in app.registered_commands]"
        "\nnames += [g.name if isinstance(g.name, str) else g.typer_instance.info.name"
        " for g in app.registered_groups]"
        "\nmods = sorted(m for m in sys.modules if m.startswith('bitswarm.cli._')"
        " and m not in ('bitswarm.cli._app', 'bitswarm.cli._commands'))"
        "\nprint(json.dumps({'names': sorted(names), 'mods': mods, "
        "'heavy': sorted(m for m in ('bitswarm.index', 'bitswarm.daemon', 'bitswarm.tracker.server', "
        "'httpx', 'fastapi', 'rich.console', 'rich.progress') if m in sys.modules)}))"
    )
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_table_covers_every_command() -> None:
    got = _registered("from bitswarm.cli import app")
    assert sorted(got["names"]) == sorted(COMMAND_MODULES)
    assert set(got["mods"]) == {f"bitswarm.cli.{m}" for m in COMMAND_MODULES.values()}


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_each_command_is_registered_by_its_module(command: str) -> None:
    got = _registered(
        "from bitswarm.cli import _commands\n"
        f"_commands.load([{command!r}, '--help'])\n"
        "from bitswarm.cli._app import app"
    )
    assert command in got["names"]
    assert got["mods"] == sorted({f"bitswarm.cli.{COMMAND_MODULES[command]}"} | _deps(command))


def _deps(command: str) -> set[str]:
    """Command modules that ``command``'s module imports a helper from (read from its source)."""
    import re
    from pathlib import Path

    import bitswarm.cli

    src = (Path(bitswarm.cli.__file__).parent / f"{COMMAND_MODULES[command]}.py").read_text()
    found = set(re.findall(r"^from bitswarm\.cli\.(_[a-z]+) import", src, re.M)) - {"_app", "_commands"}
    return {f"bitswarm.cli.{m}" for m in found}


def test_a_peer_process_loads_no_server_code() -> None:
    got = _registered(
        "from bitswarm.cli import _commands\n"
        "_commands.load(['download', 'x.torrent'])\n"
        "from bitswarm.cli._app import app"
    )
    assert got["mods"] == ["bitswarm.cli._peer"]
    assert got["heavy"] == []


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["download", "a.torrent"], "download"),
        (["--debug", "seed", "x"], "seed"),
        (["--help"], None),
        ([], None),
        (["--debug"], None),
        (["ctl", "list"], "ctl"),
    ],
)
def test_command_of(argv: list[str], want: str | None) -> None:
    assert command_of(argv) == want


def test_help_and_unknown_commands_load_everything() -> None:
    from bitswarm.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["downlod", "x"])
    assert exc.value.code == 2
