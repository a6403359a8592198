"""Announces of many torrents in one session (issue 24): per-tracker limit and start-up spreading."""

from __future__ import annotations

import asyncio
import random

from bitswarm.session.announce import (
    ANNOUNCE_SPREAD,
    ANNOUNCE_WINDOW,
    MAX_ANNOUNCE_JITTER,
    AnnounceGate,
    _tracker_key,
    session_gate,
)


def test_a_torrent_started_alone_announces_at_once() -> None:
    gate = AnnounceGate(rng=random.Random(1))
    assert gate.first_delay(100.0) == 0.0
    assert gate.first_delay(100.0 + ANNOUNCE_WINDOW + 1) == 0.0  # the first was long ago


def test_many_torrents_starting_together_spread_their_first_announces() -> None:
    gate = AnnounceGate(rng=random.Random(1))
    delays = [gate.first_delay(100.0) for _ in range(10_000)]
    assert delays[0] == 0.0
    assert max(delays) <= MAX_ANNOUNCE_JITTER
    assert max(delays) > MAX_ANNOUNCE_JITTER * 0.9
    assert max(delays[:200]) <= 200 / ANNOUNCE_SPREAD  # the spread grows with the crowd
    in_first_second = sum(1 for d in delays if d < 1.0)
    assert in_first_second < 1_500  # not 10,000 announces at once


async def test_announces_to_one_tracker_are_limited_in_flight() -> None:
    gate = AnnounceGate(per_tracker=3)
    in_flight = peak = 0

    async def announce(key: str) -> None:
        nonlocal in_flight, peak
        async with gate.slot(key):
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    await asyncio.gather(*(announce("tracker:6969") for _ in range(20)))
    assert peak == 3
    assert gate.slot("a:1") is not gate.slot("b:1")


def test_the_tracker_key_is_the_first_trackers_host_and_port() -> None:
    assert _tracker_key([["udp://127.0.0.1:6969/announce", "http://x/a"], ["http://y/"]]) == "127.0.0.1:6969"
    assert _tracker_key([]) == ""
    assert _tracker_key(None) == ""


def test_one_gate_per_session() -> None:
    class S:
        pass

    a, b = S(), S()
    assert session_gate(a) is session_gate(a)
    assert session_gate(a) is not session_gate(b)
