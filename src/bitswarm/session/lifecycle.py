"""A torrent's lifecycle: ONE table, (state, event) -> next state (the h11 ``_state`` style).

Pure: no I/O, no clock. The engine and the daemon fire events on a :class:`Lifecycle`;
a pair missing from :data:`TRANSITIONS` raises :class:`LifecycleError` and leaves the state as it
was. The events name what the torrent starts doing, so the engine picks the event and the table says
whether that is allowed from where it is::

    queue -> (metadata ->) check -> download <-> seed        pause / move / fail / stop from anywhere

``DOWNLOAD`` and ``SEED`` are the same decision wherever it is made — after a check, on resume,
after a move, when a piece completes or file priorities change: fire ``transfer(complete)``, which
is ``SEED`` when every wanted piece is verified, else ``DOWNLOAD``.

The diagram in ``docs/lifecycle.md`` is generated from the table (:func:`mermaid`); a test keeps
it in sync. Print it, or rewrite the document's diagram block, with::

    python -m bitswarm.session.lifecycle            # print the Mermaid diagram
    python -m bitswarm.session.lifecycle --update docs/lifecycle.md

:data:`DISPLAY_NAME` is the ``state`` the daemon's API, web UI and CLI show; :data:`TRANSMISSION_STATUS`
the status code of Transmission's RPC (``tr_torrent_activity``) for the same state.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from typing import Final

from bitswarm.errors import BitswarmError


class State(enum.Enum):
    """Where a torrent is. The values are the names the daemon and CLI show."""

    #: Not in the session: nothing open, no peers (a new or stopped torrent).
    STOPPED = "stopped"
    #: Waiting for a start slot (the daemon opens and checks a few torrents at a time).
    QUEUED = "queued"
    #: A magnet link fetching the info dictionary from peers (BEP 9).
    METADATA = "metadata"
    #: Opening storage: hashing the pieces the resume data does not vouch for.
    CHECKING = "checking"
    #: Wanted pieces are missing: requesting them from peers (and uploading what we have).
    DOWNLOADING = "downloading"
    #: Every wanted piece is verified: uploading only.
    SEEDING = "seeding"
    #: Stopped by the user but kept in the session: peers' addresses and resume state kept, no
    #: connections, no announces.
    PAUSED = "paused"
    #: ``move_storage``: files moving to a new directory, piece I/O paused.
    MOVING = "moving"
    #: Something failed (disk, storage, metadata); the message is kept next to the state. Sticky:
    #: only a new start, a recheck or a pause leaves it (stopping keeps it).
    ERROR = "error"

    __hash__ = object.__hash__  # identity hash in C, as wire._state.State


class Event(enum.Enum):
    """What happens to a torrent (what it starts doing)."""

    QUEUE = "queue"  #: start (added, resumed by the daemon, retried after an error): wait for a slot
    FETCH_METADATA = "fetch_metadata"  #: a magnet without metainfo: fetch it
    CHECK = "check"  #: open storage and hash (a slot, metadata arrived, or a recheck)
    DOWNLOAD = "download"  #: wanted pieces are missing: download
    SEED = "seed"  #: every wanted piece is verified: seed
    PAUSE = "pause"  #: stop transfer, keep the torrent in the session
    MOVE = "move"  #: start moving the files (``move_storage``)
    FAIL = "fail"  #: an error
    STOP = "stop"  #: take the torrent out of the session

    __hash__ = object.__hash__


STOPPED: Final = State.STOPPED
QUEUED: Final = State.QUEUED
METADATA: Final = State.METADATA
CHECKING: Final = State.CHECKING
DOWNLOADING: Final = State.DOWNLOADING
SEEDING: Final = State.SEEDING
PAUSED: Final = State.PAUSED
MOVING: Final = State.MOVING
ERROR: Final = State.ERROR


def _build() -> dict[tuple[State, Event], State]:
    table: dict[tuple[State, Event], State] = {
        (STOPPED, Event.QUEUE): QUEUED,
        (ERROR, Event.QUEUE): QUEUED,  # retry after an error
        (PAUSED, Event.QUEUE): QUEUED,  # a daemon that re-adds a paused torrent to resume it
        (QUEUED, Event.FETCH_METADATA): METADATA,
        (STOPPED, Event.FETCH_METADATA): METADATA,  # the engine adds a magnet (it has no queue)
        (PAUSED, Event.FETCH_METADATA): METADATA,  # resumed before the metadata came
        (QUEUED, Event.CHECK): CHECKING,
        (METADATA, Event.CHECK): CHECKING,
        (STOPPED, Event.CHECK): CHECKING,  # the engine adds a torrent; or an offline recheck
        (ERROR, Event.CHECK): CHECKING,  # a recheck clears an error
        (CHECKING, Event.DOWNLOAD): DOWNLOADING,
        (CHECKING, Event.SEED): SEEDING,
        (DOWNLOADING, Event.SEED): SEEDING,  # the last wanted piece verified
        (SEEDING, Event.DOWNLOAD): DOWNLOADING,  # a file became wanted, or a piece went bad
        (MOVING, Event.MOVE): MOVING,  # one move after another: the latest target wins
    }
    for state in (DOWNLOADING, SEEDING, PAUSED):
        table[state, Event.CHECK] = CHECKING  # recheck
    for state in (PAUSED, MOVING):
        table[state, Event.DOWNLOAD] = DOWNLOADING  # resumed / moved
        table[state, Event.SEED] = SEEDING
    for state in (QUEUED, METADATA, CHECKING, DOWNLOADING, SEEDING, PAUSED, MOVING, ERROR):
        table[state, Event.PAUSE] = PAUSED  # pausing a paused torrent is a no-op
    for state in (STOPPED, DOWNLOADING, SEEDING, PAUSED):
        table[state, Event.MOVE] = MOVING
    for state in State:
        table[state, Event.FAIL] = ERROR  # a second failure keeps the first message
        table[state, Event.STOP] = ERROR if state is ERROR else STOPPED  # stopping keeps an error
    return table


#: THE lifecycle table.
TRANSITIONS: Final[dict[tuple[State, Event], State]] = _build()

#: The ``state`` the daemon's API, web UI and CLI show for each state.
DISPLAY_NAME: Final[dict[State, str]] = {state: state.value for state in State}

#: Transmission RPC ``status`` per state: 0 stopped, 1 check-wait, 2 checking, 3 download-wait,
#: 4 downloading, 5 seed-wait, 6 seeding. There is no download/seed queue yet (3 and 5 unused);
#: Transmission shows a magnet fetching metadata as downloading, and an errored or moving torrent
#: as stopped (the error goes in its ``error``/``errorString`` fields).
TRANSMISSION_STATUS: Final[dict[State, int]] = {
    STOPPED: 0,
    PAUSED: 0,
    ERROR: 0,
    MOVING: 0,
    QUEUED: 1,
    CHECKING: 2,
    METADATA: 4,
    DOWNLOADING: 4,
    SEEDING: 6,
}


class LifecycleError(BitswarmError):
    """An event that is not allowed in the current state (a bug in the caller, or a race it must
    handle: e.g. pausing a torrent that is being removed)."""

    def __init__(self, state: State, event: Event) -> None:
        allowed = ", ".join(e.value for e in Event if (state, e) in TRANSITIONS)
        super().__init__(f"cannot {event.value} a torrent that is {state.value} (allowed: {allowed})")
        self.state = state
        self.event = event


def next_state(state: State, event: Event) -> State:
    """The state after ``event`` in ``state``; raises :class:`LifecycleError` if it is not allowed."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise LifecycleError(state, event) from None


