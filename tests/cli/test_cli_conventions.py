"""The conventions every command keeps (issue 22): output that is not a terminal is never wrapped,
one error contract with documented exit codes, ``--version``, ``-v``/``-q``/``--log-file``/``--log-json``
anywhere, shell completion, rate limits, a free peer port when 6881 is taken, ``share``'s tracker URL
and ``--force``, ``create``'s note on hybrid torrents."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import bitswarm
from bitswarm.metainfo import load_torrent, parse_magnet

BW = [sys.executable, "-m", "bitswarm"]
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "BITSWARM_NO_PUBLIC_DHT": "1", "COLUMNS": "80"}
LONG = "a-file-with-a-name-long-enough-that-any-eighty-column-wrapping-would-split-it-" + "x" * 40


def run(args: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BW, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=ENV, **kw)  # type: ignore[call-overload, no-any-return]


def one_error_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswarm: error: "), proc.stderr
    return lines[0]


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    src = tmp_path / "src" / f"{LONG}.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(40_000))
    return src


@contextlib.contextmanager
def running(args: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """A long-running command (``share``, ``seed``) with its stdout piped; terminated on exit."""
    proc = subprocess.Popen([*BW, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def read_until(proc: subprocess.Popen[str], pred: Callable[[str], bool], timeout: float = 30) -> list[str]:
    """Lines of ``proc``'s stdout up to the first for which ``pred`` holds."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if pred(lines[-1]):
            return lines
    raise AssertionError(f"not seen within {timeout} s: {lines}")


def test_share_prints_the_magnet_link_on_one_line_when_piped(payload: Path, tmp_path: Path) -> None:
    args = ["share", str(payload), "--port", "0", "--host", "127.0.0.1", "--no-dht"]
    with running(args, tmp_path) as proc:
        lines = read_until(proc, lambda x: x.startswith("magnet:"))
    magnet_line = lines[-1]
    uri = magnet_line.split(None, 1)[1]
    assert uri.startswith("magnet:?xt=urn:btih:") and len(magnet_line) > 80
    assert parse_magnet(uri).name == payload.name  # the whole link, name included
    assert lines[0] == f"torrent: {payload.name}.torrent"


def test_share_writes_a_full_announce_url_for_host_port(payload: Path, tmp_path: Path) -> None:
    args = ["share", str(payload), "--tracker", "tracker.example:6969", "-o", "t.torrent",
            "--port", "0", "--host", "127.0.0.1", "--no-dht", "--json"]  # fmt: skip
    with running(args, tmp_path) as proc:
        read_until(proc, lambda x: '"shared"' in x)
    assert load_torrent(tmp_path / "t.torrent").trackers == [["http://tracker.example:6969/announce"]]


