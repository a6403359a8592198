"""File priorities end to end: a leecher fetching a two-file torrent from one rate-limited seeder
completes the high-priority file first (the picker's weighting is unit-tested in
test_session_picker.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.session.test_session_transfer import make_tree

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig

pytestmark = pytest.mark.timeout(90)

PIECE = 32 * 1024


def config(**kw: object) -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("prios", [[1, 7], [7, 1], [2, 5]])
async def test_high_priority_file_completes_first(tmp_path: Path, prios: list[int]) -> None:
    size = 16 * PIECE  # 512 KiB per file: ~2 s each at the seeder's 512 KiB/s
    src = make_tree(tmp_path / "seed" / "two", {"a.bin": size, "b.bin": size})
    t = parse_torrent(create_torrent(src, piece_length=PIECE))
    files = [f for f in t.info.files if not f.pad]
    assert [f.path[-1] for f in files] == ["a.bin", "b.bin"]
    per_file = size // PIECE
    high = 0 if prios[0] > prios[1] else 1
    file_of = {i: i // per_file for i in range(2 * per_file)}
    order: list[int] = []
    done_high = asyncio.Event()
    async with Session(config(upload_rate_limit=512 * 1024)) as seeder, Session(config()) as leecher:
        await seeder.add(t, tmp_path / "seed")

        async def watch() -> None:
            async for ev in leecher.events():
                if ev.kind == "piece_verified":
                    order.append(ev.data["index"])
                    if sum(1 for i in order if file_of[i] == high) == per_file:
                        done_high.set()

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)  # subscribed before the first piece can arrive
        try:
            hl = await leecher.add(
                t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)], file_priorities=prios
            )
            await asyncio.wait_for(done_high.wait(), 60)
            low_before = sum(1 for i in order if file_of[i] != high)
            await hl.wait_complete(timeout=60)
        finally:
            watcher.cancel()
    # every piece of the high-priority file is requested before any of the other one; a few of
    # the low one may land while the last high ones are in flight (the request queue is deep)
    assert low_before <= per_file // 4, (prios, order)
    assert (tmp_path / "leech" / "two" / "b.bin").read_bytes() == (src / "b.bin").read_bytes()
