"""Storage throughput: write_piece (SHA-1 verify + pwrite on the disk pool) and recheck.

A v1 single-file torrent of ``--size`` bytes (default 1 GiB) is written piece by piece into a
directory on ``--dir`` (default /dev/shm, so the disk is RAM and the bench measures our overhead and
hashing, not the device). Each piece is a copy of one random block with its index stamped in the first
8 bytes, the way the session hands over a bytearray it filled from the socket.

    .venv/bin/python bench/bench_storage.py [--size 1073741824] [--pieces 262144,1048576,4194304]
                                            [--version v1|v2|hybrid] [--json] [--no-uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from bitswarm.metainfo import FileEntry, InfoDict, Torrent
from bitswarm.metainfo.merkle import block_hashes, merkle_root
from bitswarm.storage import Storage


def stamp(base: bytes, buf: bytearray, index: int) -> None:
    buf[:] = base
    buf[:8] = index.to_bytes(8, "big")


def make_torrent(size: int, piece_length: int, version: str, base: bytes) -> Torrent:
    n = -(-size // piece_length)
    buf = bytearray(piece_length)
    v1: list[bytes] = []
    layer: list[bytes] = []
    per_piece = piece_length // 16384
    for i in range(n):
        stamp(base, buf, i)
        data = memoryview(buf)[: min(piece_length, size - i * piece_length)]
        if version != "v2":
            v1.append(hashlib.sha1(data).digest())
        if version != "v1":
            layer.append(merkle_root(block_hashes(data), per_piece))
    root = None
    layers: dict[bytes, bytes] = {}
    if version != "v1":
        root = merkle_root(layer, leaf_height=per_piece.bit_length() - 1)
        layers[root] = b"".join(layer)
    raw = b"bench:%d:%d:%s" % (size, piece_length, version.encode())
    info = InfoDict(
        name="bench.bin",
        piece_length=piece_length,
        files=(FileEntry(("bench.bin",), size, 0, pieces_root=root),),
        single_file=True,
        pieces=b"".join(v1) if version != "v2" else None,
        meta_version=None if version == "v1" else 2,
        private=False,
        source=None,
        raw=raw,
    )
    return Torrent(
        info=info,
        info_hash_v1=None if version == "v2" else hashlib.sha1(raw).digest(),
        info_hash_v2=None if version == "v1" else hashlib.sha256(raw).digest(),
        piece_layers=layers,
    )


async def run_one(
    size: int, piece_length: int, version: str, directory: str, producers: int
) -> dict[str, Any]:
    base = os.urandom(piece_length)
    t0 = time.perf_counter()
    torrent = make_torrent(size, piece_length, version, base)
    setup = time.perf_counter() - t0
    n = torrent.info.num_pieces
    save = tempfile.mkdtemp(prefix="bitswarm-bench-", dir=directory)
    try:
        st = Storage(torrent, save)
        await st.open()
        next_piece = iter(range(n))

        async def producer() -> None:
            buf = bytearray(piece_length)
            for i in next_piece:
                size_i = torrent.info.piece_size(i)
                stamp(base, buf, i)  # the session fills its buffer from the socket
                view = buf if size_i == piece_length else bytearray(buf[:size_i])
                if not await st.write_piece(i, view):
                    raise SystemExit(f"piece {i} failed to verify")

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(producer() for _ in range(producers)))
        write_s, write_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert st.have.all()
        t0, c0 = time.perf_counter(), time.process_time()
        have = await st.recheck()
        recheck_s, recheck_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert have.all()
        peak = st.stats.peak_inflight_bytes
        await st.close()
    finally:
        shutil.rmtree(save, ignore_errors=True)
    mb = size / 1e6
    return {
        "version": version,
        "piece_length": piece_length,
        "pieces": n,
        "size": size,
        "write_verify_mb_s": round(mb / write_s, 1),
        "recheck_mb_s": round(mb / recheck_s, 1),
        "write_s": round(write_s, 3),
        "recheck_s": round(recheck_s, 3),
        "write_mb_per_cpu_s": round(mb / write_cpu, 1),  # throughput per fully used core
        "recheck_mb_per_cpu_s": round(mb / recheck_cpu, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "peak_inflight_mib": round(peak / 2**20, 1),
        "setup_s": round(setup, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1 << 30)
    ap.add_argument("--pieces", default="262144,1048576,4194304", help="comma-separated piece lengths")
    ap.add_argument("--version", choices=["v1", "v2", "hybrid"], default="v1")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    ap.add_argument("--producers", type=int, default=8, help="concurrent write_piece callers")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-uvloop", action="store_true")
    args = ap.parse_args()
    if not args.no_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    rows = [
        asyncio.run(run_one(args.size, int(p), args.version, args.dir, args.producers))
        for p in args.pieces.split(",")
    ]
    if args.json:
        json.dump({"bench": "storage", "cores": os.cpu_count(), "results": rows}, sys.stdout, indent=2)
        print()
        return
    print(f"storage bench: {args.size / 2**20:.0f} MiB {args.version} on {args.dir}, {os.cpu_count()} cores")
    print("(MB/cpu-s: throughput per fully used core; the machine may be shared, see load)")
    print(
        f"{'piece':>8} {'pieces':>7} {'write+verify MB/s':>18} {'MB/cpu-s':>9}"
        f" {'recheck MB/s':>13} {'MB/cpu-s':>9} {'peak MiB':>9} {'load':>5}"
    )
    for r in rows:
        print(
            f"{r['piece_length'] // 1024:>6}Ki {r['pieces']:>7} {r['write_verify_mb_s']:>18.1f}"
            f" {r['write_mb_per_cpu_s']:>9.1f} {r['recheck_mb_s']:>13.1f} {r['recheck_mb_per_cpu_s']:>9.1f}"
            f" {r['peak_inflight_mib']:>9.1f} {r['load_avg_1m']:>5.2f}"
        )


if __name__ == "__main__":
    main()
