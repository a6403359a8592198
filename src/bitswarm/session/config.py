"""Session settings, with defaults that suit a desktop peer; tests use port 0 and loopback."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bitswarm import __version__
from bitswarm.mse import EncryptionPolicy

if TYPE_CHECKING:
    from bitswarm.session.blocklist import Blocklist

#: Azureus-style peer id prefix: -SW<major><minor><patch>0- ("SW": unassigned in the client lists
#: of libtorrent, Transmission, Vuze/BiglyBT and bittorrent-peerid; "BW" is BitWombat's). docs/cli.md
PEER_ID_PREFIX = ("-SW" + "".join(__version__.split(".")[:3]).ljust(4, "0")[:4] + "-").encode()


#: Well-known public DHT routers, used only under the rule of :attr:`SessionConfig.dht_bootstrap`.
PUBLIC_DHT_ROUTERS: list[tuple[str, int]] = [
    ("router.bittorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("router.utorrent.com", 6881),
]


#: The transports bitswarm speaks, in its default dialing order.
TRANSPORTS: tuple[str, ...] = ("utp", "tcp")


def parse_transports(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"tcp,utp"`` or a sequence of names: the transports, uTP first when both are given (the
    order dials start from; ``PeerManager.transports_for`` puts TCP first to this host).
    ValueError names an unknown or missing transport."""
    names = [n.strip().lower() for n in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in TRANSPORTS]
    if unknown or not names:
        raise ValueError(f"transports must be a non-empty list of tcp, utp (got {value!r})")
    return tuple(t for t in TRANSPORTS if t in names)


def make_peer_id() -> bytes:
    """A fresh 20-byte peer id: our client prefix and 12 random bytes."""
    return PEER_ID_PREFIX + os.urandom(20 - len(PEER_ID_PREFIX))


