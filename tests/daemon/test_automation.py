"""The daemon's automation without sockets: queue decisions, seeding goals, the alternative speed
schedule and the watch folder, driven by a fake host and an injected clock."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bitswarm.daemon.automation import (
    SPECS,
    Automation,
    QueueItem,
    SettingsError,
    TorrentView,
    WatchFolder,
    check_goals,
    check_setting,
    effective_goals,
    goal_reason,
    in_schedule,
    plan_queue,
    ratio_of,
    settings_view,
)

# -- pure decisions ------------------------------------------------------------------------------


def test_queue_takes_the_first_in_order_and_holds_the_rest() -> None:
    items = [QueueItem("a", False, False), QueueItem("b", False, False), QueueItem("c", False, True)]
    plan = plan_queue(items, max_downloads=1, max_seeds=None)
    assert plan.hold == ["b"] and plan.release == []
    # the one at the top finishes: b and c move up
    items = [QueueItem("a", True, False), QueueItem("b", False, True), QueueItem("c", False, True)]
    plan = plan_queue(items, max_downloads=1, max_seeds=None)
    assert plan.release == ["b"] and plan.hold == []


def test_stalled_torrents_hold_no_slot_and_seeds_have_their_own_queue() -> None:
    items = [
        QueueItem("stalled", False, False, stalled=True),
        QueueItem("next", False, True),
        QueueItem("seed1", True, False),
        QueueItem("seed2", True, False),
    ]
    plan = plan_queue(items, max_downloads=1, max_seeds=1)
    assert plan.release == ["next"] and plan.hold == ["seed2"]


def test_no_limit_releases_everything_and_starting_torrents_are_not_held() -> None:
    plan = plan_queue(
        [QueueItem("a", False, True), QueueItem("b", True, True)], max_downloads=None, max_seeds=None
    )
    assert plan.release == ["a", "b"]
    items = [QueueItem("a", False, False), QueueItem("b", False, False, holdable=False)]
    assert plan_queue(items, max_downloads=1, max_seeds=None).hold == []
    assert plan_queue(items, max_downloads=0, max_seeds=None).hold == ["a"]


def test_ratio_and_goals() -> None:
    assert ratio_of(200, 100, 500) == 2.0
    assert ratio_of(250, 0, 500) == 0.5  # added complete: over the size, as Transmission counts
    assert ratio_of(0, 0, 0) == 0.0
    assert goal_reason(ratio=2.0, seeding_seconds=0, ratio_limit=2.0, time_limit_minutes=None)
    assert goal_reason(ratio=1.99, seeding_seconds=59, ratio_limit=2.0, time_limit_minutes=1) is None
    assert "seeded" in (
        goal_reason(ratio=0, seeding_seconds=60, ratio_limit=None, time_limit_minutes=1) or ""
    )
    glob = settings_view({"seed_ratio_enabled": True, "seed_ratio_limit": 1.5})
    assert effective_goals(glob, {}) == (1.5, None)
    assert effective_goals(glob, {"ratio_mode": 2}) == (None, None)
    assert effective_goals(
        glob, {"ratio_mode": 1, "ratio_limit": 0.5, "time_mode": 1, "time_minutes": 3}
    ) == (
        0.5,
        3.0,
    )
    with pytest.raises(SettingsError):
        check_goals({"ratio_mode": 3})
    with pytest.raises(SettingsError):
        check_goals({"ratio_limit": -1})
    with pytest.raises(SettingsError):
        check_goals({"bogus": 1})


def test_settings_are_typed_and_bounded() -> None:
    assert check_setting("queue_downloads_max", 3.0) == 3
    assert check_setting("seed_ratio_limit", 2) == 2.0
    for key, value in [
        ("queue_downloads_max", -1), ("queue_downloads_max", 1.5), ("queue_downloads_enabled", 1),
        ("seed_goal_action", "delete"), ("alt_speed_time_begin", 1440), ("nope", 1),
        ("seed_ratio_limit", float("nan")),
    ]:  # fmt: skip
        with pytest.raises(SettingsError):
            check_setting(key, value)
    view = settings_view({"queue_downloads_max": "x", "queue_seeds_max": 2})
    assert (
        view["queue_downloads_max"] == SPECS["queue_downloads_max"].default and view["queue_seeds_max"] == 2
    )


def test_schedule_window_days_and_midnight() -> None:
    wed = datetime(2026, 12, 2, 10, 0)  # a Wednesday
    assert wed.weekday() == 2
    assert in_schedule(wed, 540, 1020, 127)
    assert not in_schedule(wed.replace(hour=17), 540, 1020, 127)  # the end is excluded
    assert not in_schedule(wed, 540, 1020, 65)  # weekends only
    assert in_schedule(wed, 540, 1020, 1 << 3)  # Wednesday's bit
    # 22:00 .. 06:00: Wednesday 23:00 and Thursday 05:00 belong to Wednesday's window
    assert in_schedule(wed.replace(hour=23), 1320, 360, 1 << 3)
    assert in_schedule(datetime(2026, 12, 3, 5, 0), 1320, 360, 1 << 3)
    assert not in_schedule(datetime(2026, 12, 3, 23, 0), 1320, 360, 1 << 3)
    assert not in_schedule(wed, 600, 600, 127)


# -- the driver with a fake host -----------------------------------------------------------------


@dataclass
class FakeTorrent:
    id: str
    complete: bool = False
    paused: bool = False
    held: bool = False
    down: int = 0
    up: int = 0
    size: int = 1000
    uploaded_ever: int = 0
    downloaded_ever: int = 0
    seeding_seconds: float = 0.0
    goals: dict[str, Any] = field(default_factory=dict)
    goal_reached: bool = False
    active: bool = False  #: connected or downloading: looked at by the cheap tick


class FakeHost:
    def __init__(self, *torrents: FakeTorrent, **settings: Any) -> None:
        self.torrents = list(torrents)
        self.saved: dict[str, Any] = dict(settings)
        self.rates: list[tuple[int, int]] = []
        self.actions: list[tuple[str, str]] = []
        self.viewed = 0  #: views built

    def automation_settings(self) -> dict[str, Any]:
        return settings_view(self.saved)

    def active_ids(self) -> list[str]:
        return [t.id for t in self.torrents if t.active]

    def views(self, ids: Iterable[str] | None = None) -> list[TorrentView]:
        wanted = None if ids is None else list(ids)
        torrents = (
            self.torrents if wanted is None else [t for tid in wanted for t in self.torrents if t.id == tid]
        )
        self.viewed += len(torrents)
        return [
            TorrentView(
                id=t.id,
                wanted=not t.paused,
                complete=t.complete,
                held=t.held,
                holdable=True,
                seeding=t.complete and not t.held and not t.paused,
                counters=(1, t.down, t.up),
                uploaded_ever=t.uploaded_ever,
                downloaded_ever=t.downloaded_ever,
                size=t.size,
                seeding_seconds=t.seeding_seconds,
                goals=t.goals,
                goal_reached=t.goal_reached,
            )
            for t in torrents
        ]

    def get(self, tid: str) -> FakeTorrent:
        return next(t for t in self.torrents if t.id == tid)

    def account(self, torrent_id: str, downloaded: int, uploaded: int, seeding_seconds: float) -> None:
        t = self.get(torrent_id)
        t.downloaded_ever += downloaded
        t.uploaded_ever += uploaded
        t.seeding_seconds += seeding_seconds

    async def hold(self, torrent_id: str) -> None:
        self.get(torrent_id).held = True
        self.actions.append(("hold", torrent_id))

    async def release(self, torrent_id: str) -> None:
        self.get(torrent_id).held = False
        self.actions.append(("release", torrent_id))

    async def goal_reached(self, torrent_id: str, action: str, reason: str) -> None:
        t = self.get(torrent_id)
        t.goal_reached = True
        if action == "remove":
            self.torrents.remove(t)
        else:
            t.paused = True
        self.actions.append((action, torrent_id))

    def apply_rates(self, download: int, upload: int) -> None:
        self.rates.append((download, upload))

    def set_alt_speed(self, enabled: bool) -> None:
        self.saved["alt_speed_enabled"] = enabled


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_a_stalled_download_gives_its_slot_to_the_next() -> None:
    clock = Clock()
    a, b = FakeTorrent("a"), FakeTorrent("b")
    host = FakeHost(a, b, queue_downloads_enabled=True, queue_downloads_max=1, queue_stalled_minutes=2)
    auto = Automation(host, clock=clock)
    await auto.tick()
    assert host.actions == [("hold", "b")]
    for _ in range(5):  # a moves payload every 30 s: never stalled
        clock.t += 30
        a.down += 100
        await auto.tick()
    assert b.held and a.downloaded_ever == 500
    clock.t += 119
    await auto.tick()
    assert b.held
    clock.t += 2  # 2 minutes without payload: a is stalled, b gets the slot, a keeps running
    await auto.tick()
    assert not b.held and not a.held
    a.down += 1  # a moves again: it takes a slot back, b (below it) waits again
    clock.t += 1
    await auto.tick()
    assert b.held and not a.held


async def test_ratio_goal_pauses_and_time_goal_removes() -> None:
    clock = Clock()
    s1 = FakeTorrent("s1", complete=True, size=1000)
    s2 = FakeTorrent(
        "s2", complete=True, size=1000, goals={"ratio_mode": 2, "time_mode": 1, "time_minutes": 1}
    )
    host = FakeHost(s1, s2, seed_ratio_enabled=True, seed_ratio_limit=1.0)
    auto = Automation(host, clock=clock)
    await auto.tick()
    s1.up = 999
    s2.up = 5000  # s2 has no ratio goal
    clock.t += 10
    await auto.tick()
    assert host.actions == []
    s1.up = 1000
    clock.t += 10
    await auto.tick()
    assert host.actions == [("pause", "s1")] and s1.paused and s1.uploaded_ever == 1000
    host.saved["seed_goal_action"] = "remove"
    clock.t += 41  # s2 has seeded 61 s
    await auto.tick()
    assert ("remove", "s2") in host.actions and s2 not in host.torrents


async def test_schedule_switches_at_the_edges_and_a_manual_switch_lasts_until_the_next() -> None:
    now = [datetime(2026, 12, 2, 8, 59)]
    host = FakeHost(
        alt_speed_time_enabled=True, alt_speed_time_begin=540, alt_speed_time_end=600,
        alt_speed_down=1000, alt_speed_up=2000, download_limit=0, upload_limit=0,
    )  # fmt: skip
    auto = Automation(host, clock=Clock(), wall=lambda: now[0])
    await auto.tick()
    assert host.rates == [(0, 0)] and not host.saved.get("alt_speed_enabled")
    now[0] = now[0].replace(hour=9, minute=0)
    await auto.tick()
    assert host.saved["alt_speed_enabled"] is True and host.rates[-1] == (1000, 2000)
    host.saved["alt_speed_enabled"] = False  # switched off by hand inside the window
    await auto.tick()
    assert host.rates[-1] == (0, 0)
    now[0] = now[0].replace(minute=30)
    await auto.tick()
    assert host.rates[-1] == (0, 0)  # still off: no edge yet
    now[0] = now[0].replace(hour=10, minute=0)
    await auto.tick()
    assert host.saved["alt_speed_enabled"] is False and host.rates[-1] == (0, 0)


# -- the watch folder ----------------------------------------------------------------------------


class DuplicateError(Exception):
    code = "duplicate"


async def test_watch_folder_adds_renames_and_marks_invalid(tmp_path: Path) -> None:
    added: list[Any] = []

    async def add_torrent(data: bytes) -> object:
        if not data.startswith(b"d"):
            raise ValueError("not a valid torrent")
        if data in added:
            raise DuplicateError("already added")
        added.append(data)
        return None

    async def add_magnet(link: str) -> object:
        added.append(link)
        return None

    folder = tmp_path / "watch"
    folder.mkdir()
    (folder / "good.torrent").write_bytes(b"d4:infoe")
    (folder / "bad.torrent").write_bytes(b"garbage")
    (folder / "link.magnet").write_text("# comment\nmagnet:?xt=urn:btih:" + "ab" * 20 + "\n")
    (folder / "empty.magnet").write_text("nothing here\n")
    (folder / "notes.txt").write_text("ignored")
    (folder / "fresh.torrent").write_bytes(b"d4:infoe")
    old = 1_000_000_000
    for p in folder.iterdir():
        if p.name != "fresh.torrent":
            os.utime(p, (old, old))
    watch = WatchFolder(folder, add_torrent, add_magnet, wall=lambda: old + 10)
    out = {r.path.name: r.outcome for r in await watch.scan()}
    assert out == {
        "good.torrent": "added",
        "bad.torrent": "invalid",
        "link.magnet": "added",
        "empty.magnet": "invalid",
    }
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [
            "good.torrent.added",
            "bad.torrent.invalid",
            "link.magnet.added",
            "empty.magnet.invalid",
            "notes.txt",
            "fresh.torrent",
        ]
    )  # fresh.torrent was written a moment ago: the next pass takes it
    assert added == [b"d4:infoe", "magnet:?xt=urn:btih:" + "ab" * 20]
    # the same torrent dropped again: a duplicate, moved to the done folder
    watch = replace_done(watch, tmp_path / "done")
    (folder / "again.torrent").write_bytes(b"d4:infoe")
    os.utime(folder / "again.torrent", (old, old))
    watch.wall = lambda: old + 10**9
    out = {r.path.name: r.outcome for r in await watch.scan()}
    assert out == {"again.torrent": "duplicate", "fresh.torrent": "duplicate"}
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["again.torrent", "fresh.torrent"]


def replace_done(watch: WatchFolder, done: Path) -> WatchFolder:
    watch.done_dir = done
    return watch


def test_views_are_frozen() -> None:
    v = TorrentView("a", True, False, False, True, False, (0, 0, 0), 0, 0, 0, 0.0, {}, False)
    assert replace(v, held=True).held


def test_docs_list_every_setting() -> None:
    """docs/daemon.md's settings table has a row for every setting."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text()
    missing = [k for k in SPECS if f"| `{k}` |" not in doc]
    assert not missing, missing


