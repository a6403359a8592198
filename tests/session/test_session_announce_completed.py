"""BEP 3 ``completed`` survives a stop right after the download finishes (issue 24: ``bitswarm
download`` exits on completion; the stop used to cancel the ``completed`` announce in flight, so the
tracker never counted the download and only a ``stopped`` went out)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import cast

import pytest

from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.announce import STOPPED_ANNOUNCE_TIMEOUT, AnnounceDriver, AnnounceGate
from bitswarm.session.clock import ManualClock
from bitswarm.tracker import Event, TrackerUnreachable
from bitswarm.tracker.client import AllTrackersFailed, AnnounceManager, AnnounceResult, open_tracker

pytestmark = pytest.mark.timeout(60)

URL = "udp://127.0.0.1:6969/announce"


# -- against bitswarm's own tracker, in process on loopback ----------------------------------------


async def test_a_session_closed_at_completion_still_tells_the_tracker(tmp_path: Path) -> None:
    from bitswarm.tracker.server.app import TrackerServer
    from bitswarm.tracker.server.config import TrackerConfig

    server = TrackerServer(TrackerConfig(http=(("127.0.0.1", 0),), udp=(), db=None))
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.http_addresses[0][1]}/announce"
        data = tmp_path / "seed" / "f.bin"
        data.parent.mkdir(parents=True)
        data.write_bytes(random.Random(5).randbytes(100_000))
        t: Torrent = parse_torrent(create_torrent(data, version="v1", piece_length=32768, trackers=[[url]]))
        async with Session(_config()) as seeder:
            announced = asyncio.ensure_future(_first(seeder, "tracker_reply"))
            await asyncio.sleep(0)  # subscribed before the add
            await seeder.add(t, tmp_path / "seed")
            await asyncio.wait_for(announced, 20)  # the tracker knows the seeder
            leecher = Session(_config())
            await leecher.start()
            try:
                completed = asyncio.ensure_future(_first(leecher, "torrent_completed"))
                await asyncio.sleep(0)  # subscribed before the add
                await leecher.add(t, tmp_path / "leech")
                await asyncio.wait_for(completed, 30)
            finally:
                await leecher.close()  # at once, as ``bitswarm download`` exits on completion
            client = open_tracker(url)
            try:
                ih = t.info_hash_v1
                assert ih is not None
                stats = (await client.scrape([ih]))[ih]
            finally:
                await client.aclose()
        assert stats.downloaded == 1  # the ``completed`` announce was counted
        assert (stats.complete, stats.incomplete) == (1, 0)  # then its ``stopped``: only the seeder
    finally:
        await server.stop()


def _config() -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False)


async def _first(session: Session, kind: str) -> None:
    async for ev in session.events():
        if ev.kind == kind:
            return
    raise AssertionError("the event stream ended")


# -- the driver alone: a scripted announcer and a manual clock ------------------------------------


class ScriptedAnnouncer:
    """An announcer recording the events it sends; ``completed`` announces wait for ``answer``
    (set: answered; an exception set in ``fail_next``: that failure)."""

    def __init__(self) -> None:
        self.tiers = [[URL]]
        self.stopped_timeout = 5.0
        self.sent: list[str] = []
        self.answer = asyncio.Event()
        self.fail_next: list[BaseException] = []
        self.stop_timeouts: list[float | None] = []

    def _result(self) -> AnnounceResult:
        return AnnounceResult(url=URL, peers=(), interval=1800)

    async def start(self) -> AnnounceResult:
        self.sent.append("started")
        return self._result()

    async def announce(self, event: Event = Event.NONE) -> AnnounceResult:
        self.sent.append(event.name.lower())
        return self._result()

    async def complete(self) -> AnnounceResult | None:
        self.sent.append("completed")
        await self.answer.wait()
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.sent.append("completed acked")
        return self._result()

    def seconds_until_next(self) -> float:
        return 1800.0

    async def stop(self, timeout: float | None = None) -> list[str]:
        self.stop_timeouts.append(timeout)
        self.sent.append("stopped")
        return [URL]


def _driver(clock: ManualClock, announcer: ScriptedAnnouncer, gate: AnnounceGate) -> AnnounceDriver:
    return AnnounceDriver(
        clock=clock,
        swarm_hash=b"\x01" * 20,
        port=lambda: 6881,
        add_peer=lambda host, port: None,
        want_more_peers=lambda: False,
        announcer=cast(AnnounceManager, announcer),
        dht=None,
        dht_interval=1800.0,
        gate=gate,
    )


async def _started(clock: ManualClock, gate: AnnounceGate) -> tuple[ScriptedAnnouncer, AnnounceDriver]:
    announcer = ScriptedAnnouncer()
    driver = _driver(clock, announcer, gate)
    driver.start("t")
    await clock.advance(0.0)
    assert announcer.sent == ["started"]
    return announcer, driver


async def test_a_stop_right_after_completion_sends_completed_before_stopped() -> None:
    clock = ManualClock()
    gate = AnnounceGate()
    announcer, driver = await _started(clock, gate)
    driver.completed()
    gate.stop_by = clock.now() + STOPPED_ANNOUNCE_TIMEOUT  # Session.close, right away
    stopping = asyncio.ensure_future(driver.stop())
    await clock.advance(0.0)
    assert announcer.sent == ["started", "completed"]  # in flight: waited for, not cancelled
    announcer.answer.set()
    await clock.advance(0.0)
    await asyncio.wait_for(stopping, 10)
    assert announcer.sent == ["started", "completed", "completed acked", "stopped"]
    assert clock.pending == 0


async def test_a_silent_trackers_completed_and_stopped_share_the_stop_deadline() -> None:
    clock = ManualClock()
    gate = AnnounceGate()
    announcer, driver = await _started(clock, gate)
    driver.completed()  # never answered
    gate.stop_by = clock.now() + STOPPED_ANNOUNCE_TIMEOUT
    stopping = asyncio.ensure_future(driver.stop())
    await clock.advance(STOPPED_ANNOUNCE_TIMEOUT * 0.99)
    assert not stopping.done()
    await clock.advance(STOPPED_ANNOUNCE_TIMEOUT * 0.01)
    await asyncio.wait_for(stopping, 10)  # a hang guard: the deadline ends it
    assert announcer.sent == ["started", "completed", "stopped"]
    assert announcer.stop_timeouts == [0.0]  # nothing left of the one deadline


async def test_a_failed_completed_does_not_hold_the_stop() -> None:
    clock = ManualClock()
    gate = AnnounceGate()
    announcer, driver = await _started(clock, gate)
    announcer.fail_next.append(AllTrackersFailed({URL: TrackerUnreachable("refused", url=URL)}))
    announcer.answer.set()
    driver.completed()
    await clock.advance(0.0)
    assert announcer.sent == ["started", "completed"]  # failed
    announcer.answer.clear()  # a tracker that went silent: a second ``completed`` would hang
    await asyncio.wait_for(driver.stop(), 10)  # stopped alone: the announcer's own stopped_timeout
    assert announcer.sent == ["started", "completed", "stopped"]
    assert announcer.stop_timeouts == [None]


async def test_a_failed_completed_goes_with_the_next_announce_and_only_once() -> None:
    clock = ManualClock()
    gate = AnnounceGate()
    announcer, driver = await _started(clock, gate)
    announcer.fail_next.append(AllTrackersFailed({URL: TrackerUnreachable("refused", url=URL)}))
    announcer.answer.set()
    driver.completed()
    await clock.advance(1800.0)  # the next announce
    assert announcer.sent == ["started", "completed", "completed", "completed acked"]
    await clock.advance(1800.0)
    assert announcer.sent[-1] == "none"
    await asyncio.wait_for(driver.stop(), 10)
    assert announcer.sent[-2:] == ["none", "stopped"]  # no second ``completed``
    assert clock.pending == 0
