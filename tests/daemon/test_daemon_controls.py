"""The daemon's pause, recheck, file priorities and move are the engine's controls on the torrent's
handle: the torrent stays in the session (no remove + add), keeps the peers it knew, and a move
changes where it seeds from (and survives a restart of the daemon)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_testlib import make_content, running_daemon, seeder, session_config, torrent_of, wait_for

from bitswarm.daemon.client import DaemonClient
from bitswarm.session import Session, TorrentHandle
from bitswarm.session.lifecycle import Event, LifecycleError, State

pytestmark = pytest.mark.timeout(90)


async def _details(c: httpx.AsyncClient, tid: str) -> dict[str, Any]:
    r = await c.get(f"/api/v1/torrents/{tid}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _state(c: httpx.AsyncClient, tid: str, state: str, *, complete: bool = False) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        d = await _details(c, tid)
        return d if d["state"] == state and (not complete or d["progress"] == 1.0) else None

    return dict(await wait_for(reached, 40))


@contextlib.asynccontextmanager
async def session_events(session: Session) -> AsyncIterator[list[str]]:
    """The kinds of the engine events published while the block runs."""
    kinds: list[str] = []

    async def watch() -> None:
        async for ev in session.events():
            kinds.append(ev.kind)

    task = asyncio.get_running_loop().create_task(watch())
    await asyncio.sleep(0)
    try:
        yield kinds
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _handle(session: Session, tid: str) -> TorrentHandle:
    (h,) = [h for h in session.torrents if h.info_hash.hex() == tid]
    return h


async def _add(c: httpx.AsyncClient, raw: bytes, peer_port: int, **form: str) -> str:
    reply = await c.post(
        "/api/v1/torrents",
        files={"torrent": ("t.torrent", raw, "application/x-bittorrent")},
        data={"peers": f"127.0.0.1:{peer_port}", **form},
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


async def test_pause_keeps_the_torrent_in_the_session_with_its_peers(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed", size=600_000)
    raw, t = torrent_of(content, piece_length=16384)
    async with seeder(content, t) as (s, _), running_daemon(tmp_path / "d") as r, r.client() as c:
        tid = await _add(c, raw, s.port)
        await c.put(f"/api/v1/torrents/{tid}/limits", json={"download": 200_000})
        await wait_for(lambda: s.status()[0].peers == 1, 20)
        handle = _handle(r.daemon.session, tid)
        async with session_events(r.daemon.session) as kinds:
            paused = (await c.post(f"/api/v1/torrents/{tid}/pause")).json()
            assert paused["state"] == "paused" and paused["peers"] == 0
            assert paused["known_peers"] >= 1  # the seeder's address is kept
            assert _handle(r.daemon.session, tid) == handle  # the same torrent, still in the session
            assert ("127.0.0.1", s.port) in handle.known_peers()
            await wait_for(lambda: s.status()[0].peers == 0, 20)  # the connection was closed
            await c.put(f"/api/v1/torrents/{tid}/limits", json={"download": 0})
            resumed = (await c.post(f"/api/v1/torrents/{tid}/resume")).json()
            assert not resumed["paused"] and resumed["state"] == "downloading"
            await _state(c, tid, "seeding", complete=True)
        assert _handle(r.daemon.session, tid) == handle
        assert "torrent_removed" not in kinds and "torrent_added" not in kinds
        # a piece received before the pause may be verified, and the leecher's own join reported
        # (the seeder counts the link first), between the subscription and the pause
        changes = [k for k in kinds if k not in ("piece_verified", "peer_connected")]
        assert changes[0] == "torrent_paused" and "torrent_resumed" in changes, kinds


async def test_live_priorities_and_recheck_keep_the_torrent_in_the_session(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed")
    raw, t = torrent_of(content)
    async with seeder(content, t) as (s, _), running_daemon(tmp_path / "d") as r, r.client() as c:
        reply = await c.post(
            "/api/v1/torrents",
            json={
                "torrent_base64": base64.b64encode(raw).decode(),
                "priorities": [1, 0, 1],
                "peers": [f"127.0.0.1:{s.port}"],
            },
        )
        assert reply.status_code == 201, reply.text
        tid = reply.json()["id"]
        d = await _state(c, tid, "seeding")
        assert d["wanted_size"] < d["total_size"]
        handle = _handle(r.daemon.session, tid)
        async with session_events(r.daemon.session) as kinds:
            pr = await c.put(f"/api/v1/torrents/{tid}/priorities", json={"priorities": [1, 1, 1]})
            assert pr.status_code == 200 and pr.json()["state"] == "downloading"  # at once, live
            d = await _state(c, tid, "seeding", complete=True)
            assert d["wanted_size"] == d["total_size"]
            base = Path(d["save_path"], "album")
            assert (base / "track01.bin").read_bytes() == (content / "track01.bin").read_bytes()
            # recheck of the running torrent: the engine hashes, finds the flipped byte, fetches it
            clip = bytearray((base / "clip.mp4").read_bytes())
            clip[7] ^= 0xFF
            (base / "clip.mp4").write_bytes(bytes(clip))
            rc = await c.post(f"/api/v1/torrents/{tid}/recheck")
            assert rc.status_code == 200 and rc.json()["state"] == "checking"
            kinds.clear()
            await wait_for(lambda: "torrent_completed" in kinds, 30)  # downloading, then complete
            assert kinds.count("piece_verified") == 1  # the one bad piece, fetched again
            await _state(c, tid, "seeding", complete=True)
            assert (base / "clip.mp4").read_bytes() == (content / "clip.mp4").read_bytes()
            seen = list(kinds)
        assert _handle(r.daemon.session, tid) == handle
        assert "torrent_removed" not in seen and "torrent_added" not in seen


async def test_move_while_seeding_keeps_seeding_from_the_new_place(tmp_path: Path) -> None:
    content = make_content(tmp_path / "seed")
    raw, t = torrent_of(content)
    new = tmp_path / "elsewhere"
    async with running_daemon(tmp_path / "d") as r, r.client() as c:
        async with seeder(content, t) as (s, _):
            tid = await _add(c, raw, s.port)
            d = await _state(c, tid, "seeding", complete=True)
        old = Path(d["save_path"], "album")
        handle = _handle(r.daemon.session, tid)
        moving = await c.put(f"/api/v1/torrents/{tid}/location", json={"save_path": str(new)})
        assert moving.status_code == 200 and moving.json()["state"] == "moving", moving.text
        d = await _state(c, tid, "seeding")
        assert d["save_path"] == str(new) and handle.save_path == str(new)
        assert not old.exists()
        for f in content.iterdir():
            assert (new / "album" / f.name).read_bytes() == f.read_bytes()
        # a new leecher gets every byte from the new place
        async with Session(session_config()) as leecher:
            hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", r.daemon.session.port)])
            await hl.wait_complete(timeout=60)
        assert (tmp_path / "leech" / "album" / "clip.mp4").read_bytes() == (content / "clip.mp4").read_bytes()
        # the same through the client (``bitswarm ctl move``): back again, paused stays paused
        (await c.post(f"/api/v1/torrents/{tid}/pause")).raise_for_status()
        back = tmp_path / "back"
        with DaemonClient(r.url, r.token) as dc:
            moved = await asyncio.to_thread(dc.move, tid, str(back))
        assert moved["state"] in ("moving", "paused")
        d = await _state(c, tid, "paused")
        await wait_for(lambda: handle.save_path == str(back), 20)
        assert (back / "album" / "clip.mp4").exists()
        # bad requests: 4xx with the API's error, the torrent unchanged
        for body, status in (({"save_path": ""}, 422), ({"where": "x"}, 422)):
            bad = await c.put(f"/api/v1/torrents/{tid}/location", json=body)
            assert bad.status_code == status, bad.text
        unknown = await c.put(f"/api/v1/torrents/{'ab' * 20}/location", json={"save_path": str(new)})
        assert unknown.status_code == 404
    # the record follows the move: a restarted daemon finds the files at the new place
    async with running_daemon(tmp_path / "d") as r2, r2.client() as c2:
        d = await _details(c2, tid)
        assert d["save_path"] == str(back) and d["state"] == "paused"
        (await c2.post(f"/api/v1/torrents/{tid}/resume")).raise_for_status()
        d = await _state(c2, tid, "seeding", complete=True)
        assert d["pieces_done"] == t.info.num_pieces


async def test_a_control_that_does_not_fit_the_state_is_409(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "d") as r, r.client() as c:
        # a magnet fetching metadata cannot be moved or rechecked
        magnet = f"magnet:?xt=urn:btih:{'cd' * 20}&x.pe=127.0.0.1:1"
        reply = await c.post("/api/v1/torrents", json={"magnet": magnet})
        assert reply.status_code == 201, reply.text
        mid = reply.json()["id"]
        assert (await c.post(f"/api/v1/torrents/{mid}/recheck")).status_code == 409
        moved = await c.put(f"/api/v1/torrents/{mid}/location", json={"save_path": str(tmp_path / "x")})
        assert moved.status_code == 409 and moved.json()["error"]["code"] == "no_metadata"

        # a control the engine's table refuses (a race the daemon cannot rule out) is 409 too
        async def refused(torrent_id: str) -> dict[str, Any]:
            raise LifecycleError(State.CHECKING, Event.MOVE)

        r.daemon.recheck = refused  # type: ignore[method-assign]
        rc = await c.post(f"/api/v1/torrents/{mid}/recheck")
        assert rc.status_code == 409 and rc.json()["error"]["code"] == "wrong_state"
        assert "cannot move a torrent that is checking" in rc.json()["error"]["message"]


def test_top_styles_every_lifecycle_state() -> None:
    from bitswarm.daemon._top import _STATE_STYLE
    from bitswarm.session.lifecycle import DISPLAY_NAME

    assert set(_STATE_STYLE) == set(DISPLAY_NAME.values())
