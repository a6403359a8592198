"""An idle seed builds none of the per-peer engine parts; the first peer (or address) builds them and
they work as if they had been there from the start (issue 24: 10,000 idle seeds in one daemon)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.lifecycle import State
from bitswarm.session.torrent import TorrentRuntime, busy_torrents

#: the runtime's slots of the parts built on first use (None until then); ``_parts`` holds the peer
#: manager, the request scheduler, the choke driver, the read cache and the metadata server;
#: ``_control`` is the lock of pause, resume ... (there while one runs)
LAZY_PARTS = (
    "_parts", "_hashes", "_picker", "_piece_size", "_download_limiter", "_upload_limiter", "_down", "_up",
    "_control", "_background", "_writes",
)  # fmt: skip


def config(**kw: object) -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, transports="tcp", enable_dht=False, **kw)  # type: ignore[arg-type]


def make_torrent(root: Path, seed: int = 7) -> tuple[Path, Torrent]:
    root.mkdir(parents=True, exist_ok=True)
    f = root / "data.bin"
    f.write_bytes(random.Random(seed).randbytes(100_000))
    return f, parse_torrent(create_torrent(f, version="v1", piece_length=32768))


async def eventually(check: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)


def built(rt: TorrentRuntime) -> set[str]:
    return {name for name in LAZY_PARTS if getattr(rt, name) is not None}


async def quiet(rt: TorrentRuntime) -> None:
    """Wait until the torrent's loops and background jobs (its first resume save) are done."""
    await eventually(lambda: not rt._loops and rt._background is None)


def runtime(session: Session, t: Torrent) -> TorrentRuntime:
    rt = session.lookup(t.swarm_hash)
    assert rt is not None
    return rt


async def test_an_idle_seed_builds_no_peer_part_and_answers_everything_without_them(tmp_path: Path) -> None:
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config()) as session:
        h = await session.add(t, f.parent)
        rt = runtime(session, t)
        await quiet(rt)
        assert t.swarm_hash not in busy_torrents(session)
        assert h.state is State.SEEDING
        assert built(rt) == set()
        # everything the daemon reads of every torrent, without building anything
        st = h.status()
        assert (st.progress, st.peers, st.seeds, st.known_peers, st.redundant) == (1.0, 0, 0, 0, 0)
        assert st.done_size == st.wanted_size == t.info.total_size
        assert h.status_version() is not None
        assert h.totals() == (0, 0, t.info.total_size, t.info.total_size)
        assert h.known_peers() == [] and h.peers() == [] and not h.active
        assert (h.super_seed, h.super_seeding) == (False, False)
        h.set_rate_limits(download=0, upload=0)  # the daemon sets every torrent's limits at start
        h.set_sequential(True)
        assert built(rt) == set()
        # pause, resume, a new state: still nothing built
        await h.pause()
        await h.resume()
        await quiet(rt)
        assert h.state is State.SEEDING and built(rt) == set()
        # a limit builds its limiter only
        h.set_rate_limits(upload=50_000)
        assert built(rt) == {"_upload_limiter"} and rt.upload_limiter.rate == 50_000
        await session.remove(h)
        assert built(rt) == {"_upload_limiter"}


async def test_the_first_peer_builds_the_parts_and_the_seed_serves_it(tmp_path: Path) -> None:
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config()) as seeder, Session(config()) as leecher:
        hs = await seeder.add(t, f.parent)
        rt = runtime(seeder, t)
        await quiet(rt)
        assert built(rt) == set()
        hs.set_sequential(True)
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await hl.wait_complete(timeout=20)
        assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()
        assert {"_parts", "_hashes", "_picker", "_piece_size", "_down", "_up"} <= built(rt)
        # built in the state the torrent is in: a seed of every piece, with the switches made before
        assert rt.picker.is_complete() and rt.picker.sequential
        assert rt.scheduler.seeding and not rt.scheduler.downloading
        assert rt.choking.seeding and rt.peer_manager.seeding
        assert hs.status().uploaded >= t.info.total_size


async def test_a_seed_given_an_address_dials_it(tmp_path: Path) -> None:
    """An address (``peers=``, a tracker, the DHT) builds the peer manager and starts its connect
    loop; here the seed dials a leecher that knows no peer."""
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config()) as seeder, Session(config()) as leecher:
        hl = await leecher.add(t, tmp_path / "leech")
        assert built(runtime(leecher, t)) >= {"_picker"}  # downloading: its picker is there
        await seeder.add(t, f.parent, peers=[("127.0.0.1", leecher.port)])
        await hl.wait_complete(timeout=20)
        assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


