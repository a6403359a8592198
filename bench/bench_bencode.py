#!/usr/bin/env python3
"""Bencode speed: bitswarm.bencode against bencode2 and fastbencode (encode and decode, ops/s).

Payloads: the metainfo of a 4 GiB hybrid torrent (300 files in nested directories, 1 MiB pieces:
4096 SHA-1 piece hashes, a BEP 52 file tree and piece layers) and a small KRPC ``get_peers``
response. bitswarm's ``decode_full`` (which also returns the raw span of every top-level value, what
the info-hash needs) is measured beside plain ``decode``. Each figure is the best of ``--repeat``
timing rounds. Ratio = bitswarm ops/s / best reference ops/s (≥ 1 is as fast or faster). Prints a
table, or with ``--json`` one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import bitswarm.bencode as bs


def _h(seed: str, n: int = 20) -> bytes:
    return hashlib.sha256(seed.encode()).digest()[:n]


def torrent_metainfo() -> dict[bytes, Any]:
    """A realistic 4 GiB hybrid torrent (hashes are synthetic; only the shape matters here)."""
    plen = 1 << 20
    total = 4 << 30
    nfiles = 300
    sizes = [total // nfiles] * nfiles
    sizes[-1] += total - sum(sizes)
    tree: dict[bytes, Any] = {}
    files: list[dict[bytes, Any]] = []
    layers: dict[bytes, bytes] = {}
    offset = 0
    for i, size in enumerate(sizes):
        path = [b"disc%d" % (i // 100), b"chapter %02d" % (i // 10 % 10), b"track %03d.flac" % i]
        root = _h(f"root{i}", 32)
        node = tree
        for c in path:
            node = node.setdefault(c, {})
        node[b""] = {b"length": size, b"pieces root": root}
        layers[root] = b"".join(_h(f"l{i}.{j}", 32) for j in range(-(-size // plen)))
        files.append({b"length": size, b"path": path})
        offset += size
        if offset % plen and i != nfiles - 1:
            pad = plen - offset % plen
            files.append({b"attr": b"p", b"length": pad, b"path": [b".pad", b"%d" % pad]})
            offset += pad
    pieces = b"".join(_h(f"p{j}") for j in range(-(-offset // plen)))
    return {
        b"announce": b"udp://tracker.example.org:6969/announce",
        b"announce-list": [
            [b"udp://tracker.example.org:6969/announce"],
            [b"https://t2.example.net/announce"],
        ],
        b"comment": b"benchmark torrent",
        b"created by": b"bitswarm 0.1.0",
        b"creation date": 1_795_000_000,
        b"info": {
            b"file tree": tree,
            b"files": files,
            b"meta version": 2,
            b"name": b"Collected Works",
            b"piece length": plen,
            b"pieces": pieces,
        },
        b"piece layers": layers,
    }


def krpc_message() -> dict[bytes, Any]:
    """A KRPC get_peers response (BEP 5) with 8 compact nodes and a token."""
    return {
        b"t": b"aa",
        b"y": b"r",
        b"v": b"BS01",
        b"ip": bytes([127, 0, 0, 1, 0x1A, 0xE1]),
        b"r": {
            b"id": _h("node"),
            b"nodes": b"".join(_h(f"n{i}", 26) for i in range(8)),
            b"token": _h("tok", 8),
        },
    }


def measure(fns: dict[str, Callable[[], object]], repeat: int, budget: float) -> dict[str, float]:
    """ops/s of each function, best of ``repeat`` rounds; the rounds are interleaved across the
    functions so that a busy neighbour on the machine slows all of them alike."""
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}
    numbers = {}
    for name, timer in timers.items():
        number, t = timer.autorange()
        numbers[name] = max(1, int(number * (budget / repeat) / max(t, 1e-9)))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(numbers[name]))
    return {name: numbers[name] / best[name] for name in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="timing rounds, best taken (default 5)")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds per function (default 1)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    import bencode2
    import fastbencode

    refs: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
        "bencode2": (bencode2.bencode, bencode2.bdecode),
        "fastbencode": (fastbencode.bencode, fastbencode.bdecode),
    }
    payloads = {"torrent-4GiB": torrent_metainfo(), "krpc": krpc_message()}
    rows: list[dict[str, Any]] = []
    for pname, value in payloads.items():
        raw = bs.encode(value)
        for ref_name, (enc, dec) in refs.items():  # same bytes both ways, or the comparison is void
            assert enc(value) == raw, ref_name
            assert dec(raw) == value, ref_name
        assert bs.decode(raw) == value
        fns: dict[str, Callable[[], object]] = {
            "bitswarm encode": lambda v=value: bs.encode(v),
            "bitswarm decode": lambda r=raw: bs.decode(r),
            "bitswarm decode_full": lambda r=raw: bs.decode_full(r),
        }
        for n, (e, d) in refs.items():
            fns[f"{n} encode"] = lambda e=e, v=value: e(v)
            fns[f"{n} decode"] = lambda d=d, r=raw: d(r)
        got = measure(fns, args.repeat, args.budget)
        for op in ("encode", "decode", "decode_full"):
            # decode_full (spans of the top-level values, for the info-hash) is compared with the
            # plain reference decoders: the spans are extra work they do not do
            ref_op = "decode" if op == "decode_full" else op
            row: dict[str, Any] = {"payload": pname, "bytes": len(raw), "op": op}
            row["bitswarm_ops_s"] = round(got[f"bitswarm {op}"], 1)
            for n in refs:
                row[f"{n}_ops_s"] = round(got[f"{n} {ref_op}"], 1)
            row["ratio"] = round(row["bitswarm_ops_s"] / max(got[f"{n} {ref_op}"] for n in refs), 3)
            rows.append(row)

    result = {"bench": "bencode", "python": platform.python_version(), "repeat": args.repeat, "results": rows}
    if args.json:
        print(json.dumps(result))
        return
    print(f"bencode, best of {args.repeat} rounds; ratio = bitswarm / best reference (ops/s)")
    print(
        f"{'payload':<13} {'bytes':>7} {'op':<12} {'bitswarm':>11} {'bencode2':>11} "
        f"{'fastbencode':>11} {'ratio':>6}"
    )
    for r in rows:
        print(
            f"{r['payload']:<13} {r['bytes']:>7} {r['op']:<12} {r['bitswarm_ops_s']:>11.1f} "
            f"{r['bencode2_ops_s']:>11.1f} {r['fastbencode_ops_s']:>11.1f} {r['ratio']:>6.2f}"
        )


if __name__ == "__main__":
    main()
