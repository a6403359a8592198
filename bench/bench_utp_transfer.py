#!/usr/bin/env python3
"""uTP transfer benchmark (issue 18): a bitswarm pair vs a libtorrent pair, both uTP only.

**Shaped link** (root only): network namespaces on one bridge (bench/swarm_net.py): a tracker host,
a seeder and a leecher; the bridge's port to the leecher is a ``--rate`` (100 Mbit/s) ``tbf``, the
bottleneck of the transfer (shaped on the bridge, as a router's queue: a qdisc on the sender's own
interface would hold TCP back by TCP Small Queues, and the comparison should not depend on that). One
``--size`` (256 MiB) v1 torrent, found through the tracker. Clients:

* ``bw``: the CLI, ``bitswarm seed`` and ``bitswarm download``, ``--transports utp --no-dht``;
* ``lt``: bench/swarm_lt_peer.py with ``enable_outgoing_tcp``/``enable_incoming_tcp`` off and uTP on.

Both pairs run without encryption (swarm_lt_peer.py turns it off; bitswarm gets ``--encryption off``:
two bitswarm peers under the default ``prefer`` would speak RC4).

Time: from the leecher's first progress report with payload (reports come every 0.5 s) to its
``torrent_completed``; utilization = payload bits / (rate x time). The pairs run interleaved
(bw, lt, bw, lt ...) ``--repeat`` times and the best time of each is reported (the machine is shared
and noisy); every leecher's bytes are checked.

**Loopback**: the same pair inside one namespace on 127.0.0.1 without a limit (``--lo-size``, 256 MiB):
what each client's uTP moves when CPU, not the link, is the limit.

    sudo .venv/bin/python bench/bench_utp_transfer.py [--size 256M] [--rate 100mbit] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_swarm import (  # noqa: E402
    BITSWARM,
    PY,
    TRACKER_PORT,
    machine,
    make_content,
    parse_rate,
    parse_size,
    sha256_file,
    wait_registered,
)
from swarm_net import Host, Net, Proc, netns_unavailable_reason, remove_stale_namespaces, stop_all  # noqa: E402

LT_UTP_ONLY = [
    "enable_outgoing_utp=true",
    "enable_incoming_utp=true",
    "enable_outgoing_tcp=false",
    "enable_incoming_tcp=false",
]


def peer_argv(client: str, role: str, torrent: Path, save: Path, host: str, port: int) -> list[str]:
    if client == "bw":
        common = ["--host", host, "--port", str(port), "--transports", "utp", "--encryption", "off"]
        common += ["--no-dht", "--json"]
        if role == "seed":
            return [BITSWARM, "seed", str(torrent), "--data", str(save), *common]
        return [BITSWARM, "download", str(torrent), "-o", str(save), *common]
    argv = [PY, str(HERE / "swarm_lt_peer.py"), str(torrent), "--save", str(save), "--host", host]
    argv += ["--port", str(port), *[a for kv in LT_UTP_ONLY for a in ("--set", kv)]]
    return argv + (["--seed"] if role == "seed" else [])


def has_payload(ev: dict[str, Any]) -> bool:
    return ev.get("event") == "progress" and (ev.get("downloaded") or 0) > 0


def one_transfer(
    client: str,
    *,
    seed_host: Host,
    leech_host: Host,
    tracker: Host,
    seed_addr: str,
    leech_addr: str,
    ports: tuple[int, int],
    src: Path,
    torrent: Path,
    announce: str,
    run_dir: Path,
    procs: list[Proc],
    timeout: float,
) -> dict[str, Any]:
    """Seeder up and registered, then the leecher: seconds from its first payload to completion."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    seeder = Proc(
        seed_host.argv(*peer_argv(client, "seed", torrent, src.parent, seed_addr, ports[0])),
        name=f"{client}-seeder",
        stderr_path=run_dir / "seeder.err",
    )
    procs.append(seeder)
    try:
        seeder.wait_for(lambda e: e.get("event") == "seeding", 120, "seeding")
        wait_registered(tracker.argv(), announce, torrent, seeder, 30)
        rx0 = leech_host.tx_bytes_sysfs("rx_bytes")
        leecher = Proc(
            leech_host.argv(*peer_argv(client, "leech", torrent, run_dir / "out", leech_addr, ports[1])),
            name=f"{client}-leecher",
            stderr_path=run_dir / "leecher.err",
        )
        procs.append(leecher)
        done = leecher.wait_for(lambda e: e.get("event") == "torrent_completed", timeout, "completion")
        first = leecher.find(has_payload)
        start = first["_t"] - 0.5 if first is not None else leecher.started_at  # reports are 0.5 s apart
        rx = leech_host.tx_bytes_sysfs("rx_bytes") - rx0
        for p in (leecher, seeder):
            p.sample()
        cpu = {"seeder": seeder.cpu_s, "leecher": leecher.cpu_s}
        stop_all([leecher, seeder])
    finally:
        stop_all([seeder])
    if sha256_file(run_dir / "out" / src.name) != sha256_file(src):
        raise RuntimeError(f"{client}: the leecher's bytes differ from the source")
    elapsed = done["_t"] - start
    return {
        "seconds": elapsed,
        "wire_rx_bytes": rx,
        "cpu_s": cpu,
        "spawn_to_done_s": done["_t"] - leecher.started_at,
    }


