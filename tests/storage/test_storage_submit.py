"""Storage.submit_piece: write_piece without a coroutine when it would not wait (issue 24)."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest
from storage_testlib import blob, build_torrent, piece

from bitswarm.storage import Storage, StorageError

PL = 16384


async def test_a_submitted_piece_is_hashed_and_written_as_write_piece_does(tmp_path: Path) -> None:
    torrent, space = build_torrent([("f", blob(4 * PL, 3))], PL, "v1")
    async with Storage(torrent, tmp_path) as st:
        good = st.submit_piece(0, piece(space, torrent, 0))
        bad = st.submit_piece(1, bytearray(PL))
        assert good is not None and bad is not None
        assert await good is True and await bad is False
        assert st.have.get(0) and not st.have.get(1)
        assert await st.verify_piece(0)


async def test_submit_takes_nothing_it_would_wait_for_or_refuse(tmp_path: Path) -> None:
    """None (nothing queued, no budget taken) where write_piece would wait or raise: the caller
    then awaits write_piece, which keeps the budget's FIFO order and raises as usual."""
    torrent, space = build_torrent([("f", blob(4 * PL, 4))], PL, "v1")
    st = Storage(torrent, tmp_path, max_inflight_bytes=PL)
    assert st.submit_piece(0, piece(space, torrent, 0)) is None  # not open
    await st.open()
    try:
        assert st.submit_piece(0, bytearray(10)) is None  # wrong size
        assert st.submit_piece(99, bytearray(PL)) is None  # no such piece
        first = st.submit_piece(0, piece(space, torrent, 0))
        assert first is not None
        assert st.submit_piece(1, piece(space, torrent, 1)) is None  # the budget is spent
        waiting = asyncio.ensure_future(st.write_piece(1, piece(space, torrent, 1)))
        await first
        assert st.submit_piece(2, piece(space, torrent, 2)) is None  # write_piece(1) is queued first
        assert await waiting is True
        later = st.submit_piece(2, piece(space, torrent, 2))
        assert later is not None and await later is True
    finally:
        await st.close()
    assert st.submit_piece(3, piece(space, torrent, 3)) is None  # closed


async def test_a_submitted_piece_gets_the_disk_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torrent, space = build_torrent([("f", blob(2 * PL, 5))], PL, "v1")
    async with Storage(torrent, tmp_path) as st:

        def full(fd: int, data: bytes, off: int) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "pwrite", full)
        fut = st.submit_piece(0, piece(space, torrent, 0))
        assert fut is not None
        with pytest.raises(StorageError) as ei:
            await fut
        assert ei.value.errno == errno.ENOSPC and not st.have.get(0)
