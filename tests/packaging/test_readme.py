"""The README stays true: its Python examples are executed, and every ``bitswarm`` command line in
it names a real command and only options that command's ``--help`` lists."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cli_help import BW, ENV, options_in, unknown_options

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), re.M | re.S)


def _folder(tmp: Path) -> None:
    folder = tmp / "my-folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(os.urandom(300_000))
    (folder / "sub" / "b.txt").write_bytes(b"hello\n" * 1000)


def _run_python(code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=90, env=ENV)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_readme_has_the_python_examples_this_test_runs() -> None:
    assert len(blocks("python")) == 2


def test_metainfo_example(tmp_path: Path) -> None:
    _folder(tmp_path)
    out = _run_python(blocks("python")[0], tmp_path).splitlines()
    assert out[0].startswith("my-folder ") and len(out[0].split()) == 3
    assert sorted(out[1:]) == ["a.bin 300000", "sub/b.txt 6000"]


@pytest.mark.timeout(120)
def test_session_example_prints_torrent_added_and_completes(tmp_path: Path) -> None:
    """The library example, run against a real seeder on loopback (its peer address substituted)."""
    _folder(tmp_path)
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    subprocess.run([*BW, "create", "my-folder", "-o", "my-folder.torrent", "-q"], cwd=tmp_path, check=True,
                   env=ENV)  # fmt: skip
    seeder = subprocess.Popen(
        [*BW, "seed", "my-folder.torrent", "--data", ".", "--port", "0", "--host", "127.0.0.1", "--no-dht",
         "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert seeder.stdout is not None
        for line in seeder.stdout:
            msg = json.loads(line)
            if msg["event"] == "seeding":
                port = msg["port"]
                break
        code = blocks("python")[1]
        assert '("192.168.1.20", 6881)' in code
        code = code.replace('("192.168.1.20", 6881)', f'("127.0.0.1", {port})')
        run_dir = tmp_path / "leech"
        run_dir.mkdir()
        (run_dir / "my-folder.torrent").write_bytes((tmp_path / "my-folder.torrent").read_bytes())
        out = _run_python(code, run_dir).splitlines()
    finally:
        seeder.terminate()
        seeder.wait(10)
    kinds = [line.split()[0] for line in out]
    assert kinds[0] == "torrent_added", out
    assert "torrent_completed" in kinds and out[-1].startswith("1.0 "), out
    assert (run_dir / "downloads" / "my-folder" / "a.bin").read_bytes() == (
        tmp_path / "my-folder" / "a.bin"
    ).read_bytes()


def _command_lines() -> list[list[str]]:
    """Every ``bitswarm ...`` command in the README's sh blocks, as argument lists (comments, shell
    operators and environment assignments taken off)."""
    found = []
    for block in blocks("sh"):
        for raw in block.splitlines():
            lexer = shlex.shlex(raw, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token.strip("&|;<>()") == "":  # a shell operator ends a command
                    while words and re.match(r"^[A-Z_]+=", words[0]):
                        words = words[1:]
                    if words and words[0] == "bitswarm":
                        found.append(words[1:])
                    words = []
                else:
                    words.append(token)
    return found


def test_every_readme_command_and_option_exists() -> None:
    lines = _command_lines()
    assert len(lines) > 30
    for words in lines:
        assert unknown_options(words) == [], words
    assert sum(options_in(words) for words in lines) > 40


def test_readme_torrent_file_commands_run(tmp_path: Path) -> None:
    """The README's ``create``, ``info`` and ``magnet`` lines, run as written (in README order, on a
    ``my-folder``), succeed; placeholder lines (``...``) are left to the option check above."""
    _folder(tmp_path)
    ran = 0
    for words in _command_lines():
        if words[0] not in ("create", "info", "magnet") or any("..." in w for w in words):
            continue
        proc = subprocess.run([*BW, *words], cwd=tmp_path, capture_output=True, text=True, env=ENV)
        assert proc.returncode == 0, (words, proc.stderr)
        ran += 1
    assert ran >= 5


def test_the_error_hierarchy_is_as_the_readme_says() -> None:
    """Issue 22: the README called ``MetainfoError`` a ``RemoteProtocolError`` subclass; it is not."""
    from bitswarm import BitswarmError, RemoteProtocolError
    from bitswarm.bencode import BencodeError
    from bitswarm.metainfo import MetainfoError

    text = " ".join(README.read_text().split())
    assert "`MetainfoError` — a bad .torrent file or magnet link, or a torrent that cannot be made — is a " \
           "`BitswarmError` (not a `RemoteProtocolError`" in text  # fmt: skip
    assert issubclass(MetainfoError, BitswarmError) and not issubclass(MetainfoError, RemoteProtocolError)
    assert "raises a `bitswarm.RemoteProtocolError` subclass (`BencodeError`" in text
    assert issubclass(BencodeError, RemoteProtocolError)
