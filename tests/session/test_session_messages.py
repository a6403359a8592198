"""Messages on a live connection (BEP 3 / BEP 6), against a scripted raw peer.

* uploads are written late, so a ``cancel`` still takes back a request that is queued behind a
  full socket, and with the fast extension every request gets exactly one answer (piece or reject);
* a fast-extension ``choke`` does not free our requests: the blocks still on their way are not
  requested again elsewhere (no redundant transfer), the rejects free the rest;
* a ``have`` for a piece the peer already has waits until we complete; ``have``s to a peer we
  choke leave in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.clock import ManualClock
from bitswarm.wire import (
    BLOCK_SIZE,
    NEED_DATA,
    Bitfield,
    Cancel,
    Choke,
    Event,
    Handshake,
    Have,
    HaveAll,
    Interested,
    PeerConnection,
    Piece,
    PieceLayout,
    RejectRequest,
    Request,
    Reserved,
    Unchoke,
)

pytestmark = pytest.mark.timeout(60)


def config(**kw: object) -> SessionConfig:
    # TCP only: the raw peers below listen on TCP (a uTP dial would wait for its timeout first)
    kw.setdefault("transports", ("tcp",))
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, **kw)  # type: ignore[arg-type]


def make_torrent(root: Path, size: int, piece_length: int) -> tuple[Path, Torrent]:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "f.bin"
    path.write_bytes(random.Random(size).randbytes(size))
    return path, parse_torrent(create_torrent(path, piece_length=piece_length))


class RawPeer:
    """Our wire codec over an asyncio stream, driven by the test."""

    def __init__(self, torrent: Torrent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.t = torrent
        self.codec = PeerConnection(PieceLayout.from_info(torrent.info))
        self.reader, self.writer = reader, writer
        self.reads = 0  # data reads so far (the read an event came in is ``self.reads`` then)

    def send(self, *events: Event) -> None:
        self.writer.write(b"".join(self.codec.send(ev) for ev in events))

    async def next(self, timeout: float = 10.0) -> Event:
        while True:
            ev = self.codec.next_event()
            if ev is not NEED_DATA:
                return ev  # type: ignore[return-value]
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("the other end closed the connection")
            self.reads += 1
            self.codec.receive_data(data)

    async def handshake(self) -> None:
        self.send(Handshake(self.t.swarm_hash, b"-XX0000-" + os.urandom(12), Reserved.make(fast=True)))
        while not isinstance(await self.next(), Handshake):
            pass


async def test_cancel_takes_back_queued_uploads_and_each_request_gets_one_answer(tmp_path: Path) -> None:
    """64 blocks requested from a bitswarm seed by a peer that reads slowly (a 16 KiB receive
    buffer): once the first block is in, all 64 are cancelled. Blocks still queued at the seed
    must come back as rejects, not as pieces from a deep socket buffer."""
    src, t = make_torrent(tmp_path / "seed", 64 * BLOCK_SIZE, 4 * BLOCK_SIZE)
    async with Session(config()) as seed:
        await seed.add(t, src.parent)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", seed.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        peer = RawPeer(t, reader, writer)
        try:
            await peer.handshake()
            peer.send(Interested())
            while not isinstance(await peer.next(), Unchoke):
                pass
            blocks = [(i // 4, (i % 4) * BLOCK_SIZE, BLOCK_SIZE) for i in range(64)]
            peer.send(*(Request(*b) for b in blocks))
            answers: dict[tuple[int, int, int], list[str]] = {b: [] for b in blocks}
            ev = await peer.next()
            while not isinstance(ev, Piece):
                ev = await peer.next()
            answers[(ev.index, ev.begin, len(ev.data))].append("piece")
            peer.send(*(Cancel(*b) for b in blocks))
            while sum(map(len, answers.values())) < len(blocks):
                ev = await peer.next()
                if isinstance(ev, Piece):
                    answers[(ev.index, ev.begin, len(ev.data))].append("piece")
                elif isinstance(ev, RejectRequest):
                    answers[(ev.index, ev.begin, ev.length)].append("reject")
        finally:
            writer.close()
    assert all(len(a) == 1 for a in answers.values()), answers
    rejected = sum(a == ["reject"] for a in answers.values())
    assert rejected >= 32, f"only {rejected} of 64 requests were still cancellable"


class _ChokingSeed(asyncio.Protocol):
    """A fast-extension seed that serves the first request, then chokes: it rejects half of what
    is still queued and delivers the other half after its choke (as blocks already on their way
    would), then unchokes and serves everything asked of it."""

    def __init__(self, torrent: Torrent, data: bytes) -> None:
        self.t, self.data = torrent, data
        self.codec = PeerConnection(PieceLayout.from_info(torrent.info))
        self.transport: asyncio.Transport | None = None
        self.requests: list[tuple[int, int, int]] = []
        self.choked_once = False
        self.late: list[tuple[int, int, int]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _piece(self, index: int, begin: int, length: int) -> Piece:
        off = index * self.t.info.piece_length + begin
        return Piece(index, begin, self.data[off : off + length])

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.codec.receive_data(data)
        out: list[bytes] = []
        while (ev := self.codec.next_event()) is not NEED_DATA:
            if isinstance(ev, Handshake):
                out.append(
                    self.codec.send(
                        Handshake(self.t.swarm_hash, b"-XX0000-" + os.urandom(12), Reserved.make(fast=True))
                    )
                )
                out.append(self.codec.send(HaveAll()))
                out.append(self.codec.send(Unchoke()))
            elif isinstance(ev, Request):
                self.requests.append((ev.index, ev.begin, ev.length))
        if not self.choked_once and len(self.requests) >= 8:
            self.choked_once = True
            first, rest = self.requests[0], self.requests[1:]
            out.append(self.codec.send(self._piece(*first)))
            out.append(self.codec.send(Choke()))
            half = len(rest) // 2
            self.late = rest[:half]
            for b in rest[half:]:
                out.append(self.codec.send(RejectRequest(*b)))
            for b in self.late:  # answered after the choke: "requests being processed complete"
                out.append(self.codec.send(self._piece(*b)))
            out.append(self.codec.send(Unchoke()))
            self.served = len(self.requests)
        elif self.choked_once:
            for b in self.requests[self.served :]:
                out.append(self.codec.send(self._piece(*b)))
            self.served = len(self.requests)
        if out:
            self.transport.write(b"".join(out))


async def test_fast_choke_keeps_requests_until_answered(tmp_path: Path) -> None:
    src, t = make_torrent(tmp_path / "seed", 40 * BLOCK_SIZE, 4 * BLOCK_SIZE)
    data = src.read_bytes()
    loop = asyncio.get_running_loop()
    protocols: list[_ChokingSeed] = []

    def factory() -> _ChokingSeed:
        protocols.append(_ChokingSeed(t, data))
        return protocols[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:  # plaintext: the fake seed counts connections (prefer would dial MSE first)
        async with Session(config(encryption="off")) as leecher:
            h = await leecher.add(t, tmp_path / "leech", peers=[server.sockets[0].getsockname()[:2]])
            await h.wait_complete(timeout=30)
            st = h.status()
    finally:
        server.close()
    (seed,) = protocols
    assert seed.choked_once and seed.late
    # the blocks delivered after the choke were never asked for twice, and nothing came in twice
    counts: dict[tuple[int, int, int], int] = {}
    for b in seed.requests:
        counts[b] = counts.get(b, 0) + 1
    assert all(counts[b] == 1 for b in seed.late), [counts[b] for b in seed.late]
    assert st.redundant == 0 and st.downloaded == len(data)
    assert (tmp_path / "leech" / "f.bin").read_bytes() == data


async def test_haves_for_pieces_a_peer_has_wait_until_we_complete(tmp_path: Path) -> None:
    """A peer with the first half of the pieces gets HAVEs for the second half as we verify them
    (sequential download), and the first half's only once we are complete."""
    src, t = make_torrent(tmp_path / "seed", 32 * BLOCK_SIZE, 2 * BLOCK_SIZE)
    n = t.info.num_pieces
    half = n // 2
    haves: list[int] = []
    ready = asyncio.Event()
    all_in = asyncio.Event()

    async def half_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = RawPeer(t, reader, writer)
        try:
            await peer.handshake()
            bits = bytearray((n + 7) // 8)
            for i in range(half):
                bits[i // 8] |= 0x80 >> (i % 8)
            peer.send(Bitfield(bytes(bits)))
            while True:
                ev = await peer.next(timeout=30)
                if isinstance(ev, Interested):
                    ready.set()  # our bitfield is known to the leecher
                elif isinstance(ev, Have):
                    haves.append(ev.index)
                    if len(haves) == n:
                        all_in.set()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(half_peer, "127.0.0.1", 0)
    try:
        async with Session(config()) as seed, Session(config()) as leecher:
            await seed.add(t, src.parent)
            h = await leecher.add(
                t, tmp_path / "leech", peers=[server.sockets[0].getsockname()[:2]], sequential=True
            )
            await asyncio.wait_for(ready.wait(), 10)
            h.add_peer("127.0.0.1", seed.port)
            await h.wait_complete(timeout=30)
            await asyncio.wait_for(all_in.wait(), 10)
    finally:
        server.close()
    assert sorted(haves) == list(range(n))
    assert set(haves[: n - half]) == set(range(half, n)), haves


@contextlib.asynccontextmanager
async def raw_peers(t: Torrent, port: int, n: int) -> AsyncIterator[list[RawPeer]]:
    """``n`` scripted peers connected to the session on ``port``, handshake done; closed after."""
    peers: list[RawPeer] = []
    try:
        for _ in range(n):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            peers.append(RawPeer(t, reader, writer))
            await peers[-1].handshake()
        yield peers
    finally:
        for p in peers:
            p.writer.close()


async def wait_for(peer: RawPeer, kind: type, timeout: float = 10.0) -> Event:
    """The next event of type ``kind`` from ``peer`` (others are skipped)."""
    while not isinstance(ev := await peer.next(timeout=timeout), kind):
        pass
    return ev


async def test_an_unchoked_peer_that_asks_nothing_gives_its_slot_away(tmp_path: Path) -> None:
    """One upload slot, rechoke pushed out to an hour: the first peer is unchoked but never asks
    for a block; once the seed's clock has moved past ``IDLE_UNCHOKE_SECONDS`` (housekeeping ticks
    driven by a ManualClock) the slot goes to the second, which asks."""
    from bitswarm.session.choking import IDLE_UNCHOKE_SECONDS

    src, t = make_torrent(tmp_path / "seed", 8 * BLOCK_SIZE, 2 * BLOCK_SIZE)
    clock = ManualClock()
    cfg = config(upload_slots=1, seed_upload_slots=1, rechoke_interval=3600.0)
    async with Session(cfg, clock=clock) as seed:
        await seed.add(t, src.parent)
        async with raw_peers(t, seed.port, 2) as (idle, asker):
            idle.send(Interested())
            await wait_for(idle, Unchoke)
            start = clock.now()
            asker.send(Interested())
            unchoked = asyncio.ensure_future(wait_for(asker, Unchoke, timeout=8.0))
            while not unchoked.done():
                await clock.advance(0.5)
                await asyncio.sleep(0.01)  # real time for the sockets
            await unchoked
            assert clock.now() - start >= IDLE_UNCHOKE_SECONDS
            asker.send(Request(0, 0, BLOCK_SIZE))
            ev = await wait_for(asker, Piece)
            assert isinstance(ev, Piece)
            assert (ev.index, ev.begin, bytes(ev.data)) == (0, 0, src.read_bytes()[:BLOCK_SIZE])
            await wait_for(idle, Choke)


async def test_a_seed_unchokes_up_to_its_seed_slots(tmp_path: Path) -> None:
    """``seed_upload_slots``: a seed with one leecher slot but two seed slots unchokes both
    interested peers at once, and a third waits (choked; the seed's clock stands still: no rechoke,
    no idle-slot rotation)."""
    src, t = make_torrent(tmp_path / "seed", 8 * BLOCK_SIZE, 2 * BLOCK_SIZE)
    async with Session(config(upload_slots=1, seed_upload_slots=2), clock=ManualClock()) as seed:
        await seed.add(t, src.parent)
        async with raw_peers(t, seed.port, 3) as peers:
            for p in peers[:2]:
                p.send(Interested())
                await wait_for(p, Unchoke)
            peers[2].send(Interested())
            with pytest.raises(TimeoutError):
                await wait_for(peers[2], Unchoke, timeout=1.5)


async def test_the_handle_lists_each_peers_transport_and_the_known_addresses(tmp_path: Path) -> None:
    src, t = make_torrent(tmp_path / "seed", 8 * BLOCK_SIZE, 2 * BLOCK_SIZE)
    async with Session(config()) as seed:
        h = await seed.add(t, src.parent, peers=[("127.0.0.1", 1)])  # refused: stays a candidate
        async with raw_peers(t, seed.port, 2):
            async with asyncio.timeout(10):
                while len(h.peers()) < 2:
                    await asyncio.sleep(0.01)
            assert [p["transport"] for p in h.peers()] == ["tcp", "tcp"]
            known = h.known_peers()
            assert ("127.0.0.1", 1) in known and len(known) == 3


async def test_haves_to_a_choked_peer_leave_in_batches(tmp_path: Path) -> None:
    """A peer that never says it is interested stays choked: the 64 HAVEs of a download spread
    over a second reach it in a few reads (one batch per 0.1 s), not one read each."""
    src, t = make_torrent(tmp_path / "seed", 64 * BLOCK_SIZE, BLOCK_SIZE)
    n = t.info.num_pieces
    reads: list[int] = []
    all_in = asyncio.Event()

    async def quiet_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = RawPeer(t, reader, writer)
        try:
            await peer.handshake()
            peer.send(Bitfield(bytes((n + 7) // 8)))
            while len(reads) < n:
                if isinstance(await peer.next(timeout=30), Have):
                    reads.append(peer.reads)
            all_in.set()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(quiet_peer, "127.0.0.1", 0)
    try:
        async with Session(config(upload_rate_limit=64 * BLOCK_SIZE)) as seed, Session(config()) as leecher:
            await seed.add(t, src.parent)
            h = await leecher.add(
                t, tmp_path / "leech", peers=[server.sockets[0].getsockname()[:2], ("127.0.0.1", seed.port)]
            )
            await h.wait_complete(timeout=30)
            await asyncio.wait_for(all_in.wait(), 10)
    finally:
        server.close()
    assert len(reads) == n
    assert len(set(reads)) <= n // 4, f"{len(set(reads))} reads for {n} HAVEs"
