"""Help texts are shown as written (issue 22): Typer reads option help as Rich markup, which took
every ``[default: ...]`` (and ``[prefer]``, ``[tcp,utp]`` ...) for a style tag and dropped it; the
defaults the index's help and the README state are the code's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from bitswarm.cli import app, main
from bitswarm.index._config import IndexConfig

ROOT = Path(__file__).resolve().parents[2]
BRACKETS = re.compile(r"\[[^\]\[]*\]")


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


def bracketed(command: Any) -> set[str]:
    texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
    return {m for text in texts for m in BRACKETS.findall(text)}


def shown_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_every_bracket_in_a_help_text_is_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    root = typer.main.get_command(app)
    checked = 0
    for path, command in commands(root):
        wanted = bracketed(command)
        if not wanted or not path:
            continue
        shown = shown_help(path, capsys)
        for text in wanted:
            assert " ".join(text.split()) in shown, (path, text)
            checked += 1
    assert checked >= 10


def test_index_help_shows_the_code_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    shown = shown_help(("index",), capsys)
    defaults = IndexConfig()
    for value in (defaults.host, str(defaults.port), defaults.db):
        assert f"[default: {value}]" in shown, value


def test_readme_states_the_index_defaults() -> None:
    defaults = IndexConfig()
    readme = (ROOT / "README.md").read_text().splitlines()
    line = next(x for x in readme if re.match(r"bitswarm index\s+#", x))
    assert f"HTTP on {defaults.host}:{defaults.port}" in line, line
    assert f"SQLite ./{defaults.db}" in line, line


def test_the_docs_say_how_to_make_a_torrent_for_v1_only_clients(tmp_path: Path) -> None:
    """Issue 22: Debian 12's Transmission 3.00 cannot open the default (hybrid) torrents; the README
    did not say so, nor how to make a v1 torrent."""
    from bitswarm.metainfo import load_torrent

    readme = (ROOT / "README.md").read_text()
    note = next(line for line in readme.splitlines() if "Transmission 3" in line)
    assert "hybrid" in note and "v1" in note
    assert re.search(r"^bitswarm create \S+ .*--v1", readme, re.M)
    assert "`bitswarm create DIR -o DIR.torrent --v1`" in (ROOT / "docs" / "cli.md").read_text()
    (tmp_path / "f.bin").write_bytes(b"x" * 40_000)
    with pytest.raises(SystemExit) as exc:
        main(["create", str(tmp_path / "f.bin"), "-o", str(tmp_path / "f.torrent"), "--v1", "-q"])
    assert exc.value.code in (0, None)
    t = load_torrent(tmp_path / "f.torrent")
    assert t.info_hash_v1 is not None and t.info_hash_v2 is None  # what a v1-only client reads