# -- many torrents: the cheap tick (issue 24) ----------------------------------------------------


async def test_the_cheap_tick_looks_only_at_active_torrents_and_idle_seeding_time_is_not_lost() -> None:
    clock = Clock()
    seeds = [FakeTorrent(f"s{i}", complete=True) for i in range(100)]
    busy = FakeTorrent("busy", complete=True, active=True)
    host = FakeHost(busy, *seeds)
    auto = Automation(host, clock=clock)
    await auto.tick()
    host.viewed = 0
    for _ in range(10):
        clock.t += 1
        busy.up += 10
        assert await auto.tick_active() is None
    assert host.viewed == 10  # one view a tick: the active torrent's
    assert busy.uploaded_ever == 100 and busy.seeding_seconds == 10
    assert seeds[0].seeding_seconds == 0
    await auto.tick()  # the next full tick accounts the idle seeds' 10 s
    assert all(s.seeding_seconds == 10 for s in seeds)
    assert busy.seeding_seconds == 10


async def test_an_active_download_that_finishes_runs_the_queue_at_once() -> None:
    clock = Clock()
    a, b = FakeTorrent("a", active=True), FakeTorrent("b")
    host = FakeHost(a, b, queue_downloads_enabled=True, queue_downloads_max=1)
    auto = Automation(host, clock=clock)
    await auto.tick()
    assert host.actions == [("hold", "b")]
    clock.t += 1
    assert await auto.tick_active() is None
    a.complete = True  # a seeds now: its download slot goes to b
    clock.t += 1
    plan = await auto.tick_active()
    assert plan is not None and plan.release == ["b"] and not b.held


