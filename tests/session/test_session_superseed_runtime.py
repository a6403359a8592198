"""BEP 16 super-seeding switched per torrent at run time (``TorrentHandle.set_super_seed``, issue 20):
on, a new peer gets no bitfield but pieces one or two at a time; off, that peer is told every other
piece and new peers get the bitfield again; None follows the session's ``super_seed``."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.session.test_session_messages import config, make_torrent
from tests.session.test_session_superseed import connect, offers

from bitswarm.session import Session
from bitswarm.wire import Bitfield, Have, HaveAll, HaveNone

pytestmark = pytest.mark.timeout(60)

PIECES = 16


async def test_switch_super_seeding_on_and_off_at_run_time(tmp_path: Path) -> None:
    src, t = make_torrent(tmp_path / "seed", PIECES * 16384, 16384)
    async with Session(config()) as seed:  # the session's default: off
        h = await seed.add(t, src.parent)
        assert h.status().state == "seeding"
        assert not h.super_seed and not h.super_seeding
        h.set_super_seed(True)
        assert h.super_seed and h.super_seeding
        a = await connect(t, seed.port)
        try:
            assert isinstance(await a.next(), HaveNone)
            offered = await offers(a, 2)  # two pieces, not the bitfield
            h.set_super_seed(False)
            assert not h.super_seed and not h.super_seeding
            told = set(offered)
            while len(told) < PIECES:  # off: a's view is completed with haves
                ev = await a.next(timeout=10)
                assert not isinstance(ev, Bitfield | HaveAll), ev
                if isinstance(ev, Have):
                    told.add(ev.index)
            assert told == set(range(PIECES))
            b = await connect(t, seed.port)  # a new peer: the full picture at once
            try:
                assert isinstance(await b.next(), HaveAll)
            finally:
                b.writer.close()
        finally:
            a.writer.close()


async def test_none_follows_the_session_setting(tmp_path: Path) -> None:
    src, t = make_torrent(tmp_path / "seed", 8 * 16384, 16384)
    async with Session(config(super_seed=True)) as seed:
        h = await seed.add(t, src.parent)
        assert h.super_seeding
        h.set_super_seed(False)
        assert not h.super_seeding
        h.set_super_seed(None)
        assert h.super_seed and h.super_seeding
