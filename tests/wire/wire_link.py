"""Test helpers for bitswarm.wire: a fake link joining two PeerConnections."""

from __future__ import annotations

from bitswarm.wire import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    Handshake,
    PeerConnection,
    PieceLayout,
    Reserved,
)

INFO_HASH = bytes(range(20))
PEER_A = b"-BS0001-aaaaaaaaaaaa"
PEER_B = b"-BS0001-bbbbbbbbbbbb"
#: 10 pieces of 32 KiB, the last one 5000 bytes.
LAYOUT = PieceLayout.uniform(32 * 1024, 9 * 32 * 1024 + 5000)
ALL_BITS = Reserved.make(fast=True, extension_protocol=True, dht=True)


def drain(conn: PeerConnection) -> list[Event]:
    """Every event available now (stops at NEED_DATA or after ConnectionClosed)."""
    out: list[Event] = []
    for _ in range(100_000):
        ev = conn.next_event()
        if ev is NEED_DATA:
            return out
        assert isinstance(ev, Event), ev
        out.append(ev)
        if isinstance(ev, ConnectionClosed):
            return out
    raise AssertionError("next_event never returned NEED_DATA")


def feed(conn: PeerConnection, data: bytes, step: int | None = None) -> list[Event]:
    """Feed ``data`` whole (or ``step`` bytes at a time) and return the events."""
    if step is None:
        conn.receive_data(data)
        return drain(conn)
    events: list[Event] = []
    for i in range(0, len(data), step):
        conn.receive_data(data[i : i + step])
        events.extend(drain(conn))
    return events


def connected_pair(
    a_bits: Reserved = ALL_BITS, b_bits: Reserved = ALL_BITS, layout: PieceLayout | None = LAYOUT
) -> tuple[PeerConnection, PeerConnection]:
    """Initiator ``a`` and receiver ``b`` with both handshakes exchanged and consumed."""
    a, b = PeerConnection(layout), PeerConnection()
    hs_b = feed(b, a.send(Handshake(INFO_HASH, PEER_A, a_bits)))
    assert [type(e).__name__ for e in hs_b] == ["HandshakeHeader", "Handshake"]
    b.set_layout(layout)
    hs_a = feed(a, b.send(Handshake(INFO_HASH, PEER_B, b_bits)))
    assert [type(e).__name__ for e in hs_a] == ["HandshakeHeader", "Handshake"]
    return a, b