async def test_super_seeding_switched_on_while_idle_applies_when_the_peer_comes(tmp_path: Path) -> None:
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config()) as seeder, Session(config()) as leecher:
        hs = await seeder.add(t, f.parent)
        rt = runtime(seeder, t)
        await quiet(rt)
        version = rt.status_version
        hs.set_super_seed(True)
        assert hs.super_seed and hs.super_seeding and rt.status_version == version + 1
        assert built(rt) == set()
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await eventually(lambda: rt._parts is not None)
        assert rt.scheduler.superseed is not None and hs.super_seeding
        await hl.wait_complete(timeout=30)
        hs.set_super_seed(False)
        assert not hs.super_seed and not hs.super_seeding


async def test_the_session_default_super_seed_is_answered_without_the_scheduler(tmp_path: Path) -> None:
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config(super_seed=True)) as session:
        h = await session.add(t, f.parent)
        rt = runtime(session, t)
        await quiet(rt)
        assert (h.super_seed, h.super_seeding) == (True, True)
        await h.pause()
        assert (h.super_seed, h.super_seeding) == (True, False)
        assert built(rt) == set()


async def test_a_seed_with_a_skipped_file_keeps_its_picker(tmp_path: Path) -> None:
    """Only a seed of every piece goes without a picker: skipped files make wanted < total."""
    root = tmp_path / "multi"
    (root / "m").mkdir(parents=True)
    rng = random.Random(3)
    for name in ("a.bin", "b.bin"):
        (root / "m" / name).write_bytes(rng.randbytes(70_000))
    t = parse_torrent(create_torrent(root / "m", version="v1", piece_length=16384))
    async with Session(config()) as session:
        h = await session.add(t, root, file_priorities=[1, 0])
        rt = runtime(session, t)
        assert h.state is State.SEEDING
        assert rt._picker is not None
        st = h.status()
        assert st.wanted_size < t.info.total_size and st.progress == 1.0
        await h.set_file_priorities([1, 1])  # every piece is here and wanted now
        assert h.status().wanted_size == t.info.total_size


async def test_a_recheck_of_a_seed_drops_its_picker_and_a_peer_builds_it_again(tmp_path: Path) -> None:
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config()) as seeder, Session(config()) as leecher:
        hs = await seeder.add(t, f.parent)
        rt = runtime(seeder, t)
        hs.set_piece_deadline(0, None)  # asks the picker: built
        assert rt._picker is not None
        await hs.recheck()
        assert rt._picker is None and hs.state is State.SEEDING
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await hl.wait_complete(timeout=20)
        assert rt._picker is not None and rt.picker.is_complete()


async def test_torrents_on_one_tracker_share_its_url_string(tmp_path: Path) -> None:
    url = "udp://127.0.0.1:9/announce"
    async with Session(config()) as session:
        runtimes = []
        for k in range(2):
            f, t = make_torrent(tmp_path / f"t{k}", seed=k)
            h = await session.add(t, f.parent, trackers=[url], paused=True)  # paused: no announce
            assert h.trackers == [[url]]
            runtimes.append(runtime(session, t))
        a, b = (rt.trackers[0][0] for rt in runtimes)
        assert a == url and a is b


async def test_an_idle_seed_closes_its_files_and_opens_them_again_for_a_peer(tmp_path: Path) -> None:
    """Added without resume data, the seed hashes its file (an fd opens); idle, it closes it."""
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, f.parent)
        rt = runtime(seeder, t)
        await quiet(rt)
        assert rt.storage._fdc is None  # closed
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await hl.wait_complete(timeout=20)
        assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()
        await leecher.remove(hl)
        await eventually(lambda: not rt._loops and rt.storage._fdc is None)  # idle again: closed


def test_the_handle_and_the_swarm_parts_have_no_instance_dict() -> None:
    from bitswarm.session.torrent import TorrentHandle, _Swarm

    for cls in (TorrentHandle, _Swarm):
        assert "__dict__" not in dir(cls), cls


async def test_a_torrent_makes_no_picker_before_its_start_and_a_download_has_one(tmp_path: Path) -> None:
    """Before its storage is open a torrent is incomplete and wants every piece (what a fresh picker
    said); the start loads a picker only when something is missing."""
    _, t = make_torrent(tmp_path / "seed")
    async with Session(config()) as session:
        rt = TorrentRuntime(
            session, t, str(tmp_path / "leech"), resume_path=None, trackers=(), peers=[],
            priorities=None, seed_mode=False, sequential=False,
        )  # fmt: skip
        assert rt._picker is None and rt._piece_size is None
        assert not rt._is_complete() and rt._wanted_done() == (t.info.total_size, 0)
        await rt.start()
        assert rt._picker is not None and not rt._is_complete()  # downloading: nothing here
        await rt.stop()
