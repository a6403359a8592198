"""Stopping a torrent's announces (issue 24: a daemon with 10,000 torrents must stop in seconds)."""

from __future__ import annotations

import asyncio
from typing import cast

from bitswarm.session.announce import AnnounceDriver
from bitswarm.session.clock import ManualClock
from bitswarm.tracker import TrackerTimeout
from bitswarm.tracker.client import AnnounceManager, AnnounceResult


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
    driver = AnnounceDriver(
        clock=clock,
        swarm_hash=b"\x01" * 20,
        port=lambda: 6881,
        add_peer=lambda host, port: None,
        want_more_peers=lambda: False,
        announcer=cast(AnnounceManager, announcer),
        dht=None,
        dht_interval=1800.0,
    )
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
