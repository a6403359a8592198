"""Resume data of the one-shot commands lives in the XDG state directory, keyed by save path and
info-hash (issue 22), migrated from the old ``DIR/.bitswarm/``; symbolic links never redirect it: a
``.bitswarm`` link in the download directory is not followed (issue 16, item 2), and a link at the
resume directory itself is one line on stderr and exit code 2."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitswarm.cli._peer import LEGACY_RESUME_DIR, migrate_resume, resume_dir_for
from bitswarm.metainfo import load_torrent

BW = [sys.executable, "-m", "bitswarm"]
LOOP = ["--port", "0", "--host", "127.0.0.1", "--no-dht", "--json"]


def _torrent(tmp_path: Path) -> Path:
    (tmp_path / "f.bin").write_bytes(os.urandom(50_000))
    subprocess.run([*BW, "create", "f.bin", "-o", "t.torrent", "-q"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    return tmp_path / "t.torrent"


@contextlib.contextmanager
def seeding(tmp_path: Path) -> Iterator[dict[str, object]]:
    """``bitswarm seed t.torrent --data .`` up to its ``seeding`` line; SIGTERM (resume saved) after."""
    proc = subprocess.Popen([*BW, "seed", "t.torrent", "--data", ".", *LOOP], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        event: dict[str, object] = {}
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "seeding":
                break
        assert event.get("event") == "seeding", proc.stderr.read() if proc.stderr else ""
        yield event
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_resume_data_goes_to_the_state_directory_not_the_download_directory(tmp_path: Path) -> None:
    torrent = load_torrent(_torrent(tmp_path))
    with seeding(tmp_path):
        pass
    state = resume_dir_for(tmp_path)
    assert str(state).startswith(os.environ["XDG_STATE_HOME"])
    assert (state / f"{torrent.swarm_hash.hex()}.resume").is_file()
    assert not (tmp_path / LEGACY_RESUME_DIR).exists()
    assert resume_dir_for(tmp_path / "other") != state  # keyed by save path


def test_old_resume_data_is_migrated(tmp_path: Path) -> None:
    torrent = load_torrent(_torrent(tmp_path))
    name = f"{torrent.swarm_hash.hex()}.resume"
    old = tmp_path / LEGACY_RESUME_DIR
    old.mkdir()
    (old / name).write_bytes(b"old resume data")
    assert migrate_resume(tmp_path, torrent.swarm_hash) == [name]
    assert (resume_dir_for(tmp_path) / name).read_bytes() == b"old resume data"
    assert not old.exists()  # emptied, removed
    assert migrate_resume(tmp_path, torrent.swarm_hash) == []  # once


def test_a_command_migrates_old_resume_data(tmp_path: Path) -> None:
    torrent = load_torrent(_torrent(tmp_path))
    with seeding(tmp_path):
        pass
    state = resume_dir_for(tmp_path) / f"{torrent.swarm_hash.hex()}.resume"
    saved = state.read_bytes()
    old = tmp_path / LEGACY_RESUME_DIR
    old.mkdir()
    state.rename(old / state.name)  # as an older bitswarm left it
    with seeding(tmp_path):
        pass
    assert not old.exists() and state.read_bytes() == saved


def test_a_symlinked_dot_bitswarm_is_not_followed(tmp_path: Path) -> None:
    torrent = load_torrent(_torrent(tmp_path))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / f"{torrent.swarm_hash.hex()}.resume").write_bytes(b"planted")
    (tmp_path / LEGACY_RESUME_DIR).symlink_to(outside, target_is_directory=True)
    assert migrate_resume(tmp_path, torrent.swarm_hash) == []
    with seeding(tmp_path):
        pass
    assert [p.name for p in outside.iterdir()] == [f"{torrent.swarm_hash.hex()}.resume"]
    assert (outside / f"{torrent.swarm_hash.hex()}.resume").read_bytes() == b"planted"


@pytest.mark.parametrize("command", ["download", "seed"])
def test_symlinked_resume_dir_is_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    _torrent(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    if command == "download":
        target = tmp_path / "out"
        target.mkdir()
        args = ["download", "t.torrent", "-o", str(target)]
    else:
        target = tmp_path
        args = ["seed", "t.torrent", "--data", "."]
    state = resume_dir_for(target)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.symlink_to(outside, target_is_directory=True)
    proc = subprocess.run([*BW, *args, *LOOP], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswarm: error:") and "symbolic link" in lines[0]
    assert list(outside.iterdir()) == []