def transfer(complete: bool) -> Event:
    """The one download-or-seed decision: ``SEED`` when every wanted piece is verified."""
    return Event.SEED if complete else Event.DOWNLOAD


def allowed(state: State) -> frozenset[Event]:
    """The events ``state`` accepts."""
    return frozenset(e for e in Event if (state, e) in TRANSITIONS)


Listener = Callable[[State, Event, State], object]  #: (old state, event, new state)


class Lifecycle:
    """One torrent's state. ``on_change(old, event, new)`` runs after every accepted event (also
    when the state stays the same, e.g. a second pause), never for a refused one."""

    __slots__ = ("_on_change", "_state")

    def __init__(self, state: State = STOPPED, *, on_change: Listener | None = None) -> None:
        self._state = state
        self._on_change = on_change

    @property
    def state(self) -> State:
        return self._state

    def can(self, event: Event) -> bool:
        return (self._state, event) in TRANSITIONS

    def fire(self, event: Event) -> State:
        """Apply ``event``; returns the new state. Raises :class:`LifecycleError` (state unchanged)
        when the table has no such transition."""
        old = self._state
        new = next_state(old, event)
        self._state = new
        if self._on_change is not None:
            self._on_change(old, event, new)
        return new

    def __repr__(self) -> str:
        return f"Lifecycle({self._state.name})"


# -- the diagram ---------------------------------------------------------------------------------

DIAGRAM_BEGIN: Final = "<!-- lifecycle diagram: generated from TRANSITIONS, do not edit by hand -->"
DIAGRAM_END: Final = "<!-- end of lifecycle diagram -->"


def mermaid() -> str:
    """The table as a Mermaid ``stateDiagram-v2``: one arrow per (state, next state), labelled with
    every event that takes it (self-loops included). Failing and stopping, allowed everywhere, are
    drawn too: the diagram is the table."""
    edges: dict[tuple[State, State], list[str]] = {}
    for state in State:  # grouped by state, in the enums' order
        for event in Event:
            nxt = TRANSITIONS.get((state, event))
            if nxt is not None:
                edges.setdefault((state, nxt), []).append(event.value)
    lines = ["stateDiagram-v2", "    [*] --> stopped"]
    for (state, nxt), events in edges.items():
        lines.append(f"    {state.value} --> {nxt.value}: {' / '.join(events)}")
    return "\n".join(lines) + "\n"


def sync_document(text: str) -> str:
    """``text`` (Markdown) with the fenced Mermaid block between :data:`DIAGRAM_BEGIN` and
    :data:`DIAGRAM_END` replaced by the current :func:`mermaid`. Raises ValueError when the markers
    are missing."""
    start = text.find(DIAGRAM_BEGIN)
    end = text.find(DIAGRAM_END)
    if start < 0 or end < start:
        raise ValueError("the document has no lifecycle diagram markers")
    block = f"{DIAGRAM_BEGIN}\n```mermaid\n{mermaid()}```\n"
    return text[:start] + block + text[end:]


def main(argv: list[str]) -> int:
    if not argv:
        sys.stdout.write(mermaid())
        return 0
    if len(argv) == 2 and argv[0] in ("--update", "--check"):
        with open(argv[1], encoding="utf-8") as fh:
            text = fh.read()
        new = sync_document(text)
        if argv[0] == "--check":
            if new != text:
                print(f"{argv[1]}: lifecycle diagram out of date (run with --update)", file=sys.stderr)
                return 1
            return 0
        if new != text:
            with open(argv[1], "w", encoding="utf-8") as fh:
                fh.write(new)
        return 0
    print("usage: python -m bitswarm.session.lifecycle [--update|--check FILE.md]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
