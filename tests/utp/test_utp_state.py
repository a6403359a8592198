"""Every pair of the uTP state table, applied to a real connection in that state: the table is the
behaviour (packets the table lacks are dropped; local calls it lacks raise LocalProtocolError)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from utp_link import Link

from bitswarm.errors import LocalProtocolError
from bitswarm.utp import TRANSITIONS, Input, Packet, PacketType, State, UtpConnection, encode

PACKETS = {
    Input.SYN: PacketType.SYN,
    Input.STATE: PacketType.STATE,
    Input.DATA: PacketType.DATA,
    Input.FIN: PacketType.FIN,
    Input.RESET: PacketType.RESET,
}


def _idle() -> UtpConnection:
    return UtpConnection(10, 11, 100)


def _syn_sent() -> UtpConnection:
    c = UtpConnection.connect(0.0, conn_id=10, initial_seq=100)
    c.datagrams_to_send(0.0)
    return c


def _syn_recv() -> UtpConnection:
    syn = UtpConnection.connect(0.0, conn_id=10, initial_seq=100).datagrams_to_send(0.0)[0]
    c = UtpConnection.accept(syn, 0.0, initial_seq=500)
    c.datagrams_to_send(0.0)
    return c


def _connected() -> UtpConnection:
    link = Link(seed=1)
    link.connect()
    link.a.conn.send(b"x")
    link.run(lambda: link.b is not None and link.b.received == b"x")
    return link.a.conn


def _fin_sent() -> UtpConnection:
    c = _connected()
    c.close()
    c.datagrams_to_send(1.0)
    return c


def _closed() -> UtpConnection:
    link = Link(seed=2)
    b = link.connect()
    link.a.conn.close()
    b.conn.close()
    link.run(lambda: link.a.conn.state is State.CLOSED)
    return link.a.conn


def _reset() -> UtpConnection:
    c = _connected()
    c.abort()
    return c


MAKE: dict[State, Callable[[], UtpConnection]] = {
    State.IDLE: _idle,
    State.SYN_SENT: _syn_sent,
    State.SYN_RECV: _syn_recv,
    State.CONNECTED: _connected,
    State.FIN_SENT: _fin_sent,
    State.CLOSED: _closed,
    State.RESET: _reset,
}


def test_every_state_is_reachable_and_in_the_table() -> None:
    assert {s for s, _ in TRANSITIONS} == set(State)
    for state, make in MAKE.items():
        assert make().state is state


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("inp", list(PACKETS))
def test_packet_inputs_follow_the_table(state: State, inp: Input) -> None:
    c = MAKE[state]()
    kind = PACKETS[inp]
    conn_id = (c.recv_id - 1) & 0xFFFF if kind is PacketType.SYN else c.recv_id
    seq = c.ack_nr if kind is PacketType.SYN and state is not State.SYN_SENT else (c.ack_nr + 1) & 0xFFFF
    payload = b"p" if kind is PacketType.DATA else b""
    ack = (c.seq_nr - 1) & 0xFFFF if state is State.SYN_SENT else c.acked_upto  # acks nothing new
    pkt = Packet(kind, conn_id, 0, 0, 1 << 20, seq, ack, payload)
    dropped = c.stats.dropped
    c.receive_datagram(encode(pkt), 2.0)
    expected = TRANSITIONS.get((state, inp))
    if expected is None:
        assert c.state is state
        assert c.stats.dropped == dropped + 1
    else:
        assert c.state is expected


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize(
    ("inp", "call"),
    [
        (Input.SEND, lambda c: c.send(b"data")),
        (Input.CLOSE, lambda c: c.close()),
        (Input.ABORT, lambda c: c.abort()),
    ],
)
def test_local_inputs_follow_the_table(
    state: State, inp: Input, call: Callable[[UtpConnection], object]
) -> None:
    c = MAKE[state]()
    expected = TRANSITIONS.get((state, inp))
    if expected is None:
        with pytest.raises(LocalProtocolError):
            call(c)
        assert c.state is state
    else:
        call(c)
        assert c.state is expected
