"""Loopback throughput of a bitswarm uTP pair (BEP 29, bitswarm.utp).

One sender streams ``--mib`` MiB over one uTP connection to a receiver on 127.0.0.1; the receiver
takes the bytes through the ``BufferedProtocol`` path (``get_buffer``/``buffer_updated``) the peer
engine uses and checks their SHA-256. Two layouts:

* ``two`` - receiver in its own process (each side has a core, as between two machines);
* ``one`` - both managers on one event loop (the CPU cost of both ends per byte);
* ``--libtorrent`` - the reference: two libtorrent sessions (uTP only, encryption off) moving a
  one-file torrent of the same size (wall time from ``connect_peer`` to complete; CPU of both).

Reports MB/s, CPU seconds per side and per MiB, datagrams, retransmits and the final window.
Prints a table, or one JSON object with ``--json``.

    .venv/bin/python bench/bench_utp.py [--mib 64] [--repeat 2] [--mode both] [--loop uvloop] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bitswarm.utp import UtpConnection, UtpSocketManager, UtpStream

CHUNK = 1 << 16
GSO = [True]  # --no-gso: the sender writes datagram by datagram


class Receiver(asyncio.BufferedProtocol):
    def __init__(self, expect: int) -> None:
        self.buf = bytearray(1 << 18)
        self.view = memoryview(self.buf)
        self.hash = hashlib.sha256()
        self.got = 0
        self.expect = expect
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.started = 0.0

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        if not self.got:
            self.started = time.perf_counter()
        self.hash.update(self.view[:nbytes])
        self.got += nbytes
        if self.got >= self.expect and not self.done.done():
            self.done.set_result(None)

    def eof_received(self) -> bool:
        return False


class Sender(asyncio.Protocol):
    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


def payload(mib: int) -> bytes:
    block = hashlib.sha256(b"bitswarm").digest() * (CHUNK // 32)
    return block * (mib * (1 << 20) // CHUNK)


async def send_all(stream: UtpStream, proto: Sender, data: bytes) -> None:
    view = memoryview(data)
    for i in range(0, len(data), CHUNK):
        if not proto.writable.is_set():
            await proto.writable.wait()
        stream.write(view[i : i + CHUNK])


def conn_stats(stream: UtpStream) -> dict[str, Any]:
    conn: UtpConnection = stream.get_extra_info("utp_connection")
    s = conn.stats
    return {
        "packets_sent": s.packets_sent,
        "retransmits": s.retransmits,
        "timeouts": s.timeouts,
        "cwnd_kib": round(conn.cwnd / 1024),
        "rtt_ms": round((conn.rtt.rtt or 0.0) * 1000, 2),
    }


async def run_one(mib: int) -> dict[str, Any]:
    size = mib << 20
    data = payload(mib)
    receivers: list[Receiver] = []

    def accept() -> Receiver:
        receivers.append(Receiver(size))
        return receivers[-1]

    server = await UtpSocketManager.open("127.0.0.1", 0, accept=accept)
    client = await UtpSocketManager.open("127.0.0.1", 0, use_gso=GSO[0])
    try:
        stream, proto = await client.connect(server.address, Sender, timeout=10)
        c0, t0 = time.process_time(), time.perf_counter()
        assert receivers, "the server accepts at the SYN, before connect() returns"
        await send_all(stream, proto, data)
        await asyncio.wait_for(receivers[0].done, 300)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        ok = receivers[0].hash.digest() == hashlib.sha256(data).digest()
        row = {
            "mode": "one",
            "MiB": mib,
            "seconds": round(seconds, 3),
            "MB_per_s": round(size / seconds / 1e6, 1),
        }
        row |= {"cpu_s": round(cpu, 2), "cpu_s_per_MiB": round(cpu / mib, 4), "verified": ok}
        row |= {"acks_sent": server.stats.datagrams_out}
        return row | conn_stats(stream)
    finally:
        server.close()
        client.close()


async def receiver_process(mib: int) -> None:
    size = mib << 20
    receivers: list[Receiver] = []
    got_one = asyncio.Event()

    def accept() -> Receiver:
        receivers.append(Receiver(size))
        got_one.set()
        return receivers[-1]

    server = await UtpSocketManager.open("127.0.0.1", 0, accept=accept)
    print(server.address[1], flush=True)
    await asyncio.wait_for(got_one.wait(), 60)
    c0 = time.process_time()
    await asyncio.wait_for(receivers[0].done, 300)
    cpu = time.process_time() - c0
    result = {"cpu_s": cpu, "sha256": receivers[0].hash.hexdigest(), "acks": server.stats.datagrams_out}
    print(json.dumps(result), flush=True)
    server.close()


async def run_two(mib: int, loop_name: str) -> dict[str, Any]:
    size = mib << 20
    data = payload(mib)
    cmd = [sys.executable, __file__, "--role", "recv", "--mib", str(mib), "--loop", loop_name]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    port = int(child.stdout.readline())
    client = await UtpSocketManager.open("127.0.0.1", 0, use_gso=GSO[0])
    try:
        stream, proto = await client.connect(("127.0.0.1", port), Sender, timeout=10)
        c0, t0 = time.process_time(), time.perf_counter()
        await send_all(stream, proto, data)
        line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        result = json.loads(line)
        ok = result["sha256"] == hashlib.sha256(data).hexdigest()
        row = {
            "mode": "two",
            "MiB": mib,
            "seconds": round(seconds, 3),
            "MB_per_s": round(size / seconds / 1e6, 1),
        }
        row |= {"cpu_s_sender": round(cpu, 2), "cpu_s_receiver": round(result["cpu_s"], 2), "verified": ok}
        row |= {"acks_sent": result["acks"]}
        return row | conn_stats(stream)
    finally:
        client.close()
        child.wait(30)


def run_libtorrent(mib: int) -> dict[str, Any]:
    """The reference: two libtorrent sessions in this process, uTP only, one torrent of ``mib``."""
    import os
    import tempfile

    import libtorrent as lt

    settings: dict[str, Any] = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
        "enable_outgoing_utp": True,
        "enable_incoming_utp": True,
        "out_enc_policy": 2,
        "in_enc_policy": 2,
        "allow_multiple_connections_per_ip": True,
    }
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        seed_dir, leech_dir = os.path.join(tmp, "seed"), os.path.join(tmp, "leech")
        os.makedirs(seed_dir)
        os.makedirs(leech_dir)
        path = os.path.join(seed_dir, "data.bin")
        with open(path, "wb") as f:
            f.write(payload(mib))
        ct = lt.create_torrent(lt.list_files(path), 1 << 20, lt.create_torrent.v1_only)
        lt.set_piece_hashes(ct, seed_dir)
        ti = lt.torrent_info(bytes(lt.bencode(ct.generate())))
        seeder, leecher = lt.session(settings), lt.session(settings)  # type: ignore[call-overload]
        handles = []
        for ses, where, seed in ((seeder, seed_dir, True), (leecher, leech_dir, False)):
            params = lt.add_torrent_params()
            params.ti = ti
            params.save_path = where
            if seed:
                params.flags |= lt.torrent_flags.seed_mode
            handles.append(ses.add_torrent(params))
        c0, t0 = time.process_time(), time.perf_counter()
        handles[1].connect_peer(("127.0.0.1", seeder.listen_port()))
        while not handles[1].status().is_seeding:
            if time.perf_counter() - t0 > 300:
                raise SystemExit("bench_utp: libtorrent pair timed out")
            time.sleep(0.01)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        with open(os.path.join(leech_dir, "data.bin"), "rb") as f:
            ok = hashlib.sha256(f.read()).digest() == hashlib.sha256(payload(mib)).digest()
        size = mib << 20
        row = {"mode": "libtorrent", "MiB": mib, "seconds": round(seconds, 3)}
        row |= {"MB_per_s": round(size / seconds / 1e6, 1), "cpu_s": round(cpu, 2), "verified": ok}
        return row


def run(loop_name: str, coro_fn: Callable[[], Any]) -> Any:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(coro_fn())
    return asyncio.run(coro_fn())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64, help="bytes to stream (MiB)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per mode; the fastest is kept")
    ap.add_argument("--mode", choices=("one", "two", "both"), default="both")
    ap.add_argument("--libtorrent", action="store_true", help="also time a libtorrent pair, uTP only")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    ap.add_argument("--role", choices=("bench", "recv"), default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--no-gso", action="store_true", help="send datagram by datagram (no UDP GSO)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    GSO[0] = not args.no_gso
    if args.role == "recv":
        run(args.loop, lambda: receiver_process(args.mib))
        return
    rows: list[dict[str, Any]] = []
    modes: tuple[str, ...] = ("two", "one") if args.mode == "both" else (args.mode,)
    if args.libtorrent:
        modes += ("libtorrent",)
    for mode in modes:
        best: dict[str, Any] | None = None
        for _ in range(args.repeat):
            if mode == "libtorrent":
                row = run_libtorrent(args.mib)
            elif mode == "one":
                row = run(args.loop, lambda: run_one(args.mib))
            else:
                row = run(args.loop, lambda: run_two(args.mib, args.loop))
            if not row["verified"]:
                raise SystemExit(f"bench_utp: the received bytes differ ({mode})")
            if best is None or row["seconds"] < best["seconds"]:
                best = row
        assert best is not None
        rows.append(best if mode == "libtorrent" else best | {"loop": args.loop, "gso": GSO[0]})
    if args.json:
        print(json.dumps({"results": rows}, indent=2))
        return
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
