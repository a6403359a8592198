"""Tracker and error status (issue 21): each tracker's last outcome through the handle, the status's
``waiting_reason`` and the ``tracker_reply`` / ``tracker_error`` events, against real loopback
trackers (a closed port, one that answers ``failure reason``, bitswarm's own tracker)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.announce import DhtStatus, TrackerBook, TrackerStatus, waiting_reason
from bitswarm.session.torrent import TorrentHandle
from bitswarm.tracker import TrackerError
from bitswarm.tracker.client import (
    AllTrackersFailed,
    AnnounceManager,
    AnnounceParams,
    AnnounceResult,
    ScrapeResult,
)
from trackertools import closed_port, failing_tracker

pytestmark = pytest.mark.timeout(60)


def config() -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False)


def make_torrent(tmp_path: Path, tracker: str) -> Torrent:
    data = tmp_path / "seed" / "f.bin"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(random.Random(3).randbytes(200_000))
    return parse_torrent(create_torrent(data, version="v1", piece_length=32768, trackers=[[tracker]]))


async def first_event(session: Session, kinds: set[str]) -> dict[str, object]:
    async for ev in session.events():
        if ev.kind in kinds:
            return {"kind": ev.kind, **ev.data}
    raise AssertionError("the event stream ended")


async def add_and_wait(
    session: Session, torrent: Torrent, save: Path, kinds: set[str], **kw: object
) -> tuple[TorrentHandle, dict[str, object]]:
    waiter = asyncio.ensure_future(first_event(session, kinds))
    await asyncio.sleep(0)  # subscribed before the first announce can happen
    handle = await session.add(torrent, save, **kw)  # type: ignore[arg-type]
    return handle, await asyncio.wait_for(waiter, 20)


async def test_a_dead_tracker_is_an_error_with_a_waiting_reason(tmp_path: Path) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/announce"
    t = make_torrent(tmp_path, url)
    async with Session(config()) as s:
        handle, ev = await add_and_wait(s, t, tmp_path / "leech", {"tracker_error", "tracker_reply"})
        assert ev["kind"] == "tracker_error" and ev["url"] == url
        assert str(ev["error"]).startswith("unreachable")
        [tr] = handle.tracker_status()
        assert (tr.url, tr.tier, tr.status, tr.failures, tr.announces) == (url, 0, "error", 1, 0)
        assert tr.error is not None and tr.error.startswith("unreachable")
        assert tr.last_announce is not None and tr.next_announce is not None
        assert tr.next_announce > tr.last_announce
        st = handle.status()
        assert st.peers == 0
        assert st.waiting_reason == f"waiting: tracker 127.0.0.1:{port} unreachable, DHT off, 0 peers known"
        assert st.as_dict()["waiting_reason"] == st.waiting_reason
        assert not handle.dht_status().enabled


async def test_a_tracker_failure_reason_is_shown_as_it_is(tmp_path: Path) -> None:
    async with failing_tracker(b"torrent not registered") as url:
        t = make_torrent(tmp_path, url)
        async with Session(config()) as s:
            handle, ev = await add_and_wait(s, t, tmp_path / "leech", {"tracker_error", "tracker_reply"})
            assert ev == {"kind": "tracker_error", "url": url, "error": "torrent not registered"}
            [tr] = handle.tracker_status()
            assert (tr.status, tr.error, tr.peers) == ("error", "torrent not registered", None)
            reason = handle.status().waiting_reason
            assert reason is not None and "failed: torrent not registered" in reason


async def test_a_working_tracker_is_ok_with_the_peers_it_returned(tmp_path: Path) -> None:
    from bitswarm.tracker.server.app import TrackerServer
    from bitswarm.tracker.server.config import TrackerConfig

    server = TrackerServer(TrackerConfig(http=(("127.0.0.1", 0),), udp=(), db=None))
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.http_addresses[0][1]}/announce"
        t = make_torrent(tmp_path, url)
        async with Session(config()) as seeder, Session(config()) as leecher:
            hs, ev = await add_and_wait(seeder, t, tmp_path / "seed", {"tracker_reply", "tracker_error"})
            assert ev["kind"] == "tracker_reply" and ev["peers"] == 0
            hl, ev = await add_and_wait(leecher, t, tmp_path / "leech", {"tracker_reply", "tracker_error"})
            assert ev["kind"] == "tracker_reply" and ev["peers"] == 1  # the seeder
            assert ev["seeders"] == 1
            [tr] = hl.tracker_status()
            assert (tr.status, tr.error, tr.peers, tr.seeders, tr.announces) == ("ok", None, 1, 1, 1)
            await hl.wait_complete(timeout=30)
            assert hs.tracker_status()[0].status == "ok"
            assert hl.status().waiting_reason is None
    finally:
        await server.stop()


def test_waiting_reason_names_each_tracker_the_dht_and_the_known_peers() -> None:
    trackers = [
        TrackerStatus(url="udp://a.example:6969", tier=0, status="error", error="timed out (3 tries)"),
        TrackerStatus(url="http://b.example/announce", tier=1, status="ok", peers=0),
        TrackerStatus(url="http://c.example/announce", tier=2, status="not contacted"),
    ]
    assert waiting_reason(trackers, DhtStatus(enabled=True, nodes=0), 0) == (
        "waiting: tracker a.example:6969 unreachable, tracker b.example returned 0 peers,"
        " tracker c.example not answered yet, DHT 0 nodes, 0 peers known"
    )
    assert waiting_reason([], DhtStatus(enabled=False), 3) == "waiting: no trackers, DHT off, 3 peers known"


class FakeTracker:
    """A tracker client answering from a script: a result, an exception, or never (a hang)."""

    def __init__(self, url: str, outcome: AnnounceResult | Exception | None) -> None:
        self.url = url
        self.outcome = outcome

    async def announce(self, params: AnnounceParams) -> AnnounceResult:
        if self.outcome is None:
            await asyncio.Event().wait()
        if isinstance(self.outcome, Exception):
            raise self.outcome
        assert self.outcome is not None
        return self.outcome

    async def scrape(self, info_hashes: Sequence[bytes]) -> dict[bytes, ScrapeResult]:
        return {}

    async def aclose(self) -> None:
        pass


async def test_the_book_records_every_tracker_tried_and_the_managers_own_timeout() -> None:
    """BEP 12 fallback: a tier's first tracker fails, the second answers — both are recorded (the
    manager reports only the one that answered); a tracker that never answers is cut by the
    manager's timeout, which the client never sees: recorded once, from AllTrackersFailed."""
    ok = AnnounceResult(
        url="http://b/announce", peers=(("10.0.0.1", 1),), interval=1800, seeders=4, leechers=2
    )
    outcomes: dict[str, AnnounceResult | Exception | None] = {
        "http://a/announce": TrackerError("go away", url="http://a/announce"),
        "http://b/announce": ok,
        "udp://c:80": None,
    }
    events: list[tuple[str, dict[str, object]]] = []
    book = TrackerBook(
        [["http://a/announce", "http://b/announce"], ["udp://c:80"]],
        emit=lambda kind, **data: events.append((kind, data)),
        wall=lambda: 1000.0,
        open_client=lambda url: FakeTracker(url, outcomes[url]),
    )
    manager = AnnounceManager(
        [["http://a/announce", "http://b/announce"]],
        info_hash=b"\1" * 20,
        peer_id=b"\2" * 20,
        port=1,
        client_factory=book.client_factory,
        rng=random.Random(0),
    )
    manager.tiers = [["http://a/announce", "http://b/announce"]]  # not shuffled: a first, then b
    await manager.announce()
    a, b, c = book.snapshot(60.0)
    assert (a.status, a.error, a.failures, a.last_announce) == ("error", "go away", 1, 1000.0)
    assert (b.status, b.peers, b.seeders, b.leechers, b.interval) == ("ok", 1, 4, 2, 1800)
    assert (c.status, c.next_announce) == ("not contacted", 1060.0)
    assert [k for k, _ in events] == ["tracker_error", "tracker_reply"]

    hanging = AnnounceManager(
        [["udp://c:80"]],
        info_hash=b"\1" * 20,
        peer_id=b"\2" * 20,
        port=1,
        client_factory=book.client_factory,
        tracker_timeout=0.05,
    )
    with pytest.raises(AllTrackersFailed) as failed:
        await hanging.announce()
    book.failed_all(failed.value)
    book.failed_all(failed.value)  # the same failure twice is one failure
    c = book.snapshot(None)[2]
    assert (c.status, c.failures, c.next_announce) == ("error", 1, None)
    assert c.error is not None and c.error.startswith("timed out")
    assert book.errors_total == 2