def test_create_writes_a_full_announce_url_for_host_port(payload: Path, tmp_path: Path) -> None:
    proc = run(["create", str(payload), "-o", "t.torrent", "--tracker", "10.0.0.1:6969", "--v1"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert load_torrent(tmp_path / "t.torrent").trackers == [["http://10.0.0.1:6969/announce"]]
    bad = run(["create", str(payload), "-o", "u.torrent", "--tracker", "not a tracker"], tmp_path)
    assert "--tracker must be a URL" in one_error_line(bad)


def test_share_refuses_to_overwrite_a_torrent_without_force(payload: Path, tmp_path: Path) -> None:
    existing = tmp_path / f"{payload.name}.torrent"
    existing.write_bytes(b"mine")
    proc = run(["share", str(payload), "--port", "0", "--host", "127.0.0.1", "--no-dht"], tmp_path)
    assert "exists (use --force to overwrite)" in one_error_line(proc)
    assert existing.read_bytes() == b"mine"
    args = ["share", str(payload), "--force", "--port", "0", "--host", "127.0.0.1", "--no-dht", "--json"]
    with running(args, tmp_path) as share:
        read_until(share, lambda x: '"shared"' in x)
    assert load_torrent(existing).name == payload.name


def test_output_that_is_not_a_terminal_is_not_wrapped(payload: Path, tmp_path: Path) -> None:
    assert run(["create", str(payload), "-o", "t.torrent", "-q"], tmp_path).returncode == 0
    info = run(["info", "t.torrent"], tmp_path)
    assert info.returncode == 0 and any(LONG in line for line in info.stdout.splitlines()), info.stdout
    magnet = run(["magnet", "t.torrent"], tmp_path).stdout.splitlines()
    assert len(magnet) == 1 and parse_magnet(magnet[0]).name == payload.name
    as_json = json.loads(run(["magnet", "t.torrent", "--json"], tmp_path).stdout)
    assert as_json["magnet"] == magnet[0] and as_json["name"] == payload.name
    created = run(["create", str(payload), "-o", "u.torrent", "-q"], tmp_path)
    assert any(f"{payload.name}: 1 file(s), 40000 bytes" in line for line in created.stdout.splitlines())


def test_version(tmp_path: Path) -> None:
    for args in (["--version"], ["info", "--version"]):
        proc = run(args, tmp_path)
        assert proc.returncode == 0 and proc.stdout.strip() == f"bitswarm {bitswarm.__version__}", proc


def test_exit_codes_are_documented_in_help_and_readme(tmp_path: Path) -> None:
    listing = run(["--help"], tmp_path, check=True).stdout
    flat = " ".join(listing.replace("│", " ").split())
    for text in ("Exit codes: 0 success", "1 the operation failed", "2 bad input", "130 stopped"):
        assert text in flat, flat
    for option in ("--version", "--verbose", "--quiet", "--log-file", "--log-json", "--install-completion"):
        assert option in listing
    readme = (ROOT / "README.md").read_text()
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |"):
        assert code in readme
    assert "Exit codes" in (ROOT / "docs" / "cli.md").read_text()


def test_global_options_work_after_the_command(payload: Path, tmp_path: Path) -> None:
    """``-vv --log-file --log-json`` after ``seed``: JSON log records in the file (the session says
    where it listens), DEBUG ones on stderr too."""
    assert run(["create", str(payload), "-o", "t.torrent", "-q"], tmp_path).returncode == 0
    log = tmp_path / "seed.log"
    args = ["seed", "t.torrent", "--data", str(payload.parent), "--port", "0", "--host", "127.0.0.1",
            "--no-dht", "--json", "--log-file", str(log), "--log-json", "-vv"]  # fmt: skip
    with running(args, tmp_path) as proc:
        read_until(proc, lambda x: '"seeding"' in x)
        records = [json.loads(x) for x in log.read_text().splitlines()]
    assert any(r["logger"].startswith("bitswarm.") and "listening on" in r["msg"] for r in records), records
    assert {"ts", "level", "logger", "msg"} <= set(records[0])


def test_quiet_prints_no_notes(payload: Path, tmp_path: Path) -> None:
    loud = run(["create", str(payload), "-o", "a.torrent"], tmp_path)
    assert loud.returncode == 0 and "--v1" in loud.stderr  # the hybrid note
    quiet = run(["create", str(payload), "-o", "b.torrent", "-q"], tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert run(["create", str(payload), "-o", "c.torrent", "--v1"], tmp_path).stderr == ""
    assert run(["create", str(payload), "-o", "d.torrent", "--hybrid"], tmp_path).stderr == ""


def test_a_bad_log_file_is_one_error_line(tmp_path: Path) -> None:
    proc = run(["info", "x.torrent", "--log-file", str(tmp_path / "no" / "such" / "dir" / "log")], tmp_path)
    assert "cannot open the log file" in one_error_line(proc)


def test_an_unexpected_error_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bitswarm.cli._info as info_module
    from bitswarm.cli import main

    def boom(path: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(info_module, "load_torrent", boom)
    with pytest.raises(SystemExit) as exc:
        main(["info", str(tmp_path / "x.torrent")])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bitswarm: error: RuntimeError: boom second line (run with --debug for the traceback)"]


def test_shell_completion_is_on(tmp_path: Path) -> None:
    env = {**ENV, "_BITSWARM_COMPLETE": "complete_bash", "COMP_WORDS": "bitswarm dow", "COMP_CWORD": "1"}
    code = "import sys; from bitswarm.cli import main; sys.argv[0] = 'bitswarm'; main()"
    script = [sys.executable, "-c", code]
    proc = subprocess.run(script, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.stdout.split() == ["download"], proc


def test_rate_limits(tmp_path: Path) -> None:
    from bitswarm.cli._peer import _config

    config = _config("127.0.0.1", 0, download_limit="1M", upload_limit="500k")
    assert (config.download_rate_limit, config.upload_rate_limit) == (1024**2, 500 * 1024)
    assert _config("127.0.0.1", 0).download_rate_limit == 0
    for command in ("download", "seed", "share", "stream"):
        assert "--download-limit" in run([command, "--help"], tmp_path).stdout
    bad = run(["download", "x.torrent", "-o", "out", "--download-limit", "fast"], tmp_path)
    assert "--download-limit must be bytes/s" in one_error_line(bad)


def test_a_peer_command_picks_a_free_port_when_6881_is_taken(payload: Path, tmp_path: Path) -> None:
    assert run(["create", str(payload), "-o", "t.torrent", "-q"], tmp_path).returncode == 0
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 6881))
        holder.listen()
    except OSError:
        pass  # someone else holds it: taken either way
    args = ["seed", "t.torrent", "--data", str(payload.parent), "--host", "127.0.0.1", "--no-dht", "--json"]
    try:
        with running(args, tmp_path) as proc:
            lines = read_until(proc, lambda x: '"seeding"' in x)
            port = json.loads(lines[-1])["port"]
            proc.terminate()
            _, err = proc.communicate(timeout=10)
    finally:
        holder.close()
    assert port != 6881
    assert f"port 6881 is in use: listening for peers on port {port}" in err


def test_cannot_listen_names_the_address(payload: Path, tmp_path: Path) -> None:
    assert run(["create", str(payload), "-o", "t.torrent", "-q"], tmp_path).returncode == 0
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        args = ["seed", "t.torrent", "--data", str(payload.parent), "--host", "127.0.0.1", "--no-dht"]
        line = one_error_line(run([*args, "--port", str(port)], tmp_path))
    assert f"cannot listen on 127.0.0.1:{port}" in line


#: Azureus-style client codes other clients already name (libtorrent, Transmission, Vuze/BiglyBT,
#: bittorrent-peerid), BitWombat's BW among them.
_TAKEN = """
AG A~ AR AT AV AX AZ BB BC BE BF BG BH BI BL BM BN BP BR BS BT BU BW BX CB CD CT DE DP EB ES FC
FD FG FL FT FW FX G3 GR GS HK HL HN IL KC KG KT LC LH LK LP LT LW MG MK ML MO MP MR MT NE NX OS
OT PC PD PE PI PT QD QT RS RT RZ SB SD SG SK SM SN SP SS ST SZ S~ TB TG TL TN TR TS TT UE UL UM
UT UW VG WD WS WT WW WY XC XF XL XS XT XX ZO ZT 7T bk lt pb pX qB st
"""
TAKEN_CLIENT_CODES = frozenset(_TAKEN.split())


def test_the_peer_id_prefix_is_ours() -> None:
    import warnings

    from bitswarm.session.config import PEER_ID_PREFIX, make_peer_id

    assert PEER_ID_PREFIX[:1] == b"-" and PEER_ID_PREFIX[7:8] == b"-" and len(make_peer_id()) == 20
    code = PEER_ID_PREFIX[1:3].decode()
    assert code not in TAKEN_CLIENT_CODES
    assert f"`-{code}" in (ROOT / "docs" / "cli.md").read_text()  # registered in the docs
    from testtools import require_module

    lt = require_module("libtorrent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        shown = lt.identify_client(lt.sha1_hash(make_peer_id()))
    assert shown.startswith(f"{code} ") and "BitWombat" not in shown  # libtorrent knows no other client by it


def test_debug_logs_failed_outgoing_connections(payload: Path, tmp_path: Path) -> None:
    """``--debug`` says why no peer got going: a refused dial, and a peer that closed the connection
    in the handshake."""
    import threading

    assert run(["create", str(payload), "-o", "t.torrent", "-q"], tmp_path).returncode == 0
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
        closer = socket.create_server(("127.0.0.1", 0))
        closer_port = closer.getsockname()[1]

        def accept_and_close() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = closer.accept()
                    conn.close()

        threading.Thread(target=accept_and_close, daemon=True).start()
        peers = ["--peer", f"127.0.0.1:{refused_port}", "--peer", f"127.0.0.1:{closer_port}"]
        args = ["download", "t.torrent", "-o", "out", "--port", "0", "--host", "127.0.0.1", *peers]
        proc = subprocess.Popen([*BW, *args, "--no-dht", "--debug"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip
        seen: list[str] = []
        try:
            assert proc.stderr is not None
            deadline = time.monotonic() + 30
            keys = [f"dial 127.0.0.1:{refused_port}", f"127.0.0.1:{closer_port} closed the"]
            want = dict.fromkeys(keys, False)
            refused_line = ""
            while not all(want.values()) and time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line:
                    break
                seen.append(line)
                for key in want:
                    if key in line and ("failed" in line or "handshake" in line):
                        want[key] = True
                        refused_line = line if key == keys[0] else refused_line
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
            closer.close()
    assert all(want.values()), (want, seen[-20:])
    assert refused_line.rstrip().endswith("failed: Connection refused"), refused_line


def test_a_failed_dial_says_why_in_words() -> None:
    from bitswarm.session.peer_manager import dial_failure

    assert dial_failure(TimeoutError()) == "timed out"  # asyncio.timeout's: no text of its own
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)")
    assert dial_failure(refused) == "Connection refused"
    assert dial_failure(OSError("no uTP socket")) == "no uTP socket"


def test_no_command_has_an_option_named_like_a_global_one() -> None:
    """The global options are taken out of the arguments wherever they are: a command's own option
    of the same name would never see its value (``create --quiet`` reads the global state)."""
    import typer.main

    from bitswarm.cli import app
    from bitswarm.cli._globals import GLOBAL_OPTIONS

    def walk(command: object, path: str) -> Iterator[tuple[str, str]]:
        for param in getattr(command, "params", []):
            for name in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                yield path, name
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    root = typer.main.get_command(app)
    found = {(path, name) for path, name in walk(root, "bitswarm") if path != "bitswarm"}
    clashes = {(p, n) for p, n in found if n in GLOBAL_OPTIONS} - {("bitswarm create", "--quiet"),
                                                                    ("bitswarm create", "-q")}  # fmt: skip
    assert not clashes
