"""The :class:`Session`: many torrents on one listen port, one event loop, one disk pool.

    async with Session(SessionConfig(listen_port=0)) as session:
        handle = await session.add("file.torrent", save_path="downloads")
        await handle.wait_complete()

Incoming connections are routed to a torrent by the info-hash in the peer's handshake.

Trackerless discovery: with ``enable_dht`` (the default) the session runs one BEP 5 DHT node on UDP
(the TCP port number when it is free), sets the DHT bit in its handshakes, sends peers a ``port``
message and pings the nodes of peers that send one; every non-private torrent announces itself and
looks up peers there. ``enable_pex`` exchanges peers with BEP 11 ``ut_pex``; ``enable_lsd`` runs BEP 14
multicast discovery on the LAN. Magnet links (``add("magnet:?...")``) fetch the info dictionary
first (BEP 9, :mod:`bitswarm.session.magnet`) and then download like a .torrent. Events
(``torrent_added``, ``peer_connected``, ``piece_verified``, ``torrent_completed``, ``hash_failed``,
``peer_banned``, ``torrent_error``, ``torrent_paused``, ``torrent_resumed``, ``torrent_removed``)
are published to every :meth:`events` subscriber.

A torrent's state is its :class:`~bitswarm.session.lifecycle.Lifecycle` (one table of legal
transitions); :class:`~bitswarm.session.torrent.TorrentHandle` pauses, resumes, rechecks, changes
file priorities, moves the files and reannounces a running torrent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bitswarm.dht.bep42 import is_local_address
from bitswarm.errors import BitswarmError
from bitswarm.metainfo import MetainfoError, Torrent, load_torrent, parse_info, parse_torrent
from bitswarm.session.announce import STOPPED_ANNOUNCE_TIMEOUT, session_gate
from bitswarm.session.clock import Clock, LoopClock
from bitswarm.session.config import PUBLIC_DHT_ROUTERS, SessionConfig
from bitswarm.session.lifecycle import Event, Lifecycle, State
from bitswarm.session.ratelimit import RateLimiter
from bitswarm.session.reachability import Reachability
from bitswarm.session.torrent import TorrentHandle, TorrentRuntime, TorrentStatus
from bitswarm.storage.resume import make_resume_dir, read_resume_file, write_resume_file
from bitswarm.tracker.client import normalize_tracker_url
from bitswarm.tracker.udp_endpoint import UdpTrackerEndpoint

if TYPE_CHECKING:
    from bitswarm.dht.server import DHTServer
    from bitswarm.metainfo import Magnet
    from bitswarm.mse import SkeyIndex
    from bitswarm.session.blocklist import Blocklist
    from bitswarm.session.lsd import LocalDiscovery
    from bitswarm.session.peer import PeerProtocol
    from bitswarm.transport import StreamReceiver
    from bitswarm.utp import UtpSocketManager
    from bitswarm.wire import Reserved

log = logging.getLogger("bitswarm.session")


class SessionError(BitswarmError):
    """A session-level failure: duplicate torrent, bad source, not started ..."""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One thing that happened, for progress displays and the daemon's event stream."""

    kind: str
    info_hash: str
    name: str
    data: dict[str, Any] = field(default_factory=dict)


