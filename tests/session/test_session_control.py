"""Engine-level control of a running torrent, on loopback with real sessions: pause/resume keep the
torrent in the session and its peers known, recheck finds a corrupted piece and downloads it again,
live file priorities change what is fetched, move_storage moves a seed's files while it keeps
seeding (and a killed move is finished by the next start), force_reannounce reaches the tracker."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from test_session_transfer import make_tree

from bitswarm.bencode import encode
from bitswarm.errors import BitswarmError
from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig, TorrentHandle
from bitswarm.session.lifecycle import Event, Lifecycle, LifecycleError, State

pytestmark = pytest.mark.timeout(90)

PIECE = 16384


def config(**kw: object) -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, enable_lsd=False, **kw)  # type: ignore[arg-type]


def torrent_of(path: Path) -> Torrent:
    return parse_torrent(create_torrent(path, piece_length=PIECE))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def until(cond: object, what: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_pause_keeps_the_torrent_and_its_peers_and_resume_completes(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed", {"f.bin": 1_000_000})
    t = torrent_of(src / "f.bin")
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, src)
        hl = await leecher.add(t, tmp_path / "leech")
        hl.set_rate_limits(download=150_000)  # slow enough to pause halfway
        hl.add_peer("127.0.0.1", seeder.port)
        await until(lambda: hl.status().pieces_done >= 3, "some pieces")
        events = []

        async def watch() -> None:
            async for ev in leecher.events():
                events.append(ev.kind)

        watcher = asyncio.get_running_loop().create_task(watch())
        await asyncio.sleep(0)
        await hl.pause()
        st = hl.status()  # a paused torrent has a status
        assert st.state == "paused" and hl.state is State.PAUSED
        assert st.peers == 0 and 0 < st.pieces_done < st.num_pieces
        assert ("127.0.0.1", seeder.port) in hl.known_peers()
        assert [h.info_hash for h in leecher.torrents] == [t.swarm_hash]  # not removed
        await until(lambda: seeder.status()[0].peers == 0, "the seeder sees the connection closed")
        done = st.pieces_done
        await asyncio.sleep(0.3)
        assert hl.status().pieces_done == done  # nothing transfers while paused
        await hl.pause()  # pausing a paused torrent does nothing
        hl.set_rate_limits(download=0)
        await hl.resume()
        assert hl.status().state == "downloading"
        await hl.wait_complete(timeout=60)
        assert hl.status().state == "seeding"
        watcher.cancel()
        assert "torrent_removed" not in events and "torrent_added" not in events
        assert events[0] == "torrent_paused" and "torrent_resumed" in events
    assert sha(tmp_path / "leech" / "f.bin") == sha(src / "f.bin")


async def test_recheck_finds_a_corrupted_piece_and_downloads_it_again(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed", {"f.bin": 400_000})
    t = torrent_of(src / "f.bin")
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, src)
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await hl.wait_complete(timeout=60)
        target = tmp_path / "leech" / "f.bin"
        with open(target, "r+b") as fh:  # flip a byte of piece 5
            fh.seek(5 * PIECE + 100)
            b = fh.read(1)
            fh.seek(5 * PIECE + 100)
            fh.write(bytes([b[0] ^ 0xFF]))
        checked: list[tuple[int, int]] = []
        await hl.recheck(progress=lambda d, n: checked.append((d, n)))
        st = hl.status()
        assert not hl.pieces().get(5) and st.pieces_done == st.num_pieces - 1
        assert st.state == "downloading" and checked and checked[-1][0] == checked[-1][1]
        await hl.wait_complete(timeout=60)
        assert hl.pieces().all()
    assert sha(target) == sha(src / "f.bin")


async def test_a_paused_torrent_stays_paused_after_a_recheck(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed", {"f.bin": 100_000})
    t = torrent_of(src / "f.bin")
    async with Session(config()) as session:
        h = await session.add(t, src)
        await h.pause()
        await h.recheck()
        assert h.status().state == "paused" and h.pieces().all()
        await h.resume()
        assert h.status().state == "seeding"


async def test_live_priorities_change_what_is_fetched(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed" / "d", {"a.bin": 5 * PIECE, "b.bin": 5 * PIECE})
    t = torrent_of(src)
    names = [f.path[-1] for f in t.info.files]
    skip_b = [0 if n == "b.bin" else 1 for n in names]
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, tmp_path / "seed")
        hl = await leecher.add(
            t, tmp_path / "leech", file_priorities=skip_b, peers=[("127.0.0.1", seeder.port)]
        )
        await hl.wait_complete(timeout=60)
        st = hl.status()
        assert st.state == "seeding" and st.pieces_done == 5 < st.num_pieces  # b.bin was not fetched
        assert not (tmp_path / "leech" / "d" / "b.bin").exists()
        await hl.set_file_priorities([1] * len(names))
        assert hl.state is State.DOWNLOADING and hl.file_priorities() == [1] * len(names)
        await hl.wait_complete(timeout=60)
        assert hl.pieces().all()
        # and back: skipping a file of a finished torrent keeps it seeding
        await hl.set_file_priorities(skip_b)
        assert hl.status().state == "seeding"
    assert sha(tmp_path / "leech" / "d" / "b.bin") == sha(src / "b.bin")


async def test_move_storage_while_seeding_keeps_seeding_from_the_new_place(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "old" / "d", {"a.bin": 300_000, "s/b.bin": 200_000})
    t = torrent_of(src)
    async with Session(config()) as seeder, Session(config()) as leecher:
        hs = await seeder.add(t, tmp_path / "old", resume_dir=tmp_path / "resume")
        states: list[str] = []
        await hs.move_storage(tmp_path / "new", progress=lambda d, n: states.append(hs.status().state))
        assert states and set(states) == {"moving"}
        assert hs.state is State.SEEDING and hs.save_path == str(tmp_path / "new")
        assert not (tmp_path / "old" / "d").exists()
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await hl.wait_complete(timeout=60)
    for rel in ("a.bin", "s/b.bin"):
        assert sha(tmp_path / "leech" / "d" / rel) == sha(tmp_path / "new" / "d" / rel)


async def test_a_failed_move_keeps_seeding_from_the_old_place(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "old" / "d", {"a.bin": 100_000, "s/b.bin": 100_000})
    t = torrent_of(src)
    (tmp_path / "new" / "d" / "s" / "b.bin").mkdir(parents=True)  # in the way of the second file
    async with Session(config()) as seeder, Session(config()) as leecher:
        hs = await seeder.add(t, tmp_path / "old", resume_dir=tmp_path / "resume")
        with pytest.raises(BitswarmError, match="moving"):
            await hs.move_storage(tmp_path / "new")
        st = hs.status()
        assert st.state == "seeding" and st.error is None and hs.save_path == str(tmp_path / "old")
        assert (src / "a.bin").exists() and not (tmp_path / "new" / "d" / "a.bin").exists()
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await hl.wait_complete(timeout=60)
    assert sha(tmp_path / "leech" / "d" / "a.bin") == sha(src / "a.bin")


KILLED_MOVE = textwrap.dedent(
    """
    import asyncio, os
    from bitswarm.metainfo import parse_torrent
    from bitswarm.session import Session, SessionConfig

    async def main():
        t = parse_torrent(open({torrent!r}, "rb").read())
        cfg = SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, enable_lsd=False)
        async with Session(cfg) as session:
            h = await session.add(t, {old!r}, resume_dir={resume!r})

            def progress(done, total):
                if done == 1:
                    os._exit(9)  # killed with one file moved

            await h.move_storage({new!r}, progress=progress)

    asyncio.run(main())
    """
)


async def test_a_killed_move_is_finished_when_the_torrent_starts_again(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "old" / "d", {"a.bin": 100_000, "b.bin": 100_000, "c.bin": 50_000})
    raw = create_torrent(src, piece_length=PIECE)
    (tmp_path / "t.torrent").write_bytes(raw)
    t = parse_torrent(raw)
    script = KILLED_MOVE.format(
        torrent=str(tmp_path / "t.torrent"),
        old=str(tmp_path / "old"),
        new=str(tmp_path / "new"),
        resume=str(tmp_path / "resume"),
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    moved = [p.name for p in (tmp_path / "new" / "d").iterdir()]
    assert len(moved) == 1  # killed midway
    async with Session(config()) as session, Session(config()) as leecher:
        h = await session.add(t, tmp_path / "old", resume_dir=tmp_path / "resume")
        assert h.save_path == str(tmp_path / "new") and h.state is State.SEEDING
        assert sorted(os.listdir(tmp_path / "new" / "d")) == ["a.bin", "b.bin", "c.bin"]
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", session.port)])
        await hl.wait_complete(timeout=60)
    assert sha(tmp_path / "leech" / "d" / "c.bin") == sha(tmp_path / "new" / "d" / "c.bin")


class FakeTracker:
    """An HTTP tracker on loopback that records each announce's ``event``."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeTracker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/announce"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ")[1].decode()
        query = parse_qs(urlsplit(target).query)
        self.events.append(query.get("event", ["none"])[0])
        body = encode({b"interval": 1800, b"peers": b""})
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()


