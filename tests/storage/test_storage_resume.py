"""Resume data: trusted when sizes and mtimes match, per-file recheck when touched, recheck when corrupt."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from storage_testlib import blob, build_torrent, data_of, file_path, piece

from bitswarm.storage import ResumeData, Storage, load_resume

PL = 16384
FILES = [("a", blob(3 * PL + 10, 1)), ("b", blob(2 * PL, 2)), ("c", blob(4 * PL - 7, 3))]


async def fill(tmp_path, resume, version="v1", prios=None, only=None):  # type: ignore[no-untyped-def]
    torrent, space = build_torrent(FILES, PL, version)
    async with Storage(
        torrent, tmp_path / "dl", resume_path=resume, priorities=prios, fsync_data_on_save=True
    ) as st:
        pieces = range(torrent.info.num_pieces) if only is None else only
        assert all(await asyncio.gather(*(st.write_piece(i, piece(space, torrent, i)) for i in pieces)))
        assert await st.save_resume()  # fsyncs the data files, then writes the resume file
        have = st.have.to_bytes()
    return torrent, space, have


async def test_reopen_trusts_resume_without_hashing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    resume = tmp_path / "state" / "t.resume"
    torrent, _, have = await fill(tmp_path, resume, only=[0, 2, 5, 7])
    data = load_resume(str(resume))
    assert data is not None and data.pieces == have and data.info_hash == torrent.swarm_hash
    st = Storage(torrent, tmp_path / "dl", resume_path=resume)
    await st.open()
    try:
        assert st.resume_status == "trusted"
        assert st.have.to_bytes() == have
        assert st.stats.pieces_hashed == 0 and st.stats.bytes_read == 0
        assert not await st.save_resume()  # nothing changed: no write
    finally:
        await st.close()


async def test_touched_file_rechecks_only_its_pieces(tmp_path) -> None:  # type: ignore[no-untyped-def]
    resume = tmp_path / "t.resume"
    torrent, space, have = await fill(tmp_path, resume)
    b = file_path(tmp_path / "dl", torrent, 1)
    st0 = os.stat(b)
    os.utime(b, ns=(st0.st_atime_ns, st0.st_mtime_ns + 1_000_000_000))  # touched, content intact
    st = Storage(torrent, tmp_path / "dl", resume_path=resume)
    await st.open()
    try:
        assert st.resume_status == "partial"
        b_pieces = list(st.file_map.file_pieces(1))
        assert b_pieces == [3, 4, 5]  # b spans 3*PL+10 .. 5*PL+10
        assert st.stats.pieces_hashed == len(b_pieces)
        assert st.have.to_bytes() == have  # content intact -> still valid
    finally:
        await st.close()
    # modify content of c (same size, new mtime) -> its damaged piece is dropped
    c = file_path(tmp_path / "dl", torrent, 2)
    with open(c, "r+b") as fh:
        fh.seek(PL)
        fh.write(b"\0garbage\0")
    os.utime(c, ns=(0, 12345))
    st = Storage(torrent, tmp_path / "dl", resume_path=resume)
    await st.open()
    try:
        damaged = (torrent.info.files[2].offset + PL) // PL
        assert not st.have.get(damaged)
        assert st.have.count() == torrent.info.num_pieces - 1
        assert st.stats.pieces_hashed == len(st.file_map.file_pieces(2))
        assert await st.write_piece(damaged, piece(space, torrent, damaged))
    finally:
        await st.close()


async def test_corrupt_or_foreign_resume_means_full_recheck(tmp_path) -> None:  # type: ignore[no-untyped-def]
    resume = tmp_path / "t.resume"
    torrent, _, have = await fill(tmp_path, resume, only=[1, 2, 3])
    good = resume.read_bytes()
    for blob_, status in [
        (good[: len(good) // 2], "corrupt"),
        (b"not bencode at all", "corrupt"),
        (good.replace(torrent.swarm_hash, bytes(20)), "mismatch"),
    ]:
        resume.write_bytes(blob_)
        st = Storage(torrent, tmp_path / "dl", resume_path=resume)
        await st.open()
        try:
            assert st.resume_status == status
            assert st.stats.pieces_hashed == torrent.info.num_pieces  # every file existed: all hashed
            assert st.have.to_bytes() == have
        finally:
            await st.close()
        assert ResumeData.decode(resume.read_bytes()) is not None  # close rewrote a good one


async def test_missing_resume_new_download_hashes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torrent, _ = build_torrent(FILES, PL, "hybrid")
    st = Storage(torrent, tmp_path / "dl", resume_path=tmp_path / "none.resume")
    await st.open()
    try:
        assert st.resume_status == "none"
        assert st.stats.pieces_hashed == 0  # freshly created sparse files cannot hold valid pieces
        assert st.have.count() == 0
    finally:
        await st.close()
    assert os.path.exists(tmp_path / "none.resume")


async def test_resume_complete_seed_fast_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    resume = tmp_path / "t.resume"
    torrent, space, _ = await fill(tmp_path, resume, version="v2")
    st = Storage(torrent, tmp_path / "dl", resume_path=resume)
    await st.open()
    try:
        assert st.have.all() and st.stats.pieces_hashed == 0
        assert await st.read_block(0, 0, 32) == space[:32]
    finally:
        await st.close()


async def test_resume_keeps_priorities_and_parts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    resume = tmp_path / "t.resume"
    # b skipped: pieces 3 and 5 are boundary pieces (a|b, b|c); 4 lies wholly in b
    torrent, space, have = await fill(tmp_path, resume, prios=[1, 0, 1], only=[0, 1, 2, 3, 5, 6, 7, 8, 9])
    assert not os.path.exists(file_path(tmp_path / "dl", torrent, 1))
    st = Storage(torrent, tmp_path / "dl", resume_path=resume)
    await st.open()
    try:
        assert st.priorities == [1, 0, 1]
        assert st.resume_status == "trusted" and st.stats.pieces_hashed == 0
        assert st.have.to_bytes() == have
        await st.set_file_priorities([1, 1, 1])
        assert await st.write_piece(4, piece(space, torrent, 4))
        assert st.have.all()
    finally:
        await st.close()
    with open(file_path(tmp_path / "dl", torrent, 1), "rb") as fh:
        assert fh.read() == data_of(torrent, space, 1)
    # and a fresh open after that trusts everything again
    st = Storage(torrent, tmp_path / "dl", resume_path=resume)
    await st.open()
    try:
        assert st.have.all() and st.stats.pieces_hashed == 0 and st.priorities == [1, 1, 1]
    finally:
        await st.close()


async def test_reopen_with_wanted_file_moves_bytes_out_of_parts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    resume = tmp_path / "t.resume"
    torrent, space, have = await fill(tmp_path, resume, prios=[1, 0, 1], only=[3, 5])
    st = Storage(torrent, tmp_path / "dl", resume_path=resume, priorities=[1, 1, 1])
    await st.open()
    try:
        assert st.have.to_bytes() == have and st.stats.pieces_hashed == 0
        assert await st.verify_piece(3) and await st.verify_piece(5)  # bytes now in the real file b
        b = torrent.info.files[1]
        with open(file_path(tmp_path / "dl", torrent, 1), "rb") as fh:
            head = fh.read(4 * PL - b.offset)  # b's share of boundary piece 3
        assert head == space[b.offset : 4 * PL]
    finally:
        await st.close()


def test_resume_atomic_write_leaves_no_temp(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bitswarm.storage import save_resume_file

    data = ResumeData(b"x" * 20, 3, b"\xa0", ((5, 6), None), None, (1, 0))
    path = str(tmp_path / "r" / "x.resume")
    save_resume_file(path, data)
    save_resume_file(path, data)
    assert os.listdir(tmp_path / "r") == ["x.resume"]
    assert load_resume(path) == data
    assert ResumeData.decode(data.encode()) == data


def test_overlapping_saves_of_one_resume_file_never_collide(tmp_path: Path) -> None:
    """Two saves of the same torrent's resume data at once (an old Storage closing while a new one
    for the same torrent saves, as the daemon's pause/resume does) each complete atomically."""
    import threading

    from bitswarm.storage.resume import load_resume, save_resume_file

    path = str(tmp_path / "r" / "t.resume")
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        record = ResumeData(b"x" * 20, 3, bytes([k << 5]), ((5, 6), None), None, (1, 0))
        try:
            for _ in range(200):
                save_resume_file(path, record, fsync=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    got = load_resume(path)
    assert got is not None and got.pieces[0] >> 5 in range(4)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["t.resume"]  # no temp files left


def test_rewriting_the_same_resume_data_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """A save that finds the file already holding the data closes the directory it opened (it did
    not: a daemon of 10,000 seeds ran out of file descriptors after one save each; issue 24)."""
    from bitswarm.storage.resume import write_resume_file

    path = str(tmp_path / "resume" / "x.resume")
    write_resume_file(path, b"same bytes")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        write_resume_file(path, b"same bytes")
    assert len(os.listdir("/proc/self/fd")) == before
    write_resume_file(path, b"other bytes")
    assert Path(path).read_bytes() == b"other bytes" and len(os.listdir("/proc/self/fd")) == before
