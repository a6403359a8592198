"""Cost of Message Stream Encryption (bitswarm.mse): handshakes per second and RC4 throughput.

Handshakes: a complete initiator + responder handshake in one process (both sides' DH key pairs and
shared secrets, hashes, RC4 set-up with its 1024-byte discards), so one "handshake" is the CPU both
peers spend; the DH part alone is also timed with ``pow()`` (what bitswarm uses) and with
``cryptography``'s ``dh`` module (the reference the choice was made against). RC4: encrypting
16 KiB blocks into new bytes (the send path) and decrypting 16 KiB blocks in place in a bytearray
(the receive path), with a plain 16 KiB copy as the floor. Prints a table, or JSON with ``--json``.

    .venv/bin/python bench/bench_mse.py [--mib 256] [--handshakes 300] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
import warnings
from collections.abc import Callable

from bitswarm.mse import NEED_DATA, HandshakeComplete, MSEHandshake, RC4Stream, SkeyIndex
from bitswarm.mse._crypto import G, P

BLOCK = 16 * 1024
IH = b"\x11" * 20
BT_HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + IH + b"-BS0001-benchbenchbe"


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    """Fastest wall time of ``repeat`` runs, and the count fn returned."""
    best, count = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - t0)
    return best, count


def one_handshake(index: SkeyIndex) -> None:
    a = MSEHandshake.initiator(IH, initial_payload=BT_HANDSHAKE)
    b = MSEHandshake.responder(index)
    done = 0
    for _ in range(6):
        for src, dst in ((a, b), (b, a)):
            data = src.data_to_send()
            if data and dst.state.value not in ("DONE", "ERROR"):
                dst.receive_data(data)
                ev = dst.next_event()
                if ev is not NEED_DATA:
                    assert isinstance(ev, HandshakeComplete)
                    done += 1
        if done == 2:
            return
    raise AssertionError("handshake did not complete")


def handshakes(n: int) -> Callable[[], int]:
    index = SkeyIndex([IH, *(secrets.token_bytes(20) for _ in range(999))])  # 1000 torrents

    def run() -> int:
        for _ in range(n):
            one_handshake(index)
        return n

    return run


def dh_pow(n: int) -> Callable[[], int]:
    def run() -> int:
        for _ in range(n):
            xa, xb = secrets.randbits(160), secrets.randbits(160)
            ya, yb = pow(G, xa, P), pow(G, xb, P)
            assert pow(yb, xa, P) == pow(ya, xb, P)
        return n

    return run


def dh_cryptography(n: int) -> Callable[[], int]:
    from cryptography.hazmat.primitives.asymmetric import dh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # finite-field DH is deprecated in cryptography
        numbers = dh.DHParameterNumbers(P, G)
        params = numbers.parameters()

    def run() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(n):
                ka, kb = params.generate_private_key(), params.generate_private_key()
                # each side gets the other's key as a number off the wire and must load it
                ya = dh.DHPublicNumbers(ka.public_key().public_numbers().y, numbers).public_key()
                yb = dh.DHPublicNumbers(kb.public_key().public_numbers().y, numbers).public_key()
                assert ka.exchange(yb) == kb.exchange(ya)
        return n

    return run


def rc4_encrypt(blocks: int) -> Callable[[], int]:
    stream = RC4Stream(b"k" * 20)
    block = secrets.token_bytes(BLOCK)

    def run() -> int:
        process = stream.process
        for _ in range(blocks):
            process(block)
        return blocks * BLOCK

    return run


def rc4_decrypt_in_place(blocks: int) -> Callable[[], int]:
    stream = RC4Stream(b"k" * 20)
    buf = bytearray(secrets.token_bytes(4 * BLOCK))
    views = [memoryview(buf)[i * BLOCK : (i + 1) * BLOCK] for i in range(4)]

    def run() -> int:
        process_in_place = stream.process_in_place
        for i in range(blocks):
            process_in_place(views[i & 3])
        return blocks * BLOCK

    return run


def copy_floor(blocks: int) -> Callable[[], int]:
    buf = bytearray(secrets.token_bytes(BLOCK))
    view = memoryview(buf)

    def run() -> int:
        for _ in range(blocks):
            bytes(view)
        return blocks * BLOCK

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="MiB per RC4 run (default 256)")
    ap.add_argument("--handshakes", type=int, default=300, help="handshakes per run (default 300)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    blocks = args.mib * 1024 * 1024 // BLOCK
    rows: list[dict[str, object]] = []

    for name, fn in (
        ("handshake (both sides, 1000 torrents indexed)", handshakes(args.handshakes)),
        ("DH of both sides, pow()", dh_pow(args.handshakes)),
        ("DH of both sides, cryptography dh", dh_cryptography(max(args.handshakes // 50, 3))),
    ):
        secs, count = best_of(args.repeat, fn)
        rows.append({"case": name, "count": count, "seconds": round(secs, 4), "per_s": round(count / secs)})
    for name, fn in (
        ("RC4 encrypt 16 KiB -> new bytes", rc4_encrypt(blocks)),
        ("RC4 decrypt 16 KiB in place", rc4_decrypt_in_place(blocks)),
        ("copy 16 KiB (floor)", copy_floor(blocks)),
    ):
        secs, nbytes = best_of(args.repeat, fn)
        rows.append(
            {"case": name, "bytes": nbytes, "seconds": round(secs, 4), "mb_per_s": round(nbytes / secs / 1e6)}
        )

    if args.json:
        print(json.dumps({"bench": "mse", "results": rows}))
        return
    for row in rows:
        rate = f"{row['per_s']} /s" if "per_s" in row else f"{row['mb_per_s']} MB/s"
        print(f"{row['case']:<50} {rate:>14}   ({row['seconds']} s)")


if __name__ == "__main__":
    main()
