"""The command table: ``bitswarm CMD`` imports only CMD's module, and the table matches the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
        " and m not in ('bitswarm.cli._app', 'bitswarm.cli._commands', 'bitswarm.cli._globals'))"
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
    found = set(re.findall(r"^from bitswarm\.cli\.(_[a-z]+) import", src, re.M))
    found -= {"_app", "_commands", "_globals"}
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


#: Imported only when used (not by a ``bitswarm download`` of a .torrent without udp:// trackers up to
#: its first line): swarm peers start by the dozen on 2 cores, where these milliseconds add up.
LAZY_ON_DOWNLOAD = (
    "bitswarm.tracker.udp_codec",  # udp:// trackers only
    "bitswarm.tracker.http_codec",  # the first http:// announce
    "bitswarm.metainfo._create",  # creating torrents (share, create)
    "bitswarm.metainfo._hashing",
    "bitswarm.metainfo._magnet",  # magnet links
    "bitswarm.dht.sim",
    "bitswarm.index",
    "bitswarm.tracker.server",
    "tomllib",  # config files
    "httpx",  # https:// trackers
    "rich.console",  # --json runs print no Rich output
    "cryptography",  # MSE's RC4 at the first encrypted peer, BEP 44/46 signatures (issue 24)
    "bitswarm.session.mutable",  # BEP 46 magnet links only (issue 24)
)


def test_download_start_up_leaves_unused_code_unloaded(tmp_path: Path) -> None:
    """Run ``bitswarm download --json`` to its ``started`` line (session listening, DHT node up,
    torrent checked and added) and list what it imported by then."""
    from bitswarm.metainfo import make_torrent

    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 400)
    torrent = tmp_path / "f.torrent"
    torrent.write_bytes(make_torrent(tmp_path / "f.bin").data)  # no tracker: no announce to race with
    prog = (
        "import json, os, sys\n"
        "import bitswarm.cli._peer as peer\n"
        "def first_line(self, kind, **data):\n"
        "    if kind != 'started': return\n"
        "    mods = [m for m in " + repr(LAZY_ON_DOWNLOAD) + " if m in sys.modules]\n"
        "    print(json.dumps({'event': kind, 'loaded': mods}), flush=True)\n"
        "    os._exit(0)\n"
        "peer._Display.event = first_line\n"
        "peer._Display.session_event = lambda self, ev: None\n"
        "from bitswarm.cli import main\n"
        f"main(['download', {str(torrent)!r}, '-o', {str(tmp_path / 'out')!r}, '--host', '127.0.0.1',"
        " '--port', '0', '--json'])\n"
    )
    env = {**os.environ, "BITSWARM_NO_PUBLIC_DHT": "1"}
    out = subprocess.run(
        [sys.executable, "-c", prog], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    first = json.loads(out.stdout.splitlines()[0])
    assert first == {"event": "started", "loaded": []}


def test_session_modules_load_no_dht_client_or_tracker_codecs() -> None:
    """What a download session imports to start (peer wire, DHT node and server, tracker client) does
    not pull in the DHT lookup code, the tracker codecs or the rest of ``LAZY_ON_DOWNLOAD``."""
    prog = (
        "import json, sys\n"
        "from bitswarm.cli import _commands\n"
        "_commands.load(['download', 'x.torrent'])\n"
        "import bitswarm.session.peer, bitswarm.dht.server, bitswarm.tracker.client\n"
        "mods = ('bitswarm.dht.lookup',) + " + repr(LAZY_ON_DOWNLOAD) + "\n"
        "print(json.dumps([m for m in mods if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []


def test_lazy_package_exports_still_import() -> None:
    """The names the packages re-export lazily are importable from the package, listed by ``dir``
    and are the submodules' own objects."""
    import bitswarm.dht
    import bitswarm.metainfo
    import bitswarm.tracker
    from bitswarm.dht import DHTServer, SimNetwork, bep44  # noqa: F401  (a submodule, too)
    from bitswarm.dht.server import DHTServer as Server
    from bitswarm.metainfo import Magnet, make_torrent
    from bitswarm.metainfo._create import make_torrent as made
    from bitswarm.metainfo._magnet import Magnet as Mag
    from bitswarm.tracker import AnnounceManager, open_tracker  # noqa: F401
    from bitswarm.tracker.client import AnnounceManager as Manager

    assert DHTServer is Server and make_torrent is made and Magnet is Mag and AnnounceManager is Manager
    for pkg in (bitswarm.dht, bitswarm.metainfo, bitswarm.tracker):
        assert set(pkg.__all__) <= set(dir(pkg))
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None
    with pytest.raises(AttributeError):
        bitswarm.dht.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError):
        from bitswarm.metainfo import NoSuchThing  # type: ignore[attr-defined]  # noqa: F401
