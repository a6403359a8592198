"""BEP 55 hole punching for one torrent: relay, initiator and target (``ut_holepunch``).

Two peers behind NATs cannot dial each other: each NAT drops (or answers ICMP/RST to) a connection
nobody inside asked for. A third peer connected to both — the *relay* — tells both to dial each other
over uTP at the same moment; each side's outgoing SYN opens its own NAT for the other side's SYN
(Linux MASQUERADE and most home routers keep the source port of a UDP flow and let the exact remote
endpoint's datagrams back in), and one uTP connection, or two that cross (the duplicate-connection
rule of :meth:`~bitswarm.session.peer_manager.PeerManager.join` keeps one), comes up.

:class:`Holepuncher` plays the three roles (the wire codec is :mod:`bitswarm.wire.ut_holepunch`):

* **relay** — a ``rendezvous`` for an endpoint we are connected to, whose peer offered
  ``ut_holepunch``: a ``connect`` to both sides, each with the other's endpoint. Otherwise an
  ``error``: ``NoSuchPeer`` (not a dialable endpoint, or the initiator itself), ``NotConnected``,
  ``NoSupport``, ``NoSelf`` (our own listen address). A peer that did not offer ``ut_holepunch`` is
  ignored (BEP 55), and each peer gets at most :data:`RENDEZVOUS_PER_MINUTE` rendezvous answered
  (and connects acted on) a minute.
* **initiator** — an address whose uTP dial failed (we ask while TCP is still tried), and that a
  connected peer offering ``ut_holepunch`` told us about in PEX (flag 0x08, or any contact: the
  sender is connected to it), gets a ``rendezvous`` through that peer: at once when both are known
  (whichever came second), at most once per :data:`PUNCH_RETRY` seconds per address.
* **target and initiator on ``connect``** — dial the endpoint over uTP only (the torrent's own dial
  path: encryption policy, duplicate rule), unless we are connected to it already (then BEP 55 says
  ignore the message), a few times while the other side's SYN may still be on its way
  (:data:`PUNCH_ATTEMPTS`). At most :data:`MAX_PUNCHES` punches run at once; a ``connect`` from a
  peer that did not offer ``ut_holepunch`` is ignored.

Every step is published as a ``holepunch`` event (``message``: ``rendezvous_sent`` /
``rendezvous`` / ``connect`` / ``error``, ``role``, ``address``; and ``punched`` when a punch dial's
connection joined), and counted in :attr:`Holepuncher.stats`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitswarm.wire.ut_holepunch import (
    EXTENSION_NAME,
    ExtensionProtocolError,
    HolepunchErrorCode,
    HolepunchMessage,
    HolepunchType,
    decode_holepunch_message,
    encode_holepunch_message,
)
from bitswarm.wire.ut_pex import FLAG_HOLEPUNCH, PexMessage

if TYPE_CHECKING:
    from bitswarm.session.clock import Clock
    from bitswarm.session.peer import PeerProtocol

log = logging.getLogger("bitswarm.holepunch")

Address = tuple[str, int]

#: Seconds before an address gets another rendezvous (a punch that did not work).
PUNCH_RETRY = 60.0
#: uTP dials of one punch: the first SYN often meets the far NAT before that side's own SYN opened
#: it (dropped, or answered ICMP port unreachable, which fails a dial at once); the next one passes.
PUNCH_ATTEMPTS = 3
#: Seconds after a punch dial (failed or connected) to wait for a connection to join before the next.
PUNCH_INTERVAL = 2.0
PUNCH_SETTLE_STEPS = 20
#: Punch dials running at once (a relay cannot make us dial the whole internet).
MAX_PUNCHES = 8
#: Rendezvous answered, and connects acted on, per peer per minute (per-client limit).
RENDEZVOUS_PER_MINUTE = 20
#: Addresses whose relay and failed dial we remember.
MAX_REMEMBERED = 1000


@dataclass(slots=True)
class HolepunchStats:
    rendezvous_sent: int = 0  #: as initiator
    rendezvous_relayed: int = 0  #: as relay: connect sent to both sides
    errors_sent: int = 0  #: as relay
    errors_received: int = 0  #: as initiator
    connects_received: int = 0
    punch_dials: int = 0  #: uTP dial attempts on a connect
    punched: int = 0  #: connections that joined after a connect


def canonical(addr: Address) -> Address | None:
    """``addr`` with its IP in normal text form (an IPv4-mapped IPv6 address as IPv4); None when it is
    not an IP literal with a port in 1..65535."""
    try:
        ip = ipaddress.ip_address(addr[0])
    except ValueError:
        return None
    if not 0 < addr[1] < 65536 or ip.is_unspecified:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.compressed, addr[1])


def supports(peer: PeerProtocol) -> bool:
    """The peer offered ``ut_holepunch`` in its extended handshake and is usable."""
    return bool(peer.ext_ids.get(EXTENSION_NAME)) and peer.established and not peer.closed


def endpoint(peer: PeerProtocol) -> Address | None:
    """Where other peers reach ``peer``: its listen address (:attr:`PeerProtocol.pex_address`), or for
    an incoming uTP connection without a listen port, its UDP source (the uTP socket's own port)."""
    addr = peer.pex_address
    if addr is None and peer.stream is not None and peer.stream.kind == "utp":
        addr = peer.address
    return canonical(addr) if addr is not None else None


class Holepuncher:
    """BEP 55 for one torrent (see the module docstring).

    ``peers`` yields the torrent's connected peers; ``dial(addr)`` dials through the torrent's dial
    path (the peer manager restricts it to uTP while :meth:`punching` says so); ``spawn`` runs a
    coroutine in the torrent's task group; ``own_address`` is our listen address and ``own_ip(family)``
    our (external, once known) address of a family with the listen port; ``emit`` publishes a torrent
    event."""

    def __init__(
        self,
        *,
        clock: Clock,
        peers: Callable[[], list[PeerProtocol]],
        dial: Callable[[Address], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        own_address: Callable[[], Address],
        emit: Callable[..., None],
        utp_available: Callable[[], bool],
        own_ip: Callable[[int], Address | None] = lambda family: None,
    ) -> None:
        self.clock = clock
        self._peers = peers
        self._dial = dial
        self._spawn = spawn
        self._own_address = own_address
        self._emit = emit
        self._utp_available = utp_available
        self._own_ip = own_ip
        self.stats = HolepunchStats()
        #: address -> the peer that told us it is connected to it (PEX), the relay to ask
        self._relays: dict[Address, PeerProtocol] = {}
        #: address -> when its last uTP dial failed
        self._failed: dict[Address, float] = {}
        #: address -> when we last sent a rendezvous for it
        self._asked: dict[Address, float] = {}
        #: addresses being punched now (uTP dials only)
        self._punching: set[Address] = set()
        #: per-peer times of answered rendezvous and connects (rate limit)
        self._answered: dict[int, deque[float]] = {}

    # -- hooks from the peer manager -----------------------------------------------------------

    def punching(self, addr: Address) -> bool:
        """A punch dial to ``addr`` runs: it goes over uTP only."""
        return addr in self._punching

    def on_pex(self, peer: PeerProtocol, msg: PexMessage) -> None:
        """A PEX message: every contact in it is connected to ``peer``, a relay candidate when it
        offered ``ut_holepunch``. A contact whose dial failed gets its rendezvous at once."""
        if not supports(peer):
            return
        for p in msg.added:
            addr = canonical(p.address)
            if addr is None:
                continue
            old = self._relays.get(addr)
            # prefer a relay that says the contact speaks BEP 55 (flag 0x08), else keep the first
            if old is None or old.closed or p.flags & FLAG_HOLEPUNCH:
                _remember(self._relays, addr, peer)
            if addr in self._failed:
                self._rendezvous(addr)

    def dial_failed(self, addr: Address) -> None:
        """A uTP dial to ``addr`` failed: ask a relay to punch (if we know one)."""
        key = canonical(addr)
        if key is None or key in self._punching:
            return
        _remember(self._failed, key, self.clock.now())
        self._rendezvous(key)

    def _is_self(self, addr: Address) -> bool:
        """``addr`` (canonical) is our listen address or our own address as others see it."""
        if addr == canonical(self._own_address()):
            return True
        own = self._own_ip(6 if ":" in addr[0] else 4)
        return own is not None and canonical(own) == addr

    def _rendezvous(self, addr: Address) -> None:
        relay = self._relays.get(addr)
        if self._is_self(addr):
            return  # PEX told us about ourselves (libtorrent does not leave the recipient out)
        if relay is None or not supports(relay) or not self._utp_available() or self._connected(addr):
            return
        now = self.clock.now()
        last = self._asked.get(addr)
        if last is not None and now - last < PUNCH_RETRY:
            return
        _remember(self._asked, addr, now)
        self._failed.pop(addr, None)
        if relay.send_extended(EXTENSION_NAME, encode_holepunch_message(HolepunchMessage.rendezvous(addr))):
            self.stats.rendezvous_sent += 1
            log.debug("rendezvous for %s:%d via %s:%d", *addr, *relay.address)
            self._emit("holepunch", message="rendezvous_sent", role="initiator", address=_text(addr),
                       relay=_text(relay.address))  # fmt: skip

    # -- messages ------------------------------------------------------------------------------

    def on_payload(self, peer: PeerProtocol, payload: bytes) -> None:
        """A ``ut_holepunch`` extended message from ``peer``; a malformed one is ignored (logged), as
        libtorrent does: the extension is optional, the connection is worth more."""
        try:
            msg = decode_holepunch_message(payload)
        except ExtensionProtocolError as exc:
            log.debug("%s:%d sent a bad ut_holepunch message: %s", *peer.address, exc)
            return
        self.on_message(peer, msg)

    def on_message(self, peer: PeerProtocol, msg: HolepunchMessage) -> None:
        """A ``ut_holepunch`` message from ``peer``."""
        if not supports(peer):
            return  # BEP 55: from a peer that did not offer the extension, ignored silently
        if msg.type is HolepunchType.RENDEZVOUS:
            self._relay(peer, msg)
        elif msg.type is HolepunchType.CONNECT:
            self._on_connect(peer, msg)
        else:
            self.stats.errors_received += 1
            code = HolepunchErrorCode(msg.error).name if msg.error in _CODES else str(msg.error)
            log.debug("holepunch error %s for %s:%d from %s:%d", code, msg.ip, msg.port, *peer.address)
            self._emit("holepunch", message="error", role="initiator", address=_text(msg.address), error=code)

    def _allow(self, peer: PeerProtocol) -> bool:
        """Per-peer limit: at most :data:`RENDEZVOUS_PER_MINUTE` rendezvous and connects a minute."""
        now = self.clock.now()
        times = self._answered.setdefault(id(peer), deque())
        while times and now - times[0] > 60.0:
            times.popleft()
        if len(times) >= RENDEZVOUS_PER_MINUTE:
            return False
        times.append(now)
        if len(self._answered) > MAX_REMEMBERED:
            self._answered = {id(peer): times}
        return True

    def _relay(self, initiator: PeerProtocol, msg: HolepunchMessage) -> None:
        if not self._allow(initiator):
            return
        code = self._relay_error(initiator, msg)
        if code is not None:
            self.stats.errors_sent += 1
            initiator.send_extended(
                EXTENSION_NAME, encode_holepunch_message(HolepunchMessage.failure(msg.address, code))
            )
            self._emit(
                "holepunch", message="rendezvous", role="relay", address=_text(msg.address), error=code.name
            )
            return
        target = self._find(canonical(msg.address))
        there = endpoint(initiator)
        assert target is not None and there is not None
        target.send_extended(EXTENSION_NAME, encode_holepunch_message(HolepunchMessage.connect(there)))
        initiator.send_extended(
            EXTENSION_NAME, encode_holepunch_message(HolepunchMessage.connect(msg.address))
        )
        self.stats.rendezvous_relayed += 1
        log.debug("relayed a hole punch between %s:%d and %s:%d", *there, msg.ip, msg.port)
        self._emit("holepunch", message="rendezvous", role="relay", address=_text(msg.address),
                   initiator=_text(there))  # fmt: skip

    def _relay_error(self, initiator: PeerProtocol, msg: HolepunchMessage) -> HolepunchErrorCode | None:
        addr = canonical(msg.address)
        if addr is None:
            return HolepunchErrorCode.NO_SUCH_PEER
        if self._is_self(addr):
            return HolepunchErrorCode.NO_SELF
        if addr == endpoint(initiator) or endpoint(initiator) is None:
            return HolepunchErrorCode.NO_SUCH_PEER  # itself, or we cannot tell the target where it is
        target = self._find(addr)
        if target is None:
            return HolepunchErrorCode.NOT_CONNECTED
        if not supports(target):
            return HolepunchErrorCode.NO_SUPPORT
        return None

    def _find(self, addr: Address | None) -> PeerProtocol | None:
        if addr is None:
            return None
        for p in self._peers():
            if not p.closed and (endpoint(p) == addr or canonical(p.address) == addr):
                return p
        return None

    def _connected(self, addr: Address) -> bool:
        return self._find(addr) is not None

    def _on_connect(self, relay: PeerProtocol, msg: HolepunchMessage) -> None:
        if not self._allow(relay):
            return
        self.stats.connects_received += 1
        addr = canonical(msg.address)
        self._emit(
            "holepunch",
            message="connect",
            role="peer",
            address=_text(msg.address),
            relay=_text(relay.address),
        )
        if addr is None or self._is_self(addr) or not self._utp_available():
            return
        if self._connected(addr) or addr in self._punching:
            return  # BEP 55: already connected -> ignore (a normal dial may run: ours is over uTP)
        if len(self._punching) >= MAX_PUNCHES:
            return
        self._punching.add(addr)
        self._spawn(self._punch(addr))

    async def _punch(self, addr: Address) -> None:
        """Dial ``addr`` over uTP up to :data:`PUNCH_ATTEMPTS` times (while not connected)."""
        try:
            for _ in range(PUNCH_ATTEMPTS):
                if self._connected(addr):
                    break
                self.stats.punch_dials += 1
                await self._dial(addr)
                # a connection (ours, or the other side's SYN accepted) joins after its handshakes
                for _ in range(PUNCH_SETTLE_STEPS):
                    if self._connected(addr):
                        break
                    await self.clock.sleep(PUNCH_INTERVAL / PUNCH_SETTLE_STEPS)
            if self._connected(addr):
                self.stats.punched += 1
                log.info("hole punched to %s:%d", *addr)
                self._emit("holepunch", message="punched", role="peer", address=_text(addr))
        finally:
            self._punching.discard(addr)


_CODES = frozenset(int(c) for c in HolepunchErrorCode)


def _text(addr: Address) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _remember(d: dict[Address, Any], addr: Address, value: Any) -> None:
    d.pop(addr, None)
    if len(d) >= MAX_REMEMBERED:
        for old in list(d)[: MAX_REMEMBERED // 2]:
            del d[old]
    d[addr] = value
