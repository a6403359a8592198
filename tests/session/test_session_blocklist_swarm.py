"""IP blocklist in a real loopback swarm (issue 21): a blocked seeder is never connected, whether its
address comes from a tracker, from PEX or from the DHT, and a blocked address that dials us gets no
handshake. Seeders listen on their own loopback addresses (127.0.0.2 allowed, 127.0.0.3 blocked)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bitswarm.dht.server import DHTServer
from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.blocklist import Blocklist
from testtools import until
from trackertools import static_tracker

pytestmark = pytest.mark.timeout(90)

OK, BAD, RELAY = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def cfg(host: str, **kw: object) -> SessionConfig:
    kw.setdefault("enable_dht", False)
    return SessionConfig(listen_host=host, listen_port=0, **kw)  # type: ignore[arg-type]


def bad_cfg(**kw: object) -> SessionConfig:
    """The bad seeder: uTP only, so that when it dials the leecher (it may learn its address from PEX
    or the DHT) the connection comes from its own address, as a real peer's would. Its uTP socket
    is bound to 127.0.0.3; a TCP dial would leave from 127.0.0.1 (an unbound socket's loopback
    source), which the leecher cannot tell from anyone else's. Loopback peers are dialed over TCP
    first, so this no longer happens to hold by default."""
    return cfg(BAD, transports=("utp",), **kw)


def blocklist() -> Blocklist:
    return Blocklist.parse(b"# the bad seeder\nbad seeder:127.0.0.3-127.0.0.3\n")


def make(tmp_path: Path) -> tuple[Path, Torrent]:
    src = tmp_path / "seed" / "data.bin"
    src.parent.mkdir(parents=True)
    src.write_bytes(random.Random(5).randbytes(600_000))
    return src, parse_torrent(create_torrent(src, piece_length=32768))


class Watch:
    """Every peer a session connected to, and whether the bad seeder ever held a connection from it
    (its torrent's peers by peer id, polled: the seeder cannot tell the leecher by its address,
    which is 127.0.0.1 for every dialer)."""

    def __init__(self, leecher: Session, bad: Session, info_hash: bytes) -> None:
        self.addresses: list[str] = []
        self.bad_saw_leecher = False
        self._tasks = [
            asyncio.get_running_loop().create_task(self._events(leecher)),
            asyncio.get_running_loop().create_task(self._poll(leecher, bad, info_hash)),
        ]

    async def _events(self, s: Session) -> None:
        async for ev in s.events():
            if ev.kind == "peer_connected":
                self.addresses.append(str(ev.data["address"]))

    async def _poll(self, leecher: Session, bad: Session, info_hash: bytes) -> None:
        while True:
            rt = bad.lookup(info_hash)
            if rt is not None and leecher.peer_id in rt.peers:
                self.bad_saw_leecher = True
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()

    def assert_never_met_bad(self) -> None:
        assert self.addresses, "the leecher connected to nobody"
        assert not [a for a in self.addresses if a.startswith(BAD + ":")], self.addresses
        assert not self.bad_saw_leecher


@asynccontextmanager
async def watching(leecher: Session, bad: Session, info_hash: bytes) -> AsyncIterator[Watch]:
    w = Watch(leecher, bad, info_hash)
    await asyncio.sleep(0)
    try:
        yield w
    finally:
        w.stop()


async def test_a_blocked_seeder_from_the_tracker_is_never_dialed(tmp_path: Path) -> None:
    """A loopback HTTP tracker hands out both seeders (their listen addresses: a tracker would see
    every loopback announce come from 127.0.0.1); the leecher dials the good one only."""
    src, t = make(tmp_path)
    async with (
        Session(cfg(OK)) as good,
        Session(bad_cfg()) as bad,
        Session(cfg("127.0.0.1", blocklist=blocklist())) as leecher,
    ):
        await good.add(t, src.parent)
        await bad.add(t, src.parent)
        async with (
            static_tracker([(BAD, bad.port), (OK, good.port)]) as tracker,
            watching(leecher, bad, t.swarm_hash) as w,
        ):
            h = await leecher.add(t, tmp_path / "leech", trackers=[tracker.url])
            await h.wait_complete(timeout=30)
            assert h.tracker_status()[0].peers == 2  # the tracker did hand out both seeders
            assert leecher.privacy_status()["blocklist_blocked"] >= 1
            w.assert_never_met_bad()
            assert any(a.startswith(OK + ":") for a in w.addresses)
        assert (tmp_path / "leech" / "data.bin").read_bytes() == src.read_bytes()
        assert leecher.privacy_status()["blocklist_rules"] == 1


async def test_a_blocked_seeder_from_pex_is_never_dialed(tmp_path: Path) -> None:
    """A relay leecher (127.0.0.4) downloads slowly from the bad seeder; the leecher knows the relay and
    the good seeder only, so the bad seeder's address reaches it only in the relay's PEX message."""
    src, t = make(tmp_path)
    async with (
        Session(cfg(OK)) as good,
        Session(bad_cfg()) as bad,
        Session(cfg(RELAY, pex_interval=0.2)) as relay,
        Session(cfg("127.0.0.1", pex_interval=0.2, blocklist=blocklist())) as leecher,
    ):
        await good.add(t, src.parent)
        await bad.add(t, src.parent)
        hr = await relay.add(t, tmp_path / "relay", peers=[(BAD, bad.port)])
        hr.set_rate_limits(download=8192, upload=1024)  # stays a leecher, connected to the bad seed
        await until(lambda: any(str(p["address"]).startswith(BAD) for p in hr.peers()), what="relay met bad")
        async with watching(leecher, bad, t.swarm_hash) as w:
            h = await leecher.add(t, tmp_path / "leech", peers=[(RELAY, relay.port), (OK, good.port)])
            h.set_rate_limits(download=100_000)  # long enough for a PEX round or two
            # the relay's PEX named the bad seeder: the blocklist refused it
            await until(lambda: leecher.privacy_status()["blocklist_blocked"] >= 1, timeout=20, what="PEX")
            await h.wait_complete(timeout=40)
            w.assert_never_met_bad()
            assert (BAD, bad.port) not in leecher.lookup(t.swarm_hash).candidates  # type: ignore[union-attr]


async def test_a_blocked_seeder_from_the_dht_is_never_dialed(tmp_path: Path) -> None:
    """No tracker, no peer given: both seeders announce on a loopback DHT; the leecher's get_peers
    finds both, and dials only the good one."""
    src, t = make(tmp_path)
    async with DHTServer("127.0.0.1", 0) as boot:
        dht = {"enable_dht": True, "dht_bootstrap": [boot.address], "dht_announce_interval": 1.0}
        async with Session(cfg(OK, **dht)) as good, Session(bad_cfg(**dht)) as bad:
            await good.add(t, src.parent)
            await bad.add(t, src.parent)
            await until(lambda: len(boot.node.stored_peers(t.swarm_hash)) == 2, timeout=20, what="announces")
            assert {a[0] for a in boot.node.stored_peers(t.swarm_hash)} == {OK, BAD}
            async with (
                Session(cfg("127.0.0.1", blocklist=blocklist(), **dht)) as leecher,
                watching(leecher, bad, t.swarm_hash) as w,
            ):
                h = await leecher.add(t, tmp_path / "leech")
                await h.wait_complete(timeout=40)
                await until(lambda: leecher.privacy_status()["blocklist_blocked"] >= 1, timeout=20)
                w.assert_never_met_bad()


def _handshake(info_hash: bytes) -> bytes:
    return b"\x13BitTorrent protocol" + bytes(8) + info_hash + b"-XX0000-" + bytes(12)


def _dial_from(source: str, port: int, info_hash: bytes) -> bytes:
    """Connect from ``source`` to 127.0.0.1:``port``, send a plaintext handshake; what came back
    before the connection closed (or 68 bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(_handshake(info_hash))
        got = b""
        while len(got) < 68:
            try:
                chunk = s.recv(68 - len(got))
            except ConnectionResetError:  # closed with our handshake unread: a reset
                break
            if not chunk:
                break
            got += chunk
        return got


async def test_a_blocked_address_that_dials_in_gets_no_handshake(tmp_path: Path) -> None:
    src, t = make(tmp_path)
    async with Session(cfg("127.0.0.1", blocklist=blocklist())) as s:
        await s.add(t, src.parent)
        allowed = await asyncio.to_thread(_dial_from, RELAY, s.port, t.swarm_hash)
        assert allowed[:20] == b"\x13BitTorrent protocol" and allowed[28:48] == t.swarm_hash
        refused = await asyncio.to_thread(_dial_from, BAD, s.port, t.swarm_hash)
        assert refused == b""  # closed before any answer
        assert s.privacy_status()["blocklist_blocked"] == 1
        # a blocklist set while running closes the connections it covers
        allowed_sock = socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=(RELAY, 0))
        try:
            allowed_sock.sendall(_handshake(t.swarm_hash))
            await asyncio.to_thread(allowed_sock.recv, 68)
            await until(lambda: any(c.address[0] == RELAY for c in s._connections), what="relay connected")
            assert s.set_blocklist(Blocklist.parse(b"r:127.0.0.4-127.0.0.4\n")) == 1
            allowed_sock.settimeout(10)
            rest = await asyncio.to_thread(_drain, allowed_sock)
            assert rest is not None  # EOF: we closed it
        finally:
            allowed_sock.close()


def _drain(sock: socket.socket) -> bytes | None:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data