async def test_force_reannounce_reaches_the_tracker(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed", {"f.bin": 50_000})
    t = torrent_of(src / "f.bin")
    async with FakeTracker() as tracker, Session(config()) as session:
        h = await session.add(t, src, trackers=[tracker.url])
        await until(lambda: tracker.events == ["started"], "the first announce")
        await h.force_reannounce()
        assert tracker.events == ["started", "none"]
        await h.pause()
        assert tracker.events[-1] == "stopped"
        with pytest.raises(BitswarmError, match="paused"):
            await h.force_reannounce()
        await h.resume()
        await until(lambda: tracker.events[-1] == "started", "announced again on resume")


async def test_controls_follow_the_lifecycle_table(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed", {"f.bin": 50_000})
    t = torrent_of(src / "f.bin")
    async with Session(config()) as session:
        h: TorrentHandle = await session.add(t, src)
        assert h.lifecycle.state is State.SEEDING
        await session.remove(h)
        assert h.state is State.STOPPED
        for control in (h.pause(), h.resume(), h.recheck(), h.move_storage(tmp_path / "x")):
            with pytest.raises(BitswarmError, match="no longer in the session"):
                await control
        h2 = await session.add(t, src)
        await h2.pause()
        await h2.move_storage(tmp_path / "moved")  # paused: moves and stays paused
        assert h2.state is State.PAUSED and (tmp_path / "moved" / "f.bin").exists()
        assert issubclass(LifecycleError, BitswarmError)


async def test_session_add_fires_the_callers_lifecycle(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed", {"f.bin": 60_000})
    t = torrent_of(src / "f.bin")
    seen: list[tuple[str, str, str]] = []

    def record(old: State, event: Event, new: State) -> None:
        seen.append((old.value, event.value, new.value))

    async with Session(config()) as session:
        life = Lifecycle(on_change=record)
        life.fire(Event.QUEUE)  # as the daemon does before it adds
        h = await session.add(t, src, lifecycle=life)
        assert h.lifecycle is life
        await h.pause()
        await session.remove(h)
        assert seen == [
            ("stopped", "queue", "queued"),
            ("queued", "check", "checking"),
            ("checking", "seed", "seeding"),
            ("seeding", "pause", "paused"),
            ("paused", "stop", "stopped"),
        ]
        # a failed add leaves the caller's lifecycle in error; a paused add is checked, then paused
        broken = Lifecycle()
        with pytest.raises(BitswarmError):
            await session.add(b"not a torrent", src, lifecycle=broken)
        assert broken.state is State.ERROR
        hp = await session.add(t, src, paused=True)
        assert hp.status().state == "paused" and hp.pieces().all() and hp.status().peers == 0


async def test_status_version_changes_with_every_change_an_idle_torrent_shows(tmp_path: Path) -> None:
    """``status_version`` (issue 24: the daemon rebuilds a listed status only when it changes):
    equal while nothing happens, different after each control and after a new known peer."""
    src = make_tree(tmp_path / "seed", {"a.bin": 50_000, "b.bin": 40_000})
    t = parse_torrent(create_torrent(src, version="v1", piece_length=PIECE))
    async with Session(config()) as session:
        h = await session.add(t, src.parent)
        await until(lambda: h.status_version() is not None, "an idle seed")
        seen = [h.status_version()]
        assert h.status_version() == seen[0]  # nothing happened: the same key

        async def changed() -> None:
            now = h.status_version()
            assert now is not None and now not in seen
            seen.append(now)

        await h.pause()
        await changed()
        await h.resume()
        await changed()
        h.set_super_seed(True)
        await changed()
        await h.set_file_priorities([1, 0])
        await changed()
        h.add_peer("127.0.0.1", 9)  # one more known peer (never dialled by a seed)
        await changed()
        st = h.status()
        assert (st.state, st.known_peers) == ("seeding", 1) and st.wanted_size < 90_000
