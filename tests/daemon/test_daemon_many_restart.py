"""A daemon restarted with many seeding torrents (issue 24): the cyclic GC is off while the saved
torrents start, nothing unchanged is written again (records at start-up and close, resume data at
close), and every torrent seeds again with valid resume data."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from daemon_testlib import session_config, wait_for

from bitswarm.daemon import Daemon
from bitswarm.metainfo import create_torrent
from bitswarm.session.announce import session_gate
from bitswarm.session.lifecycle import State
from bitswarm.storage import load_resume

pytestmark = pytest.mark.timeout(120)

N = 12


def _files(directory: Path, suffix: str) -> dict[str, tuple[int, int]]:
    """name → (inode, mtime): an atomic rewrite gives the file a new inode."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.glob(f"*{suffix}")}


async def _all_seeding(d: Daemon) -> None:
    async def seeding() -> bool:
        return all(e.life.state is State.SEEDING for e in d._entries.values())

    await wait_for(seeding, 60)


async def test_a_restart_of_many_seeds_rewrites_nothing_and_keeps_them_seeding(tmp_path: Path) -> None:
    content = tmp_path / "content"
    content.mkdir()
    raws = []
    for i in range(N):
        f = content / f"f{i:02d}.bin"
        f.write_bytes(os.urandom(5000 + i))
        raws.append(create_torrent(f, version="v1", piece_length=16384))
    data = tmp_path / "d"
    frozen = 1000.0  # the daemon's clock stands still: no seeding time accrues to rewrite records

    d = Daemon(data, session_config(), clock=lambda: frozen)
    await d.start()
    for raw in raws:
        await d.add_torrent(raw, save_path=str(content))
    await _all_seeding(d)
    await d.close()
    records, resumes = _files(d.data.torrents, ".json"), _files(d.data.resume, ".resume")
    assert len(records) == N and len(resumes) == N

    gc_was_enabled = gc.isenabled()
    d = Daemon(data, session_config(), clock=lambda: frozen, gc_batch=N)
    gc_while_closing: list[bool] = []
    session_close = d.session.close

    async def close_session() -> None:
        gc_while_closing.append(gc.isenabled())
        await session_close()

    d.session.close = close_session  # type: ignore[method-assign]
    try:
        await d.start()
        assert not gc.isenabled()  # off while the saved torrents start
        assert session_gate(d.session).held  # their first announces wait until all are open
        await _all_seeding(d)
        await wait_for(lambda: not d._restoring, 30)
        assert gc.isenabled() == gc_was_enabled
        assert not session_gate(d.session).held
    finally:
        await d.close()
    assert gc.isenabled() == gc_was_enabled
    assert gc_while_closing == [False]  # off while the torrents stop
    # nothing changed: neither the records nor the resume data were written again
    assert _files(d.data.torrents, ".json") == records
    assert _files(d.data.resume, ".resume") == resumes
    for tid in d.ids():
        resume = load_resume(str(d.data.resume_file(tid)))
        assert resume is not None and resume.num_pieces == 1 and resume.pieces == b"\x80"

    d = Daemon(data, session_config(), clock=lambda: frozen)
    try:
        await d.start()
        await _all_seeding(d)
        assert len(d.ids()) == N
    finally:
        await d.close()
