"""BEP 55 hole punching: the relay's answers (stub peers, no sockets), and three sessions on loopback
where a relay introduces two peers that then meet over uTP; uTP's crossed SYNs (a simultaneous open).

The NAT half (two homes that cannot dial each other) is tests/net/test_net_holepunch.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.clock import ManualClock
from bitswarm.session.holepunch import MAX_PUNCHES, RENDEZVOUS_PER_MINUTE, Holepuncher, canonical
from bitswarm.session.peer import PeerProtocol
from bitswarm.utp import UtpSocketManager
from bitswarm.wire.ut_holepunch import (
    HolepunchErrorCode,
    HolepunchMessage,
    decode_holepunch_message,
)
from bitswarm.wire.ut_pex import FLAG_HOLEPUNCH, PexMessage, PexPeer
from testtools import eventually

pytestmark = pytest.mark.timeout(60)

Address = tuple[str, int]


class StubStream:
    def __init__(self, kind: str) -> None:
        self.kind = kind


class StubPeer:
    """What the Holepuncher reads of a PeerProtocol, and what it sends."""

    def __init__(self, address: Address, *, outgoing: bool = True, holepunch: bool = True) -> None:
        self.address = address
        self.outgoing = outgoing
        self.listen_port: int | None = None
        self.ext_ids = {"ut_holepunch": 3} if holepunch else {}
        self.established = True
        self.closed = False
        self.stream = StubStream("tcp")
        self.sent: list[HolepunchMessage] = []

    @property
    def pex_address(self) -> Address | None:
        if self.outgoing:
            return self.address
        return (self.address[0], self.listen_port) if self.listen_port else None

    def send_extended(self, name: str, payload: bytes) -> bool:
        assert name == "ut_holepunch"
        if not self.ext_ids:
            return False
        self.sent.append(decode_holepunch_message(payload))
        return True


class Rig:
    def __init__(self, own: Address = ("198.18.0.11", 6881)) -> None:
        self.clock = ManualClock()
        self.peers: list[StubPeer] = []
        self.dials: list[Address] = []
        self.events: list[dict[str, Any]] = []
        self.tasks: list[Coroutine[Any, Any, Any]] = []

        async def dial(addr: Address) -> None:
            self.dials.append(addr)

        def emit(kind: str, **data: Any) -> None:
            self.events.append({"kind": kind, **data})

        self.hp = Holepuncher(
            clock=self.clock,
            peers=lambda: cast(list[PeerProtocol], self.peers),
            dial=dial,
            spawn=self.tasks.append,
            own_address=lambda: own,
            emit=emit,
            utp_available=lambda: True,
        )

    def add(self, *args: Any, **kw: Any) -> StubPeer:
        p = StubPeer(*args, **kw)
        self.peers.append(p)
        return p

    def message(self, peer: StubPeer, msg: HolepunchMessage) -> None:
        self.hp.on_message(cast(PeerProtocol, peer), msg)


def test_relay_sends_connect_to_both_sides() -> None:
    rig = Rig()
    a = rig.add(("198.18.0.102", 40000), outgoing=False)  # incoming: its listen port counts
    a.listen_port = 6881
    b = rig.add(("198.18.0.104", 6881))
    rig.message(b, HolepunchMessage.rendezvous(("198.18.0.102", 6881)))
    assert a.sent == [HolepunchMessage.connect(("198.18.0.104", 6881))]
    assert b.sent == [HolepunchMessage.connect(("198.18.0.102", 6881))]
    assert rig.hp.stats.rendezvous_relayed == 1


def test_relay_uses_the_utp_source_of_a_peer_without_listen_port() -> None:
    rig = Rig()
    a = rig.add(("198.18.0.102", 6881), outgoing=False)
    a.stream = StubStream("utp")  # no extended-handshake port, but uTP's source is its socket
    b = rig.add(("198.18.0.104", 6881))
    rig.message(a, HolepunchMessage.rendezvous(("198.18.0.104", 6881)))
    assert b.sent == [HolepunchMessage.connect(("198.18.0.102", 6881))]


@pytest.mark.parametrize(
    ("target", "code"),
    [
        (("198.18.0.99", 6881), HolepunchErrorCode.NOT_CONNECTED),
        (("198.18.0.103", 6881), HolepunchErrorCode.NO_SUPPORT),
        (("198.18.0.11", 6881), HolepunchErrorCode.NO_SELF),
        (("198.18.0.104", 6881), HolepunchErrorCode.NO_SUCH_PEER),  # the initiator itself
        (("0.0.0.0", 6881), HolepunchErrorCode.NO_SUCH_PEER),
        (("198.18.0.102", 0), HolepunchErrorCode.NO_SUCH_PEER),
    ],
)
def test_relay_errors(target: Address, code: HolepunchErrorCode) -> None:
    rig = Rig()
    rig.add(("198.18.0.103", 6881), holepunch=False)
    b = rig.add(("198.18.0.104", 6881))
    rig.message(b, HolepunchMessage.rendezvous(target))
    assert b.sent == [HolepunchMessage.failure(target, code)]  # BEP 55: the rendezvous's endpoint


def test_messages_from_a_peer_without_the_extension_are_ignored() -> None:
    rig = Rig()
    a = rig.add(("198.18.0.102", 6881))
    b = rig.add(("198.18.0.104", 6881), holepunch=False)
    rig.message(b, HolepunchMessage.rendezvous(a.address))
    rig.message(b, HolepunchMessage.connect(("198.18.0.105", 6881)))
    assert a.sent == [] and rig.tasks == [] and rig.hp.stats.connects_received == 0


def test_relay_rate_limit_per_peer() -> None:
    rig = Rig()
    b = rig.add(("198.18.0.104", 6881))
    for i in range(RENDEZVOUS_PER_MINUTE + 5):
        rig.message(b, HolepunchMessage.rendezvous(("198.18.1.1", 1000 + i)))
    assert len(b.sent) == RENDEZVOUS_PER_MINUTE


async def test_connect_dials_over_utp_unless_connected() -> None:
    rig = Rig()
    relay = rig.add(("198.18.0.11", 6881))
    rig.add(("198.18.0.104", 6881))
    rig.message(relay, HolepunchMessage.connect(("198.18.0.104", 6881)))  # already connected: ignored
    assert rig.tasks == []
    rig.message(relay, HolepunchMessage.connect(("::ffff:198.18.0.102", 6881)))
    assert len(rig.tasks) == 1 and rig.hp.punching(("198.18.0.102", 6881))
    task = asyncio.get_running_loop().create_task(rig.tasks.pop())
    await rig.clock.advance(30)
    await task
    assert rig.dials == [("198.18.0.102", 6881)] * 3  # never connected: PUNCH_ATTEMPTS dials
    assert not rig.hp.punching(("198.18.0.102", 6881))
    for i in range(MAX_PUNCHES + 3):
        rig.message(relay, HolepunchMessage.connect(("198.18.2.1", 1000 + i)))
    assert len(rig.tasks) == MAX_PUNCHES
    for coro in rig.tasks:
        coro.close()
    rig.tasks.clear()
    other = rig.add(("198.18.0.12", 6881))  # a relay flooding connects: RENDEZVOUS_PER_MINUTE a minute
    rig.hp._punching.clear()
    for i in range(RENDEZVOUS_PER_MINUTE + 5):
        rig.message(other, HolepunchMessage.connect(("198.18.3.1", 1000 + i)))
    assert rig.hp.stats.connects_received == 2 + MAX_PUNCHES + 3 + RENDEZVOUS_PER_MINUTE
    for coro in rig.tasks:
        coro.close()


def test_initiator_asks_the_relay_after_a_failed_dial() -> None:
    rig = Rig()
    relay = rig.add(("198.18.0.11", 6881))
    target = ("198.18.0.102", 6881)
    rig.hp.dial_failed(target)  # no relay known yet
    assert relay.sent == []
    rig.hp.on_pex(cast(PeerProtocol, relay), PexMessage(added=(PexPeer(*target, FLAG_HOLEPUNCH),)))
    assert relay.sent == [HolepunchMessage.rendezvous(target)]  # the failure was remembered
    rig.hp.dial_failed(target)
    assert len(relay.sent) == 1  # once per PUNCH_RETRY
    rig.clock.time += 61
    rig.hp.dial_failed(target)
    assert len(relay.sent) == 2
    rig.message(relay, HolepunchMessage.failure(target, HolepunchErrorCode.NOT_CONNECTED))
    assert rig.events[-1] == {
        "kind": "holepunch",
        "message": "error",
        "role": "initiator",
        "address": "198.18.0.102:6881",
        "error": "NOT_CONNECTED",
    }


def test_own_external_address_is_self() -> None:
    """A PEX contact that is our own external address (libtorrent's PEX names the recipient too) gets
    no rendezvous; as relay, a rendezvous for it is answered NoSelf."""
    rig = Rig()
    rig.hp._own_ip = lambda family: ("198.18.0.104", 6881) if family == 4 else None
    relay = rig.add(("198.18.0.11", 6881))
    me = ("198.18.0.104", 6881)
    rig.hp.on_pex(cast(PeerProtocol, relay), PexMessage(added=(PexPeer(*me, FLAG_HOLEPUNCH),)))
    rig.hp.dial_failed(me)
    assert relay.sent == []
    rig.message(relay, HolepunchMessage.rendezvous(me))
    assert relay.sent == [HolepunchMessage.failure(me, HolepunchErrorCode.NO_SELF)]


def test_canonical() -> None:
    assert canonical(("::ffff:10.0.0.1", 1)) == ("10.0.0.1", 1)
    assert canonical(("2001:DB8::1", 1)) == ("2001:db8::1", 1)
    assert canonical(("host.example", 1)) is None
    assert canonical(("::", 1)) is None


# -- uTP: both sides dial at once ----------------------------------------------------------------


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()

    def data_received(self, data: bytes) -> None:
        self.data += data


async def test_utp_crossed_syns_give_working_connections() -> None:
    """Both managers dial each other in the same loop turn (what a ``connect`` makes two punched
    peers do): each SYN is taken as an incoming connection by the other side, both dials succeed,
    and bytes flow on every connection (the session's duplicate rule keeps one of them)."""
    accepted: list[Sink] = []

    def accept() -> Sink:
        accepted.append(Sink())
        return accepted[-1]

    a = await UtpSocketManager.open("127.0.0.1", 0, accept=accept)
    b = await UtpSocketManager.open("127.0.0.1", 0, accept=accept)
    try:
        (sa, pa), (sb, pb) = await asyncio.gather(
            a.connect(b.address, Sink, timeout=5), b.connect(a.address, Sink, timeout=5)
        )
        sa.write(b"from a")
        sb.write(b"from b")

        async def both_arrived() -> bool:
            return sorted(bytes(s.data) for s in accepted) == [b"from a", b"from b"]

        await eventually(both_arrived, timeout=10)
        assert len(accepted) == 2 and a.connections == 2 and b.connections == 2
        assert isinstance(pa, Sink) and isinstance(pb, Sink)
    finally:
        a.close()
        b.close()


# -- three sessions on loopback ------------------------------------------------------------------


def config(**kw: object) -> SessionConfig:
    kw.setdefault("enable_dht", False)
    kw.setdefault("pex_interval", 0.2)
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, **kw)  # type: ignore[arg-type]


async def _until(cond: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_relay_introduces_two_peers_over_utp(tmp_path: Path) -> None:
    """A seeds and knows only the relay R (A has PEX off: it never hears of B); B knows only R. B asks
    R to punch to A; R sends ``connect`` to both; A and B meet over uTP (on loopback nothing blocks
    a dial: the NAT case is tests/net) and B's bytes come from A (R downloads at 1 KiB/s)."""
    src = tmp_path / "a" / "data.bin"
    src.parent.mkdir(parents=True)
    src.write_bytes(random.Random(55).randbytes(800_000))
    t = parse_torrent(create_torrent(src, piece_length=262144))
    async with (
        Session(config(enable_pex=False)) as a,
        Session(config()) as r,
        Session(config(enable_pex=False)) as b,
    ):
        hr = await r.add(t, tmp_path / "r")
        hr.set_rate_limits(download=1024)
        await a.add(t, src.parent, peers=[("127.0.0.1", r.port)])
        hb = await b.add(t, tmp_path / "b", peers=[("127.0.0.1", r.port)])
        rt_r, rt_b = r._torrents[t.swarm_hash], b._torrents[t.swarm_hash]
        await _until(
            lambda: len(rt_r.peers) == 2 and all(p.ext_ids.get("ut_holepunch") for p in rt_r.peers.values())
        )
        events: list[tuple[str, dict[str, Any]]] = []

        async def watch(s: Session, who: str) -> None:
            async for ev in s.events():
                if ev.kind in ("holepunch", "peer_connected"):
                    events.append((who, {"kind": ev.kind, **ev.data}))

        loop = asyncio.get_running_loop()
        watchers = [loop.create_task(watch(s, n)) for s, n in ((a, "a"), (r, "r"), (b, "b"))]
        await asyncio.sleep(0)
        hp = rt_b.peer_manager.holepunch
        assert hp is not None
        relay = next(iter(rt_b.peers.values()))
        a_addr = ("127.0.0.1", a.port)
        assert a.peer_id not in rt_b.peers
        hp.on_pex(relay, PexMessage(added=(PexPeer(*a_addr, FLAG_HOLEPUNCH),)))  # as R's PEX would
        hp.dial_failed(a_addr)  # as a NAT would make it
        await hb.wait_complete(timeout=30)
        for w in watchers:
            w.cancel()
        kinds = [(who, e["kind"], e.get("message")) for who, e in events]
        assert ("b", "holepunch", "rendezvous_sent") in kinds
        assert ("r", "holepunch", "rendezvous") in kinds
        assert ("a", "holepunch", "connect") in kinds and ("b", "holepunch", "connect") in kinds
        joined = [e for who, e in events if who == "b" and e["kind"] == "peer_connected"]
        a_text = f"127.0.0.1:{a.port}"
        assert any(e["transport"].startswith("utp") and e["address"] == a_text for e in joined), events
        assert hr.status().downloaded < 262144  # R could not have served B a piece
    assert (tmp_path / "b" / "data.bin").read_bytes() == src.read_bytes()


async def test_rendezvous_for_a_peer_without_holepunch_gets_no_support(tmp_path: Path) -> None:
    src = tmp_path / "a" / "data.bin"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"x" * 100_000)
    t = parse_torrent(create_torrent(src, piece_length=65536))
    async with (
        Session(config(enable_pex=False, enable_holepunch=False)) as a,
        Session(config()) as r,
        Session(config(enable_pex=False)) as b,
    ):
        hr = await r.add(t, tmp_path / "r")
        hr.set_rate_limits(download=1024)
        await a.add(t, src.parent, peers=[("127.0.0.1", r.port)])
        await b.add(t, tmp_path / "b", peers=[("127.0.0.1", r.port)])
        rt_r, rt_b = r._torrents[t.swarm_hash], b._torrents[t.swarm_hash]
        await _until(lambda: len(rt_r.peers) == 2 and len(rt_b.peers) == 1)
        hp = rt_b.peer_manager.holepunch
        assert hp is not None and rt_r.peer_manager.holepunch is not None
        relay = next(iter(rt_b.peers.values()))
        for target in (("127.0.0.1", a.port), ("127.0.0.1", 1)):
            hp.on_pex(relay, PexMessage(added=(PexPeer(*target),)))
            hp.dial_failed(target)
        stats = hp.stats
        await _until(lambda: stats.errors_received == 2)
        assert rt_r.peer_manager.holepunch.stats.errors_sent == 2
        assert a.peer_id not in rt_b.peers
