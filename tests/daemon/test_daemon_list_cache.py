"""The daemon keeps each torrent's listed status, its JSON and its Transmission and qBittorrent rows
until something they show changes (issue 24: 10,000 idle seeds are not rebuilt on every list).
Every kind of change shows in the next list: each test lists first (so the old status is cached),
changes one thing and checks the next list against a status built afresh."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_testlib import make_content, running_daemon, seeder, session_config, torrent_of, wait_for

from bitswarm.daemon import Daemon
from bitswarm.session import Session
from bitswarm.session.lifecycle import Event

pytestmark = pytest.mark.timeout(120)
SESSION = "X-Transmission-Session-Id"


def fresh(d: Daemon, tid: str) -> dict[str, Any]:
    """The torrent's status built now (``details`` builds it; its extra keys dropped, and the
    magnet link it makes up for a torrent added from a .torrent file)."""
    listed = {s["id"]: s for s in d.list()}[tid]
    built = d.details(tid)
    if listed["magnet"] is None:
        built["magnet"] = None
    return {k: built[k] for k in listed}


def check(d: Daemon, tid: str) -> dict[str, Any]:
    """The listed status of ``tid``, checked: equal to one built afresh, and the JSON list says the
    same as the list."""
    listed = {s["id"]: s for s in d.list()}
    assert listed[tid] == fresh(d, tid)
    as_json = {s["id"]: s for s in json.loads(d.list_json())}
    assert as_json == json.loads(json.dumps(listed))
    assert json.loads(d.list_json(list(listed.values()))) == json.loads(json.dumps(list(listed.values())))
    return listed[tid]


async def seeding_daemon(d: Daemon, content: Path, raw: bytes) -> str:
    tid = str((await d.add_torrent(raw, save_path=str(content.parent)))["id"])
    await wait_for(lambda: check(d, tid)["state"] == "seeding", 30)
    return tid


async def test_controls_record_and_queue_show_in_the_next_list(tmp_path: Path) -> None:
    one = make_content(tmp_path / "src", "one", files=2, size=40_000)
    two = make_content(tmp_path / "src", "two", files=1, size=30_000, seed=2)
    raw1, _ = torrent_of(one)
    raw2, _ = torrent_of(two)
    async with Daemon(tmp_path / "data", session_config()) as d:
        t1 = await seeding_daemon(d, one, raw1)
        t2 = await seeding_daemon(d, two, raw2)
        first = {s["id"]: s for s in d.list()}
        # an idle seed is not rebuilt: the same dict, the same JSON
        assert all(a is b for a, b in zip(d.list(), first.values(), strict=True))
        assert d.list_json() == d.list_json()

        await d.pause(t1)
        assert check(d, t1)["state"] == "paused"
        await d.resume(t1)
        await wait_for(lambda: check(d, t1)["state"] == "seeding", 30)

        await d.set_limits(t1, download=50_000, upload=60_000)
        st = check(d, t1)
        assert (st["download_limit"], st["upload_limit"]) == (50_000, 60_000)

        d.set_category_path("films")
        d.set_category(t1, "films")
        assert check(d, t1)["category"] == "films"
        d.set_tags(t1, ["a", "b"])
        assert check(d, t1)["tags"] == ["a", "b"]
        d.set_tags(t1, ["a"])
        assert check(d, t1)["tags"] == ["a"]

        assert (check(d, t1)["queue_position"], check(d, t2)["queue_position"]) == (0, 1)
        d.move_in_queue([t2], "top")
        assert (check(d, t1)["queue_position"], check(d, t2)["queue_position"]) == (1, 0)
        d.set_queue_position(t2, 5)
        assert check(d, t2)["queue_position"] == 1

        await d.set_goals(t1, {"ratio_mode": 1, "ratio_limit": 5000.0})
        assert check(d, t1)["goals"]["ratio_limit"] == 5000.0
        d.set_super_seed(t1, True)
        assert check(d, t1)["super_seed"] is True

        # the engine's own change counter (TorrentHandle.status_version): file priorities change
        # the wanted bytes of an idle seed, and no field of the daemon's record the list reads
        whole = check(d, t1)["wanted_size"]
        await d.set_priorities(t1, [1, 0])
        assert 0 < check(d, t1)["wanted_size"] < whole
        await d.set_priorities(t1, [1, 1])
        assert check(d, t1)["wanted_size"] == whole

        # the automation's accounting changes the record in place, with no event
        before = dict(check(d, t1))  # (a listed dict is kept, its seeding time updated in place)
        d.account(t1, 0, 0, 125.0)
        assert check(d, t1)["seeding_time"] == before["seeding_time"] + 125
        d.account(t1, 1_000, 250_000, 0.0)
        st = check(d, t1)
        assert (st["uploaded_ever"], st["downloaded_ever"]) == (
            before["uploaded_ever"] + 250_000,
            before["downloaded_ever"] + 1_000,
        )
        assert st["ratio"] != before["ratio"]

        await d.recheck(t1)
        await wait_for(lambda: check(d, t1)["state"] == "seeding")

        # the torrent the changes were not about kept its cached status
        assert {s["id"]: s for s in d.list()}[t2] is {s["id"]: s for s in d.list()}[t2]
        await d.remove(t2)
        assert [s["id"] for s in d.list()] == [t1]
        assert [s["id"] for s in json.loads(d.list_json())] == [t1]


async def test_peer_join_rates_and_leave_show_in_the_next_list(tmp_path: Path) -> None:
    content = make_content(tmp_path / "src", "album", files=2, size=300_000)
    raw, torrent = torrent_of(content)
    async with Daemon(tmp_path / "data", session_config()) as d:
        from bitswarm.daemon.transmission import TransmissionRPC

        tid = await seeding_daemon(d, content, raw)
        idle = check(d, tid)
        assert (idle["peers"], idle["upload_rate"]) == (0, 0.0)
        # the Transmission list's peer counts come from the peer list read beside the kept status
        rpc = TransmissionRPC(d, "t")
        fields = {"fields": ["id", "peersConnected", "peersGettingFromUs", "peersSendingToUs"]}

        async def tr_peers() -> tuple[int, int, int]:
            (row,) = json.loads((await rpc.torrent_get(dict(fields)))["torrents"].data)
            return row["peersConnected"], row["peersGettingFromUs"], row["peersSendingToUs"]

        assert await tr_peers() == (0, 0, 0)
        # a slow leecher: the daemon uploads to it for a few seconds
        async with Session(session_config(download_rate_limit=150_000)) as leecher:
            h = await leecher.add(torrent, tmp_path / "leech")
            h.add_peer("127.0.0.1", d.session.port)
            await wait_for(lambda: check(d, tid)["peers"] == 1, 30)
            await wait_for(lambda: check(d, tid)["upload_rate"] > 0 and check(d, tid)["uploaded"] > 0, 30)
            await wait_for(lambda: _is(tr_peers(), (1, 1, 0)), 30)  # uploading to the one peer
            await h.wait_complete(60)
        await wait_for(lambda: check(d, tid)["peers"] == 0, 30)
        st = check(d, tid)
        assert st["uploaded"] >= torrent.info.total_size
        assert await tr_peers() == (0, 0, 0)


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def test_download_progress_and_error_show_in_the_next_list(tmp_path: Path) -> None:
    content = make_content(tmp_path / "src", "album", files=2, size=200_000)
    raw, torrent = torrent_of(content)
    save = tmp_path / "down"
    async with (
        seeder(content, torrent, upload_rate_limit=200_000) as (seed, _h),
        Daemon(tmp_path / "data", session_config()) as d,
    ):
        tid = str((await d.add_torrent(raw, save_path=str(save), peers=[("127.0.0.1", seed.port)]))["id"])
        seen: set[float] = set()

        def progressed() -> bool:
            st = check(d, tid)
            seen.add(st["progress"])
            return bool(st["state"] == "seeding")

        await wait_for(progressed, 60)
        assert check(d, tid)["progress"] == 1.0 and len(seen) > 1
        # the engine's lifecycle fails it (a disk error does this): the next list shows the error
        d.handle(tid).lifecycle.fire(Event.FAIL)
        st = check(d, tid)
        assert (st["state"], st["error"]) == ("error", "failed")


async def test_rest_transmission_and_qbittorrent_lists_follow_changes(tmp_path: Path) -> None:
    content = make_content(tmp_path / "src", "album", files=2, size=40_000)
    raw, _ = torrent_of(content)
    async with running_daemon(tmp_path / "data") as run:
        d = run.daemon
        tid = await seeding_daemon(d, content, raw)
        auth = httpx.BasicAuth("bitswarm", run.token)
        async with run.client() as c, httpx.AsyncClient(base_url=run.url, auth=auth, timeout=30) as tr:

            async def rest() -> dict[str, Any]:
                r = await c.get("/api/v1/torrents")
                assert r.status_code == 200 and r.headers["content-type"] == "application/json"
                (st,) = r.json()["torrents"]
                return dict(st)

            async def rpc(method: str, **args: Any) -> dict[str, Any]:
                for _ in range(2):
                    r = await tr.post(
                        "/transmission/rpc",
                        json={"method": method, "arguments": args},
                        headers={SESSION: tr.headers.get(SESSION, "")},
                    )
                    if r.status_code == 409:
                        tr.headers[SESSION] = r.headers[SESSION]
                        continue
                    assert r.status_code == 200 and r.json()["result"] == "success", r.text
                    return dict(r.json()["arguments"])
                raise AssertionError("no session id")

            fields = ["id", "name", "status", "labels", "queuePosition", "peersSendingToUs", "secondsSeeding"]

            async def tr_row() -> dict[str, Any]:
                (row,) = (await rpc("torrent-get", fields=fields))["torrents"]
                return dict(row)

            login = await c.post("/api/v2/auth/login", data={"username": "bitswarm", "password": run.token})
            assert login.status_code == 200

            async def qb_row() -> dict[str, Any]:
                r = await c.get("/api/v2/torrents/info")
                assert r.status_code == 200
                (row,) = r.json()
                return dict(row)

            st, row, qb = await rest(), await tr_row(), await qb_row()
            assert st == json.loads(json.dumps(fresh(d, tid)))
            assert (row["status"], row["labels"], qb["state"], qb["category"]) == (6, [], "stalledUP", "")
            assert await tr_row() == row and await qb_row() == qb  # served again from the cache

            async def web_ui() -> dict[str, Any]:
                """The web UI's list: the first ``torrents`` event of the event stream."""
                async with c.stream("GET", "/api/v1/events") as ev:
                    async for line in ev.aiter_lines():
                        if line.startswith("data: "):
                            data = json.loads(line[6:])
                            (st,) = data["torrents"]
                            assert data["stats"]["torrents"] == 1
                            return dict(st)
                raise AssertionError("no event")

            assert await web_ui() == st
            await d.pause(tid)
            assert (await rest())["state"] == "paused"
            assert (await web_ui())["state"] == "paused"
            assert (await tr_row())["status"] == 0
            assert (await qb_row())["state"] == "pausedUP"

            await rpc("torrent-set", ids=[tid], labels=["x"])
            assert (await tr_row())["labels"] == ["x"]
            d.set_category_path("films")
            d.set_category(tid, "films")
            d.set_tags(tid, ["t1"])
            qb = await qb_row()
            assert (qb["category"], qb["tags"]) == ("films", "t1")
            assert (await rest())["category"] == "films"

            # the seeding time (every seed's grows at each accounting) is kept out of the keys
            before = await rest()
            qb = await qb_row()
            d.account(tid, 0, 0, 90.0)
            assert (await tr_row())["secondsSeeding"] == row["secondsSeeding"] + 90
            assert (await qb_row())["seeding_time"] == qb["seeding_time"] + 90
            assert (await rest()) == dict(before, seeding_time=before["seeding_time"] + 90)
            assert (await web_ui())["seeding_time"] == before["seeding_time"] + 90
            d.update_settings({"seed_ratio_enabled": True, "seed_ratio_limit": 4.0})
            assert (await qb_row())["max_ratio"] == 4.0


