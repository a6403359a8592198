"""Throughput of the peer wire codec (bitswarm.wire) on its hot paths.

Parses a stream of 16 KiB ``piece`` messages fed the way an asyncio ``Protocol`` sees it (bytes
chunks of 64 KiB and 1 MiB), the ``BufferedProtocol`` path (``get_buffer``/``buffer_updated``, with
and without a block sink), small messages per second, and the send side. Prints a table, or JSON with
``--json``.

    .venv/bin/python bench/bench_wire.py [--mib 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from bitswarm.wire import (
    NEED_DATA,
    Handshake,
    Have,
    HaveAll,
    Interested,
    PeerConnection,
    Piece,
    PieceLayout,
    Request,
    Reserved,
    Unchoke,
)

BLOCK = 16 * 1024
PIECE_LENGTH = 256 * 1024
IH = b"\x11" * 20


def pair(layout: PieceLayout) -> tuple[PeerConnection, PeerConnection]:
    bits = Reserved.make(fast=True, extension_protocol=True)
    a, b = PeerConnection(layout), PeerConnection(layout)
    b.receive_data(a.send(Handshake(IH, b"a" * 20, bits)))
    a.receive_data(b.send(Handshake(IH, b"b" * 20, bits)))
    for c in (a, b):
        while c.next_event() is not NEED_DATA:
            pass
    b.receive_data(a.send(HaveAll()))
    assert b.next_event() == HaveAll()
    return a, b


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    """Fastest wall time of ``repeat`` runs, and the count fn returned."""
    best, count = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - t0)
    return best, count


def piece_stream(mib: int) -> tuple[PieceLayout, bytes, int]:
    total = mib * 1024 * 1024
    layout = PieceLayout.uniform(PIECE_LENGTH, total)
    a, _ = pair(layout)
    block = bytes(range(256)) * (BLOCK // 256)
    parts = [
        a.send(Piece(i, begin, block))
        for i in range(layout.num_pieces)
        for begin in range(0, PIECE_LENGTH, BLOCK)
    ]
    return layout, b"".join(parts), len(parts)


def bench_protocol(layout: PieceLayout, stream: bytes, chunk: int, repeat: int) -> tuple[float, int]:
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]

    def run() -> int:
        _, b = pair(layout)
        n = 0
        receive, nxt = b.receive_data, b.next_event
        for c in chunks:
            receive(c)
            while nxt() is not NEED_DATA:
                n += 1
        return n

    return best_of(repeat, run)


def bench_buffered(
    layout: PieceLayout, stream: bytes, chunk: int, repeat: int, sink: bool
) -> tuple[float, int]:
    """BufferedProtocol path; the slice assignment stands in for the kernel's recv_into copy."""
    view = memoryview(stream)
    store = bytearray(layout.num_pieces * PIECE_LENGTH) if sink else bytearray()
    store_view = memoryview(store)

    def place(index: int, begin: int, length: int) -> memoryview:
        start = index * PIECE_LENGTH + begin
        return store_view[start : start + length]

    def run() -> int:
        _, b = pair(layout)
        if sink:
            b.set_block_sink(place)
        n = pos = 0
        end = len(stream)
        get, updated, nxt = b.get_buffer, b.buffer_updated, b.next_event
        while pos < end:
            buf = get(chunk)
            k = min(len(buf), chunk, end - pos)
            buf[:k] = view[pos : pos + k]
            pos += k
            updated(k)
            while nxt() is not NEED_DATA:
                n += 1
        return n

    return best_of(repeat, run)


def bench_small(count: int, repeat: int) -> tuple[float, int]:
    layout = PieceLayout.uniform(PIECE_LENGTH, PIECE_LENGTH * 1000)
    a, _ = pair(layout)
    msgs = [Have(i % 1000) if i % 3 == 0 else Request(i % 1000, 0, BLOCK) for i in range(count)]
    msgs[::7] = [Interested()] * len(msgs[::7])
    stream = b"".join(a.send(m) for m in msgs)
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]

    def run() -> int:
        _, b = pair(layout)
        n = 0
        for c in chunks:
            b.receive_data(c)
            while b.next_event() is not NEED_DATA:
                n += 1
        return n

    return best_of(repeat, run)


def bench_send(count: int, repeat: int) -> dict[str, tuple[float, int]]:
    layout = PieceLayout.uniform(PIECE_LENGTH, PIECE_LENGTH * 1000)

    def requests() -> int:
        a, _ = pair(layout)
        a.send(Unchoke())
        send = a.send
        for i in range(count):
            send(Request(i % 1000, 0, BLOCK))
        return count

    def headers() -> int:
        a, _ = pair(layout)
        a.send(Unchoke())
        header = a.send_piece_header
        for i in range(count):
            header(i % 1000, BLOCK, BLOCK)
        return count

    return {"send Request": best_of(repeat, requests), "send_piece_header": best_of(repeat, headers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256, help="size of the piece stream (MiB)")
    ap.add_argument("--small", type=int, default=300_000, help="number of small messages")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()

    layout, stream, nblocks = piece_stream(args.mib)
    rows: list[dict[str, object]] = []

    def add(name: str, seconds: float, count: int, nbytes: int | None) -> None:
        row: dict[str, object] = {"case": name, "seconds": round(seconds, 4), "messages": count}
        row["msgs_per_s"] = round(count / seconds)
        if nbytes is not None:
            row["MB_per_s"] = round(nbytes / seconds / 1e6, 1)
        rows.append(row)

    for chunk in (64 * 1024, 1024 * 1024):
        label = f"{chunk // 1024} KiB"
        s, n = bench_protocol(layout, stream, chunk, args.repeat)
        assert n == nblocks, (n, nblocks)
        add(f"pieces, receive_data, {label} chunks", s, n, len(stream))
        for sink in (False, True):
            s, n = bench_buffered(layout, stream, chunk, args.repeat, sink)
            assert n == nblocks, (n, nblocks)
            how = "get_buffer + block sink" if sink else "get_buffer"
            add(f"pieces, {how}, {label} reads", s, n, len(stream))
    s, n = bench_small(args.small, args.repeat)
    add("small messages (have/request/interested)", s, n, None)
    for name, (s, n) in bench_send(args.small, args.repeat).items():
        add(name, s, n, None)

    if args.json:
        print(json.dumps({"stream_bytes": len(stream), "block": BLOCK, "results": rows}, indent=2))
        return
    print(f"bitswarm.wire, {len(stream) / 2**20:.0f} MiB of 16 KiB blocks, best of {args.repeat}")
    print(f"{'case':<50} {'MB/s':>10} {'msgs/s':>12}")
    for row in rows:
        mbs = f"{row['MB_per_s']:,.0f}" if "MB_per_s" in row else "-"
        print(f"{row['case']:<50} {mbs:>10} {row['msgs_per_s']:>12,}")


if __name__ == "__main__":
    main()