@dataclass(slots=True)
class SessionConfig:
    """Everything a :class:`~bitswarm.session.Session` can be told. Rates are bytes/s, 0 = unlimited."""

    #: "::" (or ""): every address of both families on one dual-stack socket per protocol (IPv4 only
    #: when the host has no IPv6); "0.0.0.0": IPv4 only; an address: that address only
    #: (:mod:`bitswarm.session.listen`).
    listen_host: str = "::"
    listen_port: int = 6881  #: 0 picks a free port (see ``Session.port``)
    peer_id: bytes = field(default_factory=make_peer_id)
    #: Address reported to trackers as ``ip`` (None: the tracker uses the source address).
    announce_ip: str | None = None
    max_peers_per_torrent: int = 60
    max_connections: int = 400
    max_half_open: int = 32
    upload_slots: int = 8  #: libtorrent's unchoke_slots_limit default
    #: Upload slots while seeding (no tit-for-tat to keep): more parallel uploads keep a seed's
    #: uplink full when each TCP flow is held back by its congestion window over a slow ACK path
    #: (measured in ``docs/benchmarks.md``: 8 slots left a 20 Mbit/s seed 89-94 % busy over a swarm,
    #: 16 keep it 95-97 % busy, like libtorrent's seed, which uploaded to all 16 leechers at once).
    seed_upload_slots: int = 16
    download_rate_limit: int = 0
    upload_rate_limit: int = 0
    #: Blocks kept requested from one peer: at least ``min_queue``, grown with its rate, at most
    #: ``max_queue`` (and at most the peer's ``reqq``).
    min_queue: int = 16
    #: Seconds of the peer's current download rate kept requested (libtorrent: request_queue_time 3 s).
    request_queue_seconds: float = 2.0
    max_queue: int = 600
    connect_timeout: float = 10.0
    handshake_timeout: float = 15.0
    inactivity_timeout: float = 180.0
    keepalive_interval: float = 90.0
    request_timeout: float = 60.0  #: a peer that sends nothing we asked for in this long is snubbed
    rechoke_interval: float = 10.0
    #: Verified pieces cached in memory for uploading (whole pieces are read at once).
    read_cache_pieces: int = 64
    #: ... and at most this many bytes of them (with 4 MiB pieces, 64 pieces would be 256 MiB).
    read_cache_bytes: int = 32 * 1024 * 1024
    #: Finished piece buffers kept for reuse by downloads (bytes).
    piece_buffer_pool_bytes: int = 32 * 1024 * 1024
    #: Bytes of pieces waiting for their disk write (back-pressure on downloads).
    max_inflight_write_bytes: int = 64 * 1024 * 1024
    resume_save_interval: float = 5.0
    announce_numwant: int = 50
    #: Tracker announces after the first: at least this many seconds apart even if the tracker asks
    #: for less (tests lower it).
    min_announce_interval: float = 30.0
    disk_workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    #: BEP 5 Mainline DHT: one UDP node per session (on the TCP listen port number when free), peers
    #: looked up and our port announced for every non-private torrent, magnet links resolved.
    enable_dht: bool = True
    #: DHT nodes to join through. None: the public routers (:data:`PUBLIC_DHT_ROUTERS`), but only when
    #: ``listen_host`` is neither loopback nor private (a wildcard counts as public); ``[]``: none
    #: (the node still answers, and learns nodes from peers' ``port`` messages).
    dht_bootstrap: list[tuple[str, int]] | None = None
    #: Where the DHT node keeps its id and contacts between runs (None: nowhere).
    dht_state_file: str | None = None
    #: Seconds between DHT announces of a torrent (lookups run sooner while it has few peers).
    dht_announce_interval: float = 15 * 60.0
    #: BEP 11 peer exchange with peers that offer ``ut_pex``.
    enable_pex: bool = True
    #: Seconds between PEX messages to one peer (BEP 11: at least 60).
    pex_interval: float = 60.0
    #: BEP 55 hole punching (``ut_holepunch``, not on private torrents): relay for peers connected to
    #: us, and ask a peer connected to an address we cannot dial to have both sides dial over uTP.
    enable_holepunch: bool = True
    #: BEP 14 Local Service Discovery: multicast on the LAN, off unless asked for.
    enable_lsd: bool = False
    lsd_group: tuple[str, int] = ("239.192.152.143", 6771)
    #: The IPv4 address whose interface joins the LSD group and sends ("0.0.0.0": the kernel's choice).
    lsd_interface: str = "0.0.0.0"
    #: Seconds between LSD announces of one torrent (BEP 14: 5 minutes).
    lsd_interval: float = 300.0
    #: Seconds a magnet link may take to get its metadata (BEP 9) before ``Session.add`` fails.
    metadata_timeout: float = 300.0
    user_agent: str = f"bitswarm/{__version__}"
    #: MSE/PE protocol encryption (``docs/protocols/mse.md``). ``prefer``: dial with MSE first and
    #: redial in plaintext if the peer refuses it, accept both; ``require``: MSE with RC4 only, both
    #: ways; ``off``: plaintext BitTorrent only. A string ("prefer", "require", "off") is accepted.
    encryption: EncryptionPolicy = EncryptionPolicy.PREFER
    #: When a dialer offers both RC4 and plaintext (its ``prefer``), select RC4 for the payload.
    #: Off by default, as libtorrent's ``prefer_rc4``: the handshake is obfuscated either way, and
    #: RC4 costs ~1.4x the plaintext time of a 1 GiB loopback transfer (docs/protocols/mse.md);
    #: ``require`` on either side still means RC4.
    prefer_rc4: bool = False
    #: Transports peers are dialed and accepted on (``docs/protocols/utp.md``): ``("utp", "tcp")``
    #: dials uTP (BEP 29) first — TCP first to this host — and the other transport when the first
    #: does not connect (uTP: within ``utp_connect_timeout``) or is closed before the BitTorrent
    #: handshake (``PeerManager.transports_for``); ``("utp",)`` is uTP only (no TCP listener). uTP runs on
    #: one UDP socket on the listen port number, shared with the DHT. A string ("tcp,utp") is accepted.
    transports: tuple[str, ...] = TRANSPORTS
    #: Seconds a uTP dial may take before the next transport is tried (libtorrent: 3 s).
    utp_connect_timeout: float = 3.0
    #: Map the listen ports on the home router (UPnP IGD and NAT-PMP/PCP, tried in parallel, in the
    #: background; renewed; removed on close): ``session/reachability.py``. Off for the library, on
    #: for the daemon and the peer commands (``--no-port-mapping``). A session on loopback maps
    #: nothing, and ``BITSWARM_NO_PORT_MAPPING=1`` in the environment turns it off (test runs).
    port_mapping: bool = False
    #: The mapping methods: ``upnp`` (UPnP IGD) and ``natpmp`` (PCP, falling back to NAT-PMP).
    port_mapping_methods: tuple[str, ...] = ("upnp", "natpmp")
    #: Seconds a torrent's first tracker announce may wait for a port mapping still being tried, so
    #: that it carries the mapped port (a reannounce corrects it otherwise). 0 (the library and the
    #: one-shot commands: behind a router that never answers, every start would pay the wait; measured
    #: 1.5 s against 0.33 s for a 1 MiB download) or up to 1 s (the daemon, which starts once).
    first_announce_wait: float = 0.0
    #: How new data files are created: ``"sparse"`` (truncated to size, the default) or ``"full"``
    #: (``posix_fallocate`` after a free-space check: a disk too small for the selected files fails
    #: the torrent with :class:`~bitswarm.storage.DiskSpaceError` before it downloads anything).
    preallocate: str = "sparse"
    #: BEP 16 super-seeding while a torrent seeds: no bitfield, one rare piece offered to each peer
    #: at a time, the next once another peer has announced it (:mod:`bitswarm.session.superseed`).
    super_seed: bool = False
    #: SOCKS5 proxy, ``socks5://[user:pass@]host:port`` (``socks5h://``: the proxy resolves names),
    #: for outgoing TCP peer connections, HTTP(S) trackers and web seeds (``session/proxy.py``).
    #: While set, no uTP socket and no DHT node are opened and UDP trackers are skipped (nothing
    #: goes out over UDP); incoming connections are not proxied. None: direct.
    proxy: str | None = None
    #: IP ranges never dialed nor accepted (tracker, PEX, DHT, LSD results and incoming
    #: connections): ``session/blocklist.py``, loaded by ``session/blocklist_source.py``. It may be
    #: replaced while the session runs (the daemon's ``blocklist-update``). None: no blocklist.
    blocklist: Blocklist | None = None

    def __post_init__(self) -> None:
        self.transports = parse_transports(self.transports)
        if self.proxy:
            from bitswarm.session.proxy import parse_proxy

            parse_proxy(self.proxy)  # ValueError names what is wrong
            if "tcp" not in self.transports:
                raise ValueError("a proxy carries TCP only: transports must include tcp")
        if self.preallocate not in ("sparse", "full"):
            raise ValueError(f"preallocate must be sparse or full (got {self.preallocate!r})")
        try:
            self.encryption = EncryptionPolicy(self.encryption)
        except ValueError:
            raise ValueError(
                f"encryption must be one of prefer, require, off (got {self.encryption!r})"
            ) from None
