"""Storage.move: files move below a new save path (rename, or copy + fsync + rename across
filesystems), piece I/O waits meanwhile, and a process killed mid-move finishes it on the next open."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from storage_testlib import blob, build_torrent, file_path, piece

from bitswarm.storage import Storage, StorageError, load_resume
from bitswarm.storage._move import MOVE_TMP_SUFFIX, move_file

FILES = [("a.bin", blob(40_000, 1)), ("sub/b.bin", blob(30_000, 2)), ("c.bin", blob(20_000, 3))]


async def seeded(tmp_path: Path) -> tuple[Storage, bytes, Path]:
    torrent, space = build_torrent(FILES)
    old = tmp_path / "old"
    storage = Storage(torrent, old, resume_path=tmp_path / "t.resume", workers=2)
    await storage.open()
    for i in range(torrent.info.num_pieces):
        assert await storage.write_piece(i, piece(space, torrent, i))
    await storage.save_resume(force=True)
    return storage, space, old


def exdev(src: str, dst: str) -> None:
    raise OSError(errno.EXDEV, "Invalid cross-device link")


@pytest.mark.parametrize("across", [False, True], ids=["rename", "copy"])
async def test_move_keeps_every_piece_readable_from_the_new_place(tmp_path: Path, across: bool) -> None:
    storage, space, old = await seeded(tmp_path)
    torrent = storage.torrent
    new = tmp_path / "elsewhere" / "new"
    await storage.move(new, rename=exdev if across else os.rename)
    assert storage.save_path == str(new)
    for i, (_, data) in enumerate(FILES):
        assert Path(file_path(new, torrent, i)).read_bytes() == data
        assert not os.path.exists(file_path(old, torrent, i))
    assert not (old / "t").exists()  # the emptied torrent directory is gone
    assert not list(new.rglob(f"*{MOVE_TMP_SUFFIX}"))
    for i in range(torrent.info.num_pieces):
        assert await storage.read_piece(i) == bytes(piece(space, torrent, i))
    resume = load_resume(str(tmp_path / "t.resume"))
    assert resume is not None and resume.move is None
    await storage.close()
    again = Storage(torrent, new, resume_path=tmp_path / "t.resume", workers=2)
    await again.open()
    assert again.resume_status == "trusted" and again.have.all()  # sizes and mtimes kept
    await again.close()


def test_cross_filesystem_move_replaces_a_stale_temporary_copy(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.bin", tmp_path / "d" / "dst.bin"
    src.write_bytes(b"fresh")
    dst.parent.mkdir()
    (dst.parent / f".dst.bin{MOVE_TMP_SUFFIX}").write_bytes(b"half a copy from a killed move")
    assert move_file(str(src), str(dst), rename=exdev)
    assert dst.read_bytes() == b"fresh" and not src.exists()
    assert os.listdir(dst.parent) == ["dst.bin"]
    assert not move_file(str(src), str(dst))  # moved already: nothing to do


KILL_MID_MOVE = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, {testdir!r})
    from storage_testlib import blob, build_torrent
    from bitswarm.storage import Storage

    FILES = {files!r}

    async def main():
        torrent, _ = build_torrent([(p, blob(n, s)) for p, n, s in FILES])
        storage = Storage(torrent, {old!r}, resume_path={resume!r}, workers=2)
        await storage.open()

        def progress(done, total):
            if done == 1:
                os._exit(9)  # killed after the first file arrived: no cleanup, no resume save

        await storage.move({new!r}, progress=progress)

    asyncio.run(main())
    """
)


async def test_a_move_killed_midway_is_finished_by_the_next_open(tmp_path: Path) -> None:
    storage, space, old = await seeded(tmp_path)
    torrent = storage.torrent
    await storage.close()
    new = tmp_path / "new"
    resume = tmp_path / "t.resume"
    script = KILL_MID_MOVE.format(
        testdir=str(Path(__file__).parent),
        files=[("a.bin", 40_000, 1), ("sub/b.bin", 30_000, 2), ("c.bin", 20_000, 3)],
        old=str(old),
        new=str(new),
        resume=str(resume),
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    # killed mid-move: the first file arrived, the others did not, the record names the move
    assert os.path.exists(file_path(new, torrent, 0)) and not os.path.exists(file_path(new, torrent, 2))
    data = load_resume(str(resume))
    assert data is not None and data.move == (str(old), str(new))
    # the next open (still given the old path, as a client whose record was not updated) finishes it
    again = Storage(torrent, old, resume_path=resume, workers=2)
    await again.open()
    assert again.save_path == str(new)
    assert again.resume_status == "trusted" and again.have.all()
    for i, (_, content) in enumerate(FILES):
        assert Path(file_path(new, torrent, i)).read_bytes() == content
        assert not os.path.exists(file_path(old, torrent, i))
    assert await again.read_piece(0) == bytes(piece(space, torrent, 0))
    await again.close()
    data = load_resume(str(resume))
    assert data is not None and data.move is None


async def test_a_failed_move_moves_back_what_had_moved(tmp_path: Path) -> None:
    storage, space, old = await seeded(tmp_path)
    torrent = storage.torrent
    new = tmp_path / "new"
    (new / "t" / "sub").mkdir(parents=True)
    (new / "t" / "sub" / "b.bin").mkdir()  # a directory where sub/b.bin must go: its rename fails
    with pytest.raises(StorageError, match="moving"):
        await storage.move(new)
    assert not storage.move_pending and storage.save_path == str(old)
    for i, (_, data) in enumerate(FILES):  # a.bin had moved: it is back
        assert Path(file_path(old, torrent, i)).read_bytes() == data
    assert not (new / "t" / "a.bin").exists()
    assert await storage.read_piece(0) == bytes(piece(space, torrent, 0))
    resume = load_resume(str(tmp_path / "t.resume"))
    assert resume is not None and resume.move is None
    await storage.close()
