"""The peers of one torrent: candidates, dialing, duplicate connections, bans, PEX and HAVEs.

libtorrent's ``peer_list`` is the model. :class:`PeerManager` owns the addresses we may dial
(``candidates``, each with a not-before time), the dials in flight, the connected peers by peer id,
the :class:`~bitswarm.session.smartban.SmartBan` record and BEP 11 peer exchange. It dials through an
injected ``dial(address)`` coroutine and reads time through an injected
:class:`~bitswarm.session.clock.Clock`.

How an address is dialed is :meth:`PeerManager.connect` (the torrent's ``dial``): the attempts of
:func:`dial_plan` in order, each a transport and whether MSE/PE opens the stream. Under
``encryption = prefer`` an MSE attempt the peer refuses (it closes, or answers without a DH key) is
followed by a plaintext one on the same transport, and the address is remembered as plaintext-only
until it advertises encryption again (extended handshake ``e``, PEX flag 0x01); a transport that
cannot connect at all skips its remaining attempts (a uTP dialer adds uTP attempts before TCP's).

An attempt counts as connected only once the BitTorrent handshake completes (the peer connection
joins). A transport that does not connect, or that the peer closes before the handshake completes
(a uTP-only libtorrent's TCP listener accepts and closes at once), is followed by the next
transport of the dial, once: each transport is tried at most once per dial (:meth:`PeerManager.
transports_for` gives the order: uTP first, TCP first to a loopback or own address).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import os
import weakref
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitswarm.mse import EncryptionPolicy, MSEProtocolError, State, skey_for
from bitswarm.session.holepunch import Holepuncher
from bitswarm.session.peer_priority import canonical_ip, ip_family, peer_priority
from bitswarm.session.smartban import Ban, PeerKey, SmartBan
from bitswarm.wire.ut_pex import (
    FLAG_HOLEPUNCH,
    FLAG_PREFERS_ENCRYPTION,
    FLAG_REACHABLE,
    FLAG_SEED,
    FLAG_UTP,
    PexMessage,
    PexPeer,
    PexTracker,
    encode_pex_message,
)

if TYPE_CHECKING:
    from bitswarm.session.clock import Clock, Timer
    from bitswarm.session.config import SessionConfig
    from bitswarm.session.peer import PeerProtocol
    from bitswarm.transport import StreamReceiver
    from bitswarm.utp import UtpSocketManager

log = logging.getLogger("bitswarm.torrent")


def dial_failure(exc: BaseException) -> str:
    """Why a dial failed, in words: "timed out", "Connection refused", "No route to host" ..."""
    if isinstance(exc, TimeoutError) and not exc.args:
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


Address = tuple[str, int]

#: Seconds between passes of the connect loop over known addresses (retry timers, freed slots); a
#: new address wakes it at once.
CONNECT_TICK = 0.5
#: Seconds before an address we dialed is dialed again (if it did not connect, or it did and the
#: connection closed: then after :data:`REDIAL_BACKOFF` instead).
REDIAL_SECONDS = 30.0
#: Seconds before a peer whose connection closed is dialed again: the first delay, doubled for
#: each further close of a connection that lasted less than :data:`STABLE_SECONDS`, at most
#: ``REDIAL_SECONDS`` (a simultaneous-connect loser or a peer restarting is back in a second).
REDIAL_BACKOFF = 1.0
STABLE_SECONDS = 60.0
#: Addresses learnt from peer exchange are remembered only while fewer than this many are known.
MAX_PEX_CANDIDATES = 500
#: HAVEs to peers we choke wait this long and leave together: such a peer cannot ask us for the
#: piece yet, and one HAVE per segment (plus the receiver's wake-up and ACK) was the swarm's most
#: frequent message by far.
HAVE_BATCH_SECONDS = 0.1
#: Addresses whose MSE support (and uTP support, and close counts) we remember.
MAX_MSE_HINTS = 4 * MAX_PEX_CANDIDATES
#: Seconds past ``handshake_timeout`` a dial waits for its connection's BitTorrent handshake (the
#: peer connection's own timer closes a silent peer first; this only bounds the dial).
HANDSHAKE_GRACE = 5.0


def is_local_peer(ip: str, own: Address | None) -> bool:
    """Is ``ip`` this host: a loopback address, or our own address of its family (``own``)? Such
    peers are dialed over TCP first (docs/protocols/utp.md, "Dialing"): no uplink to yield on, and
    uTP costs ~4x TCP's CPU per byte here. A name that is not an IP literal is not local."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_loopback or (own is not None and ip == own[0])


