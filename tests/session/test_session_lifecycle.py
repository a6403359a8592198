"""The torrent lifecycle table: every (state, event) pair is legal or raises; walks stay in the table."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.errors import BitswarmError
from bitswarm.session import lifecycle
from bitswarm.session.lifecycle import (
    DISPLAY_NAME,
    TRANSITIONS,
    TRANSMISSION_STATUS,
    Event,
    Lifecycle,
    LifecycleError,
    State,
    allowed,
    mermaid,
    next_state,
    sync_document,
    transfer,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"
ALL_PAIRS = list(itertools.product(State, Event))

#: Where each event may be fired from (the specification the table is checked against).
LEGAL_FROM: dict[Event, set[State]] = {
    Event.QUEUE: {State.STOPPED, State.ERROR, State.PAUSED},
    Event.FETCH_METADATA: {State.STOPPED, State.QUEUED, State.PAUSED},
    Event.CHECK: {
        State.STOPPED,
        State.QUEUED,
        State.METADATA,
        State.DOWNLOADING,
        State.SEEDING,
        State.PAUSED,
        State.ERROR,
    },
    Event.DOWNLOAD: {State.CHECKING, State.SEEDING, State.PAUSED, State.MOVING},
    Event.SEED: {State.CHECKING, State.DOWNLOADING, State.PAUSED, State.MOVING},
    Event.PAUSE: set(State) - {State.STOPPED},
    Event.MOVE: {State.STOPPED, State.DOWNLOADING, State.SEEDING, State.PAUSED, State.MOVING},
    Event.FAIL: set(State),
    Event.STOP: set(State),
}


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=[f"{s.value}-{e.value}" for s, e in ALL_PAIRS])
def test_every_pair_is_legal_or_raises(state: State, event: Event) -> None:
    machine = Lifecycle(state)
    if state in LEGAL_FROM[event]:
        assert machine.fire(event) is TRANSITIONS[state, event]
        assert machine.state is TRANSITIONS[state, event]
    else:
        assert (state, event) not in TRANSITIONS
        with pytest.raises(LifecycleError) as info:
            machine.fire(event)
        assert info.value.state is state and info.value.event is event
        assert machine.state is state  # a refused event changes nothing
        assert event.value in str(info.value) and state.value in str(info.value)


def test_the_table_has_exactly_the_specified_pairs() -> None:
    specified = {(s, e) for e, states in LEGAL_FROM.items() for s in states}
    assert set(TRANSITIONS) == specified


@pytest.mark.parametrize(
    ("path", "end"),
    [
        ([Event.QUEUE, Event.CHECK, Event.DOWNLOAD, Event.SEED], State.SEEDING),
        ([Event.QUEUE, Event.FETCH_METADATA, Event.CHECK, Event.DOWNLOAD], State.DOWNLOADING),
        ([Event.QUEUE, Event.CHECK, Event.SEED, Event.DOWNLOAD], State.DOWNLOADING),  # a file wanted
        ([Event.QUEUE, Event.CHECK, Event.DOWNLOAD, Event.PAUSE, Event.SEED], State.SEEDING),
        ([Event.QUEUE, Event.CHECK, Event.PAUSE, Event.CHECK], State.CHECKING),  # paused mid-check
        ([Event.QUEUE, Event.FETCH_METADATA, Event.PAUSE, Event.FETCH_METADATA], State.METADATA),
        ([Event.QUEUE, Event.CHECK, Event.SEED, Event.MOVE, Event.SEED], State.SEEDING),
        ([Event.QUEUE, Event.CHECK, Event.SEED, Event.PAUSE, Event.MOVE, Event.PAUSE], State.PAUSED),
        ([Event.MOVE, Event.MOVE, Event.STOP], State.STOPPED),
        ([Event.QUEUE, Event.CHECK, Event.FAIL, Event.STOP], State.ERROR),  # stopping keeps the error
        ([Event.QUEUE, Event.CHECK, Event.FAIL, Event.QUEUE], State.QUEUED),  # a retry
        ([Event.QUEUE, Event.CHECK, Event.FAIL, Event.CHECK, Event.SEED], State.SEEDING),  # a recheck
        ([Event.CHECK, Event.STOP], State.STOPPED),  # a recheck of a stopped torrent
        ([Event.CHECK, Event.SEED], State.SEEDING),  # the engine adds a complete torrent
        ([Event.FETCH_METADATA, Event.CHECK, Event.DOWNLOAD], State.DOWNLOADING),  # the engine adds a magnet
        ([Event.QUEUE, Event.STOP], State.STOPPED),  # stopped while waiting for a slot
    ],
)
def test_lifecycles(path: list[Event], end: State) -> None:
    machine = Lifecycle()
    for event in path:
        machine.fire(event)
    assert machine.state is end


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.STOPPED, Event.DOWNLOAD),  # not checked yet
        (State.STOPPED, Event.PAUSE),  # not in the session
        (State.QUEUED, Event.DOWNLOAD),
        (State.METADATA, Event.SEED),  # metadata first, then a check
        (State.CHECKING, Event.MOVE),  # files are being read
        (State.CHECKING, Event.CHECK),
        (State.ERROR, Event.DOWNLOAD),  # an error is left by a retry or a recheck only
        (State.DOWNLOADING, Event.QUEUE),
        (State.MOVING, Event.CHECK),
    ],
)
def test_illegal_transitions(state: State, event: Event) -> None:
    with pytest.raises(LifecycleError):
        next_state(state, event)
    assert event not in allowed(state)


def test_transfer_is_the_download_or_seed_decision() -> None:
    assert transfer(True) is Event.SEED and transfer(False) is Event.DOWNLOAD
    for state in (State.CHECKING, State.PAUSED, State.MOVING):
        assert next_state(state, transfer(True)) is State.SEEDING
        assert next_state(state, transfer(False)) is State.DOWNLOADING


def test_the_error_is_typed() -> None:
    assert issubclass(LifecycleError, BitswarmError)


def test_listener_sees_accepted_events_only() -> None:
    seen: list[tuple[State, Event, State]] = []
    machine = Lifecycle(on_change=lambda old, ev, new: seen.append((old, ev, new)))
    machine.fire(Event.QUEUE)
    assert machine.can(Event.CHECK) and not machine.can(Event.SEED)
    with pytest.raises(LifecycleError):
        machine.fire(Event.SEED)
    machine.fire(Event.PAUSE)
    machine.fire(Event.PAUSE)
    assert seen == [
        (State.STOPPED, Event.QUEUE, State.QUEUED),
        (State.QUEUED, Event.PAUSE, State.PAUSED),
        (State.PAUSED, Event.PAUSE, State.PAUSED),
    ]
    assert repr(machine) == "Lifecycle(PAUSED)"


@given(start=st.sampled_from(State), events=st.lists(st.sampled_from(Event), max_size=60))
def test_random_walks_stay_in_the_table(start: State, events: list[Event]) -> None:
    machine = Lifecycle(start)
    for event in events:
        before = machine.state
        if (before, event) in TRANSITIONS:
            assert machine.fire(event) is TRANSITIONS[before, event]
        else:
            with pytest.raises(LifecycleError):
                machine.fire(event)
            assert machine.state is before
        assert isinstance(machine.state, State)


def test_every_state_is_reachable_and_can_stop() -> None:
    reach = {State.STOPPED}
    frontier = [State.STOPPED]
    while frontier:
        state = frontier.pop()
        for event in allowed(state):
            nxt = next_state(state, event)
            if nxt not in reach:
                reach.add(nxt)
                frontier.append(nxt)
    assert reach == set(State)
    for state in State:
        assert next_state(state, Event.STOP) in (State.STOPPED, State.ERROR)
        assert next_state(state, Event.FAIL) is State.ERROR


def test_display_names_and_transmission_codes() -> None:
    assert set(DISPLAY_NAME) == set(State) == set(TRANSMISSION_STATUS)
    # the names the daemon's API documents (docs/daemon.md) and the web UI/CLI style
    assert set(DISPLAY_NAME.values()) == {
        "queued",
        "checking",
        "metadata",
        "downloading",
        "seeding",
        "paused",
        "stopped",
        "error",
        "moving",
    }
    assert TRANSMISSION_STATUS[State.STOPPED] == 0
    assert TRANSMISSION_STATUS[State.QUEUED] == 1
    assert TRANSMISSION_STATUS[State.CHECKING] == 2
    assert TRANSMISSION_STATUS[State.DOWNLOADING] == 4
    assert TRANSMISSION_STATUS[State.SEEDING] == 6
    assert set(TRANSMISSION_STATUS.values()) <= set(range(7))


def test_diagram_has_every_transition() -> None:
    text = mermaid()
    assert text.startswith("stateDiagram-v2\n")
    labels = {}
    for line in text.splitlines()[2:]:
        arrow, label = line.strip().split(": ")
        labels[arrow] = label.split(" / ")
    drawn = {(arrow, ev) for arrow, evs in labels.items() for ev in evs}
    assert drawn == {(f"{s.value} --> {n.value}", e.value) for (s, e), n in TRANSITIONS.items()}


def test_docs_diagram_is_in_sync_with_the_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert sync_document(text) == text, (
        "docs/lifecycle.md is out of date: run .venv/bin/python -m bitswarm.session.lifecycle --update "
        "docs/lifecycle.md"
    )


def test_sync_document_replaces_a_stale_diagram() -> None:
    stale = f"# t\n\n{lifecycle.DIAGRAM_BEGIN}\n```mermaid\nold\n```\n{lifecycle.DIAGRAM_END}\ntail\n"
    new = sync_document(stale)
    assert "old" not in new and mermaid() in new and new.endswith(f"{lifecycle.DIAGRAM_END}\ntail\n")
    assert sync_document(new) == new
    with pytest.raises(ValueError):
        sync_document("no markers here")


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "l.md"
    doc.write_text(f"{lifecycle.DIAGRAM_BEGIN}\n{lifecycle.DIAGRAM_END}\n", encoding="utf-8")
    assert lifecycle.main(["--check", str(doc)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert lifecycle.main(["--update", str(doc)]) == 0
    assert lifecycle.main(["--check", str(doc)]) == 0
    assert mermaid() in doc.read_text(encoding="utf-8")
    assert lifecycle.main([]) == 0
    assert capsys.readouterr().out == mermaid()
    assert lifecycle.main(["--bogus"]) == 2
    assert "usage" in capsys.readouterr().err
