"""``bitswarm download``/``seed`` refuse a ``.bitswarm`` symlink in the output directory: one line on
stderr, exit code 2, nothing written where it points (issue 16, item 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BW = [sys.executable, "-m", "bitswarm"]


@pytest.mark.parametrize("command", ["download", "seed"])
def test_symlinked_resume_dir_is_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    (tmp_path / "f.bin").write_bytes(os.urandom(50_000))
    subprocess.run([*BW, "create", "f.bin", "-o", "t.torrent", "-q"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    outside = tmp_path / "outside"
    outside.mkdir()
    if command == "download":
        target = tmp_path / "out"
        target.mkdir()
        args = ["download", "t.torrent", "-o", str(target)]
    else:
        target = tmp_path
        args = ["seed", "t.torrent", "--data", "."]
    (target / ".bitswarm").symlink_to(outside, target_is_directory=True)
    proc = subprocess.run(
        [*BW, *args, "--port", "0", "--host", "127.0.0.1", "--no-dht"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswarm: error:") and "symbolic link" in lines[0]
    assert list(outside.iterdir()) == []
