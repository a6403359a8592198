"""The one state table of a uTP connection: ``(state, input) -> next state``.

Inputs are the packet types the peer sends (``SYN`` .. ``RESET``) and the calls our side makes
(``CONNECT``, ``ACCEPT``, ``SEND``, ``CLOSE``, ``ABORT``) plus two internal conclusions
(``GIVE_UP``: too many timeouts; ``DONE``: both FINs acknowledged, or the linger time ran out).

A pair missing from the table means: for a packet, it is dropped (UDP delivers stale and duplicated
packets, that is no reason to fail); for a local call, :class:`~bitswarm.errors.LocalProtocolError`.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    IDLE = "idle"
    SYN_SENT = "syn-sent"
    SYN_RECV = "syn-recv"
    CONNECTED = "connected"
    FIN_SENT = "fin-sent"
    CLOSED = "closed"  # both directions finished cleanly (or linger expired)
    RESET = "reset"  # aborted: RESET from the peer, by us, or timed out


class Input(Enum):
    CONNECT = "connect"
    ACCEPT = "accept"
    SEND = "send"
    CLOSE = "close"
    ABORT = "abort"
    GIVE_UP = "give-up"
    DONE = "done"
    SYN = "syn"
    STATE = "state"
    DATA = "data"
    FIN = "fin"
    RESET = "reset"


S, I = State, Input  # noqa: E741

TRANSITIONS: dict[tuple[State, Input], State] = {
    (S.IDLE, I.CONNECT): S.SYN_SENT,
    (S.IDLE, I.ACCEPT): S.SYN_RECV,
    # initiator, waiting for the ST_STATE that acknowledges our SYN
    (S.SYN_SENT, I.SEND): S.SYN_SENT,  # queued until connected
    (S.SYN_SENT, I.STATE): S.CONNECTED,
    (S.SYN_SENT, I.DATA): S.CONNECTED,  # the SYN-ACK was lost, the peer's data acks our SYN
    (S.SYN_SENT, I.RESET): S.RESET,
    (S.SYN_SENT, I.CLOSE): S.CLOSED,  # nothing was sent: tell the peer with a RESET, done
    (S.SYN_SENT, I.ABORT): S.RESET,
    (S.SYN_SENT, I.GIVE_UP): S.RESET,
    # acceptor: SYN acknowledged, our first packet from the initiator not seen yet
    (S.SYN_RECV, I.SYN): S.SYN_RECV,  # the SYN again: our ST_STATE was lost, send it again
    (S.SYN_RECV, I.SEND): S.SYN_RECV,
    (S.SYN_RECV, I.STATE): S.CONNECTED,
    (S.SYN_RECV, I.DATA): S.CONNECTED,
    (S.SYN_RECV, I.FIN): S.CONNECTED,
    (S.SYN_RECV, I.RESET): S.RESET,
    (S.SYN_RECV, I.CLOSE): S.FIN_SENT,
    (S.SYN_RECV, I.ABORT): S.RESET,
    (S.SYN_RECV, I.GIVE_UP): S.RESET,
    (S.CONNECTED, I.SYN): S.CONNECTED,  # late duplicate SYN (acceptor only): re-ACK
    (S.CONNECTED, I.SEND): S.CONNECTED,
    (S.CONNECTED, I.STATE): S.CONNECTED,
    (S.CONNECTED, I.DATA): S.CONNECTED,
    (S.CONNECTED, I.FIN): S.CONNECTED,  # half-closed by the peer: we may still send
    (S.CONNECTED, I.RESET): S.RESET,
    (S.CONNECTED, I.CLOSE): S.FIN_SENT,
    (S.CONNECTED, I.ABORT): S.RESET,
    (S.CONNECTED, I.GIVE_UP): S.RESET,
    # our FIN is queued or sent; we keep receiving (and ACKing) until the peer's FIN
    (S.FIN_SENT, I.SYN): S.FIN_SENT,
    (S.FIN_SENT, I.STATE): S.FIN_SENT,
    (S.FIN_SENT, I.DATA): S.FIN_SENT,
    (S.FIN_SENT, I.FIN): S.FIN_SENT,
    (S.FIN_SENT, I.RESET): S.RESET,
    (S.FIN_SENT, I.CLOSE): S.FIN_SENT,
    (S.FIN_SENT, I.ABORT): S.RESET,
    (S.FIN_SENT, I.GIVE_UP): S.RESET,
    (S.FIN_SENT, I.DONE): S.CLOSED,
    # final states absorb our own close/abort calls; packets are dropped
    (S.CLOSED, I.FIN): S.CLOSED,  # a retransmitted FIN: ACK it again
    (S.CLOSED, I.CLOSE): S.CLOSED,
    (S.CLOSED, I.ABORT): S.CLOSED,
    (S.RESET, I.CLOSE): S.RESET,
    (S.RESET, I.ABORT): S.RESET,
}

LOCAL_INPUTS = frozenset({I.CONNECT, I.ACCEPT, I.SEND, I.CLOSE, I.ABORT})
FINAL_STATES = frozenset({S.CLOSED, S.RESET})