async def test_kept_rows_of_idle_torrents_read_no_peer_list_and_no_record(tmp_path: Path) -> None:
    """A Transmission or qBittorrent row kept with the daemon's kept status needs nothing else of
    the torrent: the same status dict means no peer connected and an unchanged ``compat``."""
    from bitswarm.daemon.qbittorrent import QbittorrentAPI
    from bitswarm.daemon.transmission import TransmissionRPC

    content = make_content(tmp_path / "src", "one", files=1, size=20_000)
    raw, _ = torrent_of(content)
    async with Daemon(tmp_path / "data", session_config()) as d:
        tid = await seeding_daemon(d, content, raw)
        rpc, qbt = TransmissionRPC(d, "t"), QbittorrentAPI(d, "t")
        fields = {"fields": ["id", "name", "labels", "peersSendingToUs", "peersGettingFromUs", "rateUpload"]}
        first = (await rpc.torrent_get(dict(fields, format="table")))["torrents"]
        qb_first = qbt.rows()
        reads: list[str] = []
        peer_list, record = d.peer_list, d.record

        def counted_peer_list(torrent_id: str) -> list[dict[str, object]]:
            reads.append("peer_list")
            return peer_list(torrent_id)

        def counted_record(torrent_id: str) -> Any:
            reads.append("record")
            return record(torrent_id)

        row_inputs = d.row_inputs

        def counted_row_inputs(torrent_id: str, *, peers: bool) -> Any:
            reads.append("row_inputs")
            return row_inputs(torrent_id, peers=peers)

        d.peer_list = counted_peer_list  # type: ignore[method-assign]
        d.record = counted_record  # type: ignore[method-assign]
        d.row_inputs = counted_row_inputs  # type: ignore[method-assign]
        assert (await rpc.torrent_get(dict(fields, format="table")))["torrents"] == first
        assert qbt.rows() == qb_first
        assert reads == []
        await rpc.torrent_set({"ids": [tid], "labels": ["x"]})  # a new status dict: read again
        reads.clear()
        again = (await rpc.torrent_get(dict(fields, format="table")))["torrents"]
        assert again[1][2] == ["x"] and reads == ["row_inputs"]  # one look-up of the torrent
