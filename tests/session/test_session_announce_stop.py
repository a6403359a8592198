"""Stopping a torrent's announces (issue 24: a daemon with 10,000 torrents must stop in seconds)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

import pytest

from bitswarm.session.announce import STOPPED_ANNOUNCE_TIMEOUT, AnnounceDriver, AnnounceGate
from bitswarm.session.clock import ManualClock
from bitswarm.tracker import TrackerTimeout
from bitswarm.tracker.client import AnnounceManager, AnnounceResult


def _driver(clock: ManualClock, announcer: object, gate: AnnounceGate, i: int) -> AnnounceDriver:
    return AnnounceDriver(
        clock=clock,
        swarm_hash=bytes([i % 256]) * 20,
        port=lambda: 6881,
        add_peer=lambda host, port: None,
        want_more_peers=lambda: False,
        announcer=cast(AnnounceManager, announcer),
        dht=None,
        dht_interval=1800.0,
        gate=gate,
    )


class _SwallowingAnnouncer:
    """An announcer whose first announce is in flight when the torrent stops and that turns the
    stop's cancel into a tracker failure, as Python 3.11's ``asyncio.wait_for`` does when the
    reply arrives together with the cancel (the UDP client waits for its replies with it)."""

    def __init__(self) -> None:
        self.tiers = [["udp://127.0.0.1:6969/announce"]]
        self.in_flight = asyncio.Event()
        self.stopped = 0

    async def start(self) -> AnnounceResult:
        self.in_flight.set()
        try:
            await asyncio.get_running_loop().create_future()  # never answered
        except asyncio.CancelledError:
            raise TrackerTimeout("the reply came with the cancel", url=self.tiers[0][0]) from None
        raise AssertionError("unreachable")

    async def announce(self) -> AnnounceResult:
        return await self.start()

    def seconds_until_next(self) -> float:
        return 1800.0

    async def stop(self, timeout: float | None = None) -> list[str]:
        self.stopped += 1
        return []


async def test_a_cancel_swallowed_during_an_announce_does_not_hang_the_stop() -> None:
    clock = ManualClock()
    announcer = _SwallowingAnnouncer()
    driver = _driver(clock, announcer, AnnounceGate(), 1)
    driver.start("t")
    await asyncio.wait_for(announcer.in_flight.wait(), 10)
    # before the fix the loop went to sleep for the tracker interval and stop() waited for it
    stopping = asyncio.ensure_future(driver.stop())
    await asyncio.wait({stopping}, timeout=10)  # a hang guard: asyncio.wait does not cancel
    hung = not stopping.done()
    stopping.cancel()
    assert not hung
    assert announcer.stopped == 1
    assert clock.pending == 0


class _SilentTracker:
    """An announcer whose tracker saw ``started`` and then stopped answering: its ``stopped``
    announce is given up when the timeout it is given runs out (AnnounceManager.stop), and never
    without one."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.tiers = [["udp://127.0.0.1:6969/announce"]]
        self.timeouts: list[float | None] = []

    async def start(self) -> AnnounceResult:
        return AnnounceResult(url=self.tiers[0][0], peers=(), interval=1800)

    async def announce(self) -> AnnounceResult:
        return await self.start()

    def seconds_until_next(self) -> float:
        return 1800.0

    async def stop(self, timeout: float | None = None) -> list[str]:
        self.timeouts.append(timeout)
        if timeout is None:
            await asyncio.get_running_loop().create_future()  # no answer, ever
        else:
            await self.clock.sleep(timeout)
        return []


async def test_a_closing_sessions_stopped_announces_share_one_deadline() -> None:
    clock = ManualClock()
    gate = AnnounceGate()
    trackers = [_SilentTracker(clock) for _ in range(200)]
    drivers = [_driver(clock, tracker, gate, i) for i, tracker in enumerate(trackers)]
    for i, driver in enumerate(drivers):
        driver.start(f"t{i}")
    await clock.advance(1.0)  # every first announce answered (``started``)
    gate.stop_by = clock.now() + STOPPED_ANNOUNCE_TIMEOUT  # Session.close sets it
    await clock.advance(STOPPED_ANNOUNCE_TIMEOUT / 2)  # the rest of the close took half of it
    closing = asyncio.ensure_future(asyncio.gather(*(d.stop() for d in drivers)))
    await clock.advance(0.0)
    assert not closing.done()  # all 200 sent at once, waiting for the silent tracker
    assert all(t.timeouts == [pytest.approx(STOPPED_ANNOUNCE_TIMEOUT / 2)] for t in trackers)
    await clock.advance(STOPPED_ANNOUNCE_TIMEOUT / 2)
    await asyncio.wait({closing}, timeout=10)  # a hang guard: the deadline ends them, not this
    hung = not closing.done()
    closing.cancel()
    assert not hung
    assert clock.pending == 0


async def test_first_announces_wait_while_the_gate_is_held() -> None:
    clock = ManualClock()
    gate = AnnounceGate()
    gate.hold()  # the daemon restoring its saved torrents
    trackers = [_SilentTracker(clock) for _ in range(3)]
    announced: list[int] = []
    for i, tracker in enumerate(trackers):
        tracker.start = _counting(tracker.start, announced, i)  # type: ignore[method-assign]
        _driver(clock, tracker, gate, i).start(f"t{i}")
    await clock.advance(60.0)
    assert announced == []
    gate.release()
    await clock.advance(60.0)
    assert sorted(announced) == [0, 1, 2]


def _counting(
    start: Callable[[], Awaitable[AnnounceResult]], seen: list[int], i: int
) -> Callable[[], Awaitable[AnnounceResult]]:
    async def counted() -> AnnounceResult:
        seen.append(i)
        return await start()

    return counted
