"""Speed of the piece picker (bitswarm.session.picker) on whole simulated downloads.

Pure CPU, no I/O: one :class:`PiecePicker` downloads a torrent from simulated peers the way the
session drives it (top-ups of a queue of blocks per peer, blocks arriving in order, each completed
piece passing). Scenarios: every peer a seeder (rarest first through the order), peers with sparse
bitfields (the enumerate-the-mask path), choked peers offering allowed-fast pieces (the ``peer_has``
callable path), sequential mode, streaming deadlines, and the end-game tail. Reports wall and CPU
time (best of ``--repeat``), picks and blocks per second. Prints a table, or JSON with ``--json``.

    .venv/bin/python bench/bench_picker.py [--pieces 4096] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from bitswarm.session.picker import BLOCK_SIZE, BlockRequest, PiecePicker
from bitswarm.storage import Bitfield

PIECE = 16 * BLOCK_SIZE  # 256 KiB pieces, 16 blocks each
QUEUE = 64  # blocks a peer may have in flight
TOPUP = QUEUE // 4  # the session tops up once a quarter of the queue has arrived


@dataclass
class _Peer:
    key: int
    has: Bitfield
    bits: list[int]
    fast: frozenset[int] | None = None  # choked: only these pieces may be requested

    def has_fn(self) -> Callable[[int], bool]:
        if self.fast is None:
            return self.has.get
        fast, has = self.fast, self.has

        def peer_has(i: int) -> bool:
            return i in fast and has.get(i)

        return peer_has


def _peers(num_pieces: int, count: int, density: float, rng: random.Random) -> list[_Peer]:
    out = []
    for k in range(count):
        if density >= 1.0:
            bf = Bitfield(num_pieces, full=True)
        else:
            bf = Bitfield.from_indices(num_pieces, (i for i in range(num_pieces) if rng.random() < density))
        out.append(_Peer(k, bf, [int(bf.get(i)) for i in range(num_pieces)]))
    return out


def simulate(
    num_pieces: int,
    peers: list[_Peer],
    *,
    sequential: bool = False,
    deadlines: int = 0,
    endgame: bool = True,
    seed: int = 7,
) -> tuple[int, int]:
    """Download until the picker has nothing left to give; returns (pick calls, blocks picked)."""
    picker = PiecePicker(num_pieces, lambda _i: PIECE, rng=random.Random(seed))
    picker.sequential = sequential
    for p in peers:
        if p.has.all():
            picker.peer_has_all()
        else:
            picker.peer_bitfield(p.bits)
    for i in range(deadlines):
        picker.set_deadline(i * 7 % num_pieces, float(i))
    inflight: dict[int, list[BlockRequest]] = {p.key: [] for p in peers}
    picks = blocks = 0
    active = list(peers)
    while active:
        still = []
        for p in active:
            queue = inflight[p.key]
            # a quarter of the queue arrived since the last top-up
            for r in queue[:TOPUP]:
                res = picker.received(p.key, r.index, r.begin)
                if res is not None:
                    done, others = res
                    for o in others:
                        picker.cancel(o, r.index, r.begin)
                    if done:
                        picker.piece_passed(r.index)
            del queue[:TOPUP]
            got = picker.pick(
                p.key,
                p.has_fn(),
                QUEUE - len(queue),
                memo=p.fast is None,
                endgame_max=(QUEUE if endgame else 0) - len(queue),
                peer_mask=None if p.fast is not None else p.has.as_int(),
            )
            picks += 1
            blocks += len(got)
            queue.extend(got)
            if got or queue:
                still.append(p)
        active = still
    return picks, blocks


def best_of(repeat: int, fn: Callable[[], tuple[int, int]]) -> tuple[float, float, int, int]:
    """Fastest wall and CPU seconds of ``repeat`` runs (CPU time depends much less on a busy
    neighbour), and the counts fn returned."""
    wall = cpu = float("inf")
    picks = blocks = 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        picks, blocks = fn()
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - t0)
    return wall, cpu, picks, blocks


def scenarios(num_pieces: int) -> dict[str, Callable[[], tuple[int, int]]]:
    rng = random.Random(1)
    seeders = _peers(num_pieces, 16, 1.0, rng)
    sparse = _peers(num_pieces, 24, 0.02, rng) + _peers(num_pieces, 2, 1.0, rng)
    half = _peers(num_pieces, 16, 0.5, rng)
    choked = _peers(num_pieces, 8, 1.0, rng)
    for p in choked:
        p.fast = frozenset(rng.sample(range(num_pieces), 10))
    return {
        "seeders (rarest first)": lambda: simulate(num_pieces, seeders),
        "half bitfields": lambda: simulate(num_pieces, half),
        "sparse bitfields (mask)": lambda: simulate(num_pieces, sparse),
        "choked, allowed-fast": lambda: simulate(num_pieces, choked),
        "sequential": lambda: simulate(num_pieces, seeders, sequential=True),
        "deadlines (streaming)": lambda: simulate(num_pieces, seeders, deadlines=num_pieces // 8),
        "no end-game": lambda: simulate(num_pieces, seeders, endgame=False),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pieces", type=int, default=4096, help="pieces in the torrent (default 4096)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per scenario, best kept (default 5)")
    ap.add_argument("--only", help="run only scenarios whose name contains this")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    rows = []
    for name, fn in scenarios(args.pieces).items():
        if args.only and args.only not in name:
            continue
        secs, cpu, picks, blocks = best_of(args.repeat, fn)
        rows.append(
            {
                "scenario": name,
                "seconds": round(secs, 5),
                "cpu_seconds": round(cpu, 5),
                "picks": picks,
                "blocks": blocks,
                "picks_per_s": round(picks / secs),
                "blocks_per_s": round(blocks / secs),
            }
        )
    if args.json:
        print(json.dumps({"pieces": args.pieces, "piece_blocks": PIECE // BLOCK_SIZE, "results": rows}))
        return
    head = ("scenario", "seconds", "cpu s", "picks", "blocks", "picks/s", "blocks/s")
    print("{:<26} {:>9} {:>9} {:>8} {:>8} {:>10} {:>11}".format(*head))
    for r in rows:
        print(
            f"{r['scenario']:<26} {r['seconds']:>9.4f} {r['cpu_seconds']:>9.4f} {r['picks']:>8}"
            f" {r['blocks']:>8} {r['picks_per_s']:>10} {r['blocks_per_s']:>11}"
        )


if __name__ == "__main__":
    main()
