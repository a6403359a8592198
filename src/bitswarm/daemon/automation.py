"""The daemon's automation: the queue, seeding goals, the alternative speed schedule and the watch
folder. Decisions are pure functions of plain values (:func:`plan_queue`, :func:`goal_reason`,
:func:`in_schedule`); :class:`Automation` applies them once per tick to a :class:`Host` (the
daemon) with an injected clock, so all of it is unit-tested without sockets or sleeps.

Queue (qBittorrent's model, Transmission's settings): torrents the user wants running are taken in
queue order; the first ``queue_downloads_max`` incomplete ones download and the first
``queue_seeds_max`` complete ones seed, the others wait ``queued`` (held paused by the engine). A
running torrent that moved no payload for ``queue_stalled_minutes`` is *stalled*: it keeps running
but holds no slot, so the next one starts. Moving a torrent up the queue can hold one below it.

Seeding goals: a complete torrent whose ratio (uploaded over downloaded, or over its size when it
was added complete, as Transmission counts) reaches its ratio limit, or which has seeded for its
seed-time limit, is paused (``seed_goal_action = "pause"``) or removed with its data kept
(``"remove"``). Each torrent uses the global goals (mode 0), its own (mode 1) or none (mode 2).
A torrent that reached its goal and is resumed by hand seeds on until its limits change.

Alternative speed limits: ``alt_speed_enabled`` switches the global limits to ``alt_speed_down`` /
``alt_speed_up``; with ``alt_speed_time_enabled`` the schedule switches it on at
``alt_speed_time_begin`` and off at ``alt_speed_time_end`` (minutes after local midnight; an end
before the begin wraps past midnight) on the days of ``alt_speed_time_day`` (Transmission's bit mask:
Sunday 1, Monday 2, ... Saturday 64), as Transmission does: a manual switch lasts until the next edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import stat
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("bitswarm.daemon.automation")

#: How often the automation runs (seconds); a change (add, resume, settings) runs it at once.
TICK = 1.0
#: Each second only the torrents whose counters may move (connected, downloading) are looked at; a
#: full tick (every torrent: the queue, seeding time, stalls) runs after a change (:meth:`poke`),
#: when one of those finished or reached a goal, and at least every ``TICK`` seconds but, with many
#: torrents, no more than ``FULL_TICK_DUTY`` of the time (at most every ``FULL_TICK_MAX`` seconds):
#: 10,000 idle seeds cost a full tick every 15 s or so, not every second (issue 24).
FULL_TICK_DUTY = 0.002
FULL_TICK_MAX = 30.0
#: Pokes in a row (10,000 torrents starting) run full ticks at most this share of the time.
POKE_DUTY = 0.05
#: Sunday .. Saturday in Transmission's ``alt-speed-time-day`` mask.
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
ALL_DAYS = 127
#: The largest .torrent or .magnet file the watch folder reads.
MAX_WATCH_FILE = 16 * 1024 * 1024
#: Files in the watch folder younger than this (seconds since their last change) wait: they may
#: still be being written.
WATCH_MIN_AGE = 0.5


class SettingsError(ValueError):
    """A setting with a wrong type or out of range."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting: its type, default, bounds and the line docs/daemon.md shows."""

    kind: type
    default: Any
    doc: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()


_RATE_HI = float(1 << 40)
_ACTIONS = ("pause", "remove")

