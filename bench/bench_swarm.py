#!/usr/bin/env python3
"""Swarm benchmark (issue 7): one seeder and N leechers on a shaped LAN, against the Kumar–Ross bound.

**LAN swarm** (root only): network namespaces on one bridge (bench/swarm_net.py; no default route, a
private subnet that exists only inside the namespaces), a tracker host running ``bitswarm tracker
--no-udp --db none``, a seeder host and ``--leechers`` (16) leecher hosts, each host's uplink shaped
with ``tc ... tbf`` (seeder ``--seeder-up`` 20 Mbit/s, leechers ``--leecher-up`` 10 Mbit/s;
``--leecher-down`` also caps their downlink on the bridge side). A ``--size`` (64 MiB) v1 torrent
names the tracker; peers find each other only through it. Clients:

* ``bw``: the CLI, ``bitswarm seed`` and N x ``bitswarm download --seed --json`` (leechers keep
  seeding until the whole swarm is done, as the bound assumes);
* ``bwcfg``: the same through bench/swarm_bw_peer.py (Session API) with ``--bw-set FIELD=VALUE``
  SessionConfig overrides, to test a hypothesis without editing the engine;
* ``lt``: libtorrent sessions through bench/swarm_lt_peer.py (DHT/LSD/UPnP/NAT-PMP and encryption
  off, TCP only, not auto-managed, seeder in seed_mode).

``--transport utp`` puts every peer on uTP instead (bitswarm ``--transports utp``, libtorrent with
outgoing/incoming TCP off), still plaintext; wire bytes then include UDP/IP headers and uTP ACKs.

The clock starts when the leecher processes are spawned (after the seeder is registered on the
tracker) — or, with ``--go`` (clients ``bwcfg`` and ``lt``), when every leecher process is up and
all add the torrent at once, which leaves the start-up of 16 interpreters on a 2-core machine out
(``spawn_to_ready_s`` reports it) — and stops when the last leecher reports completion; every
leecher's bytes are checked against the source afterwards. The bound is
T_min = max(F/u_s, N*F/(u_s + sum u_i)) (F in bits, rates in bit/s; with a download cap d also
F/d). Uplink utilization = bytes through each host's veth (``/sys/class/net/eth0/statistics/tx_bytes``
in its namespace, sampled every 0.5 s through ``/proc/<pid>/net/dev``) over capacity x time; wire
bytes include TCP/IP/Ethernet headers and acks.

**Loopback swarm**: one seeder and ``--lo-leechers`` (50) bitswarm leechers on 127.0.0.1 without
limits (``--lo-size`` 32 MiB), one process per peer (``--lo-per-proc K`` packs K sessions per
process via swarm_bw_peer.py); total time, CPU seconds and peak RSS (sum and per-process max).

Everything is bounded (``--timeout`` per swarm) and cleaned up on exit, failure, Ctrl-C or SIGTERM
(processes, namespaces, the tmpfs work directory); namespaces left by a SIGKILLed run are removed
at the next start.

    sudo .venv/bin/python bench/bench_swarm.py                      # bw and lt LAN swarms + loopback
    .venv/bin/python bench/bench_swarm.py --clients bw --no-loopback --json
    .venv/bin/python bench/bench_swarm.py --transport utp --no-loopback   # every peer on uTP
    .venv/bin/python bench/bench_swarm.py --clients bwcfg --bw-set upload_slots=8 --no-loopback
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from swarm_net import Net, Proc, netns_unavailable_reason, proc_net_tx, remove_stale_namespaces, stop_all  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")
BITSWARM = str(ROOT / ".venv" / "bin" / "bitswarm")
# The libtorrent runner turns encryption off and runs TCP only, or uTP only with ``--transport utp``
# (swarm_lt_peer.py); bitswarm's CLI dials uTP first and offers MSE by default, so the like-for-like
# swarm runs both clients on the same single plaintext transport.


def like_the_lt_runner(transport: str) -> tuple[str, ...]:
    """The CLI options that make a bitswarm peer speak what the libtorrent runner speaks."""
    return ("--transports", transport, "--encryption", "off")


TRACKER_PORT = 6969
PEER_PORT = 6881
CLIENT_NAMES = {"bw": "bitswarm", "bwcfg": "bitswarm (runner)", "lt": "libtorrent"}


def parse_size(text: str) -> int:
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    return int(float(t[:-1]) * mult[t[-1]]) if t and t[-1] in mult else int(t)


def parse_rate(text: str) -> int:
    """``20mbit`` / ``10M`` / ``500kbit`` → bit/s (SI, as tc reads them)."""
    t = text.strip().lower().removesuffix("bit").removesuffix("bps")
    mult = {"k": 10**3, "m": 10**6, "g": 10**9}
    return int(float(t[:-1]) * mult[t[-1]]) if t and t[-1] in mult else int(t)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--short", "src"], capture_output=True, text=True, timeout=10
    ).stdout.split("\n")
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    lt_version = subprocess.run(
        [PY, "-c", "import libtorrent; print(libtorrent.__version__)"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "libtorrent": lt_version,
        "git_head": head,
        "src_uncommitted": [d.strip() for d in dirty if d.strip()],
        "src_override": (Proc.env or {}).get("PYTHONPATH"),
        "loadavg": os.getloadavg(),
    }


def kumar_ross(size: int, n: int, u_s: int, u_l: int, d: int | None = None) -> dict[str, float]:
    f = size * 8
    parts = {"seeder": f / u_s, "aggregate": n * f / (u_s + n * u_l)}
    if d:
        parts["download"] = f / d
    return {"bound_s": max(parts.values()), **{f"bound_{k}_s": v for k, v in parts.items()}}


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def run_env() -> dict[str, str] | None:
    return Proc.env


def make_content(work: Path, name: str, size: int, announce: str) -> tuple[Path, Path]:
    """``work/<name>-src/<name>.bin`` of pseudo-random bytes and its v1 torrent naming ``announce``."""
    src_dir = work / f"{name}-src"
    src_dir.mkdir(parents=True, exist_ok=True)
    src = src_dir / f"{name}.bin"
    with src.open("wb") as fh:
        h = hashlib.shake_256(f"bitswarm-swarm-{name}-{size}".encode())
        block = h.digest(1 << 20)
        for i in range(0, size, 1 << 20):
            # distinct blocks (no two pieces alike), cheap to make
            fh.write(hashlib.shake_256(block + i.to_bytes(8, "big")).digest(min(1 << 20, size - i)))
    torrent = work / f"{name}.torrent"
    subprocess.run(
        [BITSWARM, "create", str(src), "-o", str(torrent), "--v1", "--tracker", announce, "--force", "-q"],
        check=True,
        capture_output=True,
        timeout=120,
        env=run_env(),
    )
    return src, torrent


def scrape_complete(argv_prefix: list[str], url: str, torrent: Path) -> int:
    code = (
        "import sys, urllib.parse, urllib.request\n"
        "from bitswarm.bencode import decode\n"
        "from bitswarm.metainfo import load_torrent\n"
        f"h = load_torrent({str(torrent)!r}).swarm_hash\n"
        f"u = {url!r} + '?info_hash=' + urllib.parse.quote_from_bytes(h)\n"
        "r = decode(urllib.request.urlopen(u, timeout=3).read())\n"
        "print(r[b'files'].get(h, {}).get(b'complete', 0))\n"
    )
    res = subprocess.run(
        [*argv_prefix, PY, "-c", code], capture_output=True, text=True, timeout=30, env=run_env()
    )
    out = res.stdout.strip()
    return int(out) if res.returncode == 0 and out.isdigit() else -1


def wait_registered(
    argv_prefix: list[str], announce: str, torrent: Path, seeder: Proc, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    scrape = announce.replace("/announce", "/scrape")
    while scrape_complete(argv_prefix, scrape, torrent) < 1:
        if not seeder.alive():
            raise RuntimeError(f"seeder exited\n{seeder.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the seeder never showed up on the tracker\n{seeder.tail()}")
        time.sleep(0.2)


def peer_argv(
    client: str,
    role: str,
    torrent: Path,
    save: Path,
    host: str,
    port: int,
    bw_set: list[str],
    bw_patch: list[str],
    lt_set: list[str],
    count: int = 1,
    transport: str = "tcp",
) -> list[str]:
    if client == "bw":
        if role == "seed":
            return [
                BITSWARM,
                "seed",
                str(torrent),
                "--data",
                str(save),
                "--host",
                host,
                "--port",
                str(port),
                "--no-dht",
                *like_the_lt_runner(transport),
                "--json",
            ]
        return [
            BITSWARM,
            "download",
            str(torrent),
            "-o",
            str(save),
            "--host",
            host,
            "--port",
            str(port),
            "--seed",
            "--no-dht",  # as the libtorrent runner (enable_dht False): the tracker is the only source
            *like_the_lt_runner(transport),
            "--json",
        ]
    if client == "bwcfg":
        argv = [
            PY,
            str(HERE / "swarm_bw_peer.py"),
            str(torrent),
            "--save",
            str(save),
            "--host",
            host,
            "--port",
            str(port),
            "--count",
            str(count),
        ]
        # like the libtorrent runner unless --bw-set says otherwise
        keys = {kv.partition("=")[0] for kv in bw_set}
        defaults = [f"transports={transport}", "encryption=off"]
        argv += [a for kv in defaults if kv.partition("=")[0] not in keys for a in ("--set", kv)]
        argv += [a for kv in bw_set for a in ("--set", kv)]
        argv += [
            a
            for kv in bw_patch
            for a in (("--experiment", kv[4:]) if kv.startswith("exp:") else ("--patch", kv))
        ]
        return argv + (["--seed"] if role == "seed" else [])
    argv = [
        PY,
        str(HERE / "swarm_lt_peer.py"),
        str(torrent),
        "--save",
        str(save),
        "--host",
        host,
        "--port",
        str(port),
    ]
    argv += [a for kv in lt_set for a in ("--set", kv)]
    if transport == "utp":
        argv.append("--utp")
    return argv + (["--seed"] if role == "seed" else [])


def tcp_retrans_segs(host: Any) -> int:
    """``Tcp: RetransSegs`` of the host's network namespace (``/proc/net/snmp``), -1 if unknown."""
    res = subprocess.run(host.argv("cat", "/proc/net/snmp"), capture_output=True, text=True, check=False)
    lines = [ln.split() for ln in res.stdout.splitlines() if ln.startswith("Tcp:")]
    if len(lines) == 2 and "RetransSegs" in lines[0]:
        return int(lines[1][lines[0].index("RetransSegs")])
    return -1


