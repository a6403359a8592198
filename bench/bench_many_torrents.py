#!/usr/bin/env python3
"""Many torrents in one daemon (issue 24, target 3): N small seeding torrents in one ``bitswarm
daemon`` process and in one libtorrent session, side by side in the same run.

Set-up: N single-piece torrents (``--size`` bytes each, data on tmpfs, so every one seeds) whose
tracker is one local ``bitswarm tracker`` (UDP, loopback), so announces happen. DHT off, or with
``--dht on|both`` on: each client runs its DHT node without a bootstrap node (loopback only, it joins
nothing), so the per-torrent DHT announce timers run but find no one.

For bitswarm, per N and DHT setting:

* **add**: a fresh ``bitswarm daemon``; every .torrent is POSTed to ``/api/v1/torrents`` (8 at a
  time); the time from the process start until all N are ``seeding`` (this pass writes the resume data).
* **resume**: the daemon is stopped (SIGTERM) and started again on the same data directory: the time
  from the process start until ``GET /api/v1/torrents`` shows all N seeding ("start with resume data").
  Then peak RSS (``VmHWM``), idle CPU (``/proc/PID/stat`` utime+stime over ``--idle`` seconds, as %
  of one core), steady RSS (``VmRSS``), and the p50/p99 latency of ``GET /api/v1/torrents``, of the
  Transmission RPC ``torrent-get`` with the fields ``transmission-remote -l`` asks for and of
  qBittorrent's ``/api/v2/torrents/info``: from the request until the whole body is in (the client's
  JSON decoding of the 3-12 MB at 10,000 is timed apart: ``decode_p50_ms``).

For libtorrent (``bench/many_torrents_lt.py``, uTP/LSD/UPnP/NAT-PMP off): an ``add`` pass (checks the
data, writes resume data), then a ``load`` process with the resume data: time to all seeding, peak and
steady RSS, idle CPU over the same window.

Stop (both clients): SIGTERM until the process is gone. bitswarm: the daemon's close (``stopped``
announces, resume data and records of what changed); libtorrent: resume data of what changed, then
the session's destructor (``stopped`` announces within its ``stop_tracker_timeout``).

    .venv/bin/python bench/bench_many_torrents.py --quick          # N=200, idle 10 s, DHT off
    .venv/bin/python bench/bench_many_torrents.py                  # N=1000, DHT off (~4 min)
    .venv/bin/python bench/bench_many_torrents.py --counts 1000,10000 --dht both --json  # ~30 min

Targets (issue 24): idle CPU ≤ 2 % of a core at 10,000 torrents, RSS ≤ 1.5× libtorrent's, list p99
< 100 ms, start with resume data < 10 s.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from bitswarm.bencode import encode  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")
BITSWARM = [PY, "-m", "bitswarm"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: the fields ``transmission-remote -l`` asks for (Transmission 3.00)
TR_LIST_FIELDS = [
    "error", "errorString", "eta", "id", "isFinished", "leftUntilDone", "name", "peersGettingFromUs",
    "peersSendingToUs", "rateDownload", "rateUpload", "sizeWhenDone", "status", "uploadRatio",
]  # fmt: skip


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_torrents(root: Path, n: int, size: int, tracker: str) -> list[Path]:
    """``n`` single-file torrents of ``size`` random bytes each (one piece)."""
    data, tdir = root / "data", root / "torrents"
    data.mkdir(parents=True, exist_ok=True)
    tdir.mkdir(parents=True, exist_ok=True)
    plen = 16384
    while plen < size:
        plen *= 2
    out = []
    for i in range(n):
        name = f"f{i:05d}.bin"
        blob = os.urandom(size)
        (data / name).write_bytes(blob)
        info = {
            b"length": size,
            b"name": name.encode(),
            b"piece length": plen,
            b"pieces": hashlib.sha1(blob).digest(),
        }
        meta = {b"announce": tracker.encode(), b"info": info}
        path = tdir / f"t{i:05d}.torrent"
        path.write_bytes(encode(meta))
        out.append(path)
    return out


# -- /proc -----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


def idle_cpu(pid: int, seconds: float) -> float:
    """% of one core the process used over ``seconds``."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def stop(proc: subprocess.Popen[Any], timeout: float = 120.0) -> float:
    """SIGTERM and wait; seconds it took to exit."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return time.monotonic() - t0


# -- bitswarm --------------------------------------------------------------------------------------


class BwDaemon:
    def __init__(self, root: Path, data_dir: Path, dht: bool, bootstrap: str | None) -> None:
        self.root, self.data_dir, self.dht, self.bootstrap = root, data_dir, dht, bootstrap
        self.api_port = free_port()
        self.token = "bench-token"
        self.proc: subprocess.Popen[bytes] | None = None
        self.t0 = 0.0
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.client = httpx.Client(
            base_url=self.base, timeout=120, headers={"Authorization": f"Bearer {self.token}"}
        )
        self._tr_session = ""
        self._qbt_login = False

    def start(self) -> None:
        cmd = [*BITSWARM, "-q", "daemon", "--data", str(self.data_dir), "--api", f"127.0.0.1:{self.api_port}",
               "--token", self.token, "--host", "127.0.0.1", "--port", "0", "--no-port-mapping",
               "--transports", "tcp", "--download-dir", str(self.root / "data")]  # fmt: skip
        if not self.dht:
            cmd.append("--no-dht")
        elif self.bootstrap:
            cmd += ["--bootstrap", self.bootstrap]
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.get("/api/v1/stats", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("daemon API did not come up")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def list(self) -> list[dict[str, Any]]:
        r = self.client.get("/api/v1/torrents")
        r.raise_for_status()
        return list(r.json()["torrents"])

    def wait_seeding(self, n: int, timeout: float = 900) -> float:
        """Seconds from the process start until all ``n`` torrents seed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ts = self.list()
            if len(ts) >= n and all(t["state"] == "seeding" for t in ts):
                return time.monotonic() - self.t0
            time.sleep(0.2)
        raise RuntimeError("torrents did not all seed in time")

    def add_all(self, torrents: list[Path], save_path: Path) -> None:
        def add(path: Path) -> None:
            r = self.client.post(
                "/api/v1/torrents",
                content=path.read_bytes(),
                params={"save_path": str(save_path)},
                headers={"Content-Type": "application/x-bittorrent"},
            )
            if r.status_code not in (200, 201):
                raise RuntimeError(f"add {path.name}: {r.status_code} {r.text[:200]}")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(add, torrents))

    def list_reply(self) -> Any:
        r = self.client.get("/api/v1/torrents")
        r.raise_for_status()
        return r

    def torrent_get(self) -> Any:
        body = {"method": "torrent-get", "arguments": {"fields": TR_LIST_FIELDS}}
        auth = "Basic " + base64.b64encode(f"bench:{self.token}".encode()).decode()
        for _ in range(2):
            r = self.client.post(
                "/transmission/rpc",
                json=body,
                headers={"Authorization": auth, "X-Transmission-Session-Id": self._tr_session},
            )
            if r.status_code == 409:
                self._tr_session = r.headers["X-Transmission-Session-Id"]
                continue
            r.raise_for_status()
            return r
        raise RuntimeError("transmission session handshake failed")

    def qbt_info(self) -> Any:
        """qBittorrent's ``/api/v2/torrents/info`` (logged in once: the SID cookie)."""
        if not self._qbt_login:
            r = self.client.post("/api/v2/auth/login", data={"username": "bench", "password": self.token})
            r.raise_for_status()
            self._qbt_login = True
        r = self.client.get("/api/v2/torrents/info")
        r.raise_for_status()
        return r

    def stop(self) -> float:
        assert self.proc is not None
        return stop(self.proc)


