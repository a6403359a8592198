"""Seed 001 binary protocol: codec round trips, garbage and truncation (Hypothesis), the login
state table, and the asyncio server answering _KO / ERROR and staying up."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from index_testlib import FAST_HASHER, FakeClock

from bitswarm.errors import LocalProtocolError
from bitswarm.index import IndexCodecError, IndexService, public_peer_id
from bitswarm.index import binary as b
from bitswarm.index.binary_server import BinaryIndexServer, mb_text, mb_to_bytes

PID = "0b1c6a0e-5f43-4f6a-9d3c-6c4a3a1e2b10"
FILES = (b.SharedFile("ubuntu.iso", "700", "a" * 40), b.SharedFile("song.mp3", "1.5", "B" * 40))
REQUESTS = [
    b.Register("alice", "pw", FILES),
    b.Register("alice", "pw", ()),
    b.RegisterUpdate("alice", "pw", PID, FILES),
    b.Login("alice", "pw", PID),
    b.Login("alice", "pw", PID, 6881),
    b.KeepAlive(PID),
    b.Logout("alice", "pw", PID),
    b.Search("ubuntu desktop"),
    b.Browse(PID),
    b.ShowPeers("online"),
    b.ShowPeers("offline"),
    b.ShowPeers("all"),
]
REPLIES = [
    b.RegisterOk(PID),
    b.SimpleOk(b.MessageType.LOGIN_OK, "LOGIN SUCCESS"),
    b.SimpleOk(b.MessageType.KEEP_ALIVE_OK, "KEEP ALIVE SUCCESS"),
    b.SearchOk((b.SearchHit("ubuntu.iso", "700", "a" * 40, "alice", PID, "10.0.0.1", 6881),)),
    b.SearchOk(()),
    b.BrowseOk((b.SharedFile("x", "", ""),)),
    b.ShowPeersOk((b.PeerEntry(PID, "alice", "::1", 0, False),)),
    b.Ko(b.MessageType.LOGIN, "bad username or password"),
    b.Error("unknown message type 0x42"),
]


def frames(conn: b.IndexConnection, data: bytes) -> list[b.Event]:
    conn.receive_data(data)
    out = []
    while (ev := conn.next_event()) is not b.NEED_DATA:
        out.append(ev)
    return out


def test_header_layout():
    assert b.encode(b.KeepAlive(PID)) == struct.pack("!IB", len(PID), 0x04) + PID.encode()
    assert b.encode(b.Ko(b.MessageType.SEARCH, "x")) == b"\x00\x00\x00\x01\xc6x"
    assert b.encode(b.RegisterOk(PID))[5:] == f"REGISTER SUCCESS\n{PID}".encode()


@pytest.mark.parametrize("event", REQUESTS)
def test_requests_round_trip_whole_and_bytewise(event):
    data = b.encode(event)
    server = b.IndexConnection("server")
    server.state = b.State.LOGGED_IN
    assert frames(server, data) == [event]
    server2 = b.IndexConnection("server")
    server2.state = b.State.LOGGED_IN
    got = []
    for i in range(len(data)):
        got += frames(server2, data[i : i + 1])
    assert got == [event]


@pytest.mark.parametrize("event", REPLIES)
def test_replies_round_trip(event):
    assert frames(b.IndexConnection("client"), b.encode(event)) == [event]


def test_login_state_table():
    server = b.IndexConnection("server")
    with pytest.raises(IndexCodecError) as info:
        frames(server, b.encode(b.Search("x")))
    assert info.value.hint == b.Ko(b.MessageType.SEARCH, "login required")
    assert frames(server, b.encode(b.Login("u", "p", PID))) == [b.Login("u", "p", PID)]
    server.send(b.SimpleOk(b.MessageType.LOGIN_OK, "LOGIN SUCCESS"))
    assert server.state is b.State.LOGGED_IN
    assert frames(server, b.encode(b.Search("x"))) == [b.Search("x")]
    server.send(b.SimpleOk(b.MessageType.LOGOUT_OK, "LOGOUT SUCCESS"))
    assert server.state is b.State.NEW


def test_bad_frames_are_consumed_with_a_reply_hint():
    server = b.IndexConnection("server")
    bad = [
        (b"\x00\x00\x00\x01\x42A", b.Error),  # unknown type
        (b"\x00\x00\x00\x02\x03\xff\xfe", b.Ko),  # bad UTF-8
        (b"\x00\x00\x00\x03\x03a\nb", b.Ko),  # LOGIN with 2 lines
        (b"\x00\x00\x00\x00\x83", b.Error),  # a reply sent to the server
    ]
    for data, kind in bad:
        with pytest.raises(IndexCodecError) as info:
            frames(server, data)
        assert isinstance(info.value.hint, kind)
    assert frames(server, b.encode(b.Register("u", "p", ()))) == [b.Register("u", "p", ())]
    with pytest.raises(IndexCodecError):
        frames(server, struct.pack("!IB", b.MAX_PAYLOAD + 1, 1))
    assert server.state is b.State.BROKEN
    with pytest.raises(IndexCodecError):
        server.receive_data(b"x")


def test_local_errors():
    with pytest.raises(LocalProtocolError):
        b.encode(b.Register("a\nb", "p", ()))
    with pytest.raises(LocalProtocolError):
        b.encode(b.Register("a", "p", (b.SharedFile("f|g", "1", "a" * 40),)))
    with pytest.raises(LocalProtocolError):
        b.encode(b.Search("x" * (b.MAX_PAYLOAD + 1)))


def test_mb_conversions():
    assert mb_text(700 * 2**20) == "700"
    assert mb_text(3 * 2**19) == "1.5"
    assert mb_text(None) == ""
    assert mb_to_bytes("1.5") == 3 * 2**19


@given(st.binary(max_size=300), st.sampled_from(["server", "client"]), st.booleans())
def test_garbage_only_raises_codec_error(data, role, logged_in):
    conn = b.IndexConnection(role)
    if logged_in:
        conn.state = b.State.LOGGED_IN
    for i in range(0, len(data), 7):
        try:
            frames(conn, data[i : i + 7])
        except IndexCodecError:
            if conn.state is b.State.BROKEN:
                return


@given(st.sampled_from(REQUESTS), st.data())
def test_truncated_and_corrupted_frames(event, data):
    raw = bytearray(b.encode(event))
    cut = data.draw(st.integers(0, len(raw)))
    conn = b.IndexConnection("server")
    conn.state = b.State.LOGGED_IN
    assert frames(conn, bytes(raw[:cut])) == ([] if cut < len(raw) else [event])
    if len(raw) > 5:
        pos = data.draw(st.integers(5, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
        conn2 = b.IndexConnection("server")
        conn2.state = b.State.LOGGED_IN
        try:
            frames(conn2, bytes(raw))
        except IndexCodecError as exc:
            assert exc.hint is not None


@pytest.fixture
async def server():
    svc = await IndexService.open(":memory:", clock=FakeClock(), hasher=FAST_HASHER)
    srv = BinaryIndexServer(svc, login_timeout=0.5)
    host, port = await srv.start("127.0.0.1", 0)
    yield host, port, svc
    await srv.close()
    await svc.close()


class Client:
    def __init__(self, reader, writer):
        self.reader, self.writer, self.conn = reader, writer, b.IndexConnection("client")

    @classmethod
    async def open(cls, host, port):
        return cls(*await asyncio.open_connection(host, port))

    async def call(self, event_or_bytes):
        data = event_or_bytes if isinstance(event_or_bytes, bytes) else self.conn.send(event_or_bytes)
        self.writer.write(data)
        await self.writer.drain()
        return await self.reply()

    async def reply(self):
        while True:
            ev = self.conn.next_event()
            if ev is not b.NEED_DATA:
                return ev
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            if not data:
                return None
            self.conn.receive_data(data)

    def close(self):
        self.writer.close()


async def test_server_full_session(server):
    host, port, _ = server
    c = await Client.open(host, port)
    assert await c.call(b.KeepAlive(PID)) == b.Ko(b.MessageType.KEEP_ALIVE, "login required")
    reg = await c.call(b.Register("alice", "pw", FILES))
    assert isinstance(reg, b.RegisterOk)
    assert isinstance(await c.call(b.Register("alice", "wrong", ())), b.Ko)
    assert isinstance(await c.call(b.Login("alice", "wrong", reg.peer_id)), b.Ko)
    assert isinstance(await c.call(b.Login("alice", "pw", PID)), b.Ko)  # not her id
    assert await c.call(b.Login("alice", "pw", reg.peer_id, 6881)) == b.SimpleOk(
        b.MessageType.LOGIN_OK, "LOGIN SUCCESS"
    )
    assert await c.call(b.KeepAlive(reg.peer_id)) == b.SimpleOk(
        b.MessageType.KEEP_ALIVE_OK, "KEEP ALIVE SUCCESS"
    )
    assert isinstance(await c.call(b.KeepAlive(PID)), b.Ko)
    hits = await c.call(b.Search("ubuntu"))
    public = public_peer_id(reg.peer_id)  # others see the public id, never the id (a credential)
    assert hits == b.SearchOk(
        (b.SearchHit("ubuntu.iso", "700", "a" * 40, "alice", public, "127.0.0.1", 6881),)
    )
    for ref in (public, reg.peer_id):
        assert await c.call(b.Browse(ref)) == b.BrowseOk(
            (b.SharedFile("ubuntu.iso", "700", "a" * 40), b.SharedFile("song.mp3", "1.5", "b" * 40))
        )
    peers = await c.call(b.ShowPeers("online"))
    assert [p.peer_id for p in peers.peers] == [public]
    assert await c.call(b.ShowPeers("offline")) == b.ShowPeersOk(())
    upd = await c.call(
        b.RegisterUpdate("alice", "pw", reg.peer_id, (b.SharedFile("new.txt", "0.001", "c" * 40),))
    )
    assert upd == b.SimpleOk(b.MessageType.REGISTER_UPDATE_OK, "REGISTER UPDATE SUCCESS")
    assert [f.filename for f in (await c.call(b.Browse(reg.peer_id))).files] == ["new.txt"]
    assert await c.call(b.Search("ubuntu")) == b.SearchOk(())
    assert await c.call(b.Logout("alice", "pw", reg.peer_id)) == b.SimpleOk(
        b.MessageType.LOGOUT_OK, "LOGOUT SUCCESS"
    )
    assert isinstance(await c.call(b.ShowPeers("all")), b.Ko)  # logged out again
    c.close()


async def test_server_survives_garbage_and_enforces_login_timeout(server):
    host, port, _ = server
    c = await Client.open(host, port)
    assert await c.call(b"\x00\x00\x00\x01\x42A") == b.Error("unknown message type 0x42")
    assert isinstance(await c.call(b"\x00\x00\x00\x02\x01\xff\xfe"), b.Ko)
    assert isinstance(await c.call(b.Register("bob", "pw", ())), b.RegisterOk)  # still serving
    reply = await c.call(b"\xff\xff\xff\xff\x01")
    assert isinstance(reply, b.Error)
    assert await c.reply() is None  # closed after a frame over the cap
    c.close()
    slow = await Client.open(host, port)
    assert await slow.reply() == b.Error("login timeout")
    assert await slow.reply() is None
    slow.close()
    # the server still accepts and serves new connections
    c2 = await Client.open(host, port)
    assert isinstance(await c2.call(b.Register("carol", "pw", ())), b.RegisterOk)
    c2.close()


@settings(max_examples=50)
@given(st.binary(min_size=1, max_size=64))
def test_server_answers_or_closes_on_random_bytes(data):
    async def scenario():
        svc = await IndexService.open(":memory:", clock=FakeClock(), hasher=FAST_HASHER)
        srv = BinaryIndexServer(svc, login_timeout=0.3)
        host, port = await srv.start("127.0.0.1", 0)
        try:
            c = await Client.open(host, port)
            c.writer.write(data)
            await c.writer.drain()
            c.writer.write_eof()  # the server answers what it can, then sees EOF and closes
            c.conn = b.IndexConnection("client")
            try:
                while await c.reply() is not None:
                    pass
            except IndexCodecError:
                pass
            c.close()
            c2 = await Client.open(host, port)
            assert isinstance(await c2.call(b.Register("zed", "pw", ())), b.RegisterOk)
            c2.close()
        finally:
            await srv.close()
            await svc.close()

    asyncio.run(scenario())


async def test_binary_login_is_throttled(server):
    """Issue 16 item 5: LOGIN (and every password check) is throttled per account: LOGIN_KO with the
    reason, without checking the password, until the injected clock passes the lock."""
    host, port, svc = server
    c = await Client.open(host, port)
    reg = await c.call(b.Register("zoe", "pw", FILES))
    replies = [await c.call(b.Login("zoe", "wrong", reg.peer_id)) for _ in range(7)]
    assert all(isinstance(r, b.Ko) and r.request is b.MessageType.LOGIN for r in replies)
    assert [("too many failed logins" in r.reason) for r in replies] == [False] * 5 + [True] * 2
    assert "too many failed logins" in (await c.call(b.Login("zoe", "pw", reg.peer_id))).reason
    assert "too many failed logins" in (await c.call(b.Register("zoe", "pw", ()))).reason
    svc.clock.advance(1)
    assert await c.call(b.Login("zoe", "pw", reg.peer_id)) == b.SimpleOk(
        b.MessageType.LOGIN_OK, "LOGIN SUCCESS"
    )
    c.close()


def test_codec_caps_the_payload_before_login():
    """Issue 16 item 7: before LOGIN_OK a server connection takes at most 16 KiB of payload (a LOGIN or
    a REGISTER fits), refused as soon as the header is in; after login the 1 MiB cap applies."""
    assert b.MAX_PAYLOAD_BEFORE_LOGIN <= 16 * 1024
    conn = b.IndexConnection("server")
    conn.receive_data(struct.pack("!IB", b.MAX_PAYLOAD_BEFORE_LOGIN + 1, b.MessageType.REGISTER))
    with pytest.raises(IndexCodecError) as err:
        conn.next_event()
    assert isinstance(err.value.hint, b.Error) and "before login" in err.value.hint.reason
    conn = b.IndexConnection("server")
    conn.send(b.SimpleOk(b.MessageType.LOGIN_OK, "LOGIN SUCCESS"))
    conn.receive_data(struct.pack("!IB", b.MAX_PAYLOAD_BEFORE_LOGIN + 1, b.MessageType.REGISTER_UPDATE))
    assert conn.next_event() is b.NEED_DATA
    # a REGISTER of 100 files fits before login
    files = tuple(b.SharedFile(f"file number {n:04d}.bin", "1.5", "a" * 40) for n in range(100))
    conn = b.IndexConnection("server")
    conn.receive_data(b.encode(b.Register("alice", "pw", files)))
    assert isinstance(conn.next_event(), b.Register)


async def test_server_caps_unauthenticated_connections():
    """Issue 16 item 7: connections per address are capped, an oversized frame before login is
    refused at once, and a connection that does not log in is closed at the login timeout (10 s by
    default, configurable)."""
    assert BinaryIndexServer.__init__.__kwdefaults__["login_timeout"] <= 10
    svc = await IndexService.open(":memory:", clock=FakeClock(), hasher=FAST_HASHER)
    srv = BinaryIndexServer(svc, login_timeout=2.0, max_per_ip=4)
    host, port = await srv.start("127.0.0.1", 0)
    try:
        idle = [await asyncio.open_connection(host, port) for _ in range(4)]
        extra = await Client.open(host, port)
        assert (await extra.reply()) == b.Error("too many connections from this address")
        assert await asyncio.wait_for(extra.reader.read(), 5) == b""  # and closed
        # the idle ones are closed at the login timeout, which frees the slots
        for reader, _ in idle:
            assert b"login timeout" in await asyncio.wait_for(reader.read(), 5)
        big = await Client.open(host, port)
        big.writer.write(struct.pack("!IB", 1 << 20, b.MessageType.REGISTER) + b"x" * 1000)
        reply = await big.reply()
        assert isinstance(reply, b.Error) and "before login" in reply.reason
        assert await asyncio.wait_for(big.reader.read(), 5) == b""
        c = await Client.open(host, port)
        reg = await c.call(b.Register("amy", "pw", FILES))
        assert isinstance(reg, b.RegisterOk)
        assert await c.call(b.Login("amy", "pw", reg.peer_id)) == b.SimpleOk(
            b.MessageType.LOGIN_OK, "LOGIN SUCCESS"
        )
        for client in (c, extra, big):  # all of them: a transport left to the GC is a failure (conftest)
            client.close()
        for _, writer in idle:
            writer.close()
    finally:
        await srv.close()
        await svc.close()