#: Every automation setting (settings.json keys). ``download_limit``/``upload_limit`` are the
#: daemon's global limits (bytes/s), listed here so the settings page and the API handle them alike.
SPECS: dict[str, Spec] = {
    # limits (bytes/s, 0 = unlimited) and the alternative-speed schedule
    "download_limit": Spec(int, 0, "global download limit, bytes/s (0: unlimited)", 0, _RATE_HI),
    "upload_limit": Spec(int, 0, "global upload limit, bytes/s (0: unlimited)", 0, _RATE_HI),
    "alt_speed_enabled": Spec(bool, False, "use the alternative limits now"),
    "alt_speed_down": Spec(int, 50_000, "alternative download limit, bytes/s (0: unlimited)", 0, _RATE_HI),
    "alt_speed_up": Spec(int, 50_000, "alternative upload limit, bytes/s (0: unlimited)", 0, _RATE_HI),
    "alt_speed_time_enabled": Spec(bool, False, "switch the alternative limits on a schedule"),
    "alt_speed_time_begin": Spec(int, 540, "schedule start, minutes after local midnight", 0, 1439),
    "alt_speed_time_end": Spec(int, 1020, "schedule end, minutes after local midnight", 0, 1439),
    "alt_speed_time_day": Spec(int, ALL_DAYS, "schedule days: Sun 1, Mon 2 ... Sat 64 (127: all)", 0, 127),
    # the queue
    "queue_downloads_enabled": Spec(bool, False, "limit the torrents downloading at once"),
    "queue_downloads_max": Spec(int, 5, "torrents downloading at once", 0, 10_000),
    "queue_seeds_enabled": Spec(bool, False, "limit the torrents seeding at once"),
    "queue_seeds_max": Spec(int, 10, "torrents seeding at once", 0, 10_000),
    "queue_stalled_enabled": Spec(bool, True, "stalled torrents hold no queue slot"),
    "queue_stalled_minutes": Spec(float, 30.0, "minutes without payload: stalled", 0.05, 100_000),
    # seeding goals
    "seed_ratio_enabled": Spec(bool, False, "stop seeding at a ratio (global goal)"),
    "seed_ratio_limit": Spec(float, 2.0, "the global ratio goal (uploaded / downloaded)", 0, 1e6),
    "seed_time_enabled": Spec(bool, False, "stop seeding after a time (global goal)"),
    "seed_time_minutes": Spec(float, 1440.0, "the global seeding-time goal, minutes", 0, 1e8),
    "seed_goal_action": Spec(str, "pause", "at a goal: pause, or remove (data kept)", choices=_ACTIONS),
    # the watch folder
    "watch_dir": Spec(str, "", "watch folder: .torrent and .magnet files here are added (empty: off)"),
    "watch_done_dir": Spec(str, "", "move added files here (empty: rename them NAME.added)"),
    "watch_category": Spec(str, "", "category of the torrents added from the watch folder"),
    "watch_paused": Spec(bool, False, "add watch-folder torrents paused"),
    # privacy (daemon/privacy.py): the IP blocklist and the SOCKS5 proxy
    "blocklist_enabled": Spec(bool, False, "never dial nor accept the addresses of the IP blocklist"),
    "blocklist_path": Spec(str, "", "blocklist file (P2P, DAT/ipfilter.dat or CIDR; gzip'd or not)"),
    "blocklist_url": Spec(str, "", "blocklist URL (http/https), used when blocklist_path is empty"),
    "proxy": Spec(str, "", "SOCKS5 proxy socks5://[user:pass@]host:port (empty: none; restart applies)"),
}


