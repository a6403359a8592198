"""Python cost per received 16 KiB block on a leecher's receive path, without sockets.

One real :class:`~bitswarm.session.peer.PeerProtocol` (its wire codec with the block sink) and one
real :class:`~bitswarm.session.scheduler.RequestScheduler` (its picker, piece buffers, rate meters)
download a torrent from a scripted seeder on an asyncio loop: the requests the leecher writes are
answered with ``piece`` messages, and each "read" copies up to ``--read`` bytes of them into the
buffer :meth:`PeerProtocol.get_buffer` returns and calls :meth:`PeerProtocol.buffer_updated`, as
the event loop does for ``recv_into``. Completed pieces go through the scheduler's finish path to a
storage that accepts them at once (no hashing, no disk). Only the leecher's calls are timed (the
seeder's encoding and the loop's turns are not); the result is microseconds of the leecher's
Python per block (the median over windows of 64 reads, robust to a loaded machine). A swarm
leecher at 10 Mbit/s wakes up for a message header and the first segments of its block, then
(``SO_RCVLOWAT``) once for the rest of the block: the default. A loopback leecher gets many
blocks per read: try ``--read 262144``.

    .venv/bin/python bench/bench_receive_path.py [--pieces 2048] [--read 2896] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any

from bench_storage import make_torrent
from bitswarm.session import SessionConfig
from bitswarm.session.clock import LoopClock
from bitswarm.session.peer import PeerProtocol
from bitswarm.session.peer_manager import PeerManager
from bitswarm.session.picker import BLOCK_SIZE, PiecePicker
from bitswarm.session.ratelimit import RateLimiter, RateMeter
from bitswarm.session.scheduler import RequestScheduler
from bitswarm.storage import Storage
from bitswarm.storage.bitfield import Bitfield as PieceSet
from bitswarm.wire import (
    NEED_DATA,
    Handshake,
    HaveAll,
    PeerConnection,
    PieceLayout,
    Request,
    Reserved,
    Unchoke,
)

IH = b"\x22" * 20
WINDOW = 64
BITS = Reserved.make(fast=True, extension_protocol=True)


class _Storage:
    """Accepts every piece; its answer comes a loop turn later, as a disk job's would."""

    def __init__(self, n: int) -> None:
        self.have = PieceSet(n)

    def submit_piece(self, index: int, buf: bytearray) -> asyncio.Future[bool] | None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        loop.call_soon(fut.set_result, True)
        return fut

    async def write_piece(self, index: int, buf: bytearray) -> bool:
        fut = self.submit_piece(index, buf)
        assert fut is not None
        return await fut


