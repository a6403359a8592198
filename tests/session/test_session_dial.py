"""How the peer manager dials, without sockets: which transport it tries first, and what follows an
attempt that does not connect or that the peer closes before the BitTorrent handshake completes.

The time is a :class:`ManualClock`; the transports are a script (``ScriptedDials`` replaces the one
method that opens streams, ``PeerManager._attempt``): per transport the peer refuses, hangs up before
the handshake, completes it, or stays silent. Everything else is the real ``PeerManager``: its
``connect``, ``join`` and ``remove`` as the torrent calls them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

import pytest

from bitswarm.mse import EncryptionPolicy
from bitswarm.session import SessionConfig
from bitswarm.session.clock import ManualClock
from bitswarm.session.peer_manager import (
    HANDSHAKE_GRACE,
    REDIAL_BACKOFF,
    DialAttempt,
    DialOutcome,
    PeerManager,
    is_local_peer,
)
from bitswarm.wire.ut_pex import FLAG_UTP, PexMessage, PexPeer

if TYPE_CHECKING:
    from bitswarm.session.peer import PeerProtocol
    from bitswarm.transport import StreamReceiver
    from bitswarm.utp import UtpSocketManager

pytestmark = pytest.mark.timeout(10)

FAR = ("192.0.2.1", 6881)  # TEST-NET-1: not this host, uTP first
SKEY = bytes(20)


class FakePeer:
    """The parts of a peer connection the peer manager reads."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.address = self.pex_address = addr
        self.peer_id: bytes | None = None
        self.outgoing = True
        self.closed = False
        self.transport_kind = ""
        self.encrypted = False
        self.is_seed = False
        self.stream: object | None = None
        self.connected_at = 0.0


class ScriptedDials(PeerManager):
    """A peer manager whose streams are a script: ``script[transport]`` is what the peer does."""

    def __init__(self, script: dict[str, str], clock: ManualClock, **config: Any) -> None:
        config.setdefault("encryption", EncryptionPolicy.OFF)
        super().__init__(
            config=SessionConfig(**config),
            clock=clock,
            our_peer_id=bytes(20),
            own_address=lambda: ("0.0.0.0", 6881),
            dial=lambda addr: asyncio.sleep(0),
            spawn=lambda coro: coro.close(),
            emit=lambda *a, **kw: None,
            pex=None,
            utp=lambda: cast("UtpSocketManager | None", self.utp_socket),
            own_ip=lambda family: ("203.0.113.5", 6881) if family == 4 else None,
        )
        self.script = script
        #: the session's uTP socket (None: no uTP)
        self.utp_socket: object | None = object()
        self.clock_ = clock
        self.tried: list[str] = []

    async def _attempt(
        self, addr: tuple[str, int], attempt: DialAttempt, receiver: StreamReceiver, skey: bytes
    ) -> DialOutcome:
        self.tried.append(attempt.transport + ("+mse" if attempt.mse else ""))
        what = self.script[attempt.transport]
        if what == "refuse":  # refused, unreachable or timed out: no connection
            return DialOutcome.FAILED
        peer = cast("FakePeer", receiver)
        peer.transport_kind, peer.stream = attempt.transport, object()
        if what == "hang up":  # accepts, then closes before the handshake (TCP off at a uTP-only peer)
            if attempt.mse:  # it closes in MSE: MSE ends first, the connection's close follows;
                self.clock_.call_later(0.01, self.hang_up, peer)  # under prefer that is a refusal
                prefer = self.config.encryption is EncryptionPolicy.PREFER
                return DialOutcome.MSE_REFUSED if prefer else DialOutcome.CLOSED
            self.clock_.call_later(0.01, self.hang_up, peer)
        elif what == "handshake":
            self.clock_.call_later(0.01, self.handshake, peer)
        elif what == "silent":  # the peer connection's handshake timer closes it
            self.clock_.call_later(self.config.handshake_timeout, self.hang_up, peer)
        return DialOutcome.CONNECTED

    def hang_up(self, peer: FakePeer) -> None:
        peer.closed = True
        self.remove(cast("PeerProtocol", peer))

    def handshake(self, peer: FakePeer) -> None:
        peer.peer_id = b"-XX0000-" + bytes(12)
        self.join(cast("PeerProtocol", peer))


