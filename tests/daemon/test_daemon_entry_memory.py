"""What the daemon keeps per idle torrent (issue 24, RSS at 10,000 torrents): a slotted entry, no
lock while no operation runs, and no finished start or background task kept."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from daemon_testlib import session_config, wait_for

from bitswarm.daemon import Daemon, TorrentRecord
from bitswarm.metainfo import create_torrent
from bitswarm.session.lifecycle import State

pytestmark = pytest.mark.timeout(60)


async def _add_one(d: Daemon, tmp_path: Path) -> str:
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(5000))
    return str(
        (await d.add_torrent(create_torrent(f, version="v1", piece_length=16384), save_path=str(tmp_path)))[
            "id"
        ]
    )


async def test_an_idle_seed_entry_is_slotted_with_no_lock_and_no_finished_task(tmp_path: Path) -> None:
    async with Daemon(tmp_path / "d", session_config()) as d:
        entry = d._entries[await _add_one(d, tmp_path)]
        assert not hasattr(entry, "__dict__")
        await wait_for(lambda: entry.life.state is State.SEEDING and entry.task is None, 30)
        assert entry.lock is None
        await d.recheck(entry.rec.id)  # a background job: let go of once it ended
        await wait_for(lambda: entry.job is None and entry.life.state is State.SEEDING, 30)
        await d.pause(entry.rec.id)
        assert entry.lock is None and entry.lockers == 0


async def test_the_entry_lock_serializes_operations_and_is_dropped_by_the_last(tmp_path: Path) -> None:
    async with Daemon(tmp_path / "d", session_config()) as d:
        entry = d._entries[await _add_one(d, tmp_path)]
        order: list[str] = []

        async def op(name: str, hold: asyncio.Event | None) -> None:
            async with entry.locked():
                order.append(f"{name} in")
                if hold is not None:
                    await hold.wait()
                order.append(f"{name} out")

        hold = asyncio.Event()
        first = asyncio.ensure_future(op("a", hold))
        await wait_for(lambda: order == ["a in"], 5)
        second = asyncio.ensure_future(op("b", None))
        third = asyncio.ensure_future(op("c", None))
        await asyncio.sleep(0)
        lock = entry.lock
        assert lock is not None and entry.lockers == 3 and order == ["a in"]
        third.cancel()  # a waiter that gives up does not take the lock away from the others
        await asyncio.gather(third, return_exceptions=True)
        assert entry.lock is lock and entry.lockers == 2
        hold.set()
        await asyncio.gather(first, second)
        assert order == ["a in", "a out", "b in", "b out"]
        assert entry.lock is None and entry.lockers == 0


def test_records_share_their_save_path_string() -> None:
    path = "/srv/" + "downloads"  # made at run time: not a constant the compiler shares
    recs = [
        TorrentRecord(id=f"{i:040x}", name=f"t{i}", save_path="".join(["/srv/", "downloads"]))
        for i in range(2)
    ]
    loaded = TorrentRecord.from_json(recs[0].to_json())
    assert recs[0].save_path is recs[1].save_path is loaded.save_path
    assert loaded.save_path == path
