#!/usr/bin/env python3
"""bitswarm peer(s) for ``bench_swarm.py`` through the Session API, with SessionConfig overrides.

The CLI (``bitswarm seed`` / ``bitswarm download --json``) takes no engine settings; this runner does
the same job (one torrent per session, found through the torrent's tracker, keeps seeding after
completion until SIGTERM/SIGINT or stdin closes) and accepts ``--set FIELD=VALUE`` for any
:class:`~bitswarm.session.SessionConfig` field, to test a hypothesis about the engine without
editing it. ``--count K`` runs K independent sessions in this one process (ports ``--port`` ...
``--port+K-1``, data in ``SAVE/<i>``) for swarms too large for one process per peer.

JSON lines on stdout, each with ``idx`` (the session number): ``started``, ``seeding`` (seeder
ready), ``torrent_completed``, ``progress`` every half second (``uploaded``, ``downloaded``,
``peers``, ``unchoked``: interested peers we upload to).

    swarm_bw_peer.py TORRENT --save DIR --host H --port P [--seed] [--count K] [--set upload_slots=8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def install_experiment(name: str) -> None:
    """Engine experiments, patched in at run time (the engine's files stay untouched):

    ``have-nofill``: a ``have`` from a peer we are already interested in no longer runs the picker
    at once (each one scans the rarest-first order for a piece that peer has: O(pieces) per have,
    ~2 000 haves per peer per torrent here); requests to it are topped up by its next block and by
    the 1 s housekeeping tick, as for any peer.
    """
    from bitswarm.session.scheduler import RequestScheduler

    if name == "have-nofill":
        orig = RequestScheduler.on_have

        def on_have(self: Any, peer: Any, index: int) -> None:
            if not peer.am_interested:
                orig(self, peer, index)
                return
            self.fill_requests = _no_fill  # instance attribute shadows the method for this call
            try:
                orig(self, peer, index)
            finally:
                del self.fill_requests

        RequestScheduler.on_have = on_have  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown experiment {name!r}")


def _no_fill(peer: object) -> None:
    return None


def _upload_queues(handle: Any) -> list[int]:
    rt = getattr(handle, "_rt", None)
    if rt is None:
        return []
    return sorted(len(p.uploads) for p in rt.peers.values() if not p.am_choking)


def _request_queues(handle: Any) -> list[int]:
    rt = getattr(handle, "_rt", None)
    if rt is None:
        return []
    return sorted(p.outstanding for p in rt.peers.values() if not p.peer_choking)


def _fresh_at(handle: Any) -> list[tuple[int, int, int]]:
    """(outstanding, fresh pieces it has, wanted pieces it has) per peer unchoking us (diagnostics)."""
    rt = getattr(handle, "_rt", None)
    if rt is None:
        return []
    out = []
    for p in rt.peers.values():
        if p.peer_choking or p.has is None:
            continue
        m = p.has.as_int()
        out.append((p.outstanding, (m & rt.picker._fresh).bit_count(), (m & rt.picker._want).bit_count()))
    return sorted(out)


class _SendSampler:
    """Diagnostics (``BITSWARM_BENCH_SAMPLE=1``, seeder only): every 5 ms, the event loop's lateness
    and each unchoked connection's kernel send queue (``TCP_INFO``: unsent bytes, unacked segments).
    A sample with nothing queued in any connection is a moment the uplink can idle."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.reset()

    def reset(self) -> None:
        self.n = self.empty = self.app_starved = self.conn_samples = 0
        self.lag_max = self.lag_sum = 0.0
        self.reading = 0
        self.cwnd = self.snd_wnd = self.pacing = 0
        self.chrono: dict[Any, tuple[int, int, int]] = getattr(self, "chrono", {})
        self.d_busy = self.d_rwnd = self.d_sndbuf = 0

    def summary(self) -> dict[str, Any]:
        n = max(1, self.n)
        out = {
            "samples": self.n,
            "kernel_empty": round(self.empty / n, 3),
            "app_starved_conn": round(self.app_starved / max(1, self.conn_samples), 3),
            "lag_max_ms": round(self.lag_max * 1000, 1),
            "lag_mean_ms": round(self.lag_sum / n * 1000, 2),
            "reading": round(self.reading / n, 2),
            "cwnd": round(self.cwnd / max(1, self.conn_samples), 1),
            "snd_wnd_k": round(self.snd_wnd / max(1, self.conn_samples) / 1024, 1),
            "pacing_mbit": round(self.pacing / n * 8 / 1e6, 1),
            # chrono stats summed over the connections (ms in this window): sending, limited by
            # the receiver's window, limited by our send buffer
            "busy_ms": self.d_busy // 1000,
            "rwnd_lim_ms": self.d_rwnd // 1000,
            "sndbuf_lim_ms": self.d_sndbuf // 1000,
        }
        self.reset()
        return out

    async def run(self, stop: asyncio.Event) -> None:
        import socket
        import struct
        import time

        loop_time = time.monotonic
        while not stop.is_set():
            t = loop_time()
            await asyncio.sleep(0.005)
            lag = loop_time() - t - 0.005
            self.n += 1
            self.lag_sum += lag
            self.lag_max = max(self.lag_max, lag)
            rt = getattr(self.handle, "_rt", None)
            if rt is None:
                continue
            self.reading += rt.read_cache.reading
            queued = 0
            for p in rt.peers.values():
                sock = getattr(p.stream, "socket", None)
                if p.am_choking or sock is None or p.closed:
                    continue
                try:
                    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
                except OSError:
                    continue
                mss = struct.unpack_from("I", info, 16)[0]
                unacked = struct.unpack_from("I", info, 24)[0]
                notsent = struct.unpack_from("I", info, 144)[0]
                queued += notsent + unacked * mss
                self.conn_samples += 1
                self.cwnd += struct.unpack_from("I", info, 80)[0]
                self.snd_wnd += struct.unpack_from("I", info, 228)[0]
                self.pacing += struct.unpack_from("Q", info, 104)[0]
                busy, rwnd, sndbuf = struct.unpack_from("QQQ", info, 168)
                b0, r0, s0 = self.chrono.get(p, (busy, rwnd, sndbuf))
                self.d_busy += busy - b0
                self.d_rwnd += rwnd - r0
                self.d_sndbuf += sndbuf - s0
                self.chrono[p] = (busy, rwnd, sndbuf)
                if p.uploads and notsent == 0:
                    self.app_starved += 1
            if queued == 0:
                self.empty += 1


def _utp_stats(handle: Any) -> dict[str, Any] | None:
    """uTP diagnostics of the connections we upload on (engine internals): window, queueing delay
    above the base (LEDBAT's our_delay), RTT, bytes in flight and queued, timeouts, retransmits."""
    rt = getattr(handle, "_rt", None)
    if rt is None:
        return None
    conns = []
    for p in rt.peers.values():
        stream = p.stream
        info = getattr(stream, "get_extra_info", None)
        conn = info("utp_connection") if info is not None else None
        if conn is not None and not p.am_choking:
            conns.append(conn)
    if not conns:
        return None

    def med(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    return {
        "n": len(conns),
        "cwnd_kib": round(med([c.cwnd for c in conns]) / 1024, 1),
        "delay_ms": round(med([c.our_delay for c in conns]) / 1000, 1),
        "delay_max_ms": round(max(c.our_delay for c in conns) / 1000, 1),
        "rtt_ms": round(med([(c.rtt.rtt or 0.0) * 1000 for c in conns]), 1),
        "in_flight_kib": round(sum(c.bytes_in_flight for c in conns) / 1024),
        "queued_kib": round(sum(c.send_buffered for c in conns) / 1024),
        "timeouts": sum(c.stats.timeouts for c in conns),
        "retransmits": sum(c.stats.retransmits for c in conns),
    }


def _interested_in_us(handle: Any) -> int:
    rt = getattr(handle, "_rt", None)
    return 0 if rt is None else sum(1 for p in rt.peers.values() if p.peer_interested)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    from bitswarm.session import SessionConfig

    fields = {f.name: f for f in dataclasses.fields(SessionConfig)}
    defaults = SessionConfig()
    out: dict[str, Any] = {}
    for kv in pairs:
        key, sep, raw = kv.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {kv!r}: not a SessionConfig field")
        current = getattr(defaults, key)
        if isinstance(current, bool):
            out[key] = raw.lower() in ("1", "true", "yes", "on")
        elif isinstance(current, int):
            out[key] = int(float(raw))
        elif isinstance(current, float):
            out[key] = float(raw)
        else:
            out[key] = raw
    return out


async def run_one(
    idx: int, args: argparse.Namespace, overrides: dict[str, Any], stop: asyncio.Event, go: asyncio.Event
) -> None:
    from bitswarm.session import Session, SessionConfig

    overrides = {"enable_dht": False, **overrides}  # as the libtorrent runner: the tracker finds the peers
    cfg = SessionConfig(listen_host=args.host, listen_port=args.port + idx if args.port else 0, **overrides)
    save = Path(args.save) / str(idx) if args.count > 1 else Path(args.save)
    save.mkdir(parents=True, exist_ok=True)
    async with Session(cfg) as session:
        if args.wait_go:
            emit({"event": "ready", "idx": idx})
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                [stopping, asyncio.ensure_future(go.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            if stop.is_set():
                return
            stopping.cancel()
        handle = await session.add(args.torrent, save, seed_mode=args.seed)
        emit({"event": "started", "idx": idx, "port": session.port})
        sampler = None
        if args.seed and os.environ.get("BITSWARM_BENCH_SAMPLE"):
            sampler = _SendSampler(handle)
            asyncio.get_running_loop().create_task(sampler.run(stop))
        done = False
        while not stop.is_set():
            st = handle.status()
            if st.state == "error":
                emit({"event": "torrent_error", "idx": idx, "error": st.error})
                return
            if not done and st.state == "seeding":
                done = True
                emit({"event": "seeding" if args.seed else "torrent_completed", "idx": idx})
            peers = handle.peers()
            emit(
                {
                    "event": "progress",
                    "idx": idx,
                    "state": st.state,
                    "progress": st.progress,
                    "uploaded": st.uploaded,
                    "downloaded": st.downloaded,
                    "redundant": st.redundant,
                    "peers": st.peers,
                    "known_peers": st.known_peers,
                    "upload_rate": st.upload_rate,
                    "download_rate": st.download_rate,
                    "unchoked": sum(1 for p in peers if not p["choking"]),
                    "unchoked_by": sum(1 for p in peers if not p["choked"]),
                    # diagnostics: queued upload requests of each peer we unchoke (engine internals)
                    "upload_queues": _upload_queues(handle),
                    # and our requests in flight to each peer that unchokes us; peers interested in us
                    "request_queues": _request_queues(handle),
                    "interested_in_us": _interested_in_us(handle),
                    "fresh_at": _fresh_at(handle),
                    "utp": _utp_stats(handle),
                    **({"send": sampler.summary()} if sampler is not None else {}),
                }
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def amain(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    stop = asyncio.Event()
    go = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def stdin_closed() -> None:
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if b"go" in data:
            go.set()
        if not data:
            loop.remove_reader(0)
            stop.set()

    with contextlib.suppress(OSError, ValueError):
        loop.add_reader(0, stdin_closed)
    await asyncio.gather(*(run_one(i, args, overrides, stop, go) for i in range(args.count)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("--save", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="first port (0: any free one per session)")
    ap.add_argument("--seed", action="store_true", help="seed the data in --save (seed mode)")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument(
        "--wait-go",
        action="store_true",
        help='print "ready" with the session up, add the torrent on a "go" line',
    )
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument(
        "--patch",
        action="append",
        default=[],
        metavar="MODULE:NAME=NUMBER",
        help="experiment only: set a module constant (e.g. bitswarm.session.choker:OPTIMISTIC_EVERY=1)",
    )
    ap.add_argument("--experiment", action="append", default=[], help="see install_experiment()")
    args = ap.parse_args()
    for name in args.experiment:
        install_experiment(name)
    overrides = parse_overrides(args.set)

    import importlib

    for spec in args.patch:
        target, _, value = spec.partition("=")
        mod, _, name = target.partition(":")
        m = importlib.import_module(mod)
        if not hasattr(m, name):
            raise SystemExit(f"--patch {spec!r}: {mod} has no {name}")
        setattr(m, name, type(getattr(m, name))(float(value)))
    prof_dir = os.environ.get("BITSWARM_BENCH_PROFILE")  # a directory: CPU profile of the loop thread
    profiler = None
    if prof_dir:
        import cProfile
        import time

        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
    try:
        import uvloop

        uvloop.run(amain(args, overrides))
    except ImportError:  # pragma: no cover
        asyncio.run(amain(args, overrides))
    finally:
        if profiler is not None and prof_dir:
            profiler.disable()
            role = "seed" if args.seed else "leech"
            profiler.dump_stats(str(Path(prof_dir) / f"{role}-{os.getpid()}.prof"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
