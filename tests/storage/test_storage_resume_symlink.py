"""Resume files never follow a symbolic link out of their directory (issue 16, item 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bitswarm.storage import PathEscapeError, StorageError
from bitswarm.storage.resume import (
    ResumeData,
    ResumePathError,
    load_resume,
    make_resume_dir,
    read_resume_file,
    save_resume_file,
    write_resume_file,
)

DATA = ResumeData(b"h" * 20, 3, b"\xe0", ((5, 7), None), None, (1, 1))


def _planted(tmp_path: Path) -> tuple[Path, Path]:
    """A download directory whose ``.bitswarm`` is a link to a directory outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    rdir = tmp_path / "downloads" / ".bitswarm"
    rdir.parent.mkdir()
    rdir.symlink_to(outside, target_is_directory=True)
    return rdir, outside


def test_saving_through_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    rdir, outside = _planted(tmp_path)
    with pytest.raises(ResumePathError, match="symbolic link") as ei:
        save_resume_file(str(rdir / "x.resume"), DATA)
    assert isinstance(ei.value, PathEscapeError) and isinstance(ei.value, StorageError)
    assert list(outside.iterdir()) == []
    with pytest.raises(ResumePathError):
        write_resume_file(str(rdir / "x.info"), b"blob")
    with pytest.raises(ResumePathError):
        make_resume_dir(str(rdir))
    assert list(outside.iterdir()) == []


def test_loading_through_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    rdir, outside = _planted(tmp_path)
    save_resume_file(str(outside / "x.resume"), DATA)  # someone else's (or a forged) resume file
    with pytest.raises(ResumePathError):
        load_resume(str(rdir / "x.resume"))
    with pytest.raises(ResumePathError):
        read_resume_file(str(rdir / "x.resume"))


def test_dangling_link_and_non_directory(tmp_path: Path) -> None:
    dangling = tmp_path / "a" / ".bitswarm"
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ResumePathError, match="symbolic link"):
        save_resume_file(str(dangling / "x.resume"), DATA)
    assert not (tmp_path / "nowhere").exists()
    file = tmp_path / "b" / ".bitswarm"
    file.parent.mkdir()
    file.write_bytes(b"")
    with pytest.raises(ResumePathError, match="not a directory"):
        make_resume_dir(str(file))


def test_a_symlinked_resume_file_is_neither_read_nor_written_through(tmp_path: Path) -> None:
    rdir = tmp_path / ".bitswarm"
    rdir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    link = rdir / "x.resume"
    link.symlink_to(victim)
    assert load_resume(str(link)) is None  # not followed
    save_resume_file(str(link), DATA)  # replaces the link itself
    assert victim.read_bytes() == b"precious"
    assert not link.is_symlink() and load_resume(str(link)) == DATA
    assert sorted(p.name for p in rdir.iterdir()) == ["x.resume"]  # no temp file left


def test_plain_directories_still_work(tmp_path: Path) -> None:
    rdir = tmp_path / "new" / "deeper" / ".bitswarm"
    assert load_resume(str(rdir / "x.resume")) is None
    save_resume_file(str(rdir / "x.resume"), DATA)
    assert load_resume(str(rdir / "x.resume")) == DATA
    make_resume_dir(str(rdir))
    write_resume_file(str(rdir / "x.info"), b"info")
    assert read_resume_file(str(rdir / "x.info")) == b"info"
    assert read_resume_file(str(rdir / "missing")) is None
    # a symlink above the resume directory (the user's own layout) is fine
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path / "new", target_is_directory=True)
    assert load_resume(os.path.join(alias, "deeper", ".bitswarm", "x.resume")) == DATA