def check_setting(key: str, value: Any) -> Any:
    """``value`` as the setting ``key`` keeps it; SettingsError if unknown, of the wrong type or out
    of range (an int is accepted for a float setting, a whole float for an int one)."""
    spec = SPECS.get(key)
    if spec is None:
        raise SettingsError(f"unknown setting {key!r}")
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{key} must be true or false")
        return value
    if spec.kind is str:
        if not isinstance(value, str) or len(value) > 4096 or "\0" in value:
            raise SettingsError(f"{key} must be a string")
        if spec.choices and value not in spec.choices:
            raise SettingsError(f"{key} must be one of {', '.join(spec.choices)}")
        return _check_text(key, value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SettingsError(f"{key} must be a number")
    if spec.kind is int:
        if value != int(value):
            raise SettingsError(f"{key} must be a whole number")
        value = int(value)
    else:
        value = float(value)
    if (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi):
        raise SettingsError(f"{key} must be between {spec.lo:g} and {spec.hi:g}")
    return value


def _check_text(key: str, value: str) -> str:
    """The privacy settings' own rules: a SOCKS5 URL, an http(s) URL, an absolute path."""
    if not value:
        return value
    if key == "proxy":
        from bitswarm.session.proxy import parse_proxy

        try:
            parse_proxy(value)
        except ValueError as exc:
            raise SettingsError(f"proxy: {exc}") from None
    elif key == "blocklist_url" and not value.lower().startswith(("http://", "https://")):
        raise SettingsError("blocklist_url must be an http:// or https:// URL")
    elif key == "blocklist_path" and not value.startswith(("/", "~")):
        raise SettingsError("blocklist_path must be an absolute path")
    return value


def settings_view(saved: dict[str, Any]) -> dict[str, Any]:
    """Every automation setting: the saved value when it is valid, else the default."""
    out: dict[str, Any] = {}
    for key, spec in SPECS.items():
        try:
            out[key] = check_setting(key, saved[key]) if key in saved else spec.default
        except SettingsError:
            out[key] = spec.default
    return out


# -- the queue -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One torrent the user wants running (not paused by hand, not in error), in queue order."""

    id: str
    complete: bool  #: every wanted piece verified: a seed
    held: bool  #: waiting in the queue (paused by the automation)
    stalled: bool = False  #: running without payload for the stalled time
    holdable: bool = True  #: in the session and transferring (one still starting cannot be held yet)


@dataclass(slots=True)
class QueuePlan:
    release: list[str] = field(default_factory=list)  #: held torrents to run now
    hold: list[str] = field(default_factory=list)  #: running torrents to hold


def plan_queue(items: Iterable[QueueItem], *, max_downloads: int | None, max_seeds: int | None) -> QueuePlan:
    """Which torrents run: per kind (download, seed), the first ``max`` non-stalled ones in queue
    order (None: no limit). Stalled ones keep running without a slot; held ones beyond the slots
    stay held; running ones beyond them are held."""
    plan = QueuePlan()
    slots = {False: max_downloads, True: max_seeds}
    for item in items:
        limit = slots[item.complete]
        if limit is None:
            if item.held:
                plan.release.append(item.id)
            continue
        if item.stalled and not item.held:
            continue
        if limit > 0:
            slots[item.complete] = limit - 1
            if item.held:
                plan.release.append(item.id)
        elif not item.held and item.holdable:
            plan.hold.append(item.id)
    return plan


# -- seeding goals -------------------------------------------------------------------------------


def ratio_of(uploaded: int, downloaded: int, size: int) -> float:
    """Uploaded over downloaded (over the size when nothing was downloaded: added complete)."""
    base = downloaded if downloaded > 0 else size
    if base <= 0:
        return 0.0
    return uploaded / base


def goal_reason(
    *,
    ratio: float,
    seeding_seconds: float,
    ratio_limit: float | None,
    time_limit_minutes: float | None,
) -> str | None:
    """Why a seed has reached its goal (``ratio 2.00 >= 2.00``), or None."""
    if ratio_limit is not None and ratio >= ratio_limit:
        return f"ratio {ratio:.2f} reached the goal {ratio_limit:.2f}"
    if time_limit_minutes is not None and seeding_seconds >= time_limit_minutes * 60:
        return f"seeded {seeding_seconds / 60:.1f} min, the goal is {time_limit_minutes:g} min"
    return None


def effective_goals(settings: dict[str, Any], goals: dict[str, Any]) -> tuple[float | None, float | None]:
    """(ratio limit, seed-time limit in minutes) of one torrent: its own ``goals`` (``ratio_mode``,
    ``ratio_limit``, ``time_mode``, ``time_minutes``; mode 0 global, 1 own, 2 none) over the
    global settings."""
    ratio: float | None = None
    mode = goals.get("ratio_mode", 0)
    if mode == 1:
        ratio = float(goals.get("ratio_limit", 2.0))
    elif mode == 0 and settings["seed_ratio_enabled"]:
        ratio = float(settings["seed_ratio_limit"])
    minutes: float | None = None
    mode = goals.get("time_mode", 0)
    if mode == 1:
        minutes = float(goals.get("time_minutes", 1440.0))
    elif mode == 0 and settings["seed_time_enabled"]:
        minutes = float(settings["seed_time_minutes"])
    return ratio, minutes


def check_goals(value: Any) -> dict[str, Any]:
    """A torrent's seeding goals from the API: ``ratio_mode``/``time_mode`` 0 (global), 1 (own), 2
    (none), ``ratio_limit`` (>= 0), ``time_minutes`` (>= 0); SettingsError if malformed."""
    if not isinstance(value, dict):
        raise SettingsError("seeding goals must be an object")
    out: dict[str, Any] = {}
    for key, val in value.items():
        if key in ("ratio_mode", "time_mode"):
            if isinstance(val, bool) or val not in (0, 1, 2):
                raise SettingsError(f"{key} must be 0 (global), 1 (own limit) or 2 (unlimited)")
            out[key] = int(val)
        elif key in ("ratio_limit", "time_minutes"):
            if isinstance(val, bool) or not isinstance(val, int | float) or not 0 <= val <= 1e8:
                raise SettingsError(f"{key} must be a number >= 0")
            out[key] = float(val)
        else:
            raise SettingsError(f"unknown seeding goal {key!r}")
    return out


# -- the alternative speed schedule --------------------------------------------------------------


def day_bit(weekday: int) -> int:
    """Python's weekday (Monday 0) → Transmission's day bit (Sunday 1, Monday 2 ... Saturday 64)."""
    return 1 << ((weekday + 1) % 7)


def in_schedule(when: datetime, begin: int, end: int, days: int) -> bool:
    """Whether local time ``when`` is inside the window ``begin``..``end`` (minutes after midnight,
    end excluded; end < begin wraps past midnight, the part after midnight belongs to the day
    before) on one of ``days``."""
    minute = when.hour * 60 + when.minute
    today = day_bit(when.weekday())
    yesterday = day_bit((when.weekday() - 1) % 7)
    if begin == end:
        return False
    if begin < end:
        return bool(days & today) and begin <= minute < end
    return (minute >= begin and bool(days & today)) or (minute < end and bool(days & yesterday))


# -- the driver ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TorrentView:
    """What the automation reads of one torrent in a tick (the daemon builds it)."""

    id: str
    wanted: bool  #: the user wants it running (not paused by hand, not in error)
    complete: bool
    held: bool
    holdable: bool  #: in the session, downloading or seeding (can be held or released now)
    seeding: bool  #: seeding right now (counts seeding time)
    counters: tuple[int, int, int]  #: (engine handle identity, downloaded, uploaded) this session
    uploaded_ever: int
    downloaded_ever: int
    size: int
    seeding_seconds: float
    goals: dict[str, Any]
    goal_reached: bool


class Host(Protocol):
    """What the automation drives (the :class:`~bitswarm.daemon.Daemon`)."""

    def automation_settings(self) -> dict[str, Any]: ...

    def views(self, ids: Iterable[str] | None = None) -> list[TorrentView]:
        """Every torrent in queue order (``ids``: those torrents, in that order)."""
        ...

    def active_ids(self) -> list[str]:
        """The torrents whose counters may move now (connected to peers, or downloading)."""
        ...

    def account(self, torrent_id: str, downloaded: int, uploaded: int, seeding_seconds: float) -> None:
        """Add payload moved and time seeded since the last tick to the torrent's totals."""
        ...

    async def hold(self, torrent_id: str) -> None: ...

    async def release(self, torrent_id: str) -> None: ...

    async def goal_reached(self, torrent_id: str, action: str, reason: str) -> None: ...

    def apply_rates(self, download: int, upload: int) -> None: ...

    def set_alt_speed(self, enabled: bool) -> None:
        """Persist ``alt_speed_enabled`` (the schedule switched it)."""
        ...


class Automation:
    """Applies the queue, the goals and the schedule to ``host`` on every :meth:`tick`.

    ``clock`` gives monotonic seconds (stall and seeding times); ``wall`` gives the local time of
    the schedule. :meth:`run` ticks every :data:`TICK` seconds, or at once after :meth:`poke`."""

    def __init__(
        self,
        host: Host,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.host = host
        self.clock = clock
        self.wall = wall
        self._last: dict[str, tuple[int, int, int]] = {}  #: id → counters at the last tick
        self._seen: dict[str, float] = {}  #: id → when it was last accounted
        self._complete: dict[str, bool] = {}  #: id → complete when last accounted
        self._activity: dict[str, float] = {}  #: id → last payload (or start) while running
        self._last_tick: float | None = None
        self._in_window: bool | None = None
        self._rates: tuple[int, int] | None = None
        self._wake = asyncio.Event()
        self.extra: list[Callable[[], Awaitable[None]]] = []  #: more work per tick (the watch folder)

    def poke(self) -> None:
        """Run the next tick now (a torrent was added, resumed, moved in the queue; settings changed)."""
        self._wake.set()

    def stalled(self, torrent_id: str, minutes: float) -> bool:
        since = self._activity.get(torrent_id)
        return since is not None and self.clock() - since >= minutes * 60

    async def tick(self) -> QueuePlan:
        """One round: totals, schedule, goals, queue. Returns the queue decision applied."""
        now = self.clock()
        self._last_tick = now
        settings = self.host.automation_settings()
        self._schedule(settings)
        views = self.host.views()  # once per tick: kept up to date here
        views = [self._count(v, now) for v in views]
        seen = {v.id for v in views}
        for gone in set(self._last) - seen:
            self._last.pop(gone, None)
            self._activity.pop(gone, None)
            self._seen.pop(gone, None)
            self._complete.pop(gone, None)
        fired: set[str] = set()
        for v in views:
            if v.wanted and v.complete and not v.goal_reached and await self._check_goal(v, settings):
                fired.add(v.id)  # paused or removed now: out of the queue
        views = [v for v in views if v.id not in fired]
        plan = self._plan(views, settings)
        for tid in plan.hold:
            await self.host.hold(tid)
        for tid in plan.release:
            self._activity[tid] = self.clock()  # a released torrent gets the stalled time from now
            await self.host.release(tid)
        for job in self.extra:
            await job()
        return plan

    async def tick_active(self) -> QueuePlan | None:
        """The cheap tick between full ones: account and check the seeding goals of the torrents
        whose counters may move; a full :meth:`tick` (its plan returned) when one of them finished
        or reached its goal. Idle torrents cost nothing here."""
        ids = self.host.active_ids()
        if not ids:
            return None
        now = self.clock()
        settings = self.host.automation_settings()
        for v in self.host.views(ids):
            was = self._complete.get(v.id)
            v = self._count(v, now)
            if was is not None and was != v.complete:
                return await self.tick()  # finished (or wants more): the queue decides again
            if v.wanted and v.complete and not v.goal_reached and await self._check_goal(v, settings):
                return await self.tick()  # paused or removed: the next one may start
        return None

    def _count(self, v: TorrentView, now: float) -> TorrentView:
        """Account the payload moved since it was last accounted (and the time seeded); the view
        with the new totals."""
        key, down, up = v.counters
        last = self._last.get(v.id)
        dt = max(0.0, now - self._seen.get(v.id, now))
        self._seen[v.id] = now
        self._complete[v.id] = v.complete
        moved = d_down = d_up = 0
        secs = 0.0
        if last is not None and last[0] == key and key != 0:
            d_down, d_up = max(0, down - last[1]), max(0, up - last[2])
            secs = dt if v.seeding else 0.0
        elif key != 0:  # a new engine handle: its counters start at 0
            d_down, d_up = down, up
        moved = d_down if not v.complete else d_up
        if d_down or d_up or secs:
            self.host.account(v.id, d_down, d_up, secs)
        self._last[v.id] = v.counters
        running = v.wanted and not v.held and key != 0
        if not running:
            self._activity.pop(v.id, None)
        elif moved or v.id not in self._activity or (last is not None and last[0] != key):
            self._activity[v.id] = now
        if not (d_down or d_up or secs):
            return v
        return replace(
            v,
            downloaded_ever=v.downloaded_ever + d_down,
            uploaded_ever=v.uploaded_ever + d_up,
            seeding_seconds=v.seeding_seconds + secs,
        )

    async def _check_goal(self, v: TorrentView, settings: dict[str, Any]) -> bool:
        ratio_limit, minutes = effective_goals(settings, v.goals)
        reason = goal_reason(
            ratio=ratio_of(v.uploaded_ever, v.downloaded_ever, v.size),
            seeding_seconds=v.seeding_seconds,
            ratio_limit=ratio_limit,
            time_limit_minutes=minutes,
        )
        if reason is not None:
            log.info("%s: seeding goal reached (%s): %s", v.id, reason, settings["seed_goal_action"])
            await self.host.goal_reached(v.id, settings["seed_goal_action"], reason)
            return True
        return False

    def _plan(self, views: list[TorrentView], settings: dict[str, Any]) -> QueuePlan:
        minutes = float(settings["queue_stalled_minutes"])
        stall_on = bool(settings["queue_stalled_enabled"])
        items = [
            QueueItem(
                v.id,
                v.complete,
                v.held,
                stalled=stall_on and not v.held and self.stalled(v.id, minutes),
                holdable=v.holdable,
            )
            for v in views
            if v.wanted
        ]
        downloads = int(settings["queue_downloads_max"]) if settings["queue_downloads_enabled"] else None
        seeds = int(settings["queue_seeds_max"]) if settings["queue_seeds_enabled"] else None
        return plan_queue(items, max_downloads=downloads, max_seeds=seeds)

    def _schedule(self, settings: dict[str, Any]) -> None:
        alt = bool(settings["alt_speed_enabled"])
        if settings["alt_speed_time_enabled"]:
            inside = in_schedule(
                self.wall(),
                int(settings["alt_speed_time_begin"]),
                int(settings["alt_speed_time_end"]),
                int(settings["alt_speed_time_day"]),
            )
            if inside != self._in_window:  # an edge (or the first tick): the schedule decides
                self._in_window = inside
                if inside != alt:
                    alt = inside
                    self.host.set_alt_speed(alt)
        else:
            self._in_window = None
        rates = (
            (int(settings["alt_speed_down"]), int(settings["alt_speed_up"]))
            if alt
            else (int(settings["download_limit"]), int(settings["upload_limit"]))
        )
        if rates != self._rates:
            self._rates = rates
            self.host.apply_rates(*rates)

    def rates_changed(self) -> None:
        """The limits were set elsewhere: apply them again at the next tick."""
        self._rates = None
        self.poke()

    def full_period(self, cost: float) -> float:
        """Seconds between full ticks when nothing pokes, for a full tick that took ``cost``."""
        return min(FULL_TICK_MAX, max(TICK, cost / FULL_TICK_DUTY))

    async def run(self) -> None:
        """Tick until cancelled (a failing tick is logged, the next one runs): every ``TICK`` the
        active torrents (:meth:`tick_active`), all of them after a poke and every
        :meth:`full_period`."""
        cost = 0.0
        last_full: float | None = None
        while True:
            poked = self._wake.is_set()
            self._wake.clear()
            full = poked or last_full is None or time.monotonic() - last_full >= self.full_period(cost)
            try:
                if full:
                    started = time.monotonic()
                    await self.tick()
                    last_full = time.monotonic()
                    cost = last_full - started
                else:
                    await self.tick_active()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("automation tick failed")
            # not ``asyncio.wait_for``: in Python 3.11 it swallows a cancel (the daemon closing)
            # that arrives in the same turn as a poke, and this loop ran on
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self._wake.wait()
            if last_full is not None and self._wake.is_set():  # pokes in a row: bounded work
                gap = min(FULL_TICK_MAX, cost / POKE_DUTY) - (time.monotonic() - last_full)
                if gap > 0:
                    await asyncio.sleep(gap)


# -- the watch folder ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchResult:
    path: Path
    outcome: str  #: "added", "duplicate" or "invalid"
    detail: str = ""
    moved_to: Path | None = None


class WatchFolder:
    """Adds the ``.torrent`` and ``.magnet`` files found in ``folder``; each is renamed
    ``NAME.added`` (or moved to ``done_dir``) once added (also when the torrent was already there),
    ``NAME.invalid`` when it cannot be added. ``add_torrent(bytes)`` / ``add_magnet(text)`` add one
    and raise ``ValueError`` (or an error whose ``code`` is ``duplicate``) when they cannot.

    :meth:`scan` does one pass (unit-tested directly); :meth:`watch` runs ``watchfiles`` on the
    folder and calls ``on_change`` for each batch of changes (the daemon pokes its automation,
    whose tick calls :meth:`scan`)."""

    def __init__(
        self,
        folder: Path,
        add_torrent: Callable[[bytes], Awaitable[object]],
        add_magnet: Callable[[str], Awaitable[object]],
        *,
        done_dir: Path | None = None,
        min_age: float = WATCH_MIN_AGE,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.done_dir = done_dir
        self.add_torrent = add_torrent
        self.add_magnet = add_magnet
        self.min_age = min_age
        self.wall = wall
        self.results: list[WatchResult] = []  #: the last 100 outcomes (for the API and tests)

    def candidates(self) -> list[tuple[Path, int, float]]:
        """(path, size, mtime) of each .torrent and .magnet regular file in the folder."""
        try:
            entries = sorted(self.folder.iterdir())
        except OSError:
            return []
        out: list[tuple[Path, int, float]] = []
        for p in entries:
            if p.suffix.lower() not in (".torrent", ".magnet"):
                continue
            try:
                st = p.stat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out.append((p, st.st_size, st.st_mtime))
        return out

    async def scan(self) -> list[WatchResult]:
        """Add every ready file in the folder once; the results of this pass. (The listing and the
        reads run in a thread: no disk I/O on the event loop.)"""
        out: list[WatchResult] = []
        for path, size, mtime in await asyncio.to_thread(self.candidates):
            if self.wall() - mtime < self.min_age:
                continue  # still being written: the next pass takes it
            result = await self._take(path, size)
            out.append(result)
        self.results = (self.results + out)[-100:]
        return out

    async def _take(self, path: Path, size: int) -> WatchResult:
        outcome, detail = "added", ""
        try:
            if size > MAX_WATCH_FILE:
                raise ValueError(f"larger than {MAX_WATCH_FILE} bytes")
            data = await asyncio.to_thread(path.read_bytes)
            if path.suffix.lower() == ".magnet":
                text = data.decode("utf-8", "replace")
                link = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("magnet:")), "")
                if not link:
                    raise ValueError("no magnet: link in the file")
                await self.add_magnet(link)
            else:
                await self.add_torrent(data)
        except OSError as exc:
            log.warning("watch folder: cannot read %s: %s", path, exc)
            return WatchResult(path, "unreadable", str(exc))
        except Exception as exc:  # the daemon's typed refusal (bad torrent, bad magnet, duplicate)
            if getattr(exc, "code", "") == "duplicate":
                outcome, detail = "duplicate", str(exc)
            else:
                outcome, detail = "invalid", str(exc)
                log.warning("watch folder: %s is not a torrent: %s", path.name, exc)
        moved = await asyncio.to_thread(self._dispose, path, outcome)
        return WatchResult(path, outcome, detail, moved)

    def _dispose(self, path: Path, outcome: str) -> Path | None:
        if outcome == "invalid":
            target = _free_name(path.with_name(path.name + ".invalid"))
        elif self.done_dir is not None:
            self.done_dir.mkdir(parents=True, exist_ok=True)
            target = _free_name(self.done_dir / path.name)
        else:
            target = _free_name(path.with_name(path.name + ".added"))
        try:
            os.replace(path, target)
        except OSError as exc:  # another process took it: nothing more to do
            log.warning("watch folder: cannot rename %s: %s", path, exc)
            return None
        return target

    async def watch(self, on_change: Callable[[], None], stop: asyncio.Event) -> None:
        """Call ``on_change`` whenever files change in the folder (``watchfiles``), until ``stop``."""
        from watchfiles import awatch

        await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
        on_change()
        async for _changes in awatch(self.folder, stop_event=stop, debounce=200, step=50, recursive=False):
            on_change()


def _free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2`` ... whichever does not exist."""
    if not path.exists():
        return path
    for i in range(1, 10_000):
        candidate = path.with_name(f"{path.name}.{i}")
        if not candidate.exists():
            return candidate
    return path
