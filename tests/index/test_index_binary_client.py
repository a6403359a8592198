"""The seed-001 client side: :class:`BinaryIndexClient` against the real server (every call, typed
refusals) and against scripted servers (timeouts, garbage, hang-ups); the keep-alive loop on an
injected sleep; :func:`sharing` (REGISTER, LOGIN with the port, REGISTER_UPDATE, LOGOUT); and the
peers' file transfer (SHA-1 checked, nothing half-written)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from index_testlib import FAST_HASHER, FakeClock
from seed_peer_testlib import StepSleep

from bitswarm.index import IndexService
from bitswarm.index import binary as b
from bitswarm.index.binary_client import (
    KEEP_ALIVE_EVERY,
    BinaryIndexClient,
    BinaryIndexConnectionError,
    BinaryIndexError,
    BinaryIndexRefused,
    BinaryIndexTimeout,
)
from bitswarm.index.binary_peer import Account, fetch, logged_in, pick, sharing
from bitswarm.index.binary_server import BinaryIndexServer
from bitswarm.index.peer_files import (
    PeerFileError,
    PeerFileServer,
    download,
    file_url,
    local_file,
    safe_name,
    size_bound,
)

pytestmark = pytest.mark.timeout(60)
SHA = "c" * 40


@pytest.fixture
async def server():
    clock = FakeClock()
    svc = await IndexService.open(":memory:", clock=clock, hasher=FAST_HASHER)
    srv = BinaryIndexServer(svc)
    host, port = await srv.start("127.0.0.1", 0)
    yield host, port, svc, clock
    await srv.close()
    await svc.close()


async def test_every_call_against_the_server(server):
    host, port, _, _ = server
    async with await BinaryIndexClient.connect(host, port) as c:
        with pytest.raises(BinaryIndexRefused) as refused:
            await c.search("x")  # the seed: nothing before LOGIN
        assert refused.value.request is b.MessageType.SEARCH and refused.value.reason == "login required"
        pid = await c.register("alice", "pw", [b.SharedFile("a.iso", "700", SHA)])
        with pytest.raises(BinaryIndexRefused) as refused:
            await c.login("alice", "wrong", pid)
        assert refused.value.request is b.MessageType.LOGIN
        await c.login("alice", "pw", pid, 7000)
        (hit,) = await c.search("a.iso")
        assert (hit.filename, hit.sha1, hit.username, hit.peer_port) == ("a.iso", SHA, "alice", 7000)
        await c.register_update("alice", "pw", pid, [b.SharedFile("b.iso", "1.5", "D" * 40)])
        assert await c.browse(hit.peer_id) == (b.SharedFile("b.iso", "1.5", "d" * 40),)
        await c.keep_alive(pid)
        assert [p.online for p in await c.show_peers("online")] == [True]
        await c.logout("alice", "pw", pid)
        with pytest.raises(BinaryIndexRefused, match="login required"):
            await c.show_peers("offline")  # logged out: nothing but LOGIN/REGISTER allowed
    # a request our side cannot send is refused before it is sent
    async with await BinaryIndexClient.connect(host, port) as c:
        with pytest.raises(BinaryIndexError, match="cannot send Register"):
            await c.register("bad|name", "pw", ())


async def scripted(reply: bytes | None, *, close: bool = False):
    """A server that reads one request, then sends ``reply`` (None: nothing) and maybe hangs up."""
    got = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(100)
            got.set()
            if reply is not None:
                writer.write(reply)
                await writer.drain()
            if not close:
                await asyncio.sleep(30)  # a silent server holding the connection: what is tested
        finally:  # also when cancelled at the end of the test: no transport left to the GC
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1], got


async def test_timeout_then_the_connection_is_done():
    srv, port, got = await scripted(None)
    async with srv, await BinaryIndexClient.connect("127.0.0.1", port, timeout=0.2) as c:
        with pytest.raises(BinaryIndexTimeout):
            await c.keep_alive("p1")
        assert got.is_set()
        with pytest.raises(BinaryIndexConnectionError, match="timed out earlier"):
            await c.keep_alive("p1")  # a late reply would answer the wrong request


@pytest.mark.parametrize(
    ("reply", "close", "match"),
    [
        (b"\x00\x00\x00\x01\x42x", False, "bad reply"),  # unknown type
        (b"\x00\x00\x00\x00\x06", False, "bad reply"),  # a request type from a server
        (b"\x00\x00\x00\x00", True, "closed"),  # half a header, then gone
        (b.encode(b.SearchOk(())), False, "unexpected reply"),  # a reply to another request
    ],
)
async def test_bad_replies_are_connection_errors(reply, close, match):
    srv, port, _ = await scripted(reply, close=close)
    async with srv, await BinaryIndexClient.connect("127.0.0.1", port, timeout=5) as c:
        with pytest.raises(BinaryIndexConnectionError, match=match):
            await c.keep_alive("p1")


async def test_error_reply_and_refused_connection():
    srv, port, _ = await scripted(b.encode(b.Error("server busy")), close=True)
    async with srv, await BinaryIndexClient.connect("127.0.0.1", port) as c:
        with pytest.raises(BinaryIndexRefused, match="server busy") as refused:
            await c.keep_alive("p1")
        assert refused.value.request is None
    port = srv.sockets[0].getsockname()[1] if srv.sockets else port
    with pytest.raises(BinaryIndexConnectionError, match="cannot connect"):
        await BinaryIndexClient.connect("127.0.0.1", port)


async def test_keep_alive_loop_every_5_minutes_keeps_the_peer_online(server):
    host, port, _, clock = server
    assert KEEP_ALIVE_EVERY == 300.0
    sleep = StepSleep(clock.advance)
    ticks = sleep.ticks

    async with await BinaryIndexClient.connect(host, port) as c:
        pid = await c.register("alice", "pw", ())
        await c.login("alice", "pw", pid)
        loop = asyncio.create_task(c.keep_alive_loop(pid, sleep=sleep))
        for _ in range(3):  # 900 s in all: without keep-alives the peer is offline after 600 s
            assert await ticks.get() == 300.0
            sleep.step()
        assert await ticks.get() == 300.0  # the third KEEP_ALIVE went out before the 4th sleep
        loop.cancel()
        assert [p.online for p in await c.show_peers("all")] == [True]
        clock.advance(700)
        assert [p.online for p in await c.show_peers("all")] == [False]


async def test_sharing_registers_updates_and_logs_out(server, tmp_path):
    host, port, _, _ = server
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "one.bin").write_bytes(b"1" * 5000)
    (folder / ".hidden").write_bytes(b"x")
    account = Account(host, port, "alice", "pw")
    bob = Account(host, port, "bob", "pw-b")
    async with sharing(account, folder, listen_host="127.0.0.1") as peer, logged_in(bob) as c:
        (hit,) = await c.search("one")
        assert hit.peer_port == peer.port and hit.sha1 == hashlib.sha1(b"1" * 5000).hexdigest()
        assert await peer.update() is False  # nothing changed: no REGISTER_UPDATE
        (folder / "two.bin").write_bytes(b"2" * 3000)
        (folder / "one.bin").unlink()
        assert await peer.update() is True
        assert await c.search("one") == ()
        assert peer.server.files == peer.files  # the file server follows the folder
        (hit2,) = await c.search("two")
        assert hit2.peer_id == hit.peer_id
        got = tmp_path / "got"
        got.mkdir()
        _, path = await fetch(pick(await c.search("two"), "two.bin"), got)
        assert path.read_bytes() == b"2" * 3000
    async with logged_in(Account(host, port, "bob", "pw-b")) as c:
        assert await c.search("one") == ()  # LOGOUT on exit: offline peers are not listed
        assert {p.username: p.online for p in await c.show_peers("all")}["alice"] is False


def test_pick_prefers_exact_names_and_reachable_holders():
    def hit(name, port=7000, sha1=SHA):
        return b.SearchHit(name, "1", sha1, "u", "p", "127.0.0.1", port)

    hits = [hit("a.txt.bak"), hit("a.txt", port=0), hit("a.txt"), hit("a.txt", sha1="")]
    assert pick(hits, "a.txt") == [hit("a.txt")]
    assert pick([hit("x.txt")], "a.txt") == [hit("x.txt")]


async def test_download_checks_the_sha1_and_leaves_nothing_behind(tmp_path):
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(300_000))
    f = await local_file(src)
    assert f.sha1 == hashlib.sha1(src.read_bytes()).hexdigest() and f.size_mb == "0.286102295"
    out = tmp_path / "out"
    out.mkdir()
    async with PeerFileServer([f]) as srv:
        port = await srv.start("127.0.0.1", 0)
        path = await download(file_url("127.0.0.1", port, name="data.bin"), out, "data.bin", sha1=f.sha1)
        assert path.read_bytes() == src.read_bytes()
        again = await download(file_url("127.0.0.1", port, sha1="0" * 40), out, "data.bin", sha1=f.sha1)
        assert again == path  # the same bytes are there already: nothing fetched (that URL is a 404)
        with pytest.raises(PeerFileError, match="exists"):
            await download(file_url("127.0.0.1", port, sha1=f.sha1), out, "data.bin", sha1="1" * 40)
        assert path.read_bytes() == src.read_bytes()
        path.unlink()
        with pytest.raises(PeerFileError, match="do not match"):
            await download(file_url("127.0.0.1", port, sha1=f.sha1), out, "data.bin", sha1="0" * 40)
        with pytest.raises(PeerFileError, match="more than the 299999 bytes"):
            await download(file_url("127.0.0.1", port, sha1=f.sha1), out, "data.bin", max_bytes=299_999)
        assert size_bound(f.size_mb) == 300_000 + (1 << 20) and size_bound("") is None
        with pytest.raises(PeerFileError, match="HTTP 404"):
            await download(file_url("127.0.0.1", port, sha1="0" * 40), out, "x", sha1="0" * 40)
        with pytest.raises(PeerFileError, match="plain file name"):
            await download(file_url("127.0.0.1", port, sha1=f.sha1), out, "../escape", sha1=f.sha1)
    assert list(out.iterdir()) == []
    with pytest.raises(PeerFileError):
        await download(file_url("127.0.0.1", port, sha1=f.sha1), out, "data.bin")  # server gone
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\x00"])
def test_safe_name_refuses_paths(name):
    with pytest.raises(PeerFileError):
        safe_name(name)


async def test_sharing_logs_in_again_after_the_index_restarts(tmp_path):
    """The connection is lost (the binary server restarts on the same port) and the peer is logged
    out meanwhile: the next keep-alive tick connects again, REGISTER_UPDATEs and LOGINs with the
    file server's port, so SEARCH lists the peer's file again."""
    svc = await IndexService.open(":memory:", clock=FakeClock(), hasher=FAST_HASHER)
    srv = BinaryIndexServer(svc)
    host, port = await srv.start("127.0.0.1", 0)
    (tmp_path / "f.bin").write_bytes(b"f" * 1000)
    sleep = StepSleep()
    ticks = sleep.ticks

    alice = Account(host, port, "alice", "pw")
    try:
        async with sharing(alice, tmp_path, listen_host="127.0.0.1", sleep=sleep) as peer:
            await ticks.get()
            await srv.close()  # drops every connection, the peer's included
            srv = BinaryIndexServer(svc)
            await srv.start(host, port)
            async with await BinaryIndexClient.connect(host, port) as other:
                await other.login("alice", "pw", peer.peer_id)
                await other.logout("alice", "pw", peer.peer_id)
            async with logged_in(Account(host, port, "bob", "pw-b")) as c:
                assert await c.search("f.bin") == ()
                old = peer.client
                sleep.step()
                await ticks.get()  # the tick is over: the loop sleeps again
                assert peer.client is not old
                (hit,) = await c.search("f.bin")
                assert (hit.username, hit.peer_port) == ("alice", peer.port)
    finally:
        await srv.close()
        await svc.close()


class _Sink:
    """A StreamWriter stand-in that drops what is written."""

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_reply_bytes_give_a_reply_or_a_typed_error(data):
    async def run() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        client = BinaryIndexClient(reader, _Sink(), timeout=5)  # type: ignore[arg-type]
        with contextlib.suppress(BinaryIndexError):  # a reply, or only our typed errors
            await client.keep_alive("p1")

    asyncio.run(run())


async def test_sharing_with_an_id_keeps_it(server, tmp_path):
    host, port, _, _ = server
    async with await BinaryIndexClient.connect(host, port) as c:
        pid = await c.register("alice", "pw", ())
    (tmp_path / "k.bin").write_bytes(b"k")
    (tmp_path / "pipe|name.bin").write_bytes(b"p")  # a name seed 001 cannot carry: left out
    async with sharing(Account(host, port, "alice", "pw", pid), tmp_path, listen_host="127.0.0.1") as peer:
        assert peer.peer_id == pid  # REGISTER_UPDATE of the files, not a new REGISTER
        assert [f.name for f in peer.files] == ["k.bin"]
        async with logged_in(Account(host, port, "alice", "pw", pid)) as c:
            (hit,) = await c.search("k.bin")
            assert hit.peer_port == peer.port
