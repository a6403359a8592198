"""A check of existing data cut short (Ctrl-C, SIGTERM, a removed torrent) saves what it verified and
loses nothing: files it did not finish are hashed again on the next open, never taken as missing
(issue 16, item 13)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from storage_testlib import blob, build_torrent, file_path

from bitswarm.storage import Storage, load_resume

PL = 16384
# four files of 4 MiB + a bit: one check job hashes 4 MiB, so the check runs several jobs
FILES = [(f"f{i}", blob((256 + 3) * PL + 100 * i, i)) for i in range(4)]


async def test_interrupted_check_saves_progress_and_rechecks_the_rest(tmp_path: Path) -> None:
    torrent, _ = build_torrent(FILES, PL)
    save = tmp_path / "dl"
    for i, (_, data) in enumerate(FILES):  # the whole content is already on disk
        path = file_path(save, torrent, i)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_bytes(data)
    resume = tmp_path / "state" / "t.resume"
    n = torrent.info.num_pieces

    st = Storage(torrent, save, resume_path=resume, workers=1)
    first_progress = asyncio.Event()
    opening = asyncio.ensure_future(st.open(progress=lambda done, total: first_progress.set()))
    await first_progress.wait()
    opening.cancel()  # the user stops bitswarm mid-check
    await asyncio.gather(opening, return_exceptions=True)
    await st.close()  # saves resume data
    verified = st.have.count()
    assert 0 < verified < n, "the check should have been cut short"
    record = load_resume(str(resume))
    assert record is not None and None in record.files  # unfinished files are vouched for by nobody

    again = Storage(torrent, save, resume_path=resume)
    await again.open()
    try:
        assert again.have.count() == n  # nothing lost: the unfinished files were hashed again
        assert again.stats.pieces_hashed < n  # and what was verified before was trusted
    finally:
        await again.close()
