"""How the internet reaches a session: its port mapping and its external address.

:class:`Reachability` is the session's part that

* runs a :class:`~bitswarm.portmap.PortMapper` for the TCP listen port and the UDP port uTP and the
  DHT share (``SessionConfig.port_mapping``), in the background: :meth:`start` returns at once and
  nothing waits for a gateway; a session listening on loopback maps nothing;
* keeps the :class:`~bitswarm.session.external_address.ExternalAddressVote`, fed by the mapping, the
  trackers (BEP 24), peers' ``yourip`` (BEP 10) and DHT responses (BEP 42) through :meth:`note`;
* gives the port to announce (:attr:`advertised_port`: the mapped external TCP port, when there is
  one) and tells running torrents' tracker announcers when it changes; a torrent's first tracker
  announce waits (:meth:`before_first_announce`, at most :data:`FIRST_ANNOUNCE_WAIT`) while the TCP
  mapping is still being tried, so that announce carries the mapped port;
* gives the DHT node a BEP 42 id for the external address once one is decided, unless the DHT's own
  vote (the address DHT nodes see) has settled already;
* publishes a session-level ``port_mapping`` event on every change, and an ``external_address``
  event when the decided address changes; :meth:`status` is what status displays show.

:meth:`stop` removes the mappings (each delete bounded: see :data:`UNMAP_TIMEOUT`); the session calls
it first when it closes, and the CLI also at once on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from bitswarm.dht.bep42 import generate_node_id, is_valid_node_id
from bitswarm.session.external_address import ExternalAddressVote

if TYPE_CHECKING:
    from bitswarm.portmap import PortMapper
    from bitswarm.session.session import Session

__all__ = ["FIRST_ANNOUNCE_WAIT", "UNMAP_TIMEOUT", "UPNP_DELAY", "Reachability"]

log = logging.getLogger("bitswarm.session")

#: Seconds each mapping delete may take on stop (a CLI has 1 s for its whole clean close).
UNMAP_TIMEOUT = 0.8

#: Seconds before the UPnP search starts (PCP/NAT-PMP at once): a one-shot download that is done
#: sooner never imports the UPnP stack; a long-running peer is mapped a second later.
UPNP_DELAY = 1.0

#: Most seconds a torrent's first tracker announce waits for a TCP port mapping still being tried
#: (never when mapping is off, on loopback, or once a mapping is made or has failed).
FIRST_ANNOUNCE_WAIT = 1.0

_LOOPBACK = ("127.", "::1", "localhost")


class Reachability:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.vote = ExternalAddressVote()
        self.mapper: PortMapper | None = None
        #: "off" (not asked for), "loopback" (nothing to map), "on" (the mapper runs), "stopped"
        self.mode = "off"
        self._watcher: asyncio.Task[None] | None = None
        self._advertised: int | None = None
        self._reannounces: set[asyncio.Task[None]] = set()
        self._last_summary: str | None = None
        #: set (and replaced) on every mapping status change: what first announces wait on
        self._moved = asyncio.Event()
        #: ids of announce drivers waiting in :meth:`before_first_announce`
        self._holding: set[int] = set()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start mapping (when configured) in the background; never waits for a gateway."""
        session = self.session
        dht = session.dht
        if dht is not None:  # BEP 42: every node's report of where it sees us is a vote
            dht.node.on_ip_report = lambda ip, voter: self.note(ip, "dht", voter[0])
        if not session.config.port_mapping:
            return
        host = session.config.listen_host
        if host.startswith(_LOOPBACK):
            self.mode = "loopback"
            return
        if os.environ.get("BITSWARM_NO_PORT_MAPPING", "") not in ("", "0"):
            self.mode = "off"  # test runs: never ask the machine's real gateway
            return
        from bitswarm.portmap import PortMapConfig, PortMapper

        ports: dict[Any, int] = {}
        if "tcp" in session.transports:
            ports["tcp"] = session.port
        udp = session.utp.address[1] if session.utp is not None else session.dht_port
        if udp:
            ports["udp"] = udp
        if not ports:
            return
        config = PortMapConfig(
            methods=tuple(session.config.port_mapping_methods),
            unmap_timeout=UNMAP_TIMEOUT,
            upnp_delay=UPNP_DELAY,
        )
        self.mapper = PortMapper(ports, config=config, clock=session.clock)
        self._advertised = session.port  # what torrents announce until a mapping says otherwise
        self.mode = "on"
        await self.mapper.start()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="portmap-watch")

    async def stop(self) -> None:
        """Remove every mapping (bounded) and stop watching; idempotent."""
        for task in list(self._reannounces):
            task.cancel()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if self.mapper is not None and self.mode == "on":
            self.mode = "stopped"
            await self.mapper.stop()
            self._changed()

    async def _watch(self) -> None:
        mapper = self.mapper
        assert mapper is not None
        while True:
            await mapper.changed.wait()
            mapper.changed.clear()
            self._changed()

    def _changed(self) -> None:
        """The mapper's status moved: votes, the advertised port, an event."""
        mapper = self.mapper
        if mapper is None:
            return
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        mapped_by: dict[str, str] = {}
        for st in mapper.status():
            if st.state == "mapped" and st.external_ip:
                mapped_by[st.method] = st.external_ip
        for method in ("upnp", "pcp", "natpmp"):
            if method in mapped_by:
                self.note(mapped_by[method], "mapping", method)
            elif self.vote.withdraw("mapping", method):
                self._decided()
        port = self.advertised_port
        # once stopped (closing) the announced port stays: the ``stopped`` announce that follows
        # must name the entry the trackers hold
        if port != self._advertised and self.mode == "on":
            self._advertised = port
            self._tell_announcers(port)
        summary = mapper.summary()
        if summary != self._last_summary:
            self._last_summary = summary
            log.info("%s", summary)
            self.session.publish_session("port_mapping", **self.status())

    def _tell_announcers(self, port: int) -> None:
        """Running torrents announce ``port`` from now on, starting with a reannounce (trackers and
        DHT) right away: the first announce went out with the listen port before the mapping."""
        for rt in list(self.session._torrents.values()):
            driver = rt.announce
            if driver is not None and driver.announcer is not None:
                driver.announcer.port = port
            if driver is not None:  # tell the trackers and the DHT now, not at the next interval
                # (a first tracker announce still waiting for this mapping carries it: DHT only)
                coro = driver.reannounce(trackers=id(driver) not in self._holding)
                task = asyncio.get_running_loop().create_task(coro, name="reannounce-port")
                self._reannounces.add(task)
                task.add_done_callback(self._reannounces.discard)

    def mapping_in_flight(self) -> bool:
        """Is a mapping of the TCP port (the announced one) still being tried, none made yet?"""
        mapper = self.mapper
        if mapper is None or self.mode != "on":
            return False
        tcp = [s.state for s in mapper.status() if s.protocol == "tcp"]
        return "pending" in tcp and "mapped" not in tcp

    async def before_first_announce(self, driver: object = None, limit: float = FIRST_ANNOUNCE_WAIT) -> None:
        """Wait, at most ``limit`` seconds (session clock), while :meth:`mapping_in_flight`: a
        torrent's first tracker announce then carries the mapped port instead of the listen port
        (a reannounce corrects it otherwise). Returns at once when mapping is off, on loopback, or
        made or failed already. ``driver`` (the torrent's announce driver) gets no extra reannounce
        for a mapping made meanwhile: its first announce is the one that tells."""
        if limit <= 0:
            return
        clock = self.session.clock
        deadline = clock.now() + limit
        if driver is not None:
            self._holding.add(id(driver))
        try:
            while self.mapping_in_flight():
                left = deadline - clock.now()
                if left <= 0:
                    return
                await clock.wait(self._moved, left)
        finally:
            self._holding.discard(id(driver))

    # -- external address ----------------------------------------------------------------------
    def note(self, address: str, source: str, voter: str) -> None:
        """One report of our external address (see :mod:`~bitswarm.session.external_address`)."""
        try:
            changed = self.vote.add(address, source, voter)
        except ValueError:
            return
        if changed:
            self._decided()

    def _decided(self) -> None:
        address = self.vote.address(4)
        log.info("external address: %s", ", ".join(self.vote.addresses) or "unknown")
        own = getattr(self.session, "own_ips", None)  # our address per family (BEP 40, BEP 7)
        if isinstance(own, dict):
            for family in (4, 6):
                decided = self.vote.address(family)
                if decided is not None:
                    own[family] = decided
        self.session.publish_session("external_address", addresses=self.vote.addresses)
        dht = self.session.dht
        if address is None or dht is None:
            return
        node = dht.node
        if node.external_ip is None and not is_valid_node_id(node.node_id, address):
            node.set_node_id(generate_node_id(address, node.rng))  # BEP 42: an id for where we are

    @property
    def external_address(self) -> str | None:
        """The decided external address, IPv4 first (None while undecided)."""
        addresses = self.vote.addresses
        return addresses[0] if addresses else None

    @property
    def advertised_port(self) -> int:
        """The port to announce: the mapped external TCP port, else the listen port."""
        if self.mapper is not None and self.mode == "on":
            ports = [s.external_port for s in self.mapper.status()
                     if s.protocol == "tcp" and s.state == "mapped" and s.external_port]  # fmt: skip
            if ports:
                return int(ports[0])
        return self.session.port

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """``{"port_mapping": mode, "summary": line, "mappings": [...], "external_address": ...,
        "advertised_port": ...}`` for the daemon's stats, ``--json`` events and displays."""
        mapper = self.mapper
        if mapper is None:
            summary = {"off": "port mapping off", "loopback": "port mapping off (loopback)"}.get(
                self.mode, "port mapping off"
            )
            mappings: list[dict[str, object]] = []
        else:
            summary = mapper.summary()
            mappings = [s.as_dict() for s in mapper.status()]
        return {
            "port_mapping": self.mode,
            "summary": summary,
            "mappings": mappings,
            "external_address": self.external_address,
            "external_addresses": self.vote.addresses,
            "advertised_port": self.advertised_port,
        }