async def test_a_ratio_goal_reached_between_full_ticks_is_acted_on() -> None:
    clock = Clock()
    a = FakeTorrent("a", complete=True, active=True, size=100, goals={"ratio_mode": 1, "ratio_limit": 1.0})
    host = FakeHost(a)
    auto = Automation(host, clock=clock)
    await auto.tick()
    a.up = 150
    clock.t += 1
    await auto.tick_active()
    assert ("pause", "a") in host.actions


def test_full_ticks_of_many_torrents_are_spread_out() -> None:
    auto = Automation(FakeHost(), clock=Clock())
    assert auto.full_period(0.0001) == 1.0  # a few torrents: every second, as before
    assert 10.0 <= auto.full_period(0.03) <= 30.0  # 10,000 torrents
    assert auto.full_period(1.0) == 30.0


async def test_a_poke_arriving_with_the_close_does_not_keep_the_loop_running() -> None:
    """The daemon pokes the automation when its start-up batch is open and cancels it on close; a
    poke and a cancel in the same turn were swallowed by Python 3.11's ``asyncio.wait_for``."""
    auto = Automation(FakeHost(), clock=Clock())
    task = asyncio.ensure_future(auto.run())
    for _ in range(5):
        await asyncio.sleep(0)  # the first tick ran, the loop waits for the next
    auto.poke()
    task.cancel()
    await asyncio.wait({task}, timeout=10)  # a hang guard: asyncio.wait does not cancel
    hung = not task.done()
    task.cancel()
    assert not hung and task.cancelled()