def run_pairs(
    label: str,
    net: Net,
    hosts: tuple[Host, Host, Host],
    addrs: tuple[str, str, str],
    ports: tuple[int, int],
    size: int,
    rate: int | None,
    args: argparse.Namespace,
    work: Path,
    procs: list[Proc],
) -> dict[str, Any]:
    trk, seed_host, leech_host = hosts
    announce = f"http://{addrs[0]}:{TRACKER_PORT}/announce"
    src, torrent = make_content(work, label, size, announce)
    tracker = Proc(
        trk.argv(BITSWARM, "tracker", "--http", f"{addrs[0]}:{TRACKER_PORT}", "--no-udp", "--db", "none",
                 "--mode", "open", "--json"),
        name=f"{label}-tracker",
        stderr_path=work / f"{label}-tracker.err",
    )  # fmt: skip
    procs.append(tracker)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in args.clients}
    try:
        tracker.wait_for(lambda e: "http" in e, 30, "the tracker's address")
        for i in range(args.repeat):
            for client in args.clients:
                r = one_transfer(
                    client,
                    seed_host=seed_host,
                    leech_host=leech_host,
                    tracker=trk,
                    seed_addr=addrs[1],
                    leech_addr=addrs[2],
                    ports=ports,
                    src=src,
                    torrent=torrent,
                    announce=announce,
                    run_dir=work / f"{label}-{client}-{i}",
                    procs=procs,
                    timeout=args.timeout,
                )
                r["MB_s"] = size / r["seconds"] / 1e6
                if rate:
                    r["utilization"] = size * 8 / (rate * r["seconds"])
                runs[client].append(r)
                print(
                    f"  {label} {client} #{i + 1}: {r['seconds']:.1f} s, {r['MB_s']:.1f} MB/s",
                    file=sys.stderr,
                )
                shutil.rmtree(work / f"{label}-{client}-{i}" / "out", ignore_errors=True)
    finally:
        stop_all([tracker])
    best = {c: min(rs, key=lambda r: r["seconds"]) for c, rs in runs.items() if rs}
    out: dict[str, Any] = {"size_bytes": size, "rate_bps": rate, "runs": runs, "best": best}
    if "bw" in best and "lt" in best:
        out["bw_over_lt_time"] = best["bw"]["seconds"] / best["lt"]["seconds"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--clients", default="bw,lt", help="bw, lt (comma list, run interleaved)")
    ap.add_argument("--size", default="256M")
    ap.add_argument("--rate", default="100mbit", help="the shaped link to the leecher")
    ap.add_argument("--lo-size", default="256M")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best of each is reported")
    ap.add_argument("--no-lan", action="store_true")
    ap.add_argument("--no-loopback", action="store_true")
    ap.add_argument("--subnet", default="10.81.0")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per transfer at most")
    args = ap.parse_args()
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"bench_utp_transfer: {reason}", file=sys.stderr)
        return 2
    remove_stale_namespaces()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (finally) on SIGTERM too
    result: dict[str, Any] = {"machine": machine()}
    procs: list[Proc] = []
    work = Path(tempfile.mkdtemp(prefix="bench-utp-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    net = Net(args.subnet)
    try:
        if not args.no_lan:
            rate = parse_rate(args.rate)
            trk = net.add_host("trk", 1)
            seed_host = net.add_host("seed", 2)
            leech_host = net.add_host("leech", 3, down_bps=rate)
            hosts = (trk, seed_host, leech_host)
            addrs = (trk.addr, seed_host.addr, leech_host.addr)
            result["lan"] = run_pairs(
                "lan", net, hosts, addrs, (6881, 6881), parse_size(args.size), rate, args, work, procs
            )
        if not args.no_loopback:
            lo = net.add_host("lo", 9)
            loop_addrs = ("127.0.0.1",) * 3
            result["loopback"] = run_pairs(
                "lo", net, (lo, lo, lo), loop_addrs, (6881, 6882), parse_size(args.lo_size), None, args, work,
                procs,
            )  # fmt: skip
    finally:
        stop_all(procs)
        net.close()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for part in ("lan", "loopback"):
            if part not in result:
                continue
            r = result[part]
            print(
                f"{part}: {r['size_bytes'] >> 20} MiB"
                + (f" over {r['rate_bps'] / 1e6:.0f} Mbit/s" if r["rate_bps"] else "")
            )
            for c, b in r["best"].items():
                util = f", {b['utilization']:.0%} of the link" if "utilization" in b else ""
                print(f"  {c}: best {b['seconds']:.1f} s, {b['MB_s']:.1f} MB/s{util}, CPU {b['cpu_s']}")
            if "bw_over_lt_time" in r:
                print(f"  bitswarm/libtorrent time: {r['bw_over_lt_time']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
