"""A storage opened from resume data holds only what it needs while no piece moves (issue 24: the
storages of 10,000 idle seeds in one daemon): its fd cache, piece hasher, byte budget and job set
are made by the first job that needs them and work as before; closing it opens no disk job."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from storage_testlib import blob, build_torrent, piece

from bitswarm.storage import FileMap, Storage
from bitswarm.storage._verify import PieceHasher

PL = 16384
FILES = [("a", blob(3 * PL + 10, 1)), ("b", blob(2 * PL, 2))]
#: the storage's slots of the parts made on first use (None until then)
LAZY = ("_fdc", "_hasher_obj", "_budget", "_pending", "_unchecked", "_unverified", "_stats")


class CountingPool(ThreadPoolExecutor):
    """A real thread pool that counts the jobs given to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.jobs = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


def made(st: Storage) -> set[str]:
    return {name for name in LAZY if getattr(st, name) is not None}


async def seed(tmp_path: Path) -> tuple[Any, bytes, Path]:
    torrent, space = build_torrent(FILES, PL, "hybrid")
    resume = tmp_path / "t.resume"
    async with Storage(torrent, tmp_path / "dl", resume_path=resume) as st:
        pieces = range(torrent.info.num_pieces)
        assert all(await asyncio.gather(*(st.write_piece(i, piece(space, torrent, i)) for i in pieces)))
    return torrent, space, resume


async def test_a_seed_opened_from_resume_data_makes_nothing_and_closes_with_no_fd_job(tmp_path: Path) -> None:
    torrent, _, resume = await seed(tmp_path)
    pool = CountingPool()
    try:
        st = Storage(torrent, tmp_path / "dl", resume_path=resume, executor=pool)
        await st.open()
        assert st.resume_status == "trusted" and st.have.all()
        assert made(st) == set()
        assert not await st.save_resume()  # nothing changed
        jobs = pool.jobs
        await st.close()
        assert pool.jobs == jobs + 1  # its resume save; no fd was open: no job to close fds
        assert made(st) == set()
    finally:
        pool.shutdown()


async def test_the_parts_are_made_by_the_first_job_and_the_job_set_goes_with_the_last(tmp_path: Path) -> None:
    torrent, space, resume = await seed(tmp_path)
    async with Storage(torrent, tmp_path / "dl", resume_path=resume) as st:
        assert made(st) == set()
        data = await st.read_piece(1)
        assert data == bytes(piece(space, torrent, 1))
        assert made(st) == {"_fdc", "_budget", "_stats"}  # a read: fds, the byte budget, its count
        assert await st.verify_piece(2)  # a check: the hasher (and nothing left in flight)
        assert made(st) == {"_fdc", "_budget", "_stats", "_hasher_obj"}
        assert st._budget is not None and st._budget.used == 0
        await st.recheck()  # the pieces a check has not hashed: a set while it runs, none after
        assert st._unchecked is None and st.have.all()


async def test_seed_mode_hashes_each_piece_before_its_first_read(tmp_path: Path) -> None:
    torrent, space, _ = await seed(tmp_path)
    async with Storage(torrent, tmp_path / "dl") as st:
        assert st._unverified is None and st.have.all()  # checked: nothing left to hash
    st = Storage(torrent, tmp_path / "dl", resume_path=tmp_path / "seed.resume")
    await st.open(seed_mode=True)
    try:
        assert st.resume_status == "seed-mode" and st._unverified is not None
        assert st._unverified.count() == torrent.info.num_pieces
        assert await st.read_block(0, 0, 100) == bytes(piece(space, torrent, 0))[:100]
        assert st._unverified.count() == torrent.info.num_pieces - 1 and st.have.get(0)
    finally:
        await st.close()


async def test_a_move_of_an_idle_storage_carries_the_hasher_made_later(tmp_path: Path) -> None:
    torrent, _, resume = await seed(tmp_path)
    async with Storage(torrent, tmp_path / "dl", resume_path=resume) as st:
        await st.move(str(tmp_path / "moved"))
        assert st._hasher_obj is None and st.parts_path.startswith(str(tmp_path / "moved"))
        assert await st.verify_piece(4)  # the hasher made now reads the new place
        assert st._hasher.fmap is st.file_map


def test_the_per_torrent_storage_objects_have_no_instance_dict() -> None:
    for cls in (FileMap, PieceHasher):
        assert "__slots__" in vars(cls) and "__dict__" not in dir(cls), cls


async def test_release_files_closes_what_nothing_uses_and_the_next_read_opens_again(tmp_path: Path) -> None:
    torrent, space, resume = await seed(tmp_path)
    async with Storage(torrent, tmp_path / "dl", resume_path=resume) as st:
        assert not await st.release_files()  # nothing open
        await st.read_piece(0)
        async with st.sendfile_segments(0, 0, 100) as segs:  # an upload pins its fd
            assert segs and not await st.release_files()
        assert st._fdc is not None and len(st._fdc)
        assert await st.release_files()
        assert st._fdc is None
        assert await st.read_piece(3) == bytes(piece(space, torrent, 3))
        assert st._fdc is not None and len(st._fdc) == 1


def test_torrents_saved_in_one_directory_share_its_path_string(tmp_path: Path) -> None:
    a, _ = build_torrent([("x", blob(100, 1))], PL, "v1", name="a", single=True)
    b, _ = build_torrent([("y", blob(100, 2))], PL, "v1", name="b", single=True)
    fa, fb = FileMap(a.info, str(tmp_path) + "/"), FileMap(b.info, tmp_path)
    assert fa.save_path == str(tmp_path) and fa.save_path is fb.save_path