class Session:
    """A BitTorrent client and server at once: downloads and seeds any number of torrents."""

    def __init__(self, config: SessionConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or SessionConfig()
        #: the engine's time (timeouts, rechokes, retries): tests give a ManualClock and advance it
        self.clock: Clock = clock or LoopClock()
        self.peer_id = self.config.peer_id
        self._server: asyncio.Server | None = None
        #: uTP (BEP 29): one UDP socket on the listen port for every uTP connection and the DHT
        self.utp: UtpSocketManager | None = None
        self._started = False
        self.port = self.config.listen_port
        #: the address families the listening sockets carry: (4, 6) dual-stack, (4,) or (6,)
        self.families: tuple[int, ...] = (4,)
        #: our own IP per family (4, 6) when known: for BEP 40 priorities and BEP 7 announces
        self.own_ips: dict[int, str] = {}
        self._torrents: dict[bytes, TorrentRuntime] = {}
        self._aliases: dict[bytes, TorrentRuntime] = {}
        self._connections: set[PeerProtocol] = set()
        #: incoming MSE: the SKEY index and the hashes it holds (see :meth:`mse_skeys`)
        self._skey_index: SkeyIndex | None = None
        self._skey_hashes: set[bytes] = set()
        self._subscribers: list[asyncio.Queue[SessionEvent]] = []
        #: threads for disk reads, writes and hashing (hashlib releases the GIL)
        self.disk_pool = ThreadPoolExecutor(self.config.disk_workers, thread_name_prefix="bitswarm-disk")
        self.download_limiter = RateLimiter(self.config.download_rate_limit, clock=self.clock.now)
        self.upload_limiter = RateLimiter(self.config.upload_rate_limit, clock=self.clock.now)
        self._closed = False
        #: every ``udp://`` tracker announce and scrape of every torrent: one socket per address
        #: family, BEP 15 connection ids shared per tracker (closed after the ``stopped`` announces)
        self.tracker_udp = UdpTrackerEndpoint(clock=self.clock.now)
        session_gate(self).udp = self.tracker_udp
        self.dht: DHTServer | None = None
        self.lsd: LocalDiscovery | None = None
        self._session_tasks: list[asyncio.Task[None]] = []
        #: resume directories made (and checked not to be symbolic links) by :meth:`add`
        self._resume_dirs: set[str] = set()
        from bitswarm.session.peer import OUR_RESERVED

        #: Our handshake's reserved bytes (the BEP 5 DHT bit once the DHT node runs).
        self.reserved: Reserved = OUR_RESERVED
        #: port mapping (UPnP IGD, NAT-PMP/PCP) and the external address (session/reachability.py)
        self.reachability = Reachability(self)

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start listening for peers (``listen_port`` 0 picks a free port: see :attr:`port`): TCP
        and uTP on the same port number (``config.transports``), the DHT on uTP's UDP socket."""
        if self._started:
            return
        cfg = self.config
        tcp = "tcp" in cfg.transports
        # a proxy carries TCP only: no uTP socket, no DHT node (nothing of ours goes out over UDP)
        utp_on = "utp" in cfg.transports and not cfg.proxy
        for _ in range(16 if cfg.listen_port == 0 and tcp else 1):
            if tcp:
                await self._listen_tcp()
            if utp_on:
                self.utp = await self._open_utp(self.port if tcp else cfg.listen_port)
            if self.utp is not None or not utp_on or cfg.listen_port != 0 or not tcp:
                break
            # an ephemeral TCP port whose UDP twin is taken: another one
            assert self._server is not None
            self._server.close()
            self._server = None
        if self.utp is not None:
            self.port = self.utp.address[1]
        elif not tcp:
            raise SessionError(f"cannot listen on UDP {cfg.listen_host}:{cfg.listen_port} (uTP)")
        elif utp_on:
            log.warning("uTP disabled: UDP port %d on %s is taken", self.port, cfg.listen_host)
        elif cfg.proxy:
            log.info("proxy %s: peers dialed over TCP; no uTP, DHT, UDP trackers", _proxy_host(cfg.proxy))
        self._started = True
        self._learn_own_ips()
        fams = "IPv4 and IPv6" if len(self.families) == 2 else f"IPv{self.families[0]} only"
        log.info("listening on %s:%d (%s; %s)", cfg.listen_host, self.port, ", ".join(self.transports), fams)
        if cfg.enable_dht and not cfg.proxy:
            await self._start_dht()
        if cfg.enable_lsd:
            await self._start_lsd()
        await self.reachability.start()  # in the background: never waits for a gateway

    async def _listen_tcp(self) -> None:
        from bitswarm.session.listen import bind_socket
        from bitswarm.transport import TcpStream

        cfg = self.config
        try:  # dual-stack on "::" (the default), one family for an explicit address (listen.py)
            bound = bind_socket(cfg.listen_host, cfg.listen_port, socket.SOCK_STREAM)
            self._server = await asyncio.get_running_loop().create_server(
                lambda: TcpStream(self.incoming_stream()), sock=bound.sock, backlog=128
            )
        except OSError as exc:
            where = f"{cfg.listen_host}:{cfg.listen_port}"
            raise SessionError(f"cannot listen on {where}: {exc.strerror}") from None
        self.port = bound.port
        self.families = bound.families

    async def _open_utp(self, port: int) -> UtpSocketManager | None:
        """The uTP socket (BEP 29) on UDP ``port``, accepting into :meth:`incoming_stream` (None:
        the port is taken)."""
        from bitswarm.session.listen import bind_socket
        from bitswarm.utp import UtpSocketManager

        host = self.config.listen_host
        try:
            bound = bind_socket(host, port, socket.SOCK_DGRAM)
        except OSError as exc:
            log.debug("uTP cannot bind UDP %s:%d: %s", host, port, exc)
            return None
        self.families = bound.families
        mgr = UtpSocketManager(accept=self.incoming_stream, max_connections=self.config.max_connections)
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: mgr, sock=bound.sock)
        return mgr

    def _learn_own_ips(self) -> None:
        """Our address of each family we listen on: the bound one, else the source address of the
        route out (no packet is sent); an address learnt elsewhere (the external one) wins."""
        from bitswarm.session.listen import is_wildcard, route_source
        from bitswarm.session.peer_priority import canonical_ip

        host = self.config.listen_host
        for fam in self.families:
            if fam in self.own_ips:
                continue
            ip = None if is_wildcard(host) or host in ("0.0.0.0", "localhost") else canonical_ip(host)
            if ip is None:
                ip = route_source(fam)
            if ip is not None:
                self.own_ips[fam] = ip

    def own_address(self, family: int) -> tuple[str, int] | None:
        """(our IP of ``family``, listen port) when known (BEP 40 priorities)."""
        ip = self.own_ips.get(family)
        return (ip, self.port) if ip is not None else None

    @property
    def transports(self) -> list[str]:
        """The transports this session accepts and dials on (uTP only if its socket is open)."""
        return [t for t in self.config.transports if t == "tcp" or self.utp is not None]

    # -- DHT (BEP 5) and LSD (BEP 14) ----------------------------------------------------------

    def dht_bootstrap_nodes(self) -> list[tuple[str, int]]:
        """The DHT nodes this session joins through: ``dht_bootstrap`` if given; otherwise the public
        routers, but only when the session listens on a public (or wildcard) address — a loopback or
        private session never contacts them — and ``BITSWARM_NO_PUBLIC_DHT`` is unset (or 0)."""
        cfg = self.config
        if cfg.dht_bootstrap is not None:
            return list(cfg.dht_bootstrap)
        if is_local_address(cfg.listen_host) or cfg.listen_host in ("localhost", ""):
            return []
        if os.environ.get("BITSWARM_NO_PUBLIC_DHT", "") not in ("", "0"):
            return []  # test runs and sandboxes: never contact the public routers
        return list(PUBLIC_DHT_ROUTERS)

    async def _start_dht(self) -> None:
        from bitswarm.dht.node import DHTConfig
        from bitswarm.dht.server import DHTServer
        from bitswarm.session.peer import OUR_RESERVED_DHT

        cfg = self.config
        nodes = self.dht_bootstrap_nodes()
        literal = [(h, p) for h, p in nodes if _is_ip(h)]
        names = [(h, p) for h, p in nodes if not _is_ip(h)]
        dconf = DHTConfig()
        host = cfg.listen_host
        if literal and all(is_local_address(h) for h, _ in literal):
            dconf.lan = True  # a loopback/private bootstrap: a LAN or a test network
        elif is_local_address(host):
            dconf.lan = True
        # the DHT speaks the families of the listen sockets (BEP 32: an IPv6 table beside IPv4's)
        dht_host = {(4, 6): "::", (4,): "0.0.0.0" if host in ("::", "") else host}.get(self.families, host)
        dht: DHTServer | None = None
        # on uTP's socket (KRPC and uTP told apart by their first byte); else its own, on the TCP
        # port number when the UDP one is free, else on any
        for port in (self.port,) if self.utp is not None else (self.port, 0):
            candidate = DHTServer(
                dht_host,
                port,
                bootstrap=literal,
                config=dconf,
                state_file=cfg.dht_state_file,
                shared=self.utp,
            )
            try:
                await candidate.start()
            except OSError as exc:
                log.debug("DHT cannot bind UDP %s:%d: %s", dht_host, port, exc)
                continue
            dht = candidate
            break
        if dht is None:
            log.warning("DHT disabled: no UDP port on %s", dht_host)
            return
        self.dht = dht
        self.reserved = OUR_RESERVED_DHT
        log.info("DHT node on UDP %s:%d", dht_host, dht.address[1])
        if names:
            self._session_tasks.append(asyncio.get_running_loop().create_task(self._resolve_routers(names)))

    async def _resolve_routers(self, names: list[tuple[str, int]]) -> None:
        """Resolve bootstrap host names (the public routers) and join through their addresses."""
        from bitswarm.session.peer_priority import canonical_address

        loop = asyncio.get_running_loop()
        addrs: list[tuple[str, int]] = []
        families = {4: socket.AF_INET, 6: socket.AF_INET6}
        for host, port in names:
            for fam in self.families:  # BEP 32: routers of both families on a dual-stack node
                try:
                    async with asyncio.timeout(10.0):
                        infos = await loop.getaddrinfo(
                            host, port, family=families[fam], type=socket.SOCK_DGRAM
                        )
                except (OSError, TimeoutError) as exc:
                    log.info("cannot resolve DHT router %s (IPv%d): %s", host, fam, exc)
                    continue
                addrs.extend(canonical_address((str(i[4][0]), int(i[4][1]))) for i in infos[:2])
        if addrs and self.dht is not None:
            self.dht.node.bootstrap(addrs)

    def _dht_can_search(self) -> bool:
        """True if the DHT node has (or is joining through) at least one other node."""
        dht = self.dht
        if dht is None:
            return False
        joining = getattr(dht.node, "_bootstrap_addrs", ())  # explicit and saved (state file) contacts
        return bool(self.dht_bootstrap_nodes() or joining or dht.node.routing_table_size())

    @property
    def dht_port(self) -> int | None:
        """The UDP port of our DHT node (None: no DHT)."""
        return self.dht.address[1] if self.dht is not None else None

    @property
    def external_address(self) -> str | None:
        """Our public address as others report it (IPv4 first; None while undecided): the port
        mapping, trackers, peers and DHT nodes vote (``session/external_address.py``); the mapping
        state and the votes are in ``self.reachability.status()``."""
        return self.reachability.external_address

    def on_dht_port(self, host: str, port: int) -> None:
        """A peer's BEP 5 ``port`` message: ping its DHT node (a reply adds it to our table)."""
        if self.dht is not None and 0 < port < 65536:
            self.dht.node.ping((host, port))

    async def _start_lsd(self) -> None:
        from bitswarm.session.lsd import LocalDiscovery

        cfg = self.config
        lsd = LocalDiscovery(
            self.port,
            self._on_lsd_peer,
            interface=cfg.lsd_interface,
            group=cfg.lsd_group,
            min_interval=cfg.lsd_interval,
        )
        try:
            await lsd.start()
        except OSError as exc:
            log.warning("local service discovery disabled: %s", exc)
            return
        self.lsd = lsd
        self._session_tasks.append(asyncio.get_running_loop().create_task(self._lsd_loop()))

    def _lsd_hashes(self) -> list[bytes]:
        return [h for h, rt in self._torrents.items() if not rt.private and rt.accepting]

    async def _lsd_loop(self) -> None:
        """Announce every non-private torrent (LocalDiscovery sends each at most every lsd_interval)."""
        while self.lsd is not None:
            with contextlib.suppress(OSError):
                self.lsd.announce(self._lsd_hashes())
            await asyncio.sleep(min(5.0, max(0.2, self.config.lsd_interval / 4)))

    def _on_lsd_peer(self, info_hash: bytes, addr: tuple[str, int]) -> None:
        rt = self.lookup(info_hash)
        if rt is not None and not rt.private and rt.accepting:
            rt.add_peer(addr[0], addr[1])

    async def close(self) -> None:
        """Stop every torrent (``stopped`` announces, resume data saved) and the listener."""
        if self._closed:
            return
        self._closed = True
        await self.reachability.stop()  # unmap first (bounded)
        if self._server is not None:
            self._server.close()
        for task in self._session_tasks:
            task.cancel()
        for task in self._session_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # every torrent's ``stopped`` announce shares one deadline (session/announce.py)
        session_gate(self).stop_by = self.clock.now() + STOPPED_ANNOUNCE_TIMEOUT
        await asyncio.gather(*(rt.stop() for rt in self._torrents.values()), return_exceptions=True)
        self.tracker_udp.close()
        for part in (self.lsd, self.dht):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.stop()
        self.lsd = None
        self.dht = None
        for conn in list(self._connections):
            conn.close("session closing")
        if self.utp is not None:
            self.utp.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self.disk_pool.shutdown(wait=True)

    # -- torrents ------------------------------------------------------------------------------

    async def add(
        self,
        source: str | os.PathLike[str] | bytes | Torrent | Magnet,
        save_path: str | os.PathLike[str],
        *,
        trackers: list[str] | None = None,
        peers: list[tuple[str, int]] | None = None,
        file_priorities: list[int] | None = None,
        resume_dir: str | os.PathLike[str] | None = None,
        seed_mode: bool = False,
        sequential: bool = False,
        use_torrent_trackers: bool = True,
        progress: Callable[[int, int], None] | None = None,
        metadata_timeout: float | None = None,
        lifecycle: Lifecycle | None = None,
        paused: bool = False,
    ) -> TorrentHandle:
        """Add a torrent (a .torrent path, its bytes, a parsed :class:`Torrent`, a magnet link or a
        parsed :class:`Magnet`) and start it.

        ``save_path`` is the directory that holds (or will hold) the torrent's content. Resume data
        goes to ``resume_dir`` (default: ``save_path/.bitswarm``). ``seed_mode`` trusts existing
        files with the right sizes and verifies each piece before its first upload.

        A magnet link first fetches the info dictionary from peers (BEP 9; peers from ``x.pe``,
        ``peers``, the ``tr`` trackers, ``trackers`` and the DHT), waiting at most
        ``metadata_timeout`` seconds (default ``config.metadata_timeout``; SessionError after it).
        The verified dictionary is kept in the resume directory, so adding the magnet again starts
        at once. The BEP 52 piece layers of a v2 or hybrid torrent (not in the info dictionary) are
        then fetched from peers with hash requests (:mod:`bitswarm.session.hash_exchange`).

        ``lifecycle`` is the torrent's :class:`~bitswarm.session.lifecycle.Lifecycle` when the caller
        keeps one (the daemon: ``queued`` before this call); the engine fires its events on it:
        ``fetch_metadata`` for a magnet, ``check``, then ``download`` or ``seed``. A failure fires
        ``fail``; a cancelled add fires ``stop`` (unless it was paused meanwhile). ``paused`` opens and
        checks the torrent and leaves it paused (no connections, no announces) until
        :meth:`TorrentHandle.resume`.
        """
        life = lifecycle if lifecycle is not None else Lifecycle()
        try:
            return await self._add(
                source,
                save_path,
                life,
                trackers=trackers,
                peers=peers,
                file_priorities=file_priorities,
                resume_dir=resume_dir,
                seed_mode=seed_mode,
                sequential=sequential,
                use_torrent_trackers=use_torrent_trackers,
                progress=progress,
                metadata_timeout=metadata_timeout,
                paused=paused,
            )
        except asyncio.CancelledError:
            if life.state is not State.PAUSED:
                life.fire(Event.STOP)
            raise
        except BaseException:
            if life.state is not State.ERROR:
                life.fire(Event.FAIL)
            raise

    async def _add(
        self,
        source: str | os.PathLike[str] | bytes | Torrent | Magnet,
        save_path: str | os.PathLike[str],
        life: Lifecycle,
        *,
        trackers: list[str] | None,
        peers: list[tuple[str, int]] | None,
        file_priorities: list[int] | None,
        resume_dir: str | os.PathLike[str] | None,
        seed_mode: bool,
        sequential: bool,
        use_torrent_trackers: bool,
        progress: Callable[[int, int], None] | None,
        metadata_timeout: float | None,
        paused: bool,
    ) -> TorrentHandle:
        if self._server is None:
            await self.start()
        save = os.fspath(save_path)
        rdir = os.fspath(resume_dir) if resume_dir is not None else os.path.join(save, ".bitswarm")
        magnet = _as_magnet(source)
        if magnet is not None:
            life.fire(Event.FETCH_METADATA)
            peers = [*magnet.peers, *(peers or [])]
            torrent = await self._resolve_magnet(
                magnet, rdir, trackers or [], peers, metadata_timeout or self.config.metadata_timeout
            )
            if file_priorities is None and magnet.select_only:
                chosen = set(magnet.select_only)  # BEP 53 ``so``: file indices in ``info.files`` order
                file_priorities = [1 if i in chosen else 0 for i in range(len(torrent.info.files))]
        else:  # not a magnet link (_as_magnet said so)
            torrent = _load_source(cast("str | os.PathLike[str] | bytes | Torrent", source))
        if torrent.swarm_hash in self._torrents:
            raise SessionError(f"torrent {torrent.swarm_hash.hex()} is already in the session")
        tiers: list[list[str]] = []
        if use_torrent_trackers:
            tiers = [list(t) for t in torrent.trackers if t]
        for url in trackers or []:
            tiers.append([normalize_tracker_url(url)])
        # tuples, one string per tracker URL for all torrents (10,000 torrents on one tracker: the
        # lists and a copy of the URL each were ~180 bytes per torrent, issue 24)
        shared = tuple(tuple(sys.intern(normalize_tracker_url(u)) for u in tier) for tier in tiers)
        if rdir not in self._resume_dirs:  # once per directory (10,000 torrents share the daemon's)
            make_resume_dir(rdir)  # never through a symlink (ResumePathError): resume data stays inside
            self._resume_dirs.add(rdir)
        resume_path = os.path.join(rdir, f"{torrent.swarm_hash.hex()}.resume")
        rt = TorrentRuntime(
            self,
            torrent,
            save,
            resume_path=resume_path,
            trackers=shared,
            peers=list(peers or []),
            priorities=file_priorities,
            seed_mode=seed_mode,
            sequential=sequential,
            lifecycle=life,
        )
        self._torrents[torrent.swarm_hash] = rt
        for alias in (torrent.info_hash_v1, torrent.info_hash_v2_short):
            if alias is not None:
                self._aliases[alias] = rt
        try:
            await rt.start(progress=progress, paused=paused)
        except BaseException:
            self._forget(rt)
            with contextlib.suppress(Exception):
                await rt.storage.close()
            raise
        self.publish("torrent_added", rt)
        return TorrentHandle(rt)

    async def _resolve_magnet(
        self,
        magnet: Magnet,
        rdir: str,
        trackers: list[str],
        peers: list[tuple[str, int]],
        timeout: float,
    ) -> Torrent:
        """The torrent of a magnet link: from the saved info dictionary, or fetched from peers."""
        from bitswarm.session.magnet import MetadataFetch

        h = magnet.swarm_hash
        if h in self._torrents or h in self._aliases:
            raise SessionError(f"torrent {h.hex()} is already in the session")
        tiers = [[normalize_tracker_url(u)] for u in [*magnet.trackers, *trackers]]
        cache = os.path.join(rdir, f"{h.hex()}.info")
        raw: bytes | None = None
        with contextlib.suppress(OSError):
            raw = await asyncio.to_thread(read_resume_file, cache)  # ResumePathError: a symlinked rdir
        if raw is not None and not _info_matches(raw, magnet):
            raw = None
        fetch: MetadataFetch | None = None
        if raw is None:
            if not peers and not tiers and not self._dht_can_search():
                raise SessionError(
                    "cannot resolve this magnet link: it has no peers (x.pe) or trackers (tr), and the "
                    "DHT is off or knows no nodes (give it a bootstrap node)"
                )
            fetch = MetadataFetch(self, magnet, peers=peers, trackers=tiers)
            try:
                raw = await fetch.run(timeout)
            except TimeoutError:
                raise SessionError(
                    f"no peer sent the metadata of {magnet.name or h.hex()} within {timeout:g} s"
                ) from None
        try:
            info, v1, v2 = parse_info(raw)
        except MetainfoError as exc:
            raise SessionError(f"the metadata of {h.hex()} is not a valid info dictionary: {exc}") from None
        if fetch is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(write_resume_file, cache, raw)
        # BEP 19 web seeds named by the link (``ws``) serve the download like a .torrent's url-list
        torrent = Torrent(
            info=info, info_hash_v1=v1, info_hash_v2=v2, trackers=tiers, url_list=list(magnet.web_seeds)
        )
        if fetch is not None:  # the peers that had the metadata are the download's first peers
            peers[:] = [a for a in peers if a not in fetch.bad]
            peers.extend(a for a in fetch.peers_with_metadata if a not in peers)
            peers.extend(a for a in list(fetch.candidates)[:100] if a not in peers)
        return torrent

    async def remove(self, handle: TorrentHandle, *, delete_data: bool = False) -> None:
        """Stop a torrent and forget it; ``delete_data`` also deletes its files."""
        rt = self._torrents.get(handle.info_hash)
        if rt is None:
            raise SessionError("torrent is not in this session")
        await rt.stop()
        self._forget(rt)
        if delete_data:
            info = rt.info
            target = Path(rt.save_path, info.name)
            if target.is_dir() and not info.single_file:
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists():
                target.unlink()
        self.publish("torrent_removed", rt)

    def _forget(self, rt: TorrentRuntime) -> None:
        self._torrents.pop(rt.swarm_hash, None)
        for k in [k for k, v in self._aliases.items() if v is rt]:
            del self._aliases[k]

    def lookup(self, info_hash: bytes) -> TorrentRuntime | None:
        """The running torrent an incoming handshake names (its v1, v2 or truncated v2 hash)."""
        return self._aliases.get(info_hash) or self._torrents.get(info_hash)

    def incoming_connection(self) -> PeerProtocol:
        """A peer connection for a stream someone opened to us, on any transport (TCP listener, uTP
        socket, a decrypting wrapper): its handshake's info-hash picks the torrent (:meth:`lookup`)."""
        from bitswarm.session.peer import PeerProtocol

        return PeerProtocol(self, None, outgoing=False)

    def incoming_stream(self) -> StreamReceiver:
        """What a transport hands an incoming stream to: the peer connection itself under
        ``encryption = off``; otherwise an MSE responder in front of it, which tells plaintext
        BitTorrent (accepted under ``prefer``) from MSE by the first bytes and finds an MSE peer's
        torrent by its obfuscated SKEY among every running torrent's v1 and v2 hashes."""
        from bitswarm.mse import EncryptionPolicy
        from bitswarm.transport import MSEStream

        conn = self.incoming_connection()
        policy = self.config.encryption
        if policy is EncryptionPolicy.OFF:
            return conn
        return MSEStream.responder(conn, self.mse_skeys(), policy=policy, prefer_rc4=self.config.prefer_rc4)

    def mse_skeys(self) -> SkeyIndex:
        """The SKEYs incoming MSE handshakes may name: the v1, v2 and truncated v2 hashes of every
        torrent accepting peers (brought up to date here, from the torrent table; each hash's
        HASH('req2', SKEY) is computed once, when it first appears)."""
        from bitswarm.mse import SkeyIndex

        index = self._skey_index
        if index is None:
            index = self._skey_index = SkeyIndex()
        wanted = {h for h, rt in (*self._torrents.items(), *self._aliases.items()) if rt.accepting}
        known = self._skey_hashes
        if wanted != known:
            kept = {h[:20] for h in wanted}  # a v2 hash and its truncation share one SKEY
            for h in known - wanted:
                if h[:20] not in kept:
                    index.discard(h)
            for h in wanted - known:
                index.add(h)
            self._skey_hashes = wanted
        return index

    def connection_opened(self, conn: PeerProtocol) -> None:
        self._connections.add(conn)
        blocklist = self.config.blocklist
        if not conn.outgoing and blocklist is not None and blocklist.check(conn.address[0]):
            log.debug("refusing %s:%d: blocklisted", *conn.address)
            conn.close()  # before its handshake is read: no torrent, no answer

    def connection_closed(self, conn: PeerProtocol) -> None:
        self._connections.discard(conn)

    def set_blocklist(self, blocklist: Blocklist | None) -> int:
        """Use ``blocklist`` from now on (None: none); connected peers it blocks are closed (their
        number is returned). Candidates it blocks are skipped when they come up for a dial."""
        self.config.blocklist = blocklist
        if blocklist is None:
            return 0
        gone = [c for c in self._connections if not c.closed and blocklist.check(c.address[0])]
        for conn in gone:
            conn.close("blocklisted")
        return len(gone)

    def privacy_status(self) -> dict[str, Any]:
        """The blocklist's counts (rules read, merged ranges, addresses and connections refused) and
        whether a proxy is in use, for status displays."""
        bl = self.config.blocklist
        return {
            "blocklist_enabled": bl is not None,
            "blocklist_rules": bl.rules if bl is not None else 0,
            "blocklist_ranges": bl.ranges if bl is not None else 0,
            "blocklist_blocked": bl.blocked if bl is not None else 0,
            "proxy": _proxy_host(self.config.proxy) if self.config.proxy else None,
        }

    @property
    def torrents(self) -> list[TorrentHandle]:
        return [TorrentHandle(rt) for rt in self._torrents.values()]

    def status(self) -> list[TorrentStatus]:
        return [rt.status() for rt in self._torrents.values()]

    # -- events --------------------------------------------------------------------------------

    def publish(self, kind: str, rt: TorrentRuntime, **data: Any) -> None:
        """Send an event about ``rt`` to every :meth:`events` subscriber."""
        if kind == "tracker_reply" and data.get("external_ip"):  # BEP 24
            self.reachability.note(str(data["external_ip"]), "tracker", str(data.get("url", "")))
        if not self._subscribers:
            return
        self._put(SessionEvent(kind, rt.swarm_hash.hex(), rt.info.name, data))

    def publish_session(self, kind: str, **data: Any) -> None:
        """Send a session-level event (no torrent: ``port_mapping``, ``external_address``)."""
        self._put(SessionEvent(kind, "", "", data))

    def _put(self, ev: SessionEvent) -> None:
        for q in self._subscribers:
            if q.qsize() < 10_000:
                q.put_nowait(ev)

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Every event from now on, until the consumer stops iterating."""
        q: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._subscribers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.remove(q)


def _proxy_host(url: str) -> str:
    """The proxy's host:port, without its credentials (logs)."""
    from bitswarm.session.proxy import parse_proxy

    p = parse_proxy(url)
    return f"{p.host}:{p.port}"


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _as_magnet(source: object) -> Magnet | None:
    """The parsed magnet link if ``source`` is one (SessionError if it is a bad one)."""
    if "bitswarm.metainfo._magnet" in sys.modules:  # else no Magnet exists (imported when first used)
        from bitswarm.metainfo import Magnet

        if isinstance(source, Magnet):
            return source
    if isinstance(source, str) and source[:7].lower() == "magnet:":
        from bitswarm.metainfo import parse_magnet

        try:
            return parse_magnet(source)
        except MetainfoError as exc:
            raise SessionError(f"bad magnet link: {exc}") from None
    return None


def _info_matches(raw: bytes, magnet: Magnet) -> bool:
    import hashlib

    return (magnet.info_hash_v1 is None or hashlib.sha1(raw).digest() == magnet.info_hash_v1) and (
        magnet.info_hash_v2 is None or hashlib.sha256(raw).digest() == magnet.info_hash_v2
    )


def _load_source(source: str | os.PathLike[str] | bytes | Torrent) -> Torrent:
    if isinstance(source, Torrent):
        return source
    if isinstance(source, bytes | bytearray):
        return parse_torrent(bytes(source))
    return load_torrent(os.fspath(source))
