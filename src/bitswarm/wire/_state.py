"""The peer wire state machine: ONE table, (state, event type) -> next state.

Each direction (ours and theirs) moves through the same table independently. A pair missing from
the table is a protocol error: :class:`WireProtocolError` for what the peer sent,
:class:`LocalWireError` for what we tried to send. Extra conditions that depend on the handshake
(fast extension, extension protocol) are the ``REQUIRES_*`` sets below, checked next to the table.

Generate the diagram with ``python -m bitswarm.wire._state``.
"""

from __future__ import annotations

import enum
from typing import Final

from bitswarm.wire._events import (
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    ConnectionClosed,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    HandshakeHeader,
    Hashes,
    HashReject,
    HashRequest,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
    UnknownMessage,
)


class State(enum.Enum):
    """Where one direction of a peer connection is."""

    #: Nothing received/sent yet.
    AWAIT_HANDSHAKE = "AWAIT_HANDSHAKE"
    #: Receive only: the first 48 handshake bytes are in, the 20-byte peer id is not.
    AWAIT_PEER_ID = "AWAIT_PEER_ID"
    #: Handshake done; a bitfield / have all / have none may still come (BEP 3, BEP 6).
    AWAIT_FIRST_MESSAGE = "AWAIT_FIRST_MESSAGE"
    #: Any message except the piece-set announcements above.
    ESTABLISHED = "ESTABLISHED"
    #: The direction ended cleanly.
    CLOSED = "CLOSED"
    #: A protocol error happened; nothing more is accepted.
    ERROR = "ERROR"

    # Members are singletons compared by identity: hash them by identity too, in C. ``Enum``'s own
    # ``__hash__`` is a Python function, and every message looks up (state, type) in the table.
    __hash__ = object.__hash__


AWAIT_HANDSHAKE: Final = State.AWAIT_HANDSHAKE
AWAIT_PEER_ID: Final = State.AWAIT_PEER_ID
AWAIT_FIRST_MESSAGE: Final = State.AWAIT_FIRST_MESSAGE
ESTABLISHED: Final = State.ESTABLISHED
CLOSED: Final = State.CLOSED
ERROR: Final = State.ERROR

#: Messages that announce the sender's piece set; only as the first message (BEP 3, BEP 6).
FIRST_ONLY: Final[tuple[type[Event], ...]] = (Bitfield, HaveAll, HaveNone)
#: Messages that may come before the first-only ones without closing that window: keep-alives and
#: BEP 10 messages (some clients send their extended handshake before the bitfield).
NEUTRAL: Final[tuple[type[Event], ...]] = (KeepAlive, Extended, ExtendedHandshake)
#: Every other message; it ends the window for a bitfield.
REGULAR: Final[tuple[type[Event], ...]] = (
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have,
    Request,
    Piece,
    Cancel,
    Port,
    SuggestPiece,
    RejectRequest,
    AllowedFast,
    HashRequest,
    Hashes,
    HashReject,
    UnknownMessage,
)

#: Allowed only if both handshakes set ``reserved[7] & 0x04`` (BEP 6: else the receiver MUST close).
REQUIRES_FAST: Final[frozenset[type[Event]]] = frozenset(
    {HaveAll, HaveNone, SuggestPiece, RejectRequest, AllowedFast}
)
#: Allowed only if both handshakes set ``reserved[5] & 0x10`` (BEP 10).
REQUIRES_EXTENSION_PROTOCOL: Final[frozenset[type[Event]]] = frozenset({Extended, ExtendedHandshake})


def _build() -> dict[tuple[State, type[Event]], State]:
    table: dict[tuple[State, type[Event]], State] = {
        (AWAIT_HANDSHAKE, HandshakeHeader): AWAIT_PEER_ID,  # receive side only
        (AWAIT_PEER_ID, Handshake): AWAIT_FIRST_MESSAGE,  # receive side only
        (AWAIT_HANDSHAKE, Handshake): AWAIT_FIRST_MESSAGE,  # send side (one piece)
    }
    for cls in FIRST_ONLY:
        table[AWAIT_FIRST_MESSAGE, cls] = ESTABLISHED
    # BEP 3 allows a bitfield only first, but aria2 sends one later (instead of several haves, and
    # after its extended handshake on reconnect); dropping it costs tens of seconds per reconnect.
    # A later bitfield is accepted and replaces the peer's piece set; have_all/have_none stay strict.
    table[ESTABLISHED, Bitfield] = ESTABLISHED
    for cls in NEUTRAL:
        table[AWAIT_FIRST_MESSAGE, cls] = AWAIT_FIRST_MESSAGE
        table[ESTABLISHED, cls] = ESTABLISHED
    for cls in REGULAR:
        table[AWAIT_FIRST_MESSAGE, cls] = ESTABLISHED
        table[ESTABLISHED, cls] = ESTABLISHED
    for state in (AWAIT_HANDSHAKE, AWAIT_PEER_ID, AWAIT_FIRST_MESSAGE, ESTABLISHED, CLOSED):
        table[state, ConnectionClosed] = CLOSED
    return table


#: THE state table.
TRANSITIONS: Final[dict[tuple[State, type[Event]], State]] = _build()


def diagram() -> str:
    """The table as a Markdown list, one line per transition, grouped by state."""
    lines = []
    for state in State:
        pairs = [(ev.__name__, nxt.value) for (st, ev), nxt in TRANSITIONS.items() if st is state]
        if pairs:
            lines.append(f"- **{state.value}**")
            lines.extend(f"  - {ev} -> {nxt}" for ev, nxt in pairs)
    return "\n".join(lines)


if __name__ == "__main__":
    print(diagram())
