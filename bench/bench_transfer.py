#!/usr/bin/env python3
"""Peer transfer benchmark (issue 3): one seeder → one leecher over loopback TCP, every client pair.

A file of ``--size`` bytes (default 1 GiB) on tmpfs (``/dev/shm``) is sent from a seeder process to a
leecher process (leecher data on tmpfs too) for each pair of bitswarm (Session API on uvloop),
libtorrent (PyPI, uTP/DHT/LSD/UPnP/NAT-PMP/encryption off) and aria2c (Debian). aria2 can only find
peers through a tracker, so an opentracker (Debian) runs on loopback and the harness announces every
seeder to it. Seeders start in seed mode (pieces are hashed lazily before their first upload:
libtorrent ``seed_mode``, aria2 ``--bt-seed-unverified``, bitswarm ``seed_mode=True``).

Timing: from the leecher's connect (bitswarm: ``Session.add`` with the peer, libtorrent:
``connect_peer``; aria2: process start, which includes its tracker announce) to verified-complete
as the leecher reports it. Pairs run interleaved, ``--repeat`` rounds, best of N per pair; the
ratio is against libtorrent→libtorrent of the same run. Peak RSS of each process is its
``VmHWM`` from ``/proc/<pid>/status``, sampled until it exits. After each pair the leecher's file
is hashed and compared with the source.

    .venv/bin/python bench/bench_transfer.py                 # 1 GiB, all pairs, best of 3
    .venv/bin/python bench/bench_transfer.py --pairs bw-bw,lt-lt --repeat 5 --json
    .venv/bin/python bench/bench_transfer.py --pairs bw-bw,lt-lt --encryption both --repeat 5

Encryption (issue 18): ``--encryption on`` runs the pairs with MSE/PE forced (bitswarm
``encryption = require``; libtorrent ``pe_forced`` both ways, ``pe_rc4`` only), ``both`` runs every
pair plaintext and encrypted, interleaved (names ``bw-bw+enc``). An encrypted pair's ratio is
against ``lt-lt+enc`` of the same run, and the table adds its time over the same pair in plaintext.
Plaintext pairs run bitswarm with ``encryption = off`` and libtorrent with encryption disabled.
aria2 pairs run plaintext only.

Whole processes (issue 24, ``--mode cli``): ``bitswarm seed`` / ``bitswarm download`` processes
against whole libtorrent processes (``lt_transfer_peer.py``; uTP, DHT and encryption off), both
without a DHT node, for each of ``--sizes`` (default 1 GiB and 1 MiB, on tmpfs). The seeder is
started and seeding first (not timed); the leecher process is timed from its spawn to its exit, its
CPU is user+system from ``wait4``, its peak RSS ``VmHWM``. bitswarm runs like-for-like
(``--transports tcp --encryption off --no-dht``) and, in the ``bw-bw+default`` pair, with its default
transports (uTP first) and encryption (prefer) on both sides. Sizes and pairs are interleaved,
``--repeat`` rounds; the ratios are medians over libtorrent→libtorrent's medians of the same run.
Children may write bytecode (a stale ``.pyc`` would be recompiled, and timed, at every start).

    .venv/bin/python bench/bench_transfer.py --mode cli --repeat 3 --json
    .venv/bin/python bench/bench_transfer.py --mode cli --sizes 1048576 --pairs bw-bw,lt-lt
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

CLIENTS = {"bw": "bitswarm", "lt": "libtorrent", "aria": "aria2"}
ALL_PAIRS = ["bw-bw", "lt-lt", "aria-aria", "bw-lt", "lt-bw", "bw-aria", "aria-bw"]
LT_SETTINGS: dict[str, Any] = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "out_enc_policy": 2,  # pe_settings: disabled
    "in_enc_policy": 2,
    "allow_multiple_connections_per_ip": True,
    "user_agent": "libtorrent-bench",
}
#: libtorrent with MSE/PE forced both ways and RC4 only (pe_forced = 0, pe_rc4 = 2)
LT_ENCRYPTED: dict[str, Any] = {
    "out_enc_policy": 0,
    "in_enc_policy": 0,
    "allowed_enc_level": 2,
    "prefer_rc4": True,
}
ENC = "+enc"
DEFAULT_WORKDIR = "/dev/shm/bitswarm-bench-transfer"


# ----------------------------------------------------------------------------------------------
# child roles (each peer runs in its own process)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _wait_stdin_closed() -> None:
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass


def role_bw(args: argparse.Namespace) -> None:
    import asyncio

    from bitswarm.metainfo import load_torrent
    from bitswarm.mse import EncryptionPolicy
    from bitswarm.session import Session, SessionConfig

    torrent = load_torrent(args.torrent)

    async def main() -> None:
        cfg = SessionConfig(
            listen_host="127.0.0.1",
            listen_port=0,
            min_announce_interval=1.0,
            encryption=EncryptionPolicy.REQUIRE if args.encrypt else EncryptionPolicy.OFF,
            transports=("tcp",),  # loopback TCP, like the libtorrent pair (uTP: bench_utp.py)
        )
        async with Session(cfg) as s:
            if args.role == "bw-seed":
                # a fresh resume dir: seed mode then hashes each piece before its first upload,
                # as libtorrent's seed_mode does (saved resume data would skip the hashing)
                resume = tempfile.mkdtemp(prefix="bw-seed-resume-", dir=args.dir)
                try:
                    await s.add(
                        torrent, args.dir, seed_mode=True, use_torrent_trackers=False, resume_dir=resume
                    )
                    _emit({"ready": True, "port": s.port})
                    await asyncio.get_running_loop().run_in_executor(None, _wait_stdin_closed)
                finally:
                    await s.close()
                    shutil.rmtree(resume, ignore_errors=True)
                return
            t0 = time.perf_counter()
            h = await s.add(
                torrent, args.dir, peers=[("127.0.0.1", args.peer_port)], use_torrent_trackers=False
            )
            await h.wait_complete(timeout=args.timeout)
            dt = time.perf_counter() - t0
            _emit({"done": True, "seconds": dt})

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())


def role_lt(args: argparse.Namespace) -> None:
    import libtorrent as lt

    settings = dict(LT_SETTINGS)
    if args.encrypt:
        settings.update(LT_ENCRYPTED)
    settings["alert_mask"] = lt.alert.category_t.status_notification | lt.alert.category_t.error_notification
    ses = lt.session(settings)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.dir
    # not auto-managed: a paused torrent (the default) drops incoming connections until the
    # queueing logic resumes it a second later
    params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
    seed = args.role == "lt-seed"
    if seed:
        params.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(params)
    if seed:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = h.status()
            if st.is_seeding and st.state == lt.torrent_status.seeding and not st.paused:
                break
            time.sleep(0.005)
        _emit({"ready": True, "port": ses.listen_port()})
        _wait_stdin_closed()
        return
    deadline = time.monotonic() + 30
    while (st := h.status()).paused or st.state not in (lt.torrent_status.downloading,):
        if time.monotonic() > deadline:
            raise SystemExit("libtorrent leecher never left the checking state")
        time.sleep(0.005)
    t0 = time.perf_counter()
    h.connect_peer(("127.0.0.1", args.peer_port))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        ses.wait_for_alert(50)
        done = False
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_finished_alert):
                done = True
        if done or h.status().is_seeding:
            _emit({"done": True, "seconds": time.perf_counter() - t0})
            return
    raise SystemExit("libtorrent leecher timed out")


# ----------------------------------------------------------------------------------------------
# orchestration


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    maxrss_kb: int = 0
    cpu_seconds: float = 0.0  #: user + system time, sampled with the RSS
    rc: int | None = None
    started_at: float = field(default_factory=time.perf_counter)
    exited_at: float = 0.0
    _buf: bytes = b""

    def read_json(self, timeout: float) -> dict[str, Any]:
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            nl = self._buf.find(b"\n")
            while nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                with contextlib.suppress(ValueError):
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        return obj
                nl = self._buf.find(b"\n")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no answer in {timeout:.0f} s")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited: {self.reap(5)} {self._stderr()}")
                self._buf += chunk

    def _stderr(self) -> str:
        if self.popen.stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            os.set_blocking(self.popen.stderr.fileno(), False)
            return (self.popen.stderr.read() or b"").decode(errors="replace")[-2000:]
        return ""

    def reap(self, timeout: float) -> int:
        """Wait for the process (``wait4``: its exit code and peak RSS), killing it after timeout."""
        if self.rc is not None:
            return self.rc
        deadline = time.monotonic() + timeout
        while True:
            self.sample_rss()
            pid, status, ru = os.wait4(self.popen.pid, os.WNOHANG)
            if pid:
                # ru_maxrss is useless here: Linux carries the forking parent's high-water mark
                # over exec, so the peak comes from /proc/<pid>/status VmHWM, sampled until exit.
                # The CPU time is the kernel's own total (user + system) of the whole process.
                self.exited_at = time.perf_counter()
                self.cpu_seconds = max(self.cpu_seconds, ru.ru_utime + ru.ru_stime)
                self.rc = os.waitstatus_to_exitcode(status)
                self.popen.returncode = self.rc
                return self.rc
            if time.monotonic() > deadline:
                self.popen.kill()
                deadline = time.monotonic() + 5
            time.sleep(0.002)

    def sample_rss(self) -> None:
        """Read the process's peak RSS (VmHWM, KiB) while it is alive (monotone, so the last wins)."""
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{self.popen.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    self.maxrss_kb = max(self.maxrss_kb, int(line.split()[1]))
                    break
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{self.popen.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime
            self.cpu_seconds = max(self.cpu_seconds, ticks / os.sysconf("SC_CLK_TCK"))

    def stop(self, timeout: float = 10.0) -> int:
        if self.rc is None:
            if self.popen.stdin is not None:
                with contextlib.suppress(OSError):
                    self.popen.stdin.close()
            if self.popen.args and str(self.popen.args[0]).endswith("aria2c"):
                with contextlib.suppress(ProcessLookupError):
                    self.popen.terminate()
        return self.reap(timeout)


def spawn_py(
    role: str, torrent: Path, directory: Path, peer_port: int = 0, timeout: float = 120, encrypt: bool = False
) -> Proc:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--role", role, "--torrent", str(torrent)]
    cmd += ["--dir", str(directory), "--peer-port", str(peer_port), "--timeout", str(timeout)]
    cmd += ["--encrypt"] if encrypt else []
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    return Proc(role, p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tcp(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def spawn_aria(torrent: Path, directory: Path, *, seed: bool) -> tuple[Proc, int]:
    port = free_port()
    cmd = [
        shutil.which("aria2c") or "aria2c",
        f"--dir={directory}",
        f"--listen-port={port}",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--bt-external-ip=127.0.0.1",
        "--bt-tracker-interval=1",
        "--bt-tracker-connect-timeout=5",
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--disable-ipv6=true",
        "--follow-torrent=false",
    ]
    if seed:
        cmd += ["--seed-ratio=0.0", "--seed-time=600", "--bt-seed-unverified=true", "--check-integrity=false"]
    else:
        cmd += ["--seed-time=0", "--check-integrity=false"]
    cmd.append(str(torrent))
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return Proc("aria2c-" + ("seed" if seed else "leech"), p), port


class Tracker:
    """opentracker on loopback, whitelisting one info-hash (Debian's build: ``-u nobody -d DIR``)."""

    def __init__(self, info_hash: bytes) -> None:
        exe = shutil.which("opentracker")
        if exe is None:
            raise SystemExit("opentracker is not installed (apt-get install opentracker)")
        self.info_hash = info_hash
        self.dir = tempfile.mkdtemp(prefix="bench-opentracker-")
        os.chmod(self.dir, 0o755)
        Path(self.dir, "whitelist").write_text(info_hash.hex() + "\n")
        os.chmod(Path(self.dir, "whitelist"), 0o644)
        self.port = free_port()
        cmd = [exe, "-i", "127.0.0.1", "-p", str(self.port), "-P", str(self.port), "-w", "whitelist"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody", "-d", self.dir]
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_tcp(self.port, 5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/announce"

    def announce(self, port: int, event: str = "started", left: int = 0) -> None:
        """Announce a peer (a seeder that does not announce itself) at 127.0.0.1:``port``."""
        q = urllib.parse.urlencode(
            {
                "info_hash": self.info_hash,
                "peer_id": os.urandom(20),
                "port": port,
                "uploaded": 0,
                "downloaded": 0,
                "left": left,
                "event": event,
                "compact": 1,
            }
        )
        with urllib.request.urlopen(f"{self.url}?{q}", timeout=5) as r:
            r.read()

    def close(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Result:
    pair: str
    seconds: list[float] = field(default_factory=list)
    seed_rss_kb: int = 0
    leech_rss_kb: int = 0
    seed_cpu: list[float] = field(default_factory=list)
    leech_cpu: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def make_data(work: Path, size: int, piece_length: int | None) -> tuple[Path, Path, Path, bytes, int]:
    """The source file (cached across runs), its .torrent (and one with the tracker added later)."""
    from bitswarm.metainfo import parse_torrent
    from bitswarm.metainfo._create import auto_piece_length, create_torrent

    plen = piece_length or auto_piece_length(size)
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    src = data_dir / f"payload-{size}.bin"
    if not src.exists() or src.stat().st_size != size:
        tmp = src.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            left = size
            while left:
                n = min(left, 64 << 20)
                f.write(os.urandom(n))
                left -= n
        tmp.rename(src)
    tfile = work / f"payload-{size}-{plen}.torrent"
    if not tfile.exists():
        tfile.write_bytes(create_torrent(src, version="v1", piece_length=plen, creation_date=None))
    t = parse_torrent(tfile.read_bytes())
    return data_dir, src, tfile, t.swarm_hash, plen


def file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def run_pair(
    pair: str,
    *,
    work: Path,
    data_dir: Path,
    src: Path,
    tfile: Path,
    ttrack: Path,
    tracker: Tracker | None,
    digest: str,
    timeout: float,
) -> tuple[float, Proc, Proc]:
    """One transfer. Returns (seconds, seeder, leecher): their peak RSS and CPU time are sampled."""
    encrypt = pair.endswith(ENC)
    seeder, leecher = pair.removesuffix(ENC).split("-")
    leech_dir = work / f"leech-{pair}"
    shutil.rmtree(leech_dir, ignore_errors=True)
    leech_dir.mkdir(parents=True)
    procs: list[Proc] = []
    try:
        # seeder
        if seeder == "aria":
            sp, port = spawn_aria(ttrack, data_dir, seed=True)
            procs.append(sp)
            wait_tcp(port, 15)
        else:
            sp = spawn_py(f"{seeder}-seed", tfile, data_dir, timeout=timeout, encrypt=encrypt)
            procs.append(sp)
            port = int(sp.read_json(30)["port"])
        if leecher == "aria":
            assert tracker is not None
            tracker.announce(port)
            t0 = time.perf_counter()
            lp, _ = spawn_aria(ttrack, leech_dir, seed=False)
            procs.append(lp)
            rc = lp.reap(timeout)
            seconds = time.perf_counter() - t0
            if rc != 0:
                out = lp.popen.stdout.read().decode(errors="replace") if lp.popen.stdout else ""
                raise RuntimeError(f"aria2c leecher exited {rc}: {out[-1500:]}")
        else:
            lp = spawn_py(
                f"{leecher}-leech", tfile, leech_dir, peer_port=port, timeout=timeout, encrypt=encrypt
            )
            procs.append(lp)
            seconds = float(lp.read_json(timeout + 30)["seconds"])
            lp.sample_rss()
            lp.stop(30)
        sp.sample_rss()
        sp.stop(30)
        got = leech_dir / src.name
        if not got.exists() or got.stat().st_size != src.stat().st_size or file_digest(got) != digest:
            raise RuntimeError(f"{pair}: leecher's file differs from the source")
        return seconds, sp, lp
    finally:
        for p in procs:
            if p.rc is None:
                with contextlib.suppress(Exception):
                    p.popen.kill()
                    p.reap(5)
        if tracker is not None:  # forget this run's seeder so the next aria2 leecher sees one peer
            with contextlib.suppress(Exception):
                tracker.announce(port, event="stopped")
        shutil.rmtree(leech_dir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# --mode cli (issue 24): whole processes, as a user runs them

#: CLI-mode pairs: ``+default`` runs bitswarm with its default transports (uTP first, then TCP) and
#: encryption (prefer); the others run it like-for-like with libtorrent (TCP, plaintext).
CLI_PAIRS = ["bw-bw", "bw-bw+default", "lt-lt", "lt-bw", "bw-lt"]
DEFAULT = "+default"
LT_PEER = HERE / "lt_transfer_peer.py"
#: what the like-for-like bitswarm runs with besides --no-dht (libtorrent: uTP and encryption off)
BW_LIKE_FOR_LIKE = ["--transports", "tcp", "--encryption", "off"]


def _bw_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "bitswarm"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bitswarm"]


def _cli_env(state: Path) -> dict[str, str]:
    """A fresh ``XDG_STATE_HOME`` (no resume data from an earlier round); bytecode may be written
    (a stale ``.pyc`` recompiled on every start would be timed as start-up)."""
    env = dict(os.environ, XDG_STATE_HOME=str(state), PYTHONPATH=str(ROOT / "src"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def spawn_cli_seeder(
    client: str, tfile: Path, data_dir: Path, state: Path, default: bool
) -> tuple[Proc, int]:
    if client == "lt":
        cmd = [sys.executable, str(LT_PEER), str(tfile), "--save", str(data_dir), "--seed"]
    else:
        cmd = [*_bw_cmd(), "seed", str(tfile), "--data", str(data_dir), "--port", "0", "--host", "127.0.0.1"]
        cmd += ["--no-dht", "--json", *([] if default else BW_LIKE_FOR_LIKE)]
    p = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_cli_env(state)
    )
    proc = Proc(f"{client}-seed", p)
    deadline = time.monotonic() + 120  # bitswarm seed checks the data first (not timed)
    while True:
        msg = proc.read_json(max(1.0, deadline - time.monotonic()))
        if msg.get("event") == "seeding":
            return proc, int(msg["port"])
        if msg.get("event") == "torrent_error":
            raise RuntimeError(f"{proc.name}: {msg}")


def spawn_cli_leecher(
    client: str, tfile: Path, leech_dir: Path, state: Path, port: int, default: bool
) -> Proc:
    peer = f"127.0.0.1:{port}"
    if client == "lt":
        cmd = [sys.executable, str(LT_PEER), str(tfile), "--save", str(leech_dir), "--peer", peer]
    else:
        cmd = [*_bw_cmd(), "download", str(tfile), "-o", str(leech_dir), "--peer", peer, "--port", "0"]
        cmd += ["--no-dht", "-q", *([] if default else [*BW_LIKE_FOR_LIKE, "--host", "127.0.0.1"])]
    p = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_cli_env(state)
    )
    return Proc(f"{client}-leech", p)


@dataclass
class CliRun:
    wall: float
    cpu: float
    rss_kb: int


def run_cli_pair(
    pair: str, *, work: Path, data_dir: Path, src: Path, tfile: Path, digest: str, timeout: float
) -> CliRun:
    """One whole-process transfer: a seeder process is started and seeding (not timed), then the
    leecher process is timed from its spawn to its exit; its CPU is user+sys from ``wait4``."""
    default = pair.endswith(DEFAULT)
    seeder, leecher = pair.removesuffix(DEFAULT).split("-")
    leech_dir = work / f"leech-{pair}"
    state = work / f"state-{pair}"
    for d in (leech_dir, state):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    procs: list[Proc] = []
    try:
        sp, port = spawn_cli_seeder(seeder, tfile, data_dir, state / "seed", default)
        procs.append(sp)
        t0 = time.perf_counter()
        lp = spawn_cli_leecher(leecher, tfile, leech_dir, state / "leech", port, default)
        lp.started_at = t0
        procs.append(lp)
        rc = lp.reap(timeout)
        wall = lp.exited_at - t0
        if rc != 0:
            raise RuntimeError(f"{pair}: leecher exited {rc}: {lp._stderr()[-800:]}")
        sp.popen.terminate()  # bitswarm seed runs until SIGTERM
        sp.stop(30)
        got = leech_dir / src.name
        if not got.exists() or got.stat().st_size != src.stat().st_size or file_digest(got) != digest:
            raise RuntimeError(f"{pair}: leecher's file differs from the source")
        return CliRun(wall, lp.cpu_seconds, lp.maxrss_kb)
    finally:
        for p in procs:
            if p.rc is None:
                with contextlib.suppress(Exception):
                    p.popen.kill()
                    p.reap(5)
        shutil.rmtree(leech_dir, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    return ys[n // 2] if n % 2 else (ys[n // 2 - 1] + ys[n // 2]) / 2


def main_cli(args: argparse.Namespace) -> None:
    pairs = [p.strip() for p in (args.pairs or ",".join(CLI_PAIRS)).split(",") if p.strip()]
    for p in pairs:
        if p not in CLI_PAIRS:
            raise SystemExit(f"unknown --mode cli pair {p!r} (choose from {','.join(CLI_PAIRS)})")
    sizes = [int(x) for x in args.sizes.split(",")]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    load_before = os.getloadavg()
    datas = {}
    for size in sizes:
        data_dir, src, tfile, _swarm, plen = make_data(work / f"s{size}", size, args.piece_length or None)
        datas[size] = (data_dir, src, tfile, file_digest(src), plen)
    runs: dict[tuple[int, str], list[CliRun]] = {(z, p): [] for z in sizes for p in pairs}
    errors: dict[tuple[int, str], list[str]] = {(z, p): [] for z in sizes for p in pairs}
    try:
        for rnd in range(args.repeat):  # interleaved: every size and pair once per round
            for size in sizes:
                data_dir, src, tfile, digest, _plen = datas[size]
                for p in pairs:
                    try:
                        r = run_cli_pair(
                            p, work=work / f"s{size}", data_dir=data_dir, src=src, tfile=tfile,
                            digest=digest, timeout=args.timeout,
                        )  # fmt: skip
                    except Exception as exc:  # report and go on with the other pairs
                        errors[(size, p)].append(f"{type(exc).__name__}: {exc}")
                        if not args.json:
                            print(f"round {rnd + 1} {size} {p}: FAILED {exc}", file=sys.stderr)
                        continue
                    runs[(size, p)].append(r)
                    if not args.json:
                        print(
                            f"round {rnd + 1} {_size_name(size):>6s} {p:14s} wall {r.wall:7.3f} s  "
                            f"cpu {r.cpu:6.2f} s  rss {r.rss_kb / 1024:5.0f} MiB  "
                            f"load {os.getloadavg()[0]:.1f}",
                            file=sys.stderr,
                        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    rows = []
    for size in sizes:
        base = runs.get((size, "lt-lt")) or []
        for p in pairs:
            rs = runs[(size, p)]
            row: dict[str, Any] = {
                "size": size,
                "pair": p,
                "seeder": CLIENTS[p.removesuffix(DEFAULT).split("-")[0]],
                "leecher": CLIENTS[p.removesuffix(DEFAULT).split("-")[1]],
                "bitswarm_settings": "default" if p.endswith(DEFAULT) else "tcp, encryption off",
                "wall_seconds": [round(r.wall, 4) for r in rs],
                "cpu_seconds": [round(r.cpu, 3) for r in rs],
                "peak_rss_mib": [round(r.rss_kb / 1024, 1) for r in rs],
                "errors": errors[(size, p)],
            }
            for key, get in (
                ("wall", lambda r: r.wall),
                ("cpu", lambda r: r.cpu),
                ("rss", lambda r: r.rss_kb),
            ):
                if rs:
                    row[f"{key}_median"] = _median([float(get(r)) for r in rs])
                    row[f"{key}_best"] = min(float(get(r)) for r in rs)
                if rs and base:
                    row[f"{key}_ratio_vs_lt_lt"] = row[f"{key}_median"] / _median(
                        [float(get(r)) for r in base]
                    )
            rows.append(row)
    summary = {
        "mode": "cli",
        "sizes": sizes,
        "repeat": args.repeat,
        "wall_seconds": round(time.monotonic() - t_start, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"whole processes, leecher timed from spawn to exit, medians of {args.repeat} interleaved rounds, "
        f"load {load_before[0]:.1f} -> {summary['loadavg_after'][0]:.1f}, {summary['wall_seconds']} s"
    )
    print(
        f"{'size':>6s} {'seeder → leecher':34s} {'wall s':>7s} {'cpu s':>6s} {'RSS MiB':>8s}  "
        "median ratios vs lt→lt"
    )
    for row in rows:
        name = f"{row['seeder']} → {row['leecher']}" + (
            " (bitswarm defaults)" if row["pair"].endswith(DEFAULT) else ""
        )
        if "wall_median" not in row:
            print(f"{_size_name(row['size']):>6s} {name:34s} FAILED: {'; '.join(row['errors'])[:200]}")
            continue
        ratios = "  ".join(
            f"{k} {row[f'{k}_ratio_vs_lt_lt']:.2f}"
            for k in ("wall", "cpu", "rss")
            if f"{k}_ratio_vs_lt_lt" in row
        )
        print(
            f"{_size_name(row['size']):>6s} {name:34s} {row['wall_median']:7.3f} {row['cpu_median']:6.2f} "
            f"{row['rss_median'] / 1024:8.0f}  {ratios}"
        )


def _size_name(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return str(size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1 << 30, help="bytes to transfer (default 1 GiB)")
    ap.add_argument("--piece-length", type=int, default=0, help="default: bitswarm create's choice")
    ap.add_argument(
        "--mode",
        choices=["session", "cli"],
        default="session",
        help="session: Session API in-process, timed connect to complete; cli: whole `bitswarm "
        "seed`/`download` and libtorrent processes, leecher timed spawn to exit (issue 24)",
    )
    ap.add_argument(
        "--sizes",
        default=f"{1 << 30},{1 << 20}",
        help="--mode cli: comma-separated sizes in bytes (default 1 GiB and 1 MiB)",
    )
    ap.add_argument(
        "--pairs",
        default=None,
        help="seeder-leecher pairs: " + ",".join(ALL_PAIRS) + "; --mode cli: " + ",".join(CLI_PAIRS),
    )
    ap.add_argument("--repeat", type=int, default=3, help="rounds (best of N per pair)")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--workdir", default=DEFAULT_WORKDIR)
    ap.add_argument("--keep", action="store_true", help="keep the source file for the next run")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--encryption",
        choices=["off", "on", "both"],
        default="off",
        help="MSE/PE forced on the bitswarm/libtorrent pairs: off, on, or both (each pair twice)",
    )
    # child roles
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--torrent", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--peer-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--encrypt", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        (role_bw if args.role.startswith("bw-") else role_lt)(args)
        return

    if args.mode == "cli":
        if args.workdir == DEFAULT_WORKDIR:
            args.workdir += "-cli"
        main_cli(args)
        return
    pairs = [p.strip() for p in (args.pairs or ",".join(ALL_PAIRS)).split(",") if p.strip()]
    for p in pairs:
        if p not in ALL_PAIRS:
            ap.error(f"unknown pair {p!r}")
    if args.encryption != "off":
        enc = [p + ENC for p in pairs if "aria" not in p]
        pairs = (
            enc if args.encryption == "on" else [q for p in pairs for q in (p, p + ENC) if q in enc or q == p]
        )
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    data_dir, src, tfile, swarm_hash, plen = make_data(work, args.size, args.piece_length or None)
    digest = file_digest(src)
    tracker: Tracker | None = None
    ttrack = tfile
    if any("aria" in p for p in pairs):
        from bitswarm.metainfo._create import create_torrent

        tracker = Tracker(swarm_hash)
        ttrack = work / "payload-tracker.torrent"
        ttrack.write_bytes(
            create_torrent(src, version="v1", piece_length=plen, creation_date=None, trackers=[[tracker.url]])
        )
    results = {p: Result(p) for p in pairs}
    try:
        for rnd in range(args.repeat):
            for p in pairs:
                r = results[p]
                try:
                    sec, sp, lp = run_pair(
                        p,
                        work=work,
                        data_dir=data_dir,
                        src=src,
                        tfile=tfile,
                        ttrack=ttrack,
                        tracker=tracker,
                        digest=digest,
                        timeout=args.timeout,
                    )
                except Exception as exc:  # report and go on with the other pairs
                    r.errors.append(f"{type(exc).__name__}: {exc}")
                    if not args.json:
                        print(f"round {rnd + 1} {p}: FAILED {exc}", file=sys.stderr)
                    continue
                r.seconds.append(sec)
                r.seed_rss_kb = max(r.seed_rss_kb, sp.maxrss_kb)
                r.leech_rss_kb = max(r.leech_rss_kb, lp.maxrss_kb)
                r.seed_cpu.append(sp.cpu_seconds)
                r.leech_cpu.append(lp.cpu_seconds)
                if not args.json:
                    print(
                        f"round {rnd + 1} {p:10s} {sec:7.3f} s  {args.size / sec / 1e6:8.1f} MB/s  "
                        f"cpu seed {sp.cpu_seconds:.2f} s leech {lp.cpu_seconds:.2f} s",
                        file=sys.stderr,
                    )
    finally:
        if tracker is not None:
            tracker.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def best_of(pair: str) -> float | None:
        return min(results[pair].seconds) if pair in results and results[pair].seconds else None

    rows = []
    for p in pairs:
        r = results[p]
        best = best_of(p)
        base = best_of("lt-lt" + ENC) if p.endswith(ENC) else best_of("lt-lt")
        plain = best_of(p.removesuffix(ENC)) if p.endswith(ENC) else None
        s, le = p.removesuffix(ENC).split("-")
        rows.append(
            {
                "pair": p,
                "encrypted": p.endswith(ENC),
                "seeder": CLIENTS[s],
                "leecher": CLIENTS[le],
                "seconds": best,
                "all_seconds": [round(x, 4) for x in r.seconds],
                "mb_per_s": (args.size / best / 1e6) if best else None,
                "ratio_vs_lt_lt": (best / base) if best and base else None,
                "ratio_vs_own_plaintext": (best / plain) if best and plain else None,
                "seeder_peak_rss_mib": round(r.seed_rss_kb / 1024, 1),
                "leecher_peak_rss_mib": round(r.leech_rss_kb / 1024, 1),
                "seeder_cpu_seconds": [round(x, 2) for x in r.seed_cpu],
                "leecher_cpu_seconds": [round(x, 2) for x in r.leech_cpu],
                "errors": r.errors,
            }
        )
    summary = {
        "size": args.size,
        "piece_length": plen,
        "repeat": args.repeat,
        "wall_seconds": round(time.monotonic() - t_start, 1),
        "loadavg": os.getloadavg(),
        "pairs": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"{args.size / 2**20:.0f} MiB, piece {plen // 1024} KiB, best of {args.repeat}, "
        f"load {summary['loadavg'][0]:.1f}, {summary['wall_seconds']} s"
    )
    print(
        f"{'seeder → leecher':32s} {'seconds':>8s} {'MB/s':>8s} {'vs lt':>6s} {'vs plain':>8s} "
        f"{'seed RSS':>9s} {'leech RSS':>9s}"
    )
    for row in rows:
        name = f"{row['seeder']} → {row['leecher']}" + (" (RC4)" if row["encrypted"] else "")
        if row["seconds"] is None:
            print(f"{name:32s} FAILED: {'; '.join(row['errors'])[:200]}")
            continue
        ratio = f"{row['ratio_vs_lt_lt']:.2f}" if row["ratio_vs_lt_lt"] else "-"
        vs_plain = f"{row['ratio_vs_own_plaintext']:.2f}" if row["ratio_vs_own_plaintext"] else "-"
        print(
            f"{name:32s} {row['seconds']:8.3f} {row['mb_per_s']:8.1f} {ratio:>6s} {vs_plain:>8s} "
            f"{row['seeder_peak_rss_mib']:7.0f} M {row['leecher_peak_rss_mib']:7.0f} M"
        )


if __name__ == "__main__":
    main()
