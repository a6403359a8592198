"""The index's transaction scripts are sans-I/O: driven here with canned rows, no database."""

from __future__ import annotations

import re

import pytest

from bitswarm.index import _scripts as scripts
from bitswarm.index._errors import Conflict, NotFound, StaleSequence
from bitswarm.index._model import Chunk, FileSpec
from bitswarm.index._pgstore import PgStore
from bitswarm.index._store import Store

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
            if isinstance(query, scripts.Query):
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


# -- file registration, removal and dumps (canned rows) ----------------------------------------------

SPEC = FileSpec(name="b.iso", sha1="a" * 40, size=10)


def kinds(steps):
    return [type(s).__name__ if not isinstance(s, scripts.Query) else s.sql.split()[0] for s in steps]


def test_a_new_file_is_inserted_through_the_dialect_primitive():
    def answer(step):
        if isinstance(step, scripts.InsertFile):
            return 17
        return None if step.fetch == "one" else [] if step.fetch == "all" else 1

    steps, file_id = drive(scripts.host_file(SPEC, GUID, "/x", 5.0), answer)
    assert file_id == 17 and kinds(steps) == ["SELECT", "InsertFile", "INSERT"]
    assert steps[1].params() == {
        "name": "b.iso",
        "size": 10,
        "sha1": "a" * 40,
        "sha256": None,
        "md5": None,
        "btih_v1": None,
        "btih_v2": None,
        "magnet": None,
        "torrent": None,
        "created_at": 5.0,
    }
    assert steps[2].params["name"] is None and steps[2].params["path"] == "/x"  # the file's own name


def test_a_known_file_under_another_name_keeps_its_name_and_gains_an_alias():
    def answer(step):
        if isinstance(step, scripts.Query) and step.sql.startswith("SELECT id, name, aliases"):
            return {"id": 5, "name": "a.iso", "aliases": ""}
        if isinstance(step, scripts.Query) and step.sql.startswith("SELECT name, aliases"):
            return ("a.iso", "")
        if isinstance(step, scripts.Query) and step.sql.startswith("SELECT name FROM hosts"):
            return [(None,), ("b.iso",)]
        return 1

    steps, file_id = drive(scripts.host_file(SPEC, GUID, None, 5.0), answer)
    assert file_id == 5
    assert kinds(steps) == ["SELECT", "UPDATE", "INSERT", "SELECT", "SELECT", "SetNames"]
    assert steps[2].params["name"] == "b.iso"
    assert steps[-1] == scripts.SetNames(5, "a.iso", "b.iso")


def test_hashes_of_two_files_are_a_conflict_and_chunks_come_in_batches():
    def conflict(script):
        step = next(script)  # find_file
        step = script.send({"id": 5, "name": "a.iso", "aliases": ""})
        assert step.sql.startswith("UPDATE files SET")
        script.throw(Conflict("UNIQUE constraint failed: files.sha256"))

    with pytest.raises(Conflict, match="belong to two different files"):
        conflict(scripts.upsert_file(SPEC, 0.0))
    chunked = FileSpec(name="c", sha1="c" * 40, chunks=tuple(Chunk(i, f"p{i}", "h") for i in range(300)))
    steps, _ = drive(
        scripts.upsert_file(chunked, 0.0),
        lambda s: 3 if isinstance(s, scripts.InsertFile) else None if s.fetch == "one" else 1,
    )
    inserts = [s for s in steps if isinstance(s, scripts.Query) and s.sql.startswith("INSERT INTO chunks")]
    assert [len(s.params) - 1 for s in inserts] == [375, 375, 150]  # 3 parameters a chunk, + the file id


def test_removing_the_last_host_drops_the_orphan_and_unknown_hosting_is_not_found():
    with pytest.raises(NotFound, match="does not host"):
        drive(scripts.remove_host(GUID, 100.0, file_id=9), lambda s: ROW if s.fetch == "one" else 0)
    steps, file_id = drive(scripts.remove_host(GUID, 100.0, file_id=9), rows_no_alias)
    assert file_id == 9
    assert kinds(steps) == ["SELECT", "DELETE", "DELETE", "SELECT"]
    assert steps[2].params == {"f0": 9} and "NOT EXISTS" in steps[2].sql


