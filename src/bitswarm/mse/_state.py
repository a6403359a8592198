"""The MSE handshake state machine: ONE table, (role, state, step) -> next state.

A *step* is one unit the handshake parsed from the peer's bytes (its DH key, the synchronisation
point, a fixed-size field, a padding run). The parser in ``_connection.py`` only decides which step
the buffered bytes make; where that step leads is looked up here. A pair missing from the table is a
bug on our side (:class:`LocalMSEError`); whatever the peer sends wrong is a
:class:`MSEProtocolError` raised by the parser, which moves the handshake to :attr:`State.ERROR`.

Generate the diagram with ``python -m bitswarm.mse._state``.
"""

from __future__ import annotations

import enum
from typing import Final


class Role(enum.Enum):
    """Which end of the TCP (or uTP) connection we are."""

    #: We dialled: we send Ya first and carry our BitTorrent handshake as the initial payload.
    INITIATOR = "INITIATOR"
    #: The peer dialled: it may speak plaintext BitTorrent or MSE; we find its torrent from req2^req3.
    RESPONDER = "RESPONDER"


class State(enum.Enum):
    """Where our side of the handshake is."""

    #: Responder: fewer bytes than it takes to tell ``\\x13BitTorrent protocol`` from an MSE key.
    SNIFF = "SNIFF"
    #: Waiting for the peer's 96-byte DH public key (Ya or Yb).
    AWAIT_KEY = "AWAIT_KEY"
    #: Responder: scanning PadA for HASH('req1', S).
    SYNC_REQ1 = "SYNC_REQ1"
    #: Responder: HASH('req2', SKEY)^HASH('req3', S), ENCRYPT(VC, crypto_provide, len(PadC)).
    AWAIT_PROVIDE = "AWAIT_PROVIDE"
    #: Responder: ENCRYPT(PadC, len(IA)).
    AWAIT_PAD_C = "AWAIT_PAD_C"
    #: Responder: ENCRYPT(IA), the initial payload.
    AWAIT_IA = "AWAIT_IA"
    #: Initiator: scanning PadB for ENCRYPT(VC).
    SYNC_VC = "SYNC_VC"
    #: Initiator: ENCRYPT(crypto_select, len(PadD)).
    AWAIT_SELECT = "AWAIT_SELECT"
    #: Initiator: ENCRYPT(PadD).
    AWAIT_PAD_D = "AWAIT_PAD_D"
    #: Handshake complete: the payload stream runs with the selected method.
    DONE = "DONE"
    #: Responder: the peer spoke plaintext BitTorrent; nothing of MSE applies.
    PLAINTEXT = "PLAINTEXT"
    #: The handshake failed; nothing more is accepted.
    ERROR = "ERROR"


class Step(enum.Enum):
    """What the parser found in the peer's bytes."""

    PLAINTEXT_HEADER = "PLAINTEXT_HEADER"  # b"\x13BitTorrent protocol"
    MSE_START = "MSE_START"  # a first byte sequence that is not the plaintext header
    PUBLIC_KEY = "PUBLIC_KEY"  # Ya or Yb (96 bytes); the responder answers with Yb + PadB
    REQ1_FOUND = "REQ1_FOUND"  # HASH('req1', S) located within 512 bytes of padding
    PROVIDE = "PROVIDE"  # torrent identified, VC checked, crypto_provide read
    PAD_C = "PAD_C"  # PadC and len(IA) read
    INITIAL_PAYLOAD = "INITIAL_PAYLOAD"  # IA read; the responder sends step 4
    VC_FOUND = "VC_FOUND"  # ENCRYPT(VC) located within 512 bytes of padding
    SELECT = "SELECT"  # crypto_select and len(PadD) read and checked
    PAD_D = "PAD_D"  # PadD read


INITIATOR: Final = Role.INITIATOR
RESPONDER: Final = Role.RESPONDER

#: THE state table.
TRANSITIONS: Final[dict[tuple[Role, State, Step], State]] = {
    # responder (B): step 1 in, step 2 out, step 3 in, step 4 out
    (RESPONDER, State.SNIFF, Step.PLAINTEXT_HEADER): State.PLAINTEXT,
    (RESPONDER, State.SNIFF, Step.MSE_START): State.AWAIT_KEY,
    (RESPONDER, State.AWAIT_KEY, Step.PUBLIC_KEY): State.SYNC_REQ1,
    (RESPONDER, State.SYNC_REQ1, Step.REQ1_FOUND): State.AWAIT_PROVIDE,
    (RESPONDER, State.AWAIT_PROVIDE, Step.PROVIDE): State.AWAIT_PAD_C,
    (RESPONDER, State.AWAIT_PAD_C, Step.PAD_C): State.AWAIT_IA,
    (RESPONDER, State.AWAIT_IA, Step.INITIAL_PAYLOAD): State.DONE,
    # initiator (A): step 1 out at start, step 2 in, step 3 out, step 4 in
    (INITIATOR, State.AWAIT_KEY, Step.PUBLIC_KEY): State.SYNC_VC,
    (INITIATOR, State.SYNC_VC, Step.VC_FOUND): State.AWAIT_SELECT,
    (INITIATOR, State.AWAIT_SELECT, Step.SELECT): State.AWAIT_PAD_D,
    (INITIATOR, State.AWAIT_PAD_D, Step.PAD_D): State.DONE,
}

#: States in which the handshake is over (no more bytes are parsed by it).
FINAL: Final[frozenset[State]] = frozenset({State.DONE, State.PLAINTEXT, State.ERROR})


def diagram() -> str:
    """The table as a Markdown list, one line per transition, grouped by role and state."""
    lines = []
    for role in Role:
        lines.append(f"- **{role.value}**")
        for (r, st, step), nxt in TRANSITIONS.items():
            if r is role:
                lines.append(f"  - {st.value} --{step.value}--> {nxt.value}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(diagram())
