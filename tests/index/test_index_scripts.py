"""The index's transaction scripts are sans-I/O: driven here with canned rows, no database."""

from __future__ import annotations

import re

import pytest

from bitswarm.index import _scripts as scripts
from bitswarm.index._errors import Conflict, NotFound, StaleSequence

GUID = "42bb7fb8-8f8d-4c1c-b4df-d97c2e78eb7c"
PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
ROW = {
    "guid": GUID,
    "user_id": 7,
    "username": "ann",
    "ip": "10.0.0.1",
    "port": 6881,
    "logged_in": 1,
    "created_at": 0.0,
    "last_login": 0.0,
    "last_seen": 90.0,
    "expires_at": 10_000.0,
    "seq_expected": 3,
    "ka_seq_expected": 5,
}


def drive(script, answer):
    """Run ``script`` answering each query with ``answer(query)``; returns (queries, result)."""
    queries = []
    try:
        query = next(script)
        while True:
            queries.append(query)
            assert set(PARAM.findall(query.sql)) <= set(query.params), query.sql
            query = script.send(answer(query))
    except StopIteration as stop:
        return queries, stop.value


def rows(query):
    return ROW if query.fetch == "one" else [ROW] if query.fetch == "all" else 1


def test_a_stale_keep_alive_is_refused_before_any_write():
    queries = []

    def answer(query):
        queries.append(query.sql.split()[0])
        return rows(query)

    with pytest.raises(StaleSequence):
        drive(scripts.keep_alive(GUID, 100.0, ka_seq_number=4), answer)
    assert queries == ["SELECT"]
    written, peer = drive(scripts.keep_alive(GUID, 100.0, ka_seq_number=9), rows)
    assert [q.sql.split()[0] for q in written] == ["SELECT", "UPDATE", "UPDATE", "SELECT"]
    assert written[1].params == {"expected": 10, "guid": GUID} and peer.online


def test_ownership_and_unknown_peers():
    with pytest.raises(NotFound):
        drive(scripts.login_peer(GUID, 100.0, user_id=8), rows)  # another user's peer
    with pytest.raises(NotFound):
        drive(scripts.logout_peer(GUID, 100.0), lambda q: None)
    _, peer = drive(scripts.login_peer(GUID, 100.0, user_id=7, port=51413), rows)
    assert peer.guid == GUID


def test_creation_conflicts_and_new_peer_expectations():
    with pytest.raises(Conflict):
        drive(scripts.create_peer(0.0, guid=GUID), lambda q: 0)
    queries, guid = drive(
        scripts.file_host(
            0.0, guid=None, ip=None, port=None, seq_number=4, create_guid=None, touch=True, upsert_peer=False
        ),
        rows,
    )
    assert queries[-1].params["expected"] == 5 and guid == queries[0].params["guid"]