def latency(fn: Any, rounds: int, pid: int) -> dict[str, float]:
    """From sending the request until the whole body is in (``fn`` returns the response); the
    client's JSON decoding (``count``: the rows in it) is timed apart (``decode_p50_ms``); the
    daemon's CPU time per request (``/proc/PID/stat``: what a loaded machine does not stretch)."""
    times, decode = [], []
    cpu0 = cpu_seconds(pid)
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = fn()
        t1 = time.perf_counter()
        count(r)
        times.append((t1 - t0) * 1000)
        decode.append((time.perf_counter() - t1) * 1000)
    return {
        "p50_ms": round(pct(times, 0.5), 1),
        "p99_ms": round(pct(times, 0.99), 1),
        "max_ms": round(max(times), 1),
        "decode_p50_ms": round(pct(decode, 0.5), 1),
        "daemon_cpu_ms_per_request": round((cpu_seconds(pid) - cpu0) * 1000 / rounds, 1),
    }


def count(r: Any) -> int:
    """The rows of a list reply (REST, Transmission or qBittorrent), decoded."""
    body = r.json()
    if isinstance(body, list):
        return len(body)
    if "arguments" in body:
        return len(body["arguments"]["torrents"])
    return len(body["torrents"])


def run_bitswarm(
    root: Path, torrents: list[Path], dht: bool, bootstrap: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    n = len(torrents)
    data_dir = root / f"bw-{n}-{'dht' if dht else 'nodht'}"
    shutil.rmtree(data_dir, ignore_errors=True)
    out: dict[str, Any] = {}
    d = BwDaemon(root, data_dir, dht, bootstrap)
    d.start()
    d.add_all(torrents, root / "data")
    out["add_seconds"] = round(d.wait_seeding(n), 2)
    out["add_peak_rss_mib"] = round(mem(d.pid)[1], 1)
    out["add_stop_seconds"] = round(d.stop(), 2)
    # start with resume data
    d = BwDaemon(root, data_dir, dht, bootstrap)
    d.start()
    out["api_up_seconds"] = round(time.monotonic() - d.t0, 2)
    out["start_seconds"] = round(d.wait_seeding(n), 2)
    out["peak_rss_mib"] = round(mem(d.pid)[1], 1)
    time.sleep(args.settle)
    out["idle_cpu_pct"] = round(idle_cpu(d.pid, args.idle), 2)
    out["rss_mib"] = round(mem(d.pid)[0], 1)
    if args.profile:
        prof = Path(args.profile) / f"bw-{n}-{'dht' if dht else 'nodht'}.txt"
        subprocess.run(["py-spy" if shutil.which("py-spy") else str(ROOT / ".venv/bin/py-spy"), "record",
                        "--pid", str(d.pid), "--duration", str(int(args.idle)), "--format", "raw",
                        "--output", str(prof)], check=False, capture_output=True)  # fmt: skip
    out["list"] = latency(d.list_reply, args.rounds, d.pid)
    out["torrent_get"] = latency(d.torrent_get, args.rounds, d.pid)
    out["qbt_info"] = latency(d.qbt_info, args.rounds, d.pid)
    out["peak_rss_mib_after_lists"] = round(mem(d.pid)[1], 1)
    out["stop_seconds"] = round(d.stop(), 2)
    return out


def run_libtorrent(root: Path, dht: bool, n: int, args: argparse.Namespace) -> dict[str, Any]:
    res = root / f"lt-resume-{n}-{'dht' if dht else 'nodht'}"
    shutil.rmtree(res, ignore_errors=True)
    base = [PY, str(HERE / "many_torrents_lt.py"), "--torrents", str(root / "torrents"), "--data",
            str(root / "data"), "--resume", str(res)] + (["--dht"] if dht else [])  # fmt: skip
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    p = subprocess.run([*base, "--mode", "add"], capture_output=True, text=True, timeout=900, check=True)
    out["add_seconds"] = round(json.loads(p.stdout.splitlines()[-1])["seconds"], 2)
    out["add_wall_seconds"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    proc = subprocess.Popen([*base, "--mode", "load"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    out["start_seconds"] = round(time.monotonic() - t0, 2)
    out["start_in_process_seconds"] = round(json.loads(line)["seconds"], 2)
    out["peak_rss_mib"] = round(mem(proc.pid)[1], 1)
    time.sleep(args.settle)
    out["idle_cpu_pct"] = round(idle_cpu(proc.pid, args.idle), 2)
    out["rss_mib"] = round(mem(proc.pid)[0], 1)
    out["stop_seconds"] = round(stop(proc), 2)  # SIGTERM until the process is gone
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1000", help="torrent counts, comma separated (issue 24: 1000,10000)")
    ap.add_argument("--dht", choices=("off", "on", "both"), default="off")
    ap.add_argument("--size", type=int, default=4096, help="bytes per torrent")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of the idle-CPU window")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after start-up before the idle window")
    ap.add_argument("--rounds", type=int, default=50, help="requests per latency measurement")
    ap.add_argument("--clients", default="bw,lt")
    ap.add_argument("--profile", help="directory: py-spy the daemon during its idle window (raw stacks)")
    ap.add_argument("--quick", action="store_true", help="N=200, DHT off, idle 10 s, 20 rounds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.counts, args.dht, args.idle, args.rounds, args.settle = "200", "off", 10.0, 20, 2.0
    counts = [int(c) for c in args.counts.split(",")]
    dhts = {"off": [False], "on": [True], "both": [False, True]}[args.dht]
    clients = args.clients.split(",")
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    root = Path(tempfile.mkdtemp(prefix="bench-many-", dir=shm))
    udp = free_port(socket.SOCK_DGRAM)
    tracker = subprocess.Popen(
        [*BITSWARM, "-q", "tracker", "--udp", f"127.0.0.1:{udp}", "--http", f"127.0.0.1:{free_port()}",
         "--db", "none", "--interval", "1800"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": os.getloadavg(),
        "cpu": _cpu_model(),
        "commit": _commit(),
        "runs": [],
    }
    try:
        for n in counts:
            shutil.rmtree(root / "data", ignore_errors=True)
            shutil.rmtree(root / "torrents", ignore_errors=True)
            torrents = make_torrents(root, n, args.size, f"udp://127.0.0.1:{udp}/announce")
            for dht in dhts:
                run: dict[str, Any] = {"torrents": n, "dht": dht, "load": os.getloadavg()[0]}
                if "bw" in clients:
                    run["bitswarm"] = run_bitswarm(root, torrents, dht, None, args)
                if "lt" in clients:
                    run["libtorrent"] = run_libtorrent(root, dht, n, args)
                if "bw" in clients and "lt" in clients:
                    bw, lt = run["bitswarm"], run["libtorrent"]
                    run["ratios"] = {
                        k: round(bw[k] / lt[k], 2) if lt[k] else None
                        for k in ("start_seconds", "stop_seconds", "peak_rss_mib", "rss_mib", "idle_cpu_pct")
                    }
                results["runs"].append(run)
                if not args.json:
                    _print(run)
    finally:
        stop(tracker)
        shutil.rmtree(root, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _print(run: dict[str, Any]) -> None:
    print(f"\n== {run['torrents']} torrents, DHT {'on' if run['dht'] else 'off'} (load {run['load']:.2f})")
    for name in ("bitswarm", "libtorrent"):
        r = run.get(name)
        if r is None:
            continue
        line = (f"{name:10s} start {r['start_seconds']:6.2f} s  stop {r['stop_seconds']:6.2f} s  "
                f"peak RSS {r['peak_rss_mib']:7.1f} MiB  "
                f"RSS {r['rss_mib']:7.1f} MiB  idle CPU {r['idle_cpu_pct']:5.2f} %")  # fmt: skip
        if "list" in r:
            line += f"  list p99 {r['list']['p99_ms']} ms  torrent-get p99 {r['torrent_get']['p99_ms']} ms"
            line += f"  qBittorrent info p99 {r['qbt_info']['p99_ms']} ms"
        print(line)
    if "ratios" in run:
        print("bitswarm / libtorrent:", run["ratios"])


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return f"{os.cpu_count()} cores"


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
