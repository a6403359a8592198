"""``bitswarm ctl`` and ``bitswarm top`` keep the CLI conventions (issue 22): one error line with the
documented exit codes (1: the daemon is unreachable; 2: a bad token, no such torrent), and output
that is not a terminal is never wrapped nor cut (``ctl list`` keeps a long name on its row, ``top
--once`` keeps the Name and Progress columns)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitswarm.daemon._top import render

BW = [sys.executable, "-m", "bitswarm"]
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "BITSWARM_NO_PUBLIC_DHT": "1", "COLUMNS": "80"}
LONG = "a-torrent-with-a-name-long-enough-that-any-eighty-column-wrapping-would-split-it-" + "y" * 40


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BW, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=ENV)


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswarm: error: "), proc.stderr
    return lines[0]


class Daemon:
    def __init__(self, api: str, data: Path, cwd: Path) -> None:
        self.api, self.data, self.cwd = api, data, cwd

    def ctl(self, *args: str, auth: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--data", str(self.data)] if auth else []
        return run(["ctl", *args, "--api", self.api, *extra], self.cwd)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon (loopback, any free ports) holding one paused torrent with a long name."""
    tmp = tmp_path_factory.mktemp("ctl")
    payload = tmp / "src" / f"{LONG}.bin"
    payload.parent.mkdir()
    payload.write_bytes(os.urandom(40_000))
    assert run(["create", str(payload), "-o", "t.torrent", "-q", "--v1"], tmp).returncode == 0
    args = ["daemon", "--api", "127.0.0.1:0", "--port", "0", "--host", "127.0.0.1", "--no-dht",
            "--data", str(tmp / "data"), "--json"]  # fmt: skip
    proc = subprocess.Popen([*BW, *args], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the startup line (the daemon is listening once it is printed)
        assert line, proc.stderr.read() if proc.stderr else ""
        d = Daemon(json.loads(line)["api"], tmp / "data", tmp)
        added = d.ctl("add", "t.torrent", "--paused", "--save-path", str(payload.parent), "--json")
        assert added.returncode == 0, added.stderr
        yield d
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_ctl_list_keeps_a_long_name_on_its_row_when_piped(daemon: Daemon) -> None:
    proc = daemon.ctl("list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"  {LONG}.bin"), lines
    assert "paused" in lines[0]


def test_top_once_keeps_name_and_progress_when_piped(daemon: Daemon) -> None:
    proc = run(["top", "--once", "--api", daemon.api, "--data", str(daemon.data)], daemon.cwd)
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if " Name " in line)
    for column in ("#", "Name", "State", "Progress", "Size", "Down", "Up", "Peers", "ETA"):
        assert f" {column} " in f"{header} ", header
    row = next(line for line in proc.stdout.splitlines() if LONG in line)
    assert f"{LONG}.bin" in row and "0.0%" in row and "paused" in row, row
    assert max(map(len, proc.stdout.splitlines())) < 400  # as wide as its contents, not padded out


@pytest.mark.parametrize("width", [50, 60, 80, 100, 160])
def test_top_keeps_name_and_progress_on_a_narrow_terminal(width: int) -> None:
    from rich.console import Console

    torrent = {"name": LONG, "state": "downloading", "progress": 0.5, "wanted_size": 10_000,
               "download_rate": 1000, "upload_rate": 10, "peers": 3, "eta": 100}  # fmt: skip
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render([torrent], {}, "http://127.0.0.1:9091", width=width))
    console.file.close()
    lines = console.export_text().splitlines()
    header = next(line for line in lines if " Name " in line)
    assert "Progress" in header, lines
    row = next(line for line in lines if "downloading" in line)
    assert LONG[:10] in row and "50.0%" in row, lines
    assert max(map(len, lines)) <= width
    if width >= 160:
        assert "ETA" in header and "1m40s" in row


def test_ctl_bad_token_is_one_line_and_exit_2(daemon: Daemon) -> None:
    line = one_error_line(run(["ctl", "list", "--api", daemon.api, "--token", "wrong"], daemon.cwd), 2)
    assert "refused the token" in line and "--token" in line


def test_ctl_unknown_torrent_is_one_line_and_exit_2(daemon: Daemon) -> None:
    for command in (["show", "no-such-torrent"], ["pause", "no-such-torrent"], ["remove", "zzz"]):
        line = one_error_line(daemon.ctl(*command), 2)
        assert "no torrent matches" in line


def test_ctl_unreachable_daemon_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as unused:  # bound, never listening: a connection to it is refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        for args in (["ctl", "list"], ["ctl", "show", "1"], ["top", "--once"]):
            proc = run([*args, "--api", f"127.0.0.1:{port}", "--token", "x"], tmp_path)
            assert f"cannot reach the daemon at http://127.0.0.1:{port}" in one_error_line(proc, 1)


def test_ctl_exit_codes_are_documented() -> None:
    text = " ".join((ROOT / "docs" / "cli.md").read_text().split())
    assert "`ctl` and `top`" in text
    for case in ("daemon cannot be reached", "token", "no torrent matches"):
        assert case in text, case
