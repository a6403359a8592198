"""The announce driver of one torrent: its trackers (BEP 3/15 through
:class:`~bitswarm.tracker.client.AnnounceManager`) and the DHT (BEP 5), feeding found peers to
``add_peer``. Sleeps through an injected :class:`~bitswarm.session.clock.Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bitswarm.errors import BitswarmError
from bitswarm.tracker import Event

if TYPE_CHECKING:
    from bitswarm.dht.server import DHTServer
    from bitswarm.session.clock import Clock
    from bitswarm.tracker.client import AnnounceManager

log = logging.getLogger("bitswarm.torrent")

#: Below this many connected peers a downloading torrent asks the DHT again soon (not only every
#: ``dht_announce_interval``).
DHT_FEW_PEERS = 8
#: Seconds after the start before the first DHT lookup (the listen port is known by then).
DHT_FIRST_DELAY = 0.2
DHT_TIMEOUT = 60.0


class AnnounceDriver:
    """Tracker announces and DHT lookups for one torrent, each in its own task."""

    def __init__(
        self,
        *,
        clock: Clock,
        swarm_hash: bytes,
        port: Callable[[], int],
        add_peer: Callable[[str, int], None],
        want_more_peers: Callable[[], bool],
        announcer: AnnounceManager | None,
        dht: DHTServer | None,
        dht_interval: float,
    ) -> None:
        self.clock = clock
        self.swarm_hash = swarm_hash
        self._port = port
        self._add_peer = add_peer
        self._want_more_peers = want_more_peers
        self.announcer = announcer
        self.dht = dht
        self.dht_interval = max(0.5, dht_interval)
        self.dht_lookups = 0  #: DHT lookups/announces run (status, tests)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._dht_now = asyncio.Event()  # set by :meth:`reannounce`: the DHT loop runs at once

    def start(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        if self.announcer is not None:
            self._tasks.append(loop.create_task(self._tracker_loop(), name=f"announce-{name}"))
        if self.dht is not None:
            self._tasks.append(loop.create_task(self._dht_loop(), name=f"dht-{name}"))

    async def stop(self) -> None:
        """Stop the loops and send ``stopped`` to the trackers."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.announcer is not None:
            with contextlib.suppress(Exception):
                await self.announcer.stop()

    async def announce_event(self, event: Event) -> None:
        """One announce now (``completed`` when the download finishes)."""
        if self.announcer is None:
            return
        try:
            if event is Event.COMPLETED:
                await self.announcer.complete()
            else:
                result = await self.announcer.announce(event)
                for host, port in result.peers:
                    self._add_peer(host, port)
        except BitswarmError as exc:
            log.info("announce (%s) failed: %s", event.name, exc)

    async def reannounce(self) -> None:
        """Announce to the trackers now (returns when one answered or all failed) and run a DHT
        lookup at once (``force_reannounce``)."""
        self._dht_now.set()
        await self.announce_event(Event.NONE)

    async def _tracker_loop(self) -> None:
        announcer = self.announcer
        assert announcer is not None
        first = True
        while True:
            try:
                result = await (announcer.start() if first else announcer.announce())
                first = False
                for host, port in result.peers:
                    self._add_peer(host, port)
                if result.warning:
                    log.warning("tracker %s: %s", result.url, result.warning)
            except BitswarmError as exc:
                log.info("announce failed: %s", exc)
            await self.clock.sleep(max(1.0, announcer.seconds_until_next()))

    async def _dht_loop(self) -> None:
        """Announce our port on the DHT and take the peers its get_peers lookup finds: soon after
        the start, then every ``dht_interval``, and every few seconds while the torrent wants more
        peers."""
        dht = self.dht
        assert dht is not None
        soon = min(self.dht_interval, 30.0)
        await self.clock.sleep(DHT_FIRST_DELAY)
        while True:
            self.dht_lookups += 1
            try:
                result = await dht.announce(self.swarm_hash, self._port(), timeout=DHT_TIMEOUT)
                for host, port in result.peers:
                    self._add_peer(host, port)
            except (TimeoutError, BitswarmError, OSError) as exc:
                log.debug("DHT announce failed: %s", exc)
            if self._stopped:
                return  # asyncio.wait_for (3.11) may swallow the stop's cancel when the lookup ends
            await self.clock.wait(self._dht_now, soon if self._want_more_peers() else self.dht_interval)
            self._dht_now.clear()