async def dial(
    pm: ScriptedDials, clock: ManualClock, addr: tuple[str, int], seconds: float = 1.0
) -> DialOutcome:
    task = asyncio.ensure_future(pm.connect(addr, FakePeer, SKEY))
    await clock.advance(seconds)
    assert task.done(), f"the dial is still on after {seconds} s (tried {pm.tried})"
    return task.result()


@pytest.mark.parametrize("encryption", [EncryptionPolicy.OFF, EncryptionPolicy.PREFER])
async def test_tcp_closed_before_the_handshake_is_followed_by_utp(encryption: EncryptionPolicy) -> None:
    """A uTP-only peer whose TCP listener accepts and closes: the dial goes on over uTP (it ended
    with the closed TCP connection before). Under ``prefer`` the close in MSE reads as a refusal and
    plaintext TCP is tried first; the address is not marked plaintext-only by that."""
    clock = ManualClock()
    pm = ScriptedDials({"tcp": "hang up", "utp": "handshake"}, clock, encryption=encryption)
    pm.note_utp(FAR, False)  # its uTP dial failed once: TCP first
    assert pm.transports_for(FAR) == ["tcp", "utp"]
    assert await dial(pm, clock, FAR) is DialOutcome.CONNECTED
    if encryption is EncryptionPolicy.OFF:
        assert pm.tried == ["tcp", "utp"]
    else:
        assert pm.tried == ["tcp+mse", "tcp", "utp+mse"]
        assert FAR not in pm.mse_hint or pm.mse_hint[FAR] is True
    assert [p.transport_kind for p in pm] == ["utp"]
    assert pm.utp_hint[FAR] is True and pm.transports_for(FAR) == ["utp", "tcp"]


@pytest.mark.parametrize("utp", ["refuse", "hang up"])
async def test_utp_that_fails_or_hangs_up_is_followed_by_tcp(utp: str) -> None:
    clock = ManualClock()
    pm = ScriptedDials({"tcp": "handshake", "utp": utp}, clock)
    assert await dial(pm, clock, FAR) is DialOutcome.CONNECTED
    assert pm.tried == ["utp", "tcp"]
    assert [p.transport_kind for p in pm] == ["tcp"]


async def test_a_completed_handshake_is_not_retried_on_the_other_transport() -> None:
    """The handshake completed: a later close is an ordinary close (quick redial), no fallback."""
    clock = ManualClock()
    pm = ScriptedDials({"tcp": "refuse", "utp": "handshake"}, clock)
    pm.add(*FAR)
    assert await dial(pm, clock, FAR) is DialOutcome.CONNECTED
    assert pm.tried == ["utp"]
    (peer,) = list(pm)
    pm.hang_up(cast("FakePeer", peer))
    await clock.advance(5)
    assert pm.tried == ["utp"] and pm.candidates[FAR] == clock.now() - 5 + REDIAL_BACKOFF


@pytest.mark.parametrize("encryption", list(EncryptionPolicy))
async def test_one_fallback_per_dial(encryption: EncryptionPolicy) -> None:
    """Both transports hang up (the peer's torrent is not running yet): each is tried once, and the
    address is redialed after one step of the short back-off, not one per closed connection."""
    clock = ManualClock()
    pm = ScriptedDials({"tcp": "hang up", "utp": "hang up"}, clock, encryption=encryption)
    pm.add(*FAR)
    start = clock.now()
    assert await dial(pm, clock, FAR) is DialOutcome.CLOSED
    assert [t.removesuffix("+mse") for t in pm.tried] == {
        EncryptionPolicy.OFF: ["utp", "tcp"],
        EncryptionPolicy.PREFER: ["utp", "utp", "tcp", "tcp"],  # MSE "refused", then plaintext
        EncryptionPolicy.REQUIRE: ["utp", "tcp"],
    }[encryption]
    assert pm.candidates[FAR] <= start + 0.1 + REDIAL_BACKOFF
    assert FAR not in pm.tcp_hint  # no transport got through: nothing learnt about TCP


