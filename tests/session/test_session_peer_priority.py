"""BEP 40 in the peer manager: due candidates are dialed highest canonical priority first, and a
full torrent drops its lowest-priority connection for a better one (or refuses the newcomer)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from bitswarm.session.clock import ManualClock
from bitswarm.session.config import SessionConfig
from bitswarm.session.peer_manager import PeerManager
from bitswarm.session.peer_priority import peer_priority

OWN = ("123.213.32.10", 6881)


class Peer:
    """The parts of a PeerProtocol that join() and eviction use."""

    def __init__(self, manager: PeerManager, peer_id: bytes, address: tuple[str, int]) -> None:
        self.manager, self.peer_id, self.address = manager, peer_id, address
        self.pex_address: tuple[str, int] | None = address
        self.outgoing = True
        self.closed = False
        self.why = ""
        self.transport_kind = "tcp"
        self.encrypted = False
        self.is_seed = False
        self.connected_at = 0.0
        self.stream = None

    def close(self, reason: str = "") -> None:
        if not self.closed:
            self.closed, self.why = True, reason
            self.manager.remove(self)  # type: ignore[arg-type]

    abort = close


def make(
    dials: list[tuple[str, int]],
    max_half_open: int = 32,
    max_peers: int = 60,
    own: dict[int, tuple[str, int]] | None = None,
) -> PeerManager:
    mine = own if own is not None else {4: OWN}

    async def dial(addr: tuple[str, int]) -> None:
        dials.append(addr)

    def spawn(coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    cfg = SessionConfig(max_half_open=max_half_open, max_peers_per_torrent=max_peers)
    return PeerManager(
        config=cfg,
        clock=ManualClock(),
        our_peer_id=b"us".ljust(20, b"-"),
        own_address=lambda: OWN,
        dial=dial,
        spawn=spawn,
        emit=lambda kind, **data: None,
        pex=None,
        own_ip=mine.get,
        families=lambda: (4,),
    )


CANDIDATES = [
    ("123.213.32.234", 1), ("98.76.54.32", 1), ("10.9.8.7", 1), ("200.1.2.3", 1), ("123.213.9.9", 1)
]  # fmt: skip
_tasks: set[asyncio.Task[Any]] = set()


async def test_dials_highest_priority_first() -> None:
    dials: list[tuple[str, int]] = []
    pm = make(dials, max_half_open=2)
    for addr in CANDIDATES:
        pm.add(*addr)
    assert pm.dial_due() == 2
    await asyncio.sleep(0)
    best = sorted(CANDIDATES, key=lambda a: peer_priority(OWN, a), reverse=True)
    assert dials == best[:2]
    # BEP 40's own pair (0xec2d7224) ranks above the same-/24 one (0x99568189)
    assert pm.priority(("98.76.54.32", 1)) == 0xEC2D7224
    assert pm.priority(("123.213.32.234", 1)) == 0x99568189


async def test_full_torrent_drops_the_lowest_priority_peer() -> None:
    pm = make([], max_peers=2)
    ranked = sorted(CANDIDATES[:3], key=lambda a: peer_priority(OWN, a))  # lowest first
    low, mid, high = (Peer(pm, bytes([i]) * 20, a) for i, a in enumerate(ranked))
    assert pm.join(mid) and pm.join(low)  # type: ignore[arg-type]
    assert pm.join(high)  # type: ignore[arg-type]
    assert low.closed and "BEP 40" in low.why
    assert set(pm.peers.values()) == {mid, high}  # type: ignore[comparison-overlap]
    # a newcomer of lower priority than every connected peer is the one refused
    assert not pm.join(Peer(pm, b"\x09" * 20, ranked[0]))  # type: ignore[arg-type]
    assert not mid.closed and not high.closed


def test_ipv4_mapped_candidates_are_ipv4_and_foreign_families_skipped() -> None:
    pm = make([])
    pm.add("::ffff:98.76.54.32", 1)
    pm.add("2001:db8::1", 1)  # families() is (4,): nothing to dial it with
    assert set(pm.candidates) == {("98.76.54.32", 1)}


def test_priority_follows_a_new_own_address() -> None:
    own: dict[int, tuple[str, int]] = {4: OWN}
    pm = make([], own=own)
    peer = ("98.76.54.32", 1)
    assert pm.priority(peer) == peer_priority(OWN, peer)
    own[4] = ("203.0.113.5", 6881)  # an external address was decided
    assert pm.priority(peer) == peer_priority(own[4], peer)


async def test_an_address_of_another_family_is_never_dialed() -> None:
    """Whoever asks (hole punching, a magnet fetch), a dial to an IPv6 address from an IPv4-only
    session fails at once instead of reaching a socket of the wrong family."""
    from bitswarm.session.peer_manager import DialOutcome

    pm = make([])
    made: list[tuple[str, int]] = []

    def new_connection(addr: tuple[str, int]) -> Any:
        made.append(addr)
        raise AssertionError("no connection may be made")

    assert await pm.connect(("2001:db8::1", 6881), new_connection, b"\0" * 20) is DialOutcome.FAILED
    assert made == []
