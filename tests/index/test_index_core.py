"""The index core: storage, search, presence (TTL, keep-alive) with an injected clock, sequence
numbers, orphan removal, transactions, restart."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest
from index_testlib import FAST_HASHER, SHA_A, SHA_B, FakeClock

from bitswarm.index import (
    OFFLINE_AFTER,
    REGISTRATION_TTL,
    AuthError,
    Chunk,
    Conflict,
    FileSpec,
    IndexService,
    NotFound,
    StaleSequence,
    ValidationError,
    fts_query,
    public_peer_id,
)


@pytest.fixture
async def svc(index_db):
    clock = FakeClock()
    service = await IndexService.open(index_db, clock=clock, hasher=FAST_HASHER)
    service.test_clock = clock  # type: ignore[attr-defined]
    yield service
    await service.close()


#: Both backends are at the same schema version (SQLite and PostgreSQL migrations are numbered alike).
LATEST_SCHEMA = 5


def spec(name: str, sha256: str, **kw) -> FileSpec:
    return FileSpec(name=name, sha256=sha256, **kw)


def test_fts_query_forms():
    assert fts_query("ubu desk") == '"ubu"* AND "desk"*'
    assert fts_query('ubu "big buck"', any_part=True) == '"ubu"* OR "big buck"'
    assert fts_query('"big buck" bunny') == '"big buck" AND "bunny"*'
    assert fts_query("  *** ") is None
    assert fts_query('NEAR(" OR') == '"NEAR"* AND "OR"'  # an unclosed quote runs to the end


async def test_add_search_prefix_phrase_and_hash(svc):
    fid, guid = await svc.add_file(spec("Big Buck Bunny 1080p.mkv", SHA_A), guid=None, ip="10.0.0.1")
    await svc.add_file(spec("Buck Big Story.txt", SHA_B), guid=guid)
    assert [f.id for f in (await svc.search("bun")).items] == [fid]
    assert {f.name for f in (await svc.search("buck big")).items} == {
        "Big Buck Bunny 1080p.mkv",
        "Buck Big Story.txt",
    }
    phrase = await svc.search('"big buck"')
    assert [f.name for f in phrase.items] == ["Big Buck Bunny 1080p.mkv"]
    assert (await svc.search("nothing")).total == 0
    assert (await svc.search("")).total == 0
    assert (await svc.file_by_hash(SHA_A.upper())).file.id == fid
    with pytest.raises(NotFound):
        await svc.file_by_hash("c" * 64)


async def test_search_finds_any_word_all_words_first(svc):
    """Issue 22: the README's ``bitswarm search "holiday video"`` finds ``holiday.mp4`` (every word
    had to match); files matching every word come first, even before ones with more peers online."""
    fid_mp4, _g1 = await svc.add_file(spec("holiday.mp4", "1" * 64), guid=None)
    fid_both, _g2 = await svc.add_file(spec("Holiday Video 2024.mkv", "2" * 64), guid=None)
    svc.test_clock.advance(OFFLINE_AFTER + 1)  # their hosts go offline
    _, g3 = await svc.add_file(spec("video of the beach.mkv", "3" * 64), guid=None)
    await svc.add_file(spec("video of the beach.mkv", "3" * 64), guid=None)
    await svc.add_file(spec("unrelated.txt", "4" * 64), guid=g3)
    found = await svc.search("holiday video")
    names = [f.name for f in found.items]
    assert found.total == 3 and names[0] == "Holiday Video 2024.mkv", names
    assert set(names[1:]) == {"holiday.mp4", "video of the beach.mkv"}
    assert names[1] == "video of the beach.mkv"  # among partial matches: online peers first
    phrase = await svc.search('"holiday video" 2024')  # a quoted phrase stays one part
    assert [f.id for f in phrase.items] == [fid_both]
    assert {f.id for f in (await svc.search("holiday")).items} == {fid_mp4, fid_both}
    assert next(f.name for f in (await svc.search("beach video")).items) == "video of the beach.mkv"
    page = await svc.search("holiday video", limit=1, offset=5)
    assert page.total == 3 and page.items == ()


async def test_search_ranked_by_online_peers(svc):
    clock = svc.test_clock
    fid1, g1 = await svc.add_file(spec("linux one.iso", "1" * 64), guid=None)
    clock.advance(OFFLINE_AFTER + 1)  # g1 goes offline
    fid2, g2 = await svc.add_file(spec("linux two.iso", "2" * 64), guid=None)
    _, g3 = await svc.add_file(spec("linux two.iso", "2" * 64), guid=None)
    items = (await svc.search("linux")).items
    assert [(f.id, f.online_peers, f.total_peers) for f in items] == [(fid2, 2, 2), (fid1, 0, 1)]
    await svc.keep_alive(g1)
    await svc.add_file(spec("linux one.iso", "1" * 64), guid=g2)
    await svc.add_file(spec("linux one.iso", "1" * 64), guid=g3)
    assert next(f.id for f in (await svc.search("linux")).items) == fid1


async def test_same_hash_adds_host_and_orphan_removed(svc):
    fid, g1 = await svc.add_file(spec("a.bin", SHA_A, chunks=(Chunk(0, "a.0", "h0"),)), guid=None)
    fid2, g2 = await svc.add_file(spec("a.bin", SHA_A), guid=None)
    assert fid == fid2 and g1 != g2
    detail = await svc.get_file(fid)
    assert {h.peer.guid for h in detail.hosts} == {g1, g2}
    assert detail.chunks == (Chunk(0, "a.0", "h0"),)
    await svc.remove_host(g1, file_id=fid)
    assert (await svc.get_file(fid)).file.total_peers == 1
    await svc.remove_host(g2, file_hash=SHA_A)
    with pytest.raises(NotFound):
        await svc.get_file(fid)
    assert (await svc.search("a")).total == 0
    with pytest.raises(NotFound):
        await svc.remove_host(g2, file_id=fid)


async def test_sequence_numbers_reject_replays(svc):
    fid, guid = await svc.add_file(spec("x", SHA_A), guid=None, seq_number=5)
    peer = await svc.get_peer(guid)
    assert (peer.seq_expected, peer.ka_seq_expected) == (6, 0)
    with pytest.raises(StaleSequence):
        await svc.add_file(spec("y", SHA_B), guid=guid, seq_number=5)
    assert (await svc.count_files()) == 1  # nothing stored half-way
    await svc.add_file(spec("y", SHA_B), guid=guid, seq_number=9)  # gaps allowed
    await svc.keep_alive(guid, ka_seq_number=0)
    with pytest.raises(StaleSequence):
        await svc.keep_alive(guid, ka_seq_number=0)
    with pytest.raises(StaleSequence):
        await svc.remove_host(guid, file_id=fid, seq_number=3)
    assert (await svc.get_file(fid)).file.total_peers == 1
    peer = await svc.get_peer(guid)
    assert (peer.seq_expected, peer.ka_seq_expected) == (10, 1)


async def test_presence_keepalive_and_ttl(svc):
    clock = svc.test_clock
    user = await svc.create_user("alice", "pw")
    peer = await svc.register_peer(user=user, ip="10.0.0.2", port=6881)
    assert not peer.online
    await svc.login_peer(peer.guid, user=user)
    assert (await svc.get_peer(peer.guid)).online
    # one missed keep-alive (5 min) is tolerated; two are not
    clock.advance(OFFLINE_AFTER - 1)
    assert [p.guid for p in await svc.list_peers("online")] == [peer.guid]
    await svc.keep_alive(peer.guid, require_login=True)
    clock.advance(OFFLINE_AFTER + 1)
    assert await svc.list_peers("online") == []
    assert [p.guid for p in await svc.list_peers("offline")] == [peer.guid]
    await svc.logout_peer(peer.guid)
    with pytest.raises(NotFound):
        await svc.keep_alive(peer.guid, require_login=True)
    # the registration lives 30 days from the last login, and every login refreshes it
    clock.advance(REGISTRATION_TTL - 3600)
    await svc.login_peer(peer.guid, user=user)
    clock.advance(REGISTRATION_TTL - 10)
    assert (await svc.get_peer(peer.guid)).guid == peer.guid
    clock.advance(20)
    with pytest.raises(NotFound):
        await svc.get_peer(peer.guid)
    assert await svc.list_peers("all") == []
    assert await svc.purge_expired() == 1


async def test_expiry_removes_files_of_expired_peer(svc):
    fid, _guid = await svc.add_file(spec("gone.txt", SHA_A), guid=None)
    svc.test_clock.advance(REGISTRATION_TTL + 1)
    assert (await svc.get_file(fid)).file.total_peers == 0
    assert await svc.purge_expired() == 1
    with pytest.raises(NotFound):
        await svc.get_file(fid)


async def test_users_sessions(svc):
    await svc.create_user("bob", "secret")
    with pytest.raises(Conflict):
        await svc.create_user("bob", "other")
    with pytest.raises(AuthError):
        await svc.authenticate("bob", "wrong")
    with pytest.raises(AuthError):
        await svc.authenticate("nobody", "x")
    session = await svc.login("bob", "secret")
    assert (await svc.user_for_token(session.token)).username == "bob"
    svc.test_clock.advance(8 * 24 * 3600)
    with pytest.raises(AuthError):
        await svc.user_for_token(session.token)
    session = await svc.login("bob", "secret")
    await svc.logout(session.token)
    with pytest.raises(AuthError):
        await svc.user_for_token(session.token)


async def test_register_with_files_replaces_old_id(svc):
    user = await svc.register_or_authenticate("carol", "pw")
    first = await svc.register_with_files(user, [FileSpec(name="one", sha1="1" * 40)])
    second = await svc.register_with_files(user, [FileSpec(name="two", sha1="2" * 40)])
    assert first != second
    with pytest.raises(NotFound):
        await svc.get_peer(first)
    assert [f.name for f in await svc.browse(second)] == ["two"]
    assert (await svc.search("one")).total == 0
    with pytest.raises(AuthError):
        await svc.register_or_authenticate("carol", "bad")


async def test_transaction_rolls_back_on_conflicting_hashes(svc):
    await svc.add_file(FileSpec(name="p", sha1="1" * 40), guid=None)
    await svc.add_file(FileSpec(name="q", md5="2" * 32), guid=None)
    with pytest.raises(Conflict):  # sha1 names file p, md5 names file q
        await svc.add_file(FileSpec(name="r", sha1="1" * 40, md5="2" * 32), guid=None)
    assert await svc.count_peers() == 2
    with pytest.raises(ValidationError):
        await svc.add_file(FileSpec(name="nohash"), guid=None)


async def test_restart_keeps_everything(index_db):
    path = index_db
    clock = FakeClock()
    svc = await IndexService.open(path, clock=clock, hasher=FAST_HASHER)
    fid, guid = await svc.add_file(spec("persist me.txt", SHA_A, chunks=(Chunk(1, "c", "h"),)), guid=None)
    await svc.create_user("dave", "pw")
    await svc.add_tracker("t2", "10.0.0.9:42070")
    await svc.close()
    svc = await IndexService.open(path, clock=clock, hasher=FAST_HASHER)
    try:
        assert (await svc.search("persist")).items[0].id == fid
        assert (await svc.get_file(fid)).chunks == (Chunk(1, "c", "h"),)
        assert (await svc.get_peer(guid)).online
        assert (await svc.authenticate("dave", "pw")).username == "dave"
        assert [t.ip for t in await svc.trackers()] == ["10.0.0.9:42070"]
        assert await svc.schema_version() == LATEST_SCHEMA
    finally:
        await svc.close()
    if svc.backend_kind == "postgresql":
        conn = await asyncpg.connect(path)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
            assert versions == list(range(1, LATEST_SCHEMA + 1))
        finally:
            await conn.close()
        return
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [v for (v,) in db.execute("SELECT version FROM schema_migrations")] == list(
        range(1, LATEST_SCHEMA + 1)
    )
    db.close()


async def test_dump_and_load(svc, tmp_path):
    _fid, guid = await svc.add_file(spec("dumped.bin", SHA_A, chunks=(Chunk(0, "c0", "h"),)), guid=None)
    dump = await svc.dump()
    other = await IndexService.open(":memory:", clock=svc.test_clock, hasher=FAST_HASHER)
    try:
        assert await other.load_dump(dump) == 1
        detail = await other.file_by_hash(SHA_A)
        assert [h.peer.guid for h in detail.hosts] == [guid]
        assert detail.chunks == (Chunk(0, "c0", "h"),)
    finally:
        await other.close()


def test_tsquery_and_tsvector_literals():
    from bitswarm.index._pgstore import tsquery_literal, tsvector_literal

    assert tsquery_literal("ubu desk") == "'ubu':* & 'desk':*"
    assert tsquery_literal('ubu "big buck"', any_part=True) == "'ubu':* | ('big' <-> 'buck')"
    assert tsquery_literal('"big buck" bunny') == "('big' <-> 'buck') & 'bunny':*"
    assert tsquery_literal("  *** ") is None
    assert tsquery_literal("it's") == "'it':* & 's':*"
    assert tsvector_literal("Café_Déjà 1080p") == "'cafe':1 'deja':2 '1080p':3"


async def test_search_normalises_words_on_both_backends(svc):
    fid, guid = await svc.add_file(spec("Café_Déjà Vu (it's) 1080p.mkv", SHA_A), guid=None)
    await svc.add_file(spec("back\\slash 'quoted'.txt", SHA_B), guid=guid)
    for query in ("cafe", "DÉJÀ", "deja vu", '"deja vu"', "1080"):
        assert [f.id for f in (await svc.search(query)).items] == [fid], query
    assert next(f.id for f in (await svc.search("it s")).items) == fid  # "s" also starts "slash"
    assert (await svc.search('"vu deja"')).total == 0
    assert [f.name for f in (await svc.search("slash quoted")).items] == ["back\\slash 'quoted'.txt"]
    assert (await svc.search("'")).total == 0
    assert (await svc.search("café & | ! <-> :*")).total == 1


async def test_search_pagination_total(svc):
    _, guid = await svc.add_file(spec("page 0", "0" * 64), guid=None)
    for i in range(1, 5):
        await svc.add_file(spec(f"page {i}", str(i) * 64), guid=guid)
    first = await svc.search("page", limit=2)
    assert first.total == 5 and len(first.items) == 2
    assert (await svc.search("page", limit=2, offset=4)).items[0].name.startswith("page")
    past = await svc.search("page", limit=2, offset=10)
    assert past.total == 5 and past.items == ()


async def test_sqlite_files_are_private(tmp_path):
    """Issue 16 item 12: the database (and its WAL/SHM files) holds password hashes: mode 0600,
    whatever the umask; an existing world-readable file is tightened."""
    import os

    old = os.umask(0o022)
    try:
        path = tmp_path / "index.db"
        service = await IndexService.open(str(path), hasher=FAST_HASHER)
        await service.create_user("alice", "correct horse")
        for f in tmp_path.iterdir():
            assert f.stat().st_mode & 0o777 == 0o600, f
        await service.close()
        loose = tmp_path / "loose.db"
        loose.touch(mode=0o644)
        os.chmod(loose, 0o644)
        service = await IndexService.open(str(loose), hasher=FAST_HASHER)
        await service.close()
        assert loose.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


async def test_migration_3_gives_existing_peers_their_public_id(index_db):
    """A database from before public ids (schema 2): migration 3 computes every peer's public id, the
    same one the code computes, so public lookups find peers registered before the upgrade."""
    svc = await IndexService.open(index_db, hasher=FAST_HASHER)
    _, guid = await svc.add_file(spec("old.mkv", SHA_A), guid=None)
    await svc.close()
    undo = [
        "DROP INDEX peers_public_id",
        "ALTER TABLE peers DROP COLUMN public_id",
        "DELETE FROM schema_migrations WHERE version = 3",
    ]
    if index_db.startswith("postgresql://"):
        conn = await asyncpg.connect(index_db)
        for statement in undo:
            await conn.execute(statement)
        await conn.close()
    else:
        db = sqlite3.connect(index_db)
        for statement in undo:
            db.execute(statement)
        db.commit()
        db.close()
    svc = await IndexService.open(index_db, hasher=FAST_HASHER)
    try:
        assert await svc.schema_version() == LATEST_SCHEMA
        assert (await svc.find_peer(public_peer_id(guid))).guid == guid
        assert (await svc.find_peer(public_peer_id(guid).upper())).guid == guid
    finally:
        await svc.close()