async def test_a_silent_peer_falls_back_when_its_handshake_times_out() -> None:
    """TCP connects and nothing comes: the peer connection's handshake timer closes it, and the dial
    goes on over uTP then (it returned at the TCP connect before, holding no dial slot)."""
    clock = ManualClock()
    pm = ScriptedDials({"tcp": "silent", "utp": "handshake"}, clock)
    pm.note_utp(FAR, False)
    task = asyncio.ensure_future(pm.connect(FAR, FakePeer, SKEY))
    await clock.advance(pm.config.handshake_timeout - 1)
    assert not task.done() and pm.tried == ["tcp"]
    await clock.advance(2)
    assert task.done() and task.result() is DialOutcome.CONNECTED
    assert pm.tried == ["tcp", "utp"]


async def test_the_handshake_wait_is_bounded() -> None:
    """A connection that neither joins nor closes (it should not happen: the peer connection's timer
    closes it) releases the dial after ``handshake_timeout`` + ``HANDSHAKE_GRACE``."""
    clock = ManualClock()
    pm = ScriptedDials({"tcp": "stuck", "utp": "handshake"}, clock)
    pm.note_utp(FAR, False)
    task = asyncio.ensure_future(pm.connect(FAR, FakePeer, SKEY))
    await clock.advance(pm.config.handshake_timeout + HANDSHAKE_GRACE + 0.1)
    assert task.done() and task.result() is DialOutcome.CONNECTED and pm.tried == ["tcp"]


def test_dial_order_follows_what_each_address_did() -> None:
    """Unknown addresses: uTP first. A failed uTP dial puts TCP first for that address; PEX flag 0x04
    puts uTP first again; without a uTP socket uTP is left out."""
    pm = ScriptedDials({}, ManualClock())
    a, b = ("192.0.2.1", 6881), ("192.0.2.2", 6881)
    assert pm.transports_for(a) == ["utp", "tcp"]
    pm.note_utp(a, False)
    assert pm.transports_for(a) == ["tcp", "utp"] and pm.transports_for(b) == ["utp", "tcp"]
    pm.on_pex(cast("PeerProtocol", None), PexMessage(added=(PexPeer(*a, FLAG_UTP),)))
    assert pm.transports_for(a) == ["utp", "tcp"]
    pm.utp_socket = None
    assert pm.transports_for(a) == ["tcp"]


def test_this_host_is_dialed_over_tcp_first() -> None:
    """Loopback and our own address: TCP first (uTP after it). Elsewhere (LAN included) uTP first."""
    pm = ScriptedDials({}, ManualClock())
    own = ("203.0.113.5", 7000)
    for addr in [("127.0.0.1", 1), ("127.3.2.1", 1), ("::1", 1), own]:
        assert pm.transports_for(addr) == ["tcp", "utp"], addr
    for addr in [FAR, ("192.168.1.20", 1), ("10.0.0.2", 1), ("fe80::1", 1), ("2001:db8::1", 1)]:
        assert pm.transports_for(addr) == ["utp", "tcp"], addr
    assert is_local_peer("127.0.0.1", None) and not is_local_peer("localhost", None)
    loop = ("127.0.0.1", 6881)
    pm.note_tcp(loop, False)  # TCP hung up there and uTP got through: uTP first
    assert pm.transports_for(loop) == ["utp", "tcp"]
    pm.note_utp(loop, False)  # ... until uTP fails too
    assert pm.transports_for(loop) == ["tcp", "utp"]
    assert ScriptedDials({}, ManualClock(), transports=("utp",)).transports_for(loop) == ["utp"]
    assert ScriptedDials({}, ManualClock(), transports=("tcp",)).transports_for(FAR) == ["tcp"]


async def test_a_utp_only_peer_on_loopback_is_reached_and_remembered() -> None:
    """TCP first to loopback; the uTP-only peer's TCP listener hangs up; uTP gets through, and the
    next dial of that address goes over uTP first."""
    clock = ManualClock()
    pm = ScriptedDials({"tcp": "hang up", "utp": "handshake"}, clock)
    loop = ("127.0.0.1", 6881)
    assert await dial(pm, clock, loop) is DialOutcome.CONNECTED
    assert pm.tried == ["tcp", "utp"] and pm.tcp_hint[loop] is False
    assert pm.transports_for(loop) == ["utp", "tcp"]
