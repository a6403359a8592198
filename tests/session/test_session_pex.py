"""BEP 11 peer exchange between sessions: C knows only B and learns the seeder A through B's PEX."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig

pytestmark = pytest.mark.timeout(60)


def config(**kw: object) -> SessionConfig:
    kw.setdefault("enable_dht", False)
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, **kw)  # type: ignore[arg-type]


async def test_pex_introduces_the_seeder(tmp_path: Path) -> None:
    """A seeds; B downloads slowly from A; C is told only about B. B uploads at 1 KiB/s, so C's 1.5 MB
    can only come from A, whose address C can only have learnt from B's ut_pex message."""
    src = tmp_path / "a" / "data.bin"
    src.parent.mkdir(parents=True)
    src.write_bytes(random.Random(7).randbytes(1_500_000))
    t = parse_torrent(create_torrent(src, piece_length=65536))
    async with (
        Session(config(pex_interval=0.2)) as a,
        Session(config(pex_interval=0.2)) as b,
        Session(config(pex_interval=0.2)) as c,
    ):
        await a.add(t, src.parent)
        hb = await b.add(t, tmp_path / "b", peers=[("127.0.0.1", a.port)])
        hb.set_rate_limits(upload=1024, download=32768)  # B stays a slow leecher of A throughout
        async with asyncio.timeout(10):  # B dialed A: an address others can reach A at
            while not any(p["address"] == f"127.0.0.1:{a.port}" for p in hb.peers()):
                await asyncio.sleep(0.05)
        met_a = asyncio.Event()

        async def watch() -> None:
            # by peer id: A may dial C first (it hears of C through B's PEX too), then C sees A's
            # ephemeral port, not its listen port
            async for ev in c.events():
                if ev.kind == "peer_connected" and a.peer_id in c._torrents[t.swarm_hash].peers:
                    met_a.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        await asyncio.sleep(0)
        hc = await c.add(t, tmp_path / "c", peers=[("127.0.0.1", b.port)])
        await hc.wait_complete(timeout=30)
        watcher.cancel()
        assert met_a.is_set()  # C and A met: only B's PEX could introduce them
        assert hb.status().state == "downloading"
        assert hb.status().uploaded <= 4 * 16384  # B's share is at most a few blocks
        assert hc.status().downloaded >= t.info.total_size
    assert (tmp_path / "c" / "data.bin").read_bytes() == src.read_bytes()


async def test_pex_off_and_received_contacts_are_bounded(tmp_path: Path) -> None:
    from bitswarm.session.peer_manager import MAX_PEX_CANDIDATES
    from bitswarm.wire.ut_pex import PexMessage, PexPeer

    src = tmp_path / "x.bin"
    src.write_bytes(b"x" * 40_000)
    t = parse_torrent(create_torrent(src, piece_length=16384))
    async with Session(config(enable_pex=False)) as s:
        h = await s.add(t, tmp_path)
        assert s._torrents[h.info_hash].pex is None
    async with Session(config()) as s:
        h = await s.add(t, tmp_path)
        rt = s._torrents[h.info_hash]
        assert rt.pex is not None
        for n in range(20):  # 20 messages of 50 contacts: 1000 offered
            msg = PexMessage(added=tuple(PexPeer(f"10.{n}.0.{i + 1}", 6881) for i in range(50)))
            rt.peer_manager.on_pex(None, msg)  # type: ignore[arg-type]
        assert len(rt.candidates) == MAX_PEX_CANDIDATES
