"""Transport-independent tracker logic: access rules (open / whitelist / private), numwant limits,
interval jitter and the counters behind ``/stats`` and ``/metrics``.

Both front ends (:mod:`.http`, :mod:`.udp`) call into one :class:`TrackerCore`; the swarm state
itself lives in a store (:class:`~.state.MemoryStore` or :class:`~.redis_state.RedisStore`).
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from typing import Any

from bitswarm.tracker.server.config import Mode, TrackerConfig
from bitswarm.tracker.server.state import MemoryStore


class Rejected(Exception):
    """An announce or scrape the tracker refuses; ``kind`` names the metric, ``reason`` is sent back
    as the BEP 3 ``failure reason`` (HTTP) or a BEP 15 error (UDP)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class TrackerCore:
    """Shared state of one tracker: config, store, whitelist, passkeys and counters."""

    def __init__(self, config: TrackerConfig, store: Any) -> None:
        self.config = config
        self.store: Any = store
        #: held around every use of a synchronous store: the UDP front end runs in its own thread.
        self.lock = threading.Lock()
        self.whitelist: set[bytes] = set()
        #: passkey → user label (BEP 27 private trackers identify users by a key in the URL).
        self.passkeys: dict[str, str] = {}
        self.started = time.time()
        self.announces = Counter[str]()  # by transport
        self.scrapes = Counter[str]()
        self.errors = Counter[str]()  # by kind
        self.numwant_default = config.numwant_default
        self.numwant_max = config.numwant_max
        # A small ring of pre-chosen jittered intervals: no random call on the hot path.
        rng = random.Random()
        self.intervals = [config.interval + rng.randrange(max(1, config.interval_jitter)) for _ in range(64)]
        self._iv = 0

    @property
    def memory(self) -> MemoryStore | None:
        return self.store if isinstance(self.store, MemoryStore) else None

    def next_interval(self) -> int:
        self._iv = (self._iv + 1) & 63
        return self.intervals[self._iv]

    def numwant(self, asked: int | None) -> int:
        if asked is None or asked < 0:
            return self.numwant_default
        return asked if asked <= self.numwant_max else self.numwant_max

    def check(self, info_hash: bytes, passkey: str | None) -> None:
        """Raise :class:`Rejected` unless this announce/scrape is allowed under the mode."""
        mode = self.config.mode
        if mode is Mode.OPEN:
            return
        if mode is Mode.PRIVATE:
            if passkey is None:
                raise Rejected("passkey", "this tracker is private: announce to /announce/<passkey>")
            if passkey not in self.passkeys:
                raise Rejected("passkey", "unknown passkey")
            if not self.whitelist:
                return  # private without a whitelist: any torrent of a registered user
        if info_hash not in self.whitelist:
            raise Rejected("whitelist", "info_hash not whitelisted")

    def new_passkey(self, user: str) -> str:
        key = secrets.token_hex(16)
        self.passkeys[key] = user
        return key

    # ------------------------------------------------------------------------------------ ops

    async def stats(self) -> dict[str, Any]:
        torrents, seeders, leechers = await self._counts()
        return {
            "uptime": round(time.time() - self.started, 3),
            "mode": self.config.mode.value,
            "torrents": torrents,
            "peers": seeders + leechers,
            "seeders": seeders,
            "leechers": leechers,
            "announces": dict(self.announces),
            "scrapes": dict(self.scrapes),
            "errors": dict(self.errors),
            "whitelist": len(self.whitelist),
            "passkeys": len(self.passkeys),
        }

    async def _counts(self) -> tuple[int, int, int]:
        if self.store.is_async:
            return await self.store.counts()  # type: ignore[no-any-return]
        return self.store.counts()  # type: ignore[no-any-return]

    async def metrics(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        torrents, seeders, leechers = await self._counts()
        lines = [
            "# HELP bitswarm_tracker_announces_total Announces answered, by transport.",
            "# TYPE bitswarm_tracker_announces_total counter",
        ]
        for transport in ("http", "udp"):
            lines.append(
                f'bitswarm_tracker_announces_total{{transport="{transport}"}} {self.announces[transport]}'
            )
        lines += [
            "# HELP bitswarm_tracker_scrapes_total Scrapes answered, by transport.",
            "# TYPE bitswarm_tracker_scrapes_total counter",
        ]
        for transport in ("http", "udp"):
            lines.append(
                f'bitswarm_tracker_scrapes_total{{transport="{transport}"}} {self.scrapes[transport]}'
            )
        lines += [
            "# HELP bitswarm_tracker_errors_total Rejected or malformed requests, by kind.",
            "# TYPE bitswarm_tracker_errors_total counter",
        ]
        for kind, count in sorted(self.errors.items()):
            lines.append(f'bitswarm_tracker_errors_total{{kind="{kind}"}} {count}')
        for name, help_, value in (
            ("torrents", "Torrents with at least one peer.", torrents),
            ("peers", "Live peers.", seeders + leechers),
            ("seeders", "Live seeders.", seeders),
            ("leechers", "Live leechers.", leechers),
        ):
            lines += [
                f"# HELP bitswarm_tracker_{name} {help_}",
                f"# TYPE bitswarm_tracker_{name} gauge",
                f"bitswarm_tracker_{name} {value}",
            ]
        return "\n".join(lines) + "\n"