class _InlineExecutor(concurrent.futures.Executor):
    """The disk pool of ``--disk``: runs each job at once in the loop's thread (its hashing and
    writing are the same for every build; without a worker thread the loop thread's CPU time holds
    no GIL hand-offs), so the storage's loop side is all that differs."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


class _Stream:
    """Collects what the leecher writes (its requests)."""

    kind = "tcp"
    encrypted = False
    peer_address = ("10.0.0.2", 6881)

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, parts: list[bytes]) -> None:
        self.out.append(b"".join(parts))

    def set_receive_hint(self, n: int) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def one_run(
    pieces: int, piece_length: int, read: int, disk: str | None = None, turns: bool = False
) -> tuple[list[float], int]:
    """Seconds of the leecher's calls per read, and the blocks received, for one download of
    ``pieces``."""
    if disk is None:
        return await _one_run(pieces, piece_length, read, _Storage(pieces), turns)
    save = tempfile.mkdtemp(prefix="bitswarm-bench-", dir=disk)
    try:
        torrent = make_torrent(pieces * piece_length, piece_length, "v1", b"\xab" * piece_length)
        storage = Storage(torrent, save, executor=_InlineExecutor(), workers=1)
        await storage.open()
        try:
            return await _one_run(pieces, piece_length, read, storage, turns)
        finally:
            await storage.close()
    finally:
        shutil.rmtree(save, ignore_errors=True)


async def _one_run(
    pieces: int, piece_length: int, read: int, storage: Any, turns: bool
) -> tuple[list[float], int]:
    clock = LoopClock()
    config = SessionConfig()
    layout = PieceLayout(pieces, piece_length, piece_length)
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # as TorrentRuntime._spawn
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    peers = PeerManager(
        config=config,
        clock=clock,
        our_peer_id=b"us".ljust(20, b"-"),
        own_address=lambda: ("127.0.0.1", 6881),
        dial=lambda addr: asyncio.sleep(0),
        spawn=spawn,
        emit=lambda kind, **data: None,
        pex=None,
    )
    verified: list[int] = []
    picker = PiecePicker(pieces, lambda i: piece_length)
    sched = RequestScheduler(
        info=SimpleNamespace(piece_length=piece_length, num_pieces=pieces),  # type: ignore[arg-type]
        piece_size=lambda i: piece_length,
        picker=picker,
        storage=storage,
        peers=peers,
        config=config,
        clock=clock,
        download_limiter=RateLimiter(0, clock=clock.now),
        down=RateMeter(clock=clock.now),
        spawn=spawn,
        on_verified=lambda index, buf: verified.append(index),
        on_hash_failed=lambda index: None,
        on_disk_error=lambda message: None,
    )
    sched.downloading = True
    session = SimpleNamespace(clock=clock, config=config)
    torrent = SimpleNamespace(scheduler=sched)
    peer = PeerProtocol(session, torrent, outgoing=True)  # type: ignore[arg-type]
    stream = _Stream()
    peer.stream = stream  # type: ignore[assignment]
    peers.peers[b"seed".ljust(20, b"-")] = peer
    # the handshake, the seeder's have_all and unchoke, straight through the codecs
    seeder = PeerConnection(layout)
    codec = peer.codec
    codec.set_layout(layout)
    codec.set_block_sink(sched.block_sink_for(peer))
    seeder.receive_data(codec.send(Handshake(IH, b"l" * 20, BITS)))
    hello = seeder.send(Handshake(IH, b"s" * 20, BITS))
    while seeder.next_event() is not NEED_DATA:
        pass
    codec.receive_data(hello + seeder.send(HaveAll()) + seeder.send(Unchoke()))
    for _ in range(3):
        codec.next_event()
    peer.has = PieceSet(pieces)
    peer.has.set_all()
    peer.is_seed = True
    picker.peer_has_all()
    peer.established = True
    peer.peer_choking = False
    peer.am_interested = True
    sched.fill_requests(peer)
    await asyncio.sleep(0)  # the requests' flush

    pending = b""  # the seeder's bytes not read yet, from ``ppos`` on
    ppos = 0
    spent: list[float] = []
    blocks = 0
    perf = time.thread_time if turns else time.perf_counter
    block = b"\xab" * BLOCK_SIZE
    rounds = 0
    while len(verified) < pieces and rounds < pieces * 1000:
        rounds += 1
        if stream.out:
            seeder.receive_data(b"".join(stream.out))
            stream.out.clear()
            parts = [pending[ppos:]]
            while True:
                ev = seeder.next_event()
                if ev is NEED_DATA:
                    break
                if type(ev) is Request:
                    parts.append(seeder.send_piece_header(ev.index, ev.begin, ev.length))
                    if ev.begin == 0:  # bench_storage's pieces: the index in the first 8 bytes
                        parts.append(ev.index.to_bytes(8, "big") + block[8 : ev.length])
                    else:
                        parts.append(block[: ev.length])
                    blocks += 1
            pending, ppos = b"".join(parts), 0
        if ppos < len(pending):
            src = memoryview(pending)
            t0 = perf()
            dest = peer.get_buffer(-1)
            # SO_RCVLOWAT (PeerProtocol.buffer_updated): the rest of a block received in place
            # comes in one wake-up; otherwise a read takes what arrived (``read`` bytes)
            left = len(pending) - ppos
            n = min(len(dest), left if peer.codec.direct_remaining else read, left)
            dest[:n] = src[ppos : ppos + n]  # the kernel's copy in recv_into
            del dest  # released, as the event loop releases it (a view would pin the piece buffer)
            peer.buffer_updated(n)
            ppos += n
            if not turns:
                spent.append(perf() - t0)
        else:
            t0 = perf()
        await asyncio.sleep(0)  # flushes, finished pieces
        if turns:  # the loop's turn too: the finished pieces' completions
            spent.append(perf() - t0)
    if len(verified) != pieces:
        raise SystemExit(f"bench broken: {len(verified)} of {pieces} pieces verified")
    return spent, blocks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", type=int, default=2048, help="the swarm benchmark's 64 MiB")
    ap.add_argument("--piece-length", type=int, default=32 * 1024)
    ap.add_argument(
        "--read",
        type=int,
        default=2 * 1448,
        help="bytes per simulated read (two TCP segments); the rest of a block received in place "
        "always comes in one read, as SO_RCVLOWAT makes it",
    )
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--disk",
        metavar="DIR",
        help="a real Storage below DIR (e.g. /dev/shm) that hashes and writes each piece (the "
        "seeder sends bench_storage.py's pieces), its disk jobs run inline in the loop thread; "
        "default: a storage that accepts every piece a loop turn later",
    )
    ap.add_argument(
        "--turns",
        action="store_true",
        help="time the loop's turns after each read too (finished pieces' completions: the "
        "per-piece path), in the loop thread's CPU time (not the disk pool's, nor time waiting for "
        "the GIL); the seeder's encoding stays out",
    )
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop (as the CLI does)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    # A loaded machine preempts some reads for milliseconds: the figure is the median over windows
    # of WINDOW consecutive reads (a preempted window is an outlier), times the reads per block.
    windows: list[float] = []
    reads = blocks = 0
    for _ in range(args.repeat):
        gc.collect()
        spent, n = asyncio.run(one_run(args.pieces, args.piece_length, args.read, args.disk, args.turns))
        blocks += n
        reads += len(spent)
        windows += [sum(spent[i : i + WINDOW]) for i in range(0, len(spent) - WINDOW + 1, WINDOW)]
    if args.turns:  # CPU time: a preempted read costs nothing, the sum is robust to load
        us = sum(windows) / (len(windows) * WINDOW) * reads / blocks * 1e6
    else:
        us = statistics.median(windows) / WINDOW * reads / blocks * 1e6
    blocks //= args.repeat
    if args.json:
        print(json.dumps({"us_per_block": us, "blocks": blocks, "read": args.read}))
    else:
        print(f"receive path: {us:.2f} us per 16 KiB block ({blocks} blocks, reads of {args.read} B)")


if __name__ == "__main__":
    main()