@dataclass(frozen=True, slots=True)
class DialAttempt:
    """One way to open a connection: over ``transport`` (``"utp"`` or ``"tcp"``), MSE first or not."""

    transport: str
    mse: bool


class DialOutcome(enum.Enum):
    #: The connection is up and its BitTorrent handshake completed (or it outlived the dial's bound).
    CONNECTED = "CONNECTED"
    #: The peer refused MSE (closed, or answered without a DH key): a plaintext attempt may follow.
    MSE_REFUSED = "MSE_REFUSED"
    #: No connection on this transport (refused, timed out, or the handshake failed otherwise).
    FAILED = "FAILED"
    #: The transport connected and the peer closed it before the BitTorrent handshake completed (in
    #: MSE or the BitTorrent handshake: no such torrent there yet, or a listener that refuses this
    #: transport). The next transport of the dial is tried; if none gets through, the address is
    #: redialed after a short back-off (:meth:`PeerManager.connect`).
    CLOSED = "CLOSED"


class _HandshakeWatch:
    """One dial attempt's peer connection, until its BitTorrent handshake completes or it closes."""

    __slots__ = ("done", "joined")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.joined = False


def dial_plan(
    policy: EncryptionPolicy, *, mse_hint: bool | None = None, transports: Sequence[str] = ("tcp",)
) -> list[DialAttempt]:
    """The attempts to dial a peer with, in order.

    ``require``: MSE only. ``off``: plaintext only. ``prefer``: MSE then plaintext, or plaintext only
    for a peer known to refuse MSE (``mse_hint`` False: it refused before and has not advertised
    encryption since). ``mse_hint`` None (unknown) or True (``e`` = 1, PEX flag 0x01) dials MSE
    first, as libtorrent does. Every transport gets its attempts, in the order given."""
    if policy is EncryptionPolicy.REQUIRE:
        modes = [True]
    elif policy is EncryptionPolicy.OFF or mse_hint is False:
        modes = [False]
    else:
        modes = [True, False]
    return [DialAttempt(t, m) for t in transports for m in modes]