def udp_datagrams(host: Any) -> dict[str, int]:
    """``Udp: InDatagrams/OutDatagrams/RcvbufErrors/SndbufErrors`` of the host's namespace."""
    res = subprocess.run(host.argv("cat", "/proc/net/snmp"), capture_output=True, text=True, check=False)
    lines = [ln.split() for ln in res.stdout.splitlines() if ln.startswith("Udp:")]
    if len(lines) < 2:
        return {}
    names = ("InDatagrams", "OutDatagrams", "RcvbufErrors", "SndbufErrors")
    return {k: int(lines[1][lines[0].index(k)]) for k in names if k in lines[0]}


def machine_busy_s() -> float:
    """CPU-seconds all cores have spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def is_done(ev: dict[str, Any]) -> bool:
    return ev.get("event") == "torrent_completed"


def spread(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"min": s[0], "median": s[len(s) // 2], "max": s[-1]}


# ----------------------------------------------------------------------------------------------
# LAN swarm


def run_lan(
    client: str, args: argparse.Namespace, work: Path, procs: list[Proc], nets: list[Net]
) -> dict[str, Any]:
    n = args.leechers
    u_s, u_l = parse_rate(args.seeder_up), parse_rate(args.leecher_up)
    d_l = parse_rate(args.leecher_down) if args.leecher_down else None
    size = parse_size(args.size)
    net = Net(args.subnet, mtu=args.mtu)
    nets.append(net)
    trk = net.add_host("trk", 1)
    seed_host = net.add_host("seed", 2, up_bps=u_s)
    leech_hosts = [net.add_host(f"l{i}", 3 + i, up_bps=u_l, down_bps=d_l) for i in range(n)]
    announce = f"http://{trk.addr}:{TRACKER_PORT}/announce"
    src, torrent = make_content(work, "lan", size, announce)
    run_dir = work / f"lan-{client}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()

    tracker_argv = [
        BITSWARM,
        "tracker",
        "--http",
        f"{trk.addr}:{TRACKER_PORT}",
        "--no-udp",
        "--db",
        "none",
        "--mode",
        "open",
        "--json",
    ]
    if args.tracker_interval:
        tracker_argv += ["--interval", str(args.tracker_interval)]
    tracker = Proc(trk.argv(*tracker_argv), name="tracker", stderr_path=run_dir / "tracker.err")
    procs.append(tracker)
    tracker.wait_for(lambda e: "http" in e, 30, "the tracker's address")

    pa = (args.bw_set, args.bw_patch, args.lt_set)
    tr = args.transport
    seeder = Proc(
        seed_host.argv(
            *peer_argv(client, "seed", torrent, src.parent, seed_host.addr, PEER_PORT, *pa, transport=tr)
        ),
        name="seeder",
        stderr_path=run_dir / "seeder.err",
    )
    procs.append(seeder)
    seeder.wait_for(lambda e: e.get("event") == "seeding", 60, "seeding")
    wait_registered(trk.argv(), announce, torrent, seeder, 30)

    hosts = [seed_host, *leech_hosts]
    base_tx = {h.name: h.tx_bytes_sysfs() for h in hosts}
    base_pk = {h.name: h.tx_bytes_sysfs("tx_packets") for h in hosts}
    leechers: list[Proc] = []
    t0 = time.monotonic()
    for i, h in enumerate(leech_hosts):
        out = run_dir / f"l{i}"
        argv = peer_argv(client, "leech", torrent, out, h.addr, PEER_PORT, *pa, transport=tr)
        if args.go:
            argv.append("--wait-go")
        p = Proc(h.argv(*argv), name=f"leecher{i}", stderr_path=run_dir / f"l{i}.err")
        leechers.append(p)
        procs.append(p)
    spawn_to_ready = None
    if args.go:
        # every leecher process up (imports done, session listening), then all add the torrent at once:
        # the clock measures the swarm, not 16 interpreters starting on 2 cores
        for p in leechers:
            p.wait_for(lambda e: e.get("event") == "ready", 120, "ready")
        spawn_to_ready = time.monotonic() - t0
        base_tx = {h.name: h.tx_bytes_sysfs() for h in hosts}
        base_pk = {h.name: h.tx_bytes_sysfs("tx_packets") for h in hosts}
        t0 = time.monotonic()
        for p in leechers:
            assert p.proc.stdin is not None
            p.proc.stdin.write(b"go\n")
            p.proc.stdin.flush()
    owners = {seed_host.name: seeder, **{h.name: p for h, p in zip(leech_hosts, leechers, strict=True)}}
    bound = kumar_ross(size, n, u_s, u_l, d_l)
    deadline = t0 + min(args.timeout, max(60.0, bound["bound_s"] * 4))
    series: list[tuple[float, int, int]] = []  # (t, total uplink tx bytes since t0, leechers done)
    host_series: list[tuple[float, dict[str, int]]] = []  # (t, tx bytes since t0 per host)
    last_tx = dict(base_tx)
    cpu_series: list[tuple[float, float]] = []  # (t, busy CPU-seconds of the whole machine)
    while True:
        now = time.monotonic()
        cpu_series.append((now - t0, machine_busy_s()))
        total = 0
        for h in hosts:
            v = proc_net_tx(owners[h.name].pid, h.dev)
            if v is not None:
                last_tx[h.name] = v
            total += last_tx[h.name] - base_tx[h.name]
        done = sum(1 for p in leechers if p.find(is_done))
        series.append((now - t0, total, done))
        host_series.append((now - t0, {h.name: last_tx[h.name] - base_tx[h.name] for h in hosts}))
        if done == n:
            break
        for p in [seeder, *leechers]:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited (rc={p.proc.poll()})\n{p.tail()}")
        if now > deadline:
            stuck = next(p for p in leechers if not p.find(is_done))
            raise RuntimeError(
                f"{client}: only {done}/{n} leechers complete after {now - t0:.0f} s; {stuck.name} last said "
                f"{stuck.last('progress')}\n{stuck.tail()}"
            )
        time.sleep(0.5)
    t_end = time.monotonic()
    finish = [p.wait_for(is_done, 1, "completion")["_t"] - t0 for p in leechers]
    started = [p.find(lambda e: e.get("event") == "started") for p in leechers]
    start_lag = [e["_t"] - t0 for e in started if e is not None]
    # start-up, step by step: first peer connection and first verified piece of each leecher
    firsts: dict[str, list[float]] = {}
    for key, event in (("first_peer_s", "peer_connected"), ("first_piece_s", "piece_verified")):
        found = [p.find(lambda e, ev=event: e.get("event") == ev) for p in leechers]
        firsts[key] = [e["_t"] - t0 for e in found if e is not None]
    final_tx = {h.name: h.tx_bytes_sysfs() - base_tx[h.name] for h in hosts}
    final_pk = {h.name: h.tx_bytes_sysfs("tx_packets") - base_pk[h.name] for h in hosts}
    retrans = {h.name: tcp_retrans_segs(h) for h in hosts}
    udp = {h.name: udp_datagrams(h) for h in hosts}
    for p in [seeder, *leechers]:
        p.sample()
    uploads = {p.name: (p.last("progress") or {}).get("uploaded", 0) for p in [seeder, *leechers]}
    downloads = [(p.last("progress") or {}).get("downloaded", 0) or 0 for p in leechers]
    redundant = [(p.last("progress") or {}).get("redundant", 0) or 0 for p in leechers]
    stop_all([*leechers, seeder, tracker])

    want = sha256_file(src)
    bad = [i for i in range(n) if sha256_file(run_dir / f"l{i}" / src.name) != want]
    if bad:
        raise RuntimeError(f"{client}: leechers {bad} have different bytes")
    elapsed = max(finish)
    cap = {h.name: (h.up_bps or 0) for h in hosts}
    total_cap = sum(cap.values())
    util_total = sum(final_tx.values()) * 8 / (total_cap * elapsed)
    util_per = {k: v * 8 / (cap[k] * elapsed) for k, v in final_tx.items()}
    # utilization per second of the swarm (aggregate uplinks), and in the first/last 10 s
    per_sec: list[float] = []
    for sec in range(int(elapsed) + 1):
        lo_t, hi_t = sec, min(sec + 1, elapsed)
        a = next((s for s in series if s[0] >= lo_t), series[-1])
        b = next((s for s in series if s[0] >= hi_t), series[-1])
        dt = max(1e-3, b[0] - a[0])
        per_sec.append(round((b[1] - a[1]) * 8 / (total_cap * dt), 3))

    def window(t_lo: float, t_hi: float) -> float:
        a = next((s for s in series if s[0] >= t_lo), series[-1])
        b = next((s for s in series if s[0] >= t_hi), series[-1])
        return (b[1] - a[1]) * 8 / (total_cap * max(1e-3, b[0] - a[0]))

    # the machine's CPU use per second (1.0 = every core busy): is a slow second CPU-bound?
    cpu_per_sec: list[float] = []
    for sec in range(int(elapsed) + 1):
        a3 = next((c for c in cpu_series if c[0] >= sec), cpu_series[-1])
        b3 = next((c for c in cpu_series if c[0] >= sec + 1), cpu_series[-1])
        dt = max(1e-3, b3[0] - a3[0])
        cpu_per_sec.append(round((b3[1] - a3[1]) / (dt * (os.cpu_count() or 1)), 2))

    # per host, each second of the first 15 (the ramp-up): who idles while the swarm starts
    ramp: dict[str, list[float]] = {h.name: [] for h in hosts}
    for sec in range(min(15, int(elapsed))):
        a2 = next((s for s in host_series if s[0] >= sec), host_series[-1])
        b2 = next((s for s in host_series if s[0] >= sec + 1), host_series[-1])
        dt = max(1e-3, b2[0] - a2[0])
        for name in ramp:
            ramp[name].append(round((b2[1][name] - a2[1][name]) * 8 / (cap[name] * dt), 2))

    # the seeder's uplink each second of the whole run: its share is the scarcest early on
    seeder_per_sec: list[float] = []
    for sec in range(int(elapsed) + 1):
        a4 = next((s for s in host_series if s[0] >= sec), host_series[-1])
        b4 = next((s for s in host_series if s[0] >= sec + 1), host_series[-1])
        dt = max(1e-3, b4[0] - a4[0])
        sent = b4[1][seed_host.name] - a4[1][seed_host.name]
        seeder_per_sec.append(round(sent * 8 / (cap[seed_host.name] * dt), 2))

    if args.keep_events:
        # every peer's JSON lines (``_t`` made relative to the clock's start), for a closer look
        keep = Path(args.keep_events) / f"{client}-{time.strftime('%H%M%S')}"
        keep.mkdir(parents=True, exist_ok=True)
        for p in [seeder, *leechers]:
            with (keep / f"{p.name}.jsonl").open("w") as f:
                for ev in list(p.events):
                    f.write(json.dumps({**ev, "_t": round(ev["_t"] - t0, 3)}) + "\n")
    shutil.rmtree(run_dir, ignore_errors=True)
    net.close()
    nets.remove(net)
    return {
        "swarm": "lan",
        "client": client,
        "transport": args.transport,
        "leechers": n,
        "size": size,
        "seeder_up_bps": u_s,
        "leecher_up_bps": u_l,
        "leecher_down_bps": d_l,
        "tracker_interval": args.tracker_interval or 1800,
        "clock": "go" if args.go else "spawn",
        "spawn_to_ready_s": round(spawn_to_ready, 3) if spawn_to_ready is not None else None,
        "bw_set": args.bw_set if client == "bwcfg" else [],
        "bw_patch": args.bw_patch if client == "bwcfg" else [],
        **{k: round(v, 3) for k, v in bound.items()},
        "seconds": round(elapsed, 3),
        "ratio": round(elapsed / bound["bound_s"], 3),
        "finish_s": [round(x, 2) for x in finish],
        "finish_spread": {k: round(v, 2) for k, v in spread(finish).items()},
        "start_lag_s": {k: round(v, 2) for k, v in spread(start_lag).items()} if start_lag else None,
        **{k: {a: round(b, 2) for a, b in spread(v).items()} if v else None for k, v in firsts.items()},
        "uplink_util": round(util_total, 3),
        "uplink_util_first10s": round(window(0, 10), 3),
        "uplink_util_last10s": round(window(elapsed - 10, elapsed), 3),
        "uplink_util_per_host": {k: round(v, 3) for k, v in util_per.items()},
        "uplink_util_per_second": per_sec,
        "uplink_util_ramp_per_host": ramp,
        "seeder_util_per_second": seeder_per_sec,
        "machine_cpu_per_second": cpu_per_sec,
        "tx_bytes": final_tx,
        "payload_uploaded": uploads,
        # > 1: blocks sent more than once (end-game duplicates, cancels that came too late)
        "payload_up_over_nf": round(sum(v or 0 for v in uploads.values()) / (n * size), 3),
        # what the leechers received, and the part of it they did not need (duplicates)
        "payload_down_over_nf": round(sum(downloads) / (n * size), 4),
        "redundant_over_nf": round(sum(redundant) / (n * size), 4),
        # frames sent, and their mean size (full data frames are MTU + 14; ACKs and lone HAVEs ~66-75)
        "tx_packets": sum(final_pk.values()),
        # TCP segments retransmitted (the namespace's whole life): losses at the tbf queues (TCP runs)
        "tcp_retrans_segs": retrans,
        # UDP datagrams in and out of each host (the namespace's whole life; uTP runs)
        "udp_datagrams": udp,
        "tx_mean_frame": round(sum(final_tx.values()) / max(1, sum(final_pk.values())), 1),
        "wire_over_payload": round(sum(final_tx.values()) / max(1, sum(v or 0 for v in uploads.values())), 3),
        "loadavg_after": os.getloadavg(),
        "cpu_s_sum": round(sum(p.cpu_s for p in [seeder, *leechers]), 2),
        "peak_rss_max_mib": round(max(p.peak_rss for p in [seeder, *leechers]) / 2**20, 1),
        "wall_s_total": round(t_end - t0, 2),
    }


# ----------------------------------------------------------------------------------------------
# loopback swarm


def run_loopback(args: argparse.Namespace, work: Path, procs: list[Proc]) -> dict[str, Any]:
    n, per = args.lo_leechers, max(1, args.lo_per_proc)
    size = parse_size(args.lo_size)
    run_dir = work / "lo"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    tracker = Proc(
        [
            BITSWARM,
            "tracker",
            "--http",
            "127.0.0.1:0",
            "--no-udp",
            "--db",
            "none",
            "--mode",
            "open",
            "--json",
        ],
        name="lo-tracker",
        stderr_path=run_dir / "tracker.err",
    )
    procs.append(tracker)
    announce = tracker.wait_for(lambda e: "http" in e, 30, "the tracker's address")["http"][0]
    src, torrent = make_content(work, "lo", size, announce)
    client = "bw" if per == 1 else "bwcfg"
    no = ([], [], [])
    seeder = Proc(
        peer_argv(client, "seed", torrent, src.parent, "127.0.0.1", 0, *no),
        name="lo-seeder",
        stderr_path=run_dir / "seeder.err",
    )
    procs.append(seeder)
    seeder.wait_for(lambda e: e.get("event") == "seeding", 60, "seeding")
    wait_registered([], announce, torrent, seeder, 30)
    leechers: list[tuple[Proc, int, Path]] = []
    group: list[Proc] = []
    t0 = time.monotonic()
    for k in range(0, n, per):
        count = min(per, n - k)
        out = run_dir / f"g{k}"
        p = Proc(
            peer_argv(client, "leech", torrent, out, "127.0.0.1", 0, *no, count=count),
            name=f"lo-leecher{k}",
            stderr_path=run_dir / f"g{k}.err",
        )
        procs.append(p)
        group.append(p)
        for i in range(count):
            leechers.append((p, i, out / str(i) if count > 1 else out))
    deadline = t0 + args.timeout
    while True:
        for p in [seeder, *group]:
            p.sample()
            if not p.alive():
                raise RuntimeError(f"{p.name} exited (rc={p.proc.poll()})\n{p.tail()}")
        done = sum(1 for p, i, _ in leechers if p.find(lambda e, i=i: is_done(e) and e.get("idx", 0) == i))
        if done == n:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"loopback: only {done}/{n} leechers complete after {args.timeout} s")
        time.sleep(0.25)
    finish = [
        p.find(lambda e, i=i: is_done(e) and e.get("idx", 0) == i)["_t"] - t0  # type: ignore[index]
        for p, i, _ in leechers
    ]
    for p in [seeder, *group]:
        p.sample()
    stop_all([*group, seeder, tracker])
    want = sha256_file(src)
    bad = [j for j, (_, _, out) in enumerate(leechers) if sha256_file(out / src.name) != want]
    if bad:
        raise RuntimeError(f"loopback: leechers {bad} have different bytes")
    shutil.rmtree(run_dir, ignore_errors=True)
    lp = group
    return {
        "swarm": "loopback",
        "client": "bw",
        "mode": "one process per peer (bitswarm CLI)" if per == 1 else f"{per} sessions per process (runner)",
        "leechers": n,
        "processes": len(lp) + 1,
        "size": size,
        "seconds": round(max(finish), 3),
        "finish_spread": {k: round(v, 2) for k, v in spread(finish).items()},
        "cpu_s_sum": round(sum(p.cpu_s for p in [seeder, *lp]), 2),
        "cpu_s_seeder": round(seeder.cpu_s, 2),
        "cpu_s_leecher_max": round(max(p.cpu_s for p in lp), 2),
        "peak_rss_sum_mib": round(sum(p.peak_rss for p in [seeder, *lp]) / 2**20, 1),
        "peak_rss_max_mib": round(max(p.peak_rss for p in [seeder, *lp]) / 2**20, 1),
        "peak_rss_seeder_mib": round(seeder.peak_rss / 2**20, 1),
    }


# ----------------------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    lan = [r for r in result["results"] if r["swarm"] == "lan"]
    if lan:
        r0 = lan[0]
        print(
            f"\nLAN swarm: 1 seeder ({r0['seeder_up_bps'] / 1e6:g} Mbit/s up) + {r0['leechers']} leechers "
            f"({r0['leecher_up_bps'] / 1e6:g} Mbit/s up), {r0['size'] / 2**20:g} MiB; "
            f"Kumar-Ross bound {r0['bound_s']:.2f} s; clock from {r0.get('clock', 'spawn')}; "
            f"peers on {r0.get('transport', 'tcp')}, plaintext"
        )
        print(
            f"{'client':<22}{'bound s':>8}{'time s':>8}{'ratio':>7}{'finish min/med/max s':>23}"
            f"{'util':>6}{'first10':>8}{'last10':>7}{'seed util':>10}{'sent/NF':>8}{'CPU s':>7}"
        )
        for r in lan:
            fs = r["finish_spread"]
            name = CLIENT_NAMES[r["client"]] + (
                " " + ",".join(r["bw_set"] + r["bw_patch"]) if r["bw_set"] or r["bw_patch"] else ""
            )
            print(
                f"{name:<22}{r['bound_s']:>8.2f}{r['seconds']:>8.2f}{r['ratio']:>7.3f}"
                f"{fs['min']:>9.1f}/{fs['median']:.1f}/{fs['max']:.1f}{r['uplink_util']:>6.2f}"
                f"{r['uplink_util_first10s']:>8.2f}{r['uplink_util_last10s']:>7.2f}"
                f"{r['uplink_util_per_host']['seed']:>10.2f}{r['payload_up_over_nf']:>8.3f}{r['cpu_s_sum']:>7.1f}"
                + (f"  (spawn to ready {r['spawn_to_ready_s']:.2f} s)" if r.get("spawn_to_ready_s") else "")
            )
    for r in result["results"]:
        if r["swarm"] == "loopback":
            fs = r["finish_spread"]
            print(
                f"\nLoopback swarm: 1 seeder + {r['leechers']} leechers, {r['size'] / 2**20:g} MiB, "
                f"{r['mode']}: "
                f"all done in {r['seconds']:.2f} s (first {fs['min']:.2f} s), CPU {r['cpu_s_sum']:.1f} s "
                f"(seeder {r['cpu_s_seeder']:.1f}, leecher max {r['cpu_s_leecher_max']:.1f}), peak RSS "
                f"sum {r['peak_rss_sum_mib']:.0f} MiB, max {r['peak_rss_max_mib']:.0f} MiB"
            )
    for err in result.get("errors", []):
        print(f"ERROR: {err}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--clients", default="bw,lt", help="LAN clients in order: bw, bwcfg, lt (comma list)")
    ap.add_argument("--leechers", type=int, default=16)
    ap.add_argument("--size", default="64M")
    ap.add_argument("--seeder-up", default="20mbit")
    ap.add_argument("--leecher-up", default="10mbit")
    ap.add_argument("--leecher-down", default=None, help="also cap each leecher's downlink (e.g. 40mbit)")
    ap.add_argument("--mtu", type=int, default=None, help="veth MTU (default 1500)")
    ap.add_argument("--subnet", default="10.78.0")
    ap.add_argument(
        "--transport",
        choices=("tcp", "utp"),
        default="tcp",
        help="LAN swarm: every peer on this one transport, plaintext (bitswarm --transports X "
        "--encryption off; libtorrent TCP only, or uTP only with outgoing/incoming TCP off)",
    )
    ap.add_argument(
        "--go",
        action="store_true",
        help="clients bwcfg/lt: start every leecher process, wait until all are up, then add the torrent "
        "in all at once and start the clock (process start-up excluded; spawn_to_ready_s reports it)",
    )
    ap.add_argument(
        "--tracker-interval", type=int, default=0, help="tracker announce interval (default 1800)"
    )
    ap.add_argument(
        "--bw-set", action="append", default=[], metavar="FIELD=VALUE", help="bwcfg: SessionConfig"
    )
    ap.add_argument(
        "--bw-patch",
        action="append",
        default=[],
        metavar="MOD:NAME=N",
        help="bwcfg: a module constant, or exp:NAME for an experiment of swarm_bw_peer.py",
    )
    ap.add_argument("--lt-set", action="append", default=[], metavar="KEY=VALUE", help="lt: settings_pack")
    ap.add_argument("--no-lan", action="store_true")
    ap.add_argument("--no-loopback", action="store_true")
    ap.add_argument("--lo-leechers", type=int, default=50)
    ap.add_argument("--lo-size", default="32M")
    ap.add_argument("--lo-per-proc", type=int, default=1, help="sessions per leecher process (1: the CLI)")
    ap.add_argument(
        "--src",
        default=None,
        help="run the peers from this src/ tree (PYTHONPATH), e.g. a "
        "`git archive HEAD src` export while the working tree is being edited",
    )
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per swarm at most")
    ap.add_argument(
        "--keep-events",
        default=None,
        metavar="DIR",
        help="LAN: write every peer's JSON lines to DIR/<client>-<time>/",
    )
    args = ap.parse_args()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    if args.src:
        Proc.env = {**os.environ, "PYTHONPATH": str(Path(args.src).resolve())}
    signal.signal(signal.SIGHUP, on_term)
    # bytecode up to date for the tree the peers run (PYTHONDONTWRITEBYTECODE may be set): else
    # every peer process compiles bitswarm's modules at start, both clients' harness scripts alike
    subprocess.run(
        [PY, "-m", "compileall", "-q", str(Path(args.src).resolve() if args.src else ROOT / "src")],
        capture_output=True,
        timeout=300,
    )
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), "results": []}
    errors: list[str] = result.setdefault("errors", [])
    procs: list[Proc] = []
    nets: list[Net] = []
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix=f"bsw-swarm-{os.getpid()}-", dir=base))
    t_start = time.monotonic()
    try:
        if not args.no_lan:
            reason = netns_unavailable_reason()
            if reason:
                errors.append(f"LAN swarm skipped: {reason}")
            else:
                removed = remove_stale_namespaces()
                if removed:
                    print(f"removed {len(removed)} stale namespaces", file=sys.stderr)
                for client in [c.strip() for c in args.clients.split(",") if c.strip()]:
                    if client not in CLIENT_NAMES:
                        raise SystemExit(f"unknown client {client!r}")
                    if args.go and client == "bw":
                        raise SystemExit("--go needs clients that wait for it: bwcfg and lt (not the bw CLI)")
                    print(f"LAN swarm: {client} ...", file=sys.stderr, flush=True)
                    try:
                        result["results"].append(run_lan(client, args, work, procs, nets))
                    except RuntimeError as exc:
                        errors.append(f"lan {client}: {exc}")
                    finally:
                        stop_all(procs)
                        procs.clear()
                        for net in nets:
                            net.close()
                        nets.clear()
        if not args.no_loopback:
            print("loopback swarm ...", file=sys.stderr, flush=True)
            try:
                result["results"].append(run_loopback(args, work, procs))
            except RuntimeError as exc:
                errors.append(f"loopback: {exc}")
    except KeyboardInterrupt as exc:
        errors.append(f"interrupted ({exc or 'Ctrl-C'})")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(procs)
        for net in nets:
            net.close()
        shutil.rmtree(work, ignore_errors=True)
        result["wall_s"] = round(time.monotonic() - t_start, 1)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
