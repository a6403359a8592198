"""Fault: hostile peers in the swarm — one sends corrupt piece data, two send protocol garbage.

The swarm: an honest seeder (the real session, rate limited to 4 MiB/s so the hostile peers get a
share of the requests) on 127.0.0.1 and three hostile peers served from a thread of this test, each
on its own loopback address (bans are per IP):

* 127.0.0.2 "corrupt": a correct handshake, a full bitfield, unchoke, and random bytes for every
  block asked;
* 127.0.0.3 "garbage": a correct handshake, then a stream of random bytes;
* 127.0.0.4 "bogus length": a correct handshake, then a message header announcing 2 GiB.

The leecher is the real ``bitswarm download --json`` given all four with ``--peer``. Expected: it
exits 0 with the seeder's exact bytes; its JSON events show ``hash_failed`` and a ``peer_banned``
for 127.0.0.2 and none for the honest seeder; both garbage peers got past the handshake
(``peer_connected``) and each of their connections was closed by the leecher, not by them, and they
were not redialled in a loop.

Before that the seeder's own listen port is hit by garbage: random bytes instead of a handshake, a
handshake for an unknown info-hash, a valid handshake followed by random bytes, and one followed by
a bogus length. The seeder must close each of those connections, stay up and then serve the
download.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faults_testlib import (
    BITSWARM,
    create_torrent,
    make_payload,
    procs,
    sha256_file,
    start_rate_limited_seeder,
)

from bitswarm.metainfo import Torrent, load_torrent
from bitswarm.wire import (
    NEED_DATA,
    Bitfield,
    Handshake,
    HandshakeHeader,
    PeerConnection,
    PieceLayout,
    Request,
    Reserved,
    Unchoke,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SIZE = 6 * 1024 * 1024
PIECE = 64 * 1024
SEED_RATE = 4 * 1024 * 1024
PSTR = b"\x13BitTorrent protocol"
BOGUS_LENGTH = struct.pack(">IB", 0x7FFF_FFF0, 7)  #: a piece message header announcing ~2 GiB


@dataclass
class Stats:
    """What one hostile peer saw (written on its loop thread, read by the test after a join)."""

    connections: int = 0
    closed_by_remote: int = 0
    closed_by_us: int = 0
    requests: int = 0
    lifetimes: list[float] = field(default_factory=list)


def full_bitfield(n: int) -> bytes:
    bits = bytearray(b"\xff" * ((n + 7) // 8))
    if n % 8:
        bits[-1] = (0xFF << (8 - n % 8)) & 0xFF
    return bytes(bits)


class _Tracked(asyncio.Protocol):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.started = 0.0
        self.we_closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.started = time.monotonic()
        self.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.lifetimes.append(time.monotonic() - self.started)
        if self.we_closed:
            self.stats.closed_by_us += 1
        else:
            self.stats.closed_by_remote += 1

    def our_close(self) -> None:
        self.we_closed = True
        assert self.transport is not None
        self.transport.close()


class CorruptPeer(_Tracked):
    """Speaks the protocol correctly; every block it serves is random bytes."""

    def __init__(self, torrent: Torrent, stats: Stats) -> None:
        super().__init__(stats)
        self.t = torrent
        self.codec = PeerConnection(PieceLayout.from_info(torrent.info))

    def data_received(self, data: bytes) -> None:
        self.codec.receive_data(data)
        assert self.transport is not None
        while True:
            try:
                ev = self.codec.next_event()
            except Exception:
                self.our_close()
                return
            if ev is NEED_DATA or ev.__class__.__name__ in ("Paused", "ConnectionClosed"):
                return
            if isinstance(ev, HandshakeHeader):
                out = self.codec.send(Handshake(self.t.swarm_hash, b"-XX0000-" + os.urandom(12), Reserved()))
                out += self.codec.send(Bitfield(full_bitfield(self.t.info.num_pieces)))
                self.transport.write(out + self.codec.send(Unchoke()))
            elif isinstance(ev, Request):
                self.stats.requests += 1
                header = struct.pack(">IBII", 9 + ev.length, 7, ev.index, ev.begin)
                self.transport.write(header + os.urandom(ev.length))


class GarbagePeer(_Tracked):
    """Answers the handshake correctly, then sends ``tail()`` (once, or every 20 ms ``repeat`` times)."""

    def __init__(self, torrent: Torrent, stats: Stats, tail: Callable[[], bytes], repeat: int) -> None:
        super().__init__(stats)
        self.t = torrent
        self.tail = tail
        self.repeat = repeat
        self.buf = b""
        self.shook = False

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.shook:
            return
        self.buf += data
        if len(self.buf) < 68:
            return
        if not self.buf.startswith(PSTR) or self.buf[28:48] != self.t.swarm_hash[:20]:
            self.our_close()
            return
        self.shook = True
        self.transport.write(PSTR + bytes(8) + self.t.swarm_hash[:20] + b"-XX0000-" + os.urandom(12))
        asyncio.get_running_loop().call_later(0.05, self._more, self.repeat)

    def _more(self, left: int) -> None:
        if self.transport is None or self.transport.is_closing() or left <= 0:
            return
        self.transport.write(self.tail())
        asyncio.get_running_loop().call_later(0.02, self._more, left - 1)


class HostilePeers:
    """An event loop on a thread serving the hostile peers (the test's main thread blocks on the
    leecher's output, so they cannot share its loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.Server] = []
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile-peers", daemon=True)
        self.thread.start()

    def serve(self, host: str, factory: Callable[[], asyncio.Protocol]) -> int:
        async def start() -> asyncio.Server:
            return await self.loop.create_server(factory, host, 0)

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def close(self) -> None:
        async def stop() -> None:
            for s in self.servers:
                s.close()
            await asyncio.sleep(0.1)  # let the last connection_lost callbacks run

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def loopback_alias_ok(host: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((host, 0))
        return True
    except OSError:
        return False


def hit_with_garbage(port: int, payload: bytes, timeout: float = 20.0) -> str:
    """Connect to 127.0.0.1:``port``, send ``payload`` and wait for the other side to close: returns
    ``"eof"`` or ``"reset"``; fails the test if the connection is still open after ``timeout`` s."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(timeout)
        s.sendall(payload)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not s.recv(65536):
                    return "eof"
            except ConnectionResetError:
                return "reset"
            except TimeoutError:
                break
    raise AssertionError(f"the seeder kept a garbage connection open for {timeout:.0f} s: {payload[:80]!r}")


def test_corrupt_and_garbage_peers_are_dropped_and_the_download_completes(tmp_path: Path) -> None:
    hosts = {"corrupt": "127.0.0.2", "garbage": "127.0.0.3", "bogus": "127.0.0.4"}
    missing = [h for h in hosts.values() if not loopback_alias_ok(h)]
    if missing:
        pytest.skip(f"cannot bind loopback addresses {missing} (bans are per IP)")
    t0 = time.monotonic()
    rng = random.Random(4242)
    src = make_payload(tmp_path / "seed" / "bad.bin", SIZE, seed=rng.randrange(2**32))
    torrent_path = tmp_path / "bad.torrent"
    create_torrent(src, torrent_path, piece=PIECE)
    torrent = load_torrent(torrent_path)
    ih = torrent.swarm_hash[:20]
    handshake = PSTR + bytes(8) + ih + b"-XX0000-" + rng.randbytes(12)

    stats = {name: Stats() for name in hosts}
    hostile = HostilePeers()
    try:
        with procs() as group:
            seeder, seed_port = start_rate_limited_seeder(tmp_path, torrent_path, src.parent, SEED_RATE)
            group.add(seeder)

            # 1. garbage at the seeder's listen port: each connection is closed by the seeder
            attacks = {
                "random bytes": rng.randbytes(4096),
                "unknown info-hash": PSTR + bytes(8) + rng.randbytes(20) + rng.randbytes(20),
                "handshake + random": handshake + rng.randbytes(8192),
                "handshake + bogus length": handshake + BOGUS_LENGTH + rng.randbytes(64),
            }
            outcomes = {what: hit_with_garbage(seed_port, payload) for what, payload in attacks.items()}
            assert seeder.proc.poll() is None, f"the seeder died\n{seeder.stderr_tail()}"

            # 2. the hostile peers and the download
            garbage_rng = random.Random(99)
            ports = {
                "corrupt": hostile.serve(hosts["corrupt"], lambda: CorruptPeer(torrent, stats["corrupt"])),
                "garbage": hostile.serve(
                    hosts["garbage"],
                    lambda: GarbagePeer(torrent, stats["garbage"], lambda: garbage_rng.randbytes(4096), 200),
                ),
                "bogus": hostile.serve(
                    hosts["bogus"],
                    lambda: GarbagePeer(torrent, stats["bogus"], lambda: BOGUS_LENGTH, 1),
                ),
            }
            out = tmp_path / "down"
            peers = [f"127.0.0.1:{seed_port}", *(f"{hosts[k]}:{ports[k]}" for k in hosts)]
            # the scripted hostile peers speak plaintext BitTorrent over TCP only (no MSE, no uTP): a
            # first MSE attempt would be one more hang-up in their counts (the fallback to plaintext
            # and to TCP is tested in tests/session/test_session_encryption.py and _utp.py)
            argv = [BITSWARM, "download", str(torrent_path), "-o", str(out), "--host", "127.0.0.1",
                    "--port", "0", "--encryption", "off", "--transports", "tcp", "--json"]  # fmt: skip
            for p in peers:
                argv += ["--peer", p]
            leecher = group.start(argv, stderr_path=tmp_path / "leecher.err", name="leecher")
            leecher.wait_event(lambda e: e["event"] == "torrent_completed", 60, "the download to complete")
            assert leecher.wait_exit(30) == 0, leecher.stderr_tail()
            leecher.drain(10)
            assert seeder.proc.poll() is None, f"the seeder died\n{seeder.stderr_tail()}"
    finally:
        hostile.close()

    assert sha256_file(out / "bad.bin") == sha256_file(src)
    events = leecher.events
    banned = {e["address"]: e["reason"] for e in events if e["event"] == "peer_banned"}
    connected = [e["address"].rsplit(":", 1)[0] for e in events if e["event"] == "peer_connected"]
    assert hosts["corrupt"] in banned, (banned, stats["corrupt"])
    assert "127.0.0.1" not in banned, banned
    assert any(e["event"] == "hash_failed" for e in events)
    assert stats["corrupt"].requests > 0
    for name in ("garbage", "bogus"):
        st = stats[name]
        assert hosts[name] in connected, f"the {name} peer never got past the handshake: {connected}"
        assert 1 <= st.connections <= 3, (name, st)  # redialled at most every 30 s, not in a loop
        assert st.closed_by_us == 0 and st.closed_by_remote == st.connections, (name, st)
        assert max(st.lifetimes) < 10, (name, st)  # dropped promptly, not left to the idle timeout
    print(
        f"\nbad peers: seeder port attacks {outcomes}; banned {banned};"
        f" corrupt served {stats['corrupt'].requests} requests; garbage {stats['garbage']};"
        f" bogus {stats['bogus']}; {time.monotonic() - t0:.1f} s"
    )


async def test_a_bad_peer_does_not_get_an_honest_peer_on_its_ip_banned(tmp_path: Path) -> None:
    """Issue 16 item 11: the honest seeder and a peer serving random blocks share one IP (127.0.0.1,
    different ports). The leecher bans the bad (IP, port, peer id) only and completes from the honest
    one; a ban of the whole IP (as before) left the download stalled."""
    from bitswarm.session import Session, SessionConfig

    def cfg(**kw: object) -> SessionConfig:
        # plaintext TCP: the scripted bad peer speaks nothing else (see the test above)
        return SessionConfig(
            listen_host="127.0.0.1", listen_port=0, enable_dht=False, enable_lsd=False,
            encryption="off", transports=("tcp",), **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    src = make_payload(tmp_path / "seed" / "shared.bin", 2 * 1024 * 1024, seed=11)
    create_torrent(src, tmp_path / "shared.torrent", piece=PIECE)
    torrent = load_torrent(tmp_path / "shared.torrent")
    stats = Stats()
    loop = asyncio.get_running_loop()
    bad = await loop.create_server(lambda: CorruptPeer(torrent, stats), "127.0.0.1", 0)
    bad_port = int(bad.sockets[0].getsockname()[1])
    banned: list[tuple[str, int, str]] = []
    try:
        async with Session(cfg(upload_rate_limit=SEED_RATE // 4)) as honest, Session(cfg()) as leecher:
            await honest.add(torrent, src.parent)

            async def watch() -> None:
                async for ev in leecher.events():
                    if ev.kind == "peer_banned":
                        banned.append((ev.data["address"], ev.data["port"], ev.data["scope"]))

            watcher = loop.create_task(watch())
            h = await leecher.add(
                torrent, tmp_path / "down", peers=[("127.0.0.1", bad_port), ("127.0.0.1", honest.port)]
            )
            try:
                await h.wait_complete(timeout=40)
            finally:
                watcher.cancel()
    finally:
        bad.close()
    assert stats.requests > 0, "the bad peer was never asked for data"
    assert banned == [("127.0.0.1", bad_port, "peer")], banned
    assert sha256_file(tmp_path / "down" / "shared.bin") == sha256_file(src)