class PeerManager:
    """Candidates, dials, connected peers and bans of one torrent."""

    def __init__(
        self,
        *,
        config: SessionConfig,
        clock: Clock,
        our_peer_id: bytes,
        own_address: Callable[[], Address],
        dial: Callable[[Address], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        emit: Callable[..., None],
        pex: PexTracker | None,
        utp: Callable[[], UtpSocketManager | None] = lambda: None,
        holepunch: bool = False,
        own_ip: Callable[[int], Address | None] = lambda family: None,
        families: Callable[[], tuple[int, ...]] = lambda: (4, 6),
    ) -> None:
        self.config = config
        #: our (IP, listen port) of a family when known: BEP 40 priorities (dial order, eviction)
        self._own_ip = own_ip
        #: the address families the session listens and dials on: other candidates are skipped
        self._families = families
        #: BEP 40 priority of each address, with the own address it was computed against
        self._priority: dict[Address, tuple[Address | None, int]] = {}
        #: the session's uTP socket (None: no uTP; its dials are skipped)
        self._utp = utp
        self.clock = clock
        self.our_peer_id = our_peer_id
        self._own_address = own_address
        self._dial = dial
        self._spawn = spawn
        self._emit = emit
        #: BEP 11: what we told each peer about our other peers (None: no PEX for this torrent).
        self.pex = pex
        self.peers: dict[bytes, PeerProtocol] = {}  # by peer id
        self.connecting: set[Address] = set()
        self.candidates: dict[Address, float] = {}  # address -> not before (clock seconds)
        #: set when a new address arrives: the connect loop dials it now, not at its next tick
        #: (a tracker reply at start-up used to wait up to half a second for its dials). Only
        #: while the loop runs; without a candidate it returns and ``wake`` starts it again.
        self._new_candidates: asyncio.Event | None = None
        #: start the connect loop if it is not running (set by the torrent; issue 24)
        self.wake: Callable[[], None] = lambda: None
        #: who sent the bad data of failed pieces (bans per peer, per IP only after several)
        self.smart_ban = SmartBan()
        #: set by the torrent: a seed dials only while it has addresses to try
        self.seeding = False
        self._have_timer: Timer | None = None
        #: address -> does it speak MSE (True: advertised ``e``/PEX 0x01 or completed MSE; False:
        #: refused MSE). Unknown addresses are dialed with MSE first under ``prefer``.
        self.mse_hint: dict[Address, bool] = {}
        #: address -> does it speak uTP (True: PEX flag 0x04 or a uTP connection; False: a uTP dial
        #: failed). Unknown addresses are dialed over uTP first when uTP is on.
        self.utp_hint: dict[Address, bool] = {}
        #: address -> its TCP dial failed or was closed before the handshake, and uTP then got
        #: through (False). A local address (TCP first) with False is dialed over uTP first.
        self.tcp_hint: dict[Address, bool] = {}
        #: the peer connection of each dial attempt -> its handshake (join / remove tell), from the
        #: attempt until its handshake completes or it closes (weak: a connection that never opened)
        self._watches: weakref.WeakKeyDictionary[object, _HandshakeWatch] = weakref.WeakKeyDictionary()
        #: address -> closes of short-lived connections in a row (the redial back-off's exponent)
        self._closes: dict[Address, int] = {}
        #: BEP 55 relay and initiator (None: off, or a private torrent)
        self.holepunch: Holepuncher | None = None
        if holepunch:
            self.holepunch = Holepuncher(
                clock=clock, peers=lambda: list(self.peers.values()), dial=dial, spawn=spawn,
                own_address=own_address, emit=emit, utp_available=lambda: utp() is not None, own_ip=own_ip,
            )  # fmt: skip

    def __iter__(self) -> Iterator[PeerProtocol]:
        return iter(self.peers.values())

    def __len__(self) -> int:
        return len(self.peers)

    # -- candidates and dialing ----------------------------------------------------------------

    def add(self, host: str, port: int) -> None:
        """Remember an address to dial (from a tracker, ``--peer``, PEX ...). IPv4-mapped IPv6 is
        kept as IPv4 (one key per peer); an IP of a family the session does not speak is skipped."""
        host = canonical_ip(host)
        if not 0 < port < 65536 or (host, port) in self.candidates:
            return
        family = ip_family(host)
        if family is not None and family not in self._families():
            return
        if self.blocked(host):
            return
        if not self.smart_ban.is_banned(host, port):
            self.candidates[(host, port)] = 0.0
            self.dial_soon()

    def blocked(self, ip: str) -> bool:
        """Is ``ip`` in the session's IP blocklist (counted in its ``blocked``)? Every address
        arrives through :meth:`add` (trackers, PEX, DHT, LSD, ``--peer``) and every dial through
        :meth:`connect` (hole punches too): both ask here."""
        blocklist = self.config.blocklist
        if blocklist is not None and blocklist.check(ip):
            log.debug("%s is blocklisted: not dialed", ip)
            return True
        return False

    def priority(self, addr: Address) -> int:
        """BEP 40 canonical priority of a connection to ``addr`` (-1: our own address of its family
        is unknown, or it is not an IP literal). Higher is dialed first and dropped last. Cached per
        address while our own address of its family stays the same (an external one may be learnt)."""
        family = ip_family(addr[0])
        own = self._own_ip(family) if family is not None else None
        cached = self._priority.get(addr)
        if cached is not None and cached[0] == own:
            return cached[1]
        prio = peer_priority(own, addr) if own is not None else -1
        if len(self._priority) >= MAX_MSE_HINTS:
            self._priority.clear()
        self._priority[addr] = (own, prio)
        return prio

    def known_addresses(self) -> set[Address]:
        """Every address we are connected to or may dial (kept by the daemon across restarts)."""
        return {p.address for p in self.peers.values()} | set(self.candidates)

    def wanted_connections(self) -> int:
        return self.config.max_peers_per_torrent - len(self.peers) - len(self.connecting)

    def dial_due(self) -> int:
        """Start dials to due candidates within the connection budgets; the number started."""
        budget = min(self.wanted_connections(), self.config.max_half_open - len(self.connecting))
        if budget <= 0 or (self.seeding and not self.candidates):
            return 0
        now = self.clock.now()
        # an incoming peer is connected at the listen address it gave, too: not dialed again
        connected = {p.address for p in self.peers.values()} | {
            a for p in self.peers.values() if (a := p.pex_address) is not None
        }
        own = self._own_address()
        started = 0
        due = [a for a, not_before in self.candidates.items() if not_before <= now]
        due.sort(key=self.priority, reverse=True)  # BEP 40: highest canonical priority first
        for addr in due:
            if started >= budget:
                break
            if addr in self.connecting or addr in connected:
                continue
            if self.smart_ban.is_banned(*addr) or addr == own:
                del self.candidates[addr]
                continue
            self.candidates[addr] = now + REDIAL_SECONDS
            self.connecting.add(addr)
            started += 1
            self._spawn(self._dial_one(addr))
        return started

    async def run(self) -> None:
        """The connect loop: dial due candidates whenever one arrives, every ``CONNECT_TICK`` while
        some are due, else at the next one's time; with no candidate it sleeps without a timer (an
        idle torrent costs nothing per second: issue 24); with no candidate it returns (:attr:`wake`
        starts it again when one arrives)."""
        new = self._new_candidates = asyncio.Event()
        try:
            while True:
                self.dial_due()
                new.clear()
                wait = self.next_dial_wait()
                if wait is None:
                    return
                await self.clock.wait(new, wait)
        finally:
            if self._new_candidates is new:
                self._new_candidates = None

    def next_dial_wait(self) -> float | None:
        """Seconds until the connect loop has work (None: none until a candidate arrives)."""
        if not self.candidates:
            return None
        soonest = min(self.candidates.values()) - self.clock.now()
        return max(CONNECT_TICK, soonest)

    async def _dial_one(self, addr: Address) -> None:
        try:
            await self._dial(addr)
        finally:
            self.connecting.discard(addr)

    def note_mse(self, addr: Address, supported: bool) -> None:
        """Remember whether ``addr`` speaks MSE (bounded: the oldest half is forgotten when full)."""
        _remember(self.mse_hint, addr, supported)

    def note_utp(self, addr: Address, supported: bool) -> None:
        """Remember whether ``addr`` speaks uTP (PEX flag 0x04, a uTP connection, a failed dial)."""
        _remember(self.utp_hint, addr, supported)

    def note_tcp(self, addr: Address, supported: bool) -> None:
        """Remember whether ``addr`` takes TCP (False: its TCP dial failed or was closed in the
        handshake and uTP got through; True: a TCP connection completed its handshake)."""
        _remember(self.tcp_hint, addr, supported)

    def transports_for(self, addr: Address) -> list[str]:
        """The transports to dial ``addr`` on, in order (docs/protocols/utp.md, "Dialing").

        The configured ones, uTP left out when the session has no uTP socket. uTP first, as
        libtorrent does, except: TCP first to an address whose uTP dial failed before (uTP is still
        tried after it: the failure may have been loss, not a TCP-only peer), and TCP first to this
        host (loopback, or our own address of its family) unless TCP failed there before and uTP
        got through. A hole punch dials uTP only."""
        order = [t for t in self.config.transports if t != "utp" or self._utp() is not None]
        if self.holepunch is not None and self.holepunch.punching(addr):
            return [t for t in order if t == "utp"]  # BEP 55: a hole punch is a uTP dial
        if order != ["utp", "tcp"]:
            return order
        family = ip_family(addr[0])
        local = is_local_peer(addr[0], self._own_ip(family) if family is not None else None)
        if self.utp_hint.get(addr) is False or (local and self.tcp_hint.get(addr) is not False):
            return ["tcp", "utp"]
        return order

    async def connect(
        self,
        addr: Address,
        new_connection: Callable[[Address], StreamReceiver],
        skey: bytes,
        *,
        transports: Sequence[str] | None = None,
    ) -> DialOutcome:
        """Dial ``addr`` under the session's encryption policy (:func:`dial_plan`) on ``transports``
        (default :meth:`transports_for`); ``skey`` is the torrent's MSE stream key (its info-hash),
        ``new_connection`` makes each attempt's peer connection. Returns once a connection's
        BitTorrent handshake completed, or every attempt failed (at once for an address of a family
        the session's sockets do not carry). A transport that does not connect, or that the peer
        closes before the handshake, is followed by the next transport (each tried once); a dial
        the peer hung up on is redialed after the short back-off (:meth:`remove`)."""
        policy = self.config.encryption
        if (family := ip_family(addr[0])) is not None and family not in self._families():
            return DialOutcome.FAILED
        if self.blocked(addr[0]):
            return DialOutcome.FAILED
        if transports is None:
            transports = self.transports_for(addr)
        dead: set[str] = set()
        refused_mse: set[str] = set()
        hung_up = False  # a transport connected and the peer closed it before the handshake
        outcome = DialOutcome.FAILED
        for attempt in dial_plan(policy, mse_hint=self.mse_hint.get(addr), transports=transports):
            if attempt.transport in dead:
                continue
            receiver = new_connection(addr)
            watch = self._watches[receiver] = _HandshakeWatch()
            try:
                outcome = await self._attempt(addr, attempt, receiver, skey)
                if outcome is DialOutcome.CONNECTED:
                    outcome = await self._handshake(watch)
            finally:
                if watch.joined or watch.done.is_set() or outcome is DialOutcome.FAILED:
                    self._watches.pop(receiver, None)
                # else: the peer hung up in MSE and the connection's close is still on its way:
                # :meth:`remove` takes it as this dial's (the dial redials, below), not as a close
            if attempt.transport == "utp" and outcome is not DialOutcome.MSE_REFUSED:
                self.note_utp(addr, outcome is not DialOutcome.FAILED)
            if outcome is DialOutcome.CONNECTED:
                if attempt.mse:
                    self.note_mse(addr, True)
                elif attempt.transport in refused_mse:
                    self.note_mse(addr, False)  # MSE refused, plaintext got through
                if attempt.transport == "tcp":
                    self.note_tcp(addr, True)
                elif "tcp" in dead:
                    self.note_tcp(addr, False)  # TCP refused or hung up; uTP got through
                return outcome
            hung_up = hung_up or outcome is not DialOutcome.FAILED
            if outcome is DialOutcome.MSE_REFUSED:
                refused_mse.add(attempt.transport)
                log.debug("%s:%d refused MSE", *addr)
            else:
                if outcome is DialOutcome.CLOSED:
                    log.debug("%s:%d (%s) closed before the handshake", *addr, attempt.transport)
                dead.add(attempt.transport)
                punch = self.holepunch
                if attempt.transport == "utp" and outcome is DialOutcome.FAILED and punch is not None:
                    punch.dial_failed(addr)  # BEP 55: ask a relay while TCP is tried
        if hung_up:
            self._redial_soon(addr, lasted=0.0)
        return outcome

    async def _handshake(self, watch: _HandshakeWatch) -> DialOutcome:
        """Wait for a connected attempt's BitTorrent handshake: CONNECTED once it completed (the
        peer connection joined, or was refused as a duplicate), CLOSED if the connection closed
        first. Bounded: the peer connection's ``handshake_timeout`` closes a silent peer."""
        if not watch.done.is_set():
            await self.clock.wait(watch.done, self.config.handshake_timeout + HANDSHAKE_GRACE)
        if watch.done.is_set() and not watch.joined:
            return DialOutcome.CLOSED
        return DialOutcome.CONNECTED

    async def _attempt(
        self, addr: Address, attempt: DialAttempt, receiver: StreamReceiver, skey: bytes
    ) -> DialOutcome:
        from bitswarm.transport import MSEStream, connect_tcp

        policy = self.config.encryption
        done: asyncio.Future[MSEProtocolError | None] | None = None
        if attempt.mse:
            done = asyncio.get_running_loop().create_future()

            def finished(exc: MSEProtocolError | None, done: asyncio.Future[Any] = done) -> None:
                if not done.done():
                    done.set_result(exc)

            receiver = MSEStream.initiator(receiver, skey_for(skey), policy=policy, on_done=finished)
        try:
            if attempt.transport == "utp":
                utp = self._utp()
                if utp is None:
                    raise ConnectionError("no uTP socket")
                await utp.connect(addr, lambda: receiver, timeout=self.config.utp_connect_timeout)
            elif attempt.transport == "tcp" and self.config.proxy:
                from bitswarm.session.proxy import connect_tcp_via_proxy

                timeout = self.config.connect_timeout
                async with asyncio.timeout(timeout):
                    await connect_tcp_via_proxy(self.config.proxy, *addr, receiver, timeout=timeout)
            elif attempt.transport == "tcp":
                async with asyncio.timeout(self.config.connect_timeout):
                    await connect_tcp(addr[0], addr[1], receiver)
            else:
                raise ValueError(f"no dialer for transport {attempt.transport!r}")
        except (OSError, TimeoutError) as exc:  # --debug says why no peer got going
            log.debug("dial %s:%d (%s) failed: %s", *addr, attempt.transport, dial_failure(exc))
            return DialOutcome.FAILED
        if done is None:
            return DialOutcome.CONNECTED
        # bounded: the peer connection's handshake timeout closes a silent peer, which ends MSE
        error = await done
        if error is None:
            return DialOutcome.CONNECTED
        if error.state is State.AWAIT_KEY and policy is EncryptionPolicy.PREFER:
            return DialOutcome.MSE_REFUSED
        return DialOutcome.CLOSED

    # -- connected peers -----------------------------------------------------------------------

    def join(self, peer: PeerProtocol) -> bool:
        """A handshake completed. False (and the connection is closed) for a duplicate or a ban."""
        assert peer.peer_id is not None
        watch = self._watches.get(peer)
        if watch is not None:  # a dial's connection: its handshake completed, no other transport
            watch.joined = True
            watch.done.set()
        if self.is_banned(peer):
            peer.abort("banned")
            return False
        old = self.peers.get(peer.peer_id)
        if old is not None:
            # Two connections to one peer (both sides dialed: LSD, PEX, DHT find each other at once).
            # Both sides keep the one opened by the peer with the lower peer id, so they agree.
            keep_new = old.outgoing != peer.outgoing and (peer.outgoing == (self.our_peer_id < peer.peer_id))
            if not keep_new:
                peer.close("duplicate connection")
                return False
            old.close("duplicate connection (the other one is kept)")
        if sum(not p.closed for p in self.peers.values()) >= self.config.max_peers_per_torrent:
            # BEP 40: the connection of lowest canonical priority goes, the new one or another
            def prio(p: PeerProtocol) -> int:
                return self.priority(p.pex_address or p.address)

            victim = min((p for p in self.peers.values() if not p.closed), key=prio)
            if prio(peer) <= prio(victim):
                peer.close("too many peers")
                return False
            victim.close("too many peers (dropped for a peer of higher BEP 40 priority)")
        self.peers[peer.peer_id] = peer
        self._emit(
            "peer_connected",
            address=f"{peer.address[0]}:{peer.address[1]}",
            transport=peer.transport_kind,
            encrypted=peer.encrypted,
        )
        return True

    def remove(self, peer: PeerProtocol) -> bool:
        """Forget a closed connection; True if it was one of our peers. A connection we opened that
        closed before it joined (the peer hung up in the handshake: its torrent not running yet, or
        a connection to us it keeps instead) is redialed after the same short back-off: by its dial
        (:meth:`connect`, after the other transport) while the dial is still on it."""
        if peer.peer_id is None or self.peers.get(peer.peer_id) is not peer:
            watch = self._watches.get(peer)
            if watch is not None and not watch.joined:
                del self._watches[peer]
                watch.done.set()  # closed in the handshake: its dial tries the next transport
                return False
            if peer.outgoing and peer.stream is not None:
                self._redial_later(peer)
            return False
        del self.peers[peer.peer_id]
        if self.pex is not None:
            self.pex.forget(peer)
        self._redial_later(peer)
        return True

    def _redial_later(self, peer: PeerProtocol) -> None:
        """A connection closed: its address is dialed again after a short back-off (doubled for
        each short-lived connection in a row), not after the failed-dial wait. A seed we no longer
        need is left to that wait."""
        addr = peer.pex_address
        if addr is not None and not (self.seeding and peer.is_seed):
            self._redial_soon(addr, lasted=self.clock.now() - peer.connected_at)

    def _redial_soon(self, addr: Address, *, lasted: float) -> None:
        """Dial ``addr`` (if it is a candidate) again after ``REDIAL_BACKOFF``, doubled for each
        connection to it in a row that lasted less than ``STABLE_SECONDS``, at most ``REDIAL_SECONDS``."""
        if addr not in self.candidates:
            return
        n = 0 if lasted >= STABLE_SECONDS else self._closes.get(addr, 0)
        _remember(self._closes, addr, n + 1)
        self.candidates[addr] = self.clock.now() + min(REDIAL_SECONDS, REDIAL_BACKOFF * 2**n)
        self.dial_soon()  # the connect loop may sleep until a later time

    def dial_soon(self) -> None:
        """Candidates' times were moved earlier (or new ones came): the connect loop looks at them
        now, started if it is not running."""
        if self._new_candidates is not None:
            self._new_candidates.set()
        else:
            self.wake()

    def check_timeouts(self, now: float) -> None:
        """Close peers silent for ``inactivity_timeout``; keep quiet links alive."""
        cfg = self.config
        for peer in list(self.peers.values()):
            if now - peer.last_recv > cfg.inactivity_timeout:
                peer.close("inactive")
            elif now - peer.last_send > cfg.keepalive_interval:
                peer.send_keepalive()

    def close_all(self, reason: str) -> None:
        for peer in list(self.peers.values()):
            peer.close(reason)

    # -- bans (policy: smartban.py) ------------------------------------------------------------

    def is_banned(self, peer: PeerProtocol) -> bool:
        key = peer_key(peer)
        return self.smart_ban.is_banned(key.ip, key.port, key.peer_id)

    def apply(self, verdicts: list[Ban]) -> None:
        """Apply smart-ban verdicts: drop the peer's address (or every address of its IP) from the
        candidates and close its connections."""
        for verdict in verdicts:
            key = verdict.peer
            if verdict.whole_ip:
                gone = [a for a in self.candidates if a[0] == key.ip]
            else:
                gone = [(key.ip, key.port)] if (key.ip, key.port) in self.candidates else []
            for addr in gone:
                del self.candidates[addr]
            scope = "ip" if verdict.whole_ip else "peer"
            self._emit("peer_banned", address=key.ip, port=key.port, scope=scope, reason=verdict.reason)
            log.warning("banning %s %s:%d: %s", scope, key.ip, key.port, verdict.reason)
            for other in list(self.peers.values()):
                if self.is_banned(other):
                    other.abort(f"banned: {verdict.reason}")

    # -- peer exchange (BEP 11) ----------------------------------------------------------------

    def on_pex(self, peer: PeerProtocol, msg: PexMessage) -> None:
        """Addresses a peer is connected to: dial candidates (bounded; dropped ones are left alone)."""
        for p in msg.added:  # added and added6 (BEP 11), IPv4-mapped ones as IPv4
            addr = (canonical_ip(p.ip), p.port)
            if p.flags & FLAG_PREFERS_ENCRYPTION:
                self.note_mse(addr, True)
            if p.flags & FLAG_UTP:
                self.note_utp(addr, True)
            if len(self.candidates) >= MAX_PEX_CANDIDATES:
                break
            self.add(*addr)
        if self.holepunch is not None and peer is not None:
            self.holepunch.on_pex(peer, msg)  # BEP 55: the sender is a relay for these contacts

    def send_pex(self, now: float) -> None:
        """Give every peer that offered ``ut_pex`` the changes in our peer set (at most one message
        per ``pex_interval`` each; :class:`PexTracker` keeps the per-peer state)."""
        pex = self.pex
        if pex is None:
            return
        targets = [p for p in self.peers.values() if p.ext_ids.get("ut_pex")]
        if not targets:
            return
        connected: list[PexPeer] = []
        for p in self.peers.values():
            addr = p.pex_address
            if addr is not None:
                flags = (FLAG_REACHABLE if p.outgoing else 0) | (FLAG_SEED if p.is_seed else 0)
                if p.supports_encryption:
                    flags |= FLAG_PREFERS_ENCRYPTION
                stream = p.stream
                if stream is not None and stream.kind == "utp":
                    flags |= FLAG_UTP
                if p.ext_ids.get("ut_holepunch"):
                    flags |= FLAG_HOLEPUNCH
                connected.append(PexPeer(addr[0], addr[1], flags))
        for peer in targets:
            own = peer.pex_address
            try:
                msg = pex.next_message(peer, connected, now, exclude=[own] if own else [])
            except ValueError:  # an address that is not an IP literal: nothing to tell
                continue
            if msg is not None:
                peer.send_extended("ut_pex", encode_pex_message(msg))

    # -- HAVEs ---------------------------------------------------------------------------------

    def announce_have(self, index: int) -> None:
        """Tell peers we have piece ``index`` now, or later where it is not news to them.

        A seed learns nothing from a HAVE (late in a swarm most peers are seeds), nor does a peer
        that has the piece: its HAVE waits until we complete (peers tell a seed from its HAVEs). On a
        connection we do not upload on, each HAVE is a packet of its own, and the receiver's ACK
        another one: those are batched for ``HAVE_BATCH_SECONDS``."""
        for peer in list(self.peers.values()):
            if peer.is_seed:
                continue
            has = peer.has
            if has is not None and has.get(index):
                peer.withheld_haves.append(index)
            elif peer.am_choking:
                peer.queued_haves.append(index)
                if self._have_timer is None:
                    self._have_timer = self.clock.call_later(HAVE_BATCH_SECONDS, self._flush_haves)
            else:
                peer.send_have(index)

    def _flush_haves(self) -> None:
        self._have_timer = None
        for peer in self.peers.values():
            if peer.queued_haves:
                peer.flush_haves()

    def became_seed(self) -> None:
        """We completed: drop seeds, lose interest, send every withheld HAVE."""
        self.seeding = True
        for peer in list(self.peers.values()):
            if peer.is_seed:
                peer.close("both seeds")
            else:
                peer.set_interested(False)
                peer.queued_haves.extend(peer.withheld_haves)  # one write: they go out together
                peer.withheld_haves.clear()
                peer.flush_haves()

    def stop(self) -> None:
        if self._have_timer is not None:
            self._have_timer.cancel()
            self._have_timer = None
        self.close_all("torrent stopped")


def _remember(hints: dict[Address, Any], addr: Address, value: Any) -> None:
    """Set ``hints[addr]`` (bounded: the oldest half is forgotten when full)."""
    hints.pop(addr, None)
    if len(hints) >= MAX_MSE_HINTS:
        for old in list(hints)[: MAX_MSE_HINTS // 2]:
            del hints[old]
    hints[addr] = value


def peer_key(peer: PeerProtocol) -> PeerKey:
    """Who a peer is for the smart ban: its IP, the port it listens on (the address we dialed, or an
    incoming peer's advertised port) and its peer id."""
    host, port = peer.pex_address or peer.address
    return PeerKey(host, port, peer.peer_id or b"")