def rows_no_alias(step):
    return ROW if step.fetch == "one" else [] if step.fetch == "all" else 1


def test_deleting_a_peer_checks_its_files_in_batches_and_renames_kept_ones():
    def answer(step):
        if isinstance(step, scripts.SetNames):
            return 1
        if step.sql.startswith("SELECT file_id FROM hosts"):
            return [(i,) for i in range(1, 1201)]
        if step.sql.startswith("SELECT id FROM files") and "f0" in step.params and step.params["f0"] == 1:
            return [(7,)]
        if step.sql.startswith("SELECT name, aliases"):
            return ("gone.iso", "kept.iso")
        if step.sql.startswith("SELECT name FROM hosts"):
            return [("kept.iso",)]
        return [] if step.fetch == "all" else 1

    steps, _ = drive(scripts.delete_peer(GUID), answer)
    deletes = [s for s in steps if isinstance(s, scripts.Query) and s.sql.startswith("DELETE FROM files")]
    assert [len(s.params) for s in deletes] == [500, 500, 200]
    assert scripts.SetNames(7, "kept.iso", "") in steps


def test_dump_and_load_dump_on_canned_rows():
    peer = {k: ROW[k] for k in scripts.DUMP_PEER_COLS} | {"logged_in": True}

    def answer(step):
        sql = step.sql
        if sql.startswith("SELECT guid, ip"):
            return [peer]
        if sql.startswith("SELECT file_id, chunk_id"):
            return [(4, 0, "p0", "h0")]
        if sql.startswith("SELECT file_id, guid"):
            return [(4, GUID, "/f", "mine.iso")]
        if sql.startswith("SELECT id, name"):
            return [
                {
                    "id": 4,
                    "name": "f.iso",
                    "size": 3,
                    "sha1": "a" * 40,
                    "sha256": None,
                    "md5": None,
                    "btih_v1": None,
                    "btih_v2": None,
                    "magnet": None,
                    "torrent": b"d1:ai1ee",
                }
            ]
        return [("10.0.0.9", "other")]

    _, data = drive(scripts.dump(100.0), answer)
    assert data["peers"] == [peer | {"logged_in": 1}]
    (f,) = data["files"]
    assert f["torrent"] == "ZDE6YWkxZWU=" and f["chunks"] == [{"id": 0, "name": "p0", "chunk_hash": "h0"}]
    assert f["hosts"] == [{"guid": GUID, "path": "/f", "name": "mine.iso"}]
    assert data["trackers"] == [{"name": "other", "ip": "10.0.0.9"}]
    assert scripts.spec_from_dump(f).torrent == b"d1:ai1ee"

    def load_answer(step):
        if isinstance(step, scripts.InsertFile):
            return 1
        if isinstance(step, scripts.SetNames):
            return 1
        if step.sql.startswith("SELECT 1 FROM peers"):
            return (1,)
        if step.sql.startswith("SELECT name, aliases"):
            return ("f.iso", "")
        if step.sql.startswith("SELECT name FROM hosts"):
            return [("mine.iso",)]
        return None if step.fetch == "one" else [] if step.fetch == "all" else 1

    steps, merged = drive(scripts.load_dump(data, 200.0), load_answer)
    assert merged == 1
    upsert = steps[0]
    assert "CASE WHEN" in upsert.sql and upsert.params["logged_in"] is True
    assert upsert.params["public_id"] and kinds(steps)[-1] == "INSERT"  # the tracker
    assert scripts.SetNames(1, "mine.iso", "") in steps  # its only host calls it so
    hosts = [s for s in steps if isinstance(s, scripts.Query) and s.sql.startswith("INSERT INTO hosts")]
    assert hosts[0].params["name"] == "mine.iso" and hosts[0].params["path"] == "/f"


@pytest.mark.parametrize("store", [Store, PgStore])
def test_each_dialect_lowers_the_primitives_with_all_their_parameters(store):
    for step in (scripts.InsertFile(SPEC, 1.0), scripts.SetNames(3, "a", "b")):
        query = store.lower(step)
        assert set(PARAM.findall(query.sql)) <= set(query.params), query.sql
    assert store.lower(scripts.InsertFile(SPEC, 1.0)).fetch == "id"
    assert ("search" in store.lower(scripts.SetNames(3, "a", "b")).params) == (store is PgStore)
