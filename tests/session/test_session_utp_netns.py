"""uTP between two network namespaces: a lossy link, and LEDBAT yielding to TCP on a shaped one.

Two hosts on the test LAN of ``netns_testlib`` run the real CLI with ``--transports utp``:

* lossy: ``iptables -m statistic --mode random --probability 0.02 -j DROP`` on every UDP datagram
  each host sends (2 % each way): a 64 MiB download completes with the seeder's bytes.
* LEDBAT: the link to the leecher is a 20 Mbit/s ``tbf`` (on the bridge); while the uTP download
  runs, a bulk TCP flow starts on the same link and must get at least 75 % of it within 5 s
  (measured by the TCP receiver; uTP's delay-based control backs off once TCP fills the queue).
  With uTP holding the queue at a 1 s target instead of 100 ms, TCP gets about half the link and
  this fails.

Root only (CI runs as root); elsewhere they skip and say why.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns_testlib import Host, JsonProc, Lan, leftover_namespaces, netns_unavailable_reason, run

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(240)]

BITSWARM = str(Path(sys.executable).with_name("bitswarm"))
PEER_PORT = 6881
TCP_PORT = 5001
LINK = 20e6  # bit/s of the shaped uplink


@pytest.fixture
def lan() -> Iterator[Lan]:
    reason = netns_unavailable_reason()
    if reason is None and shutil.which("iptables") is None:
        reason = "iptables is not installed"
    if reason is not None:
        print(f"skipping the uTP namespace test: {reason}", file=sys.stderr)
        pytest.skip(reason)
    net = Lan("10.78.0")
    try:
        yield net
    finally:
        net.close()
        assert not leftover_namespaces(net.prefix), "namespaces left behind"


def make_torrent(tmp_path: Path, size: int) -> tuple[Path, Path]:
    src = tmp_path / "seed" / "utp.bin"
    src.parent.mkdir()
    with src.open("wb") as f:
        for i in range(size // (1 << 20)):
            f.write(hashlib.shake_256(b"bitswarm-utp-%d" % i).digest(1 << 20))
    torrent = tmp_path / "utp.torrent"
    subprocess.run(
        [BITSWARM, "create", str(src), "-o", str(torrent), "--json", "-q"],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return src, torrent


def start_pair(
    tmp_path: Path, seed_host: Host, leech_host: Host, src: Path, torrent: Path
) -> tuple[JsonProc, JsonProc]:
    """``bitswarm seed`` on ``seed_host`` and ``bitswarm download`` on ``leech_host``, uTP only."""
    common = ["--port", str(PEER_PORT), "--transports", "utp", "--no-dht", "--json"]
    seeder = JsonProc(
        seed_host.argv(BITSWARM, "seed", str(torrent), "--data", str(src.parent),
                       "--host", seed_host.addr, *common),
        stderr_path=tmp_path / "seeder.err", name="seeder",
    )  # fmt: skip
    seeder.wait_event(lambda e: e["event"] == "seeding", 120, "the seeder to verify its data")
    leecher = JsonProc(
        leech_host.argv(BITSWARM, "download", str(torrent), "-o", str(tmp_path / "leech"),
                        "--host", leech_host.addr, "--peer", f"{seed_host.addr}:{PEER_PORT}", *common),
        stderr_path=tmp_path / "leecher.err", name="leecher",
    )  # fmt: skip
    return seeder, leecher


def shape_toward(lan: Lan, host: Host, rate: str) -> str:
    """A ``tbf`` bottleneck on the bridge's port to ``host`` (what the LAN sends it), like a router's
    queue. Shaping the sender's own uplink instead would hold the sender's TCP back by TCP Small
    Queues (a socket may have only ~1 ms of data in its host's qdisc), not by the link."""
    port = f"p{list(lan.hosts.values()).index(host)}"
    run(["tc", "-n", lan.bridge_ns, "qdisc", "add", "dev", port, "root", "tbf",
         "rate", rate, "burst", "32kbit", "latency", "400ms"])  # fmt: skip
    return port


def same_file(a: Path, b: Path) -> bool:
    def digest(p: Path) -> str:
        h = hashlib.sha256()
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    return digest(a) == digest(b)


def test_utp_over_a_lossy_link(lan: Lan, tmp_path: Path) -> None:
    a, b = lan.add_host("a", 1), lan.add_host("b", 2)
    for host in (a, b):  # 2 % of the UDP datagrams each host sends are lost: 2 % each way
        run(host.argv("iptables", "-A", "OUTPUT", "-p", "udp", "-m", "statistic",
                      "--mode", "random", "--probability", "0.02", "-j", "DROP"))  # fmt: skip
    src, torrent = make_torrent(tmp_path, 64 << 20)
    procs: list[JsonProc] = []
    try:
        seeder, leecher = start_pair(tmp_path, a, b, src, torrent)
        procs += [seeder, leecher]
        t0 = time.monotonic()
        leecher.wait_event(lambda e: e["event"] == "torrent_completed", 180, "the download to complete")
        elapsed = time.monotonic() - t0
        transports = {e.get("transport") for e in leecher.events if e["event"] == "peer_connected"}
        assert transports and transports <= {"utp", "utp+enc"}, transports
        dropped = run(a.argv("iptables", "-L", "OUTPUT", "-v", "-x", "-n")).stdout
        print(f"\nuTP, 2 % loss each way: 64 MiB in {elapsed:.1f} s; seeder's drops:\n{dropped}")
        assert leecher.wait_exit(30) == 0, leecher.stderr_tail()
    finally:
        for p in procs:
            p.kill()
            p.stop()
    assert same_file(src, tmp_path / "leech" / src.name)


# A bulk TCP flow: the receiver prints the bytes it has every 0.1 s, the sender writes until killed.
TCP_RECEIVER = """
import json, socket, sys, time
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
print(json.dumps({"event": "listening"}), flush=True)
conn, _ = srv.accept()
conn.settimeout(0.1)
total, t0, last = 0, time.monotonic(), 0.0
while True:
    try:
        n = len(conn.recv(1 << 16))
        if n == 0:
            break
        total += n
    except TimeoutError:
        pass
    now = time.monotonic()
    if now - last >= 0.1:
        last = now
        print(json.dumps({"event": "bytes", "t": now - t0, "total": total}), flush=True)
"""
TCP_SENDER = """
import socket, sys
s = socket.socket()
# CUBIC, Linux's loss-based default (a host may default to BBR, which keeps the queue short)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
s.connect((sys.argv[1], int(sys.argv[2])))
block = bytes(1 << 16)
while True:
    s.sendall(block)
"""


def after(seconds: float) -> Callable[[dict[str, Any]], bool]:
    """The TCP receiver's first byte count at or after ``seconds``."""
    return lambda e: e["event"] == "bytes" and e["t"] >= seconds


def test_ledbat_yields_to_tcp(lan: Lan, tmp_path: Path) -> None:
    a, b = lan.add_host("a", 1), lan.add_host("b", 2)
    shape_toward(lan, b, "20mbit")
    src, torrent = make_torrent(tmp_path, 96 << 20)  # ~40 s at 20 Mbit/s: it outlasts the test
    procs: list[JsonProc] = []
    try:
        seeder, leecher = start_pair(tmp_path, a, b, src, torrent)
        procs += [seeder, leecher]
        # uTP has the link to itself first: wait until it moves at least half of it
        progress = leecher.wait_event(
            lambda e: e["event"] == "progress" and e.get("download_rate", 0) * 8 > 0.5 * LINK,
            60,
            "the uTP download to fill the link",
        )
        receiver = JsonProc(
            b.argv(sys.executable, "-c", TCP_RECEIVER, b.addr, str(TCP_PORT)),
            stderr_path=tmp_path / "tcp-recv.err", name="tcp-receiver",
        )  # fmt: skip
        procs.append(receiver)
        receiver.wait_event(lambda e: e["event"] == "listening", 10, "the TCP receiver")
        sender = JsonProc(
            a.argv(sys.executable, "-c", TCP_SENDER, b.addr, str(TCP_PORT)),
            stderr_path=tmp_path / "tcp-send.err", name="tcp-sender",
        )  # fmt: skip
        procs.append(sender)
        # the TCP flow's rate over [4 s, 5 s] and [5 s, 8 s] after it started
        at: dict[float, int] = {}
        for mark in (4.0, 5.0, 8.0):
            ev = receiver.wait_event(after(mark), 20, f"{mark} s of the TCP flow")
            at[mark] = ev["total"]
        rate_5 = (at[5.0] - at[4.0]) * 8 / 1.0
        rate_8 = (at[8.0] - at[5.0]) * 8 / 3.0
        assert leecher.proc.poll() is None, "the uTP download ended before the TCP flow was measured"
        print(
            f"\nLEDBAT: uTP alone {progress['download_rate'] * 8 / 1e6:.1f} Mbit/s; TCP got "
            f"{rate_5 / 1e6:.1f} Mbit/s in its 5th second, {rate_8 / 1e6:.1f} Mbit/s over seconds 5-8 "
            f"(link {LINK / 1e6:.0f} Mbit/s)"
        )
        assert rate_5 >= 0.75 * LINK, f"TCP got {rate_5 / LINK:.0%} of the link in its 5th second"
        assert rate_8 >= 0.75 * LINK, f"TCP got {rate_8 / LINK:.0%} of the link over seconds 5-8"
    finally:
        for p in procs:
            p.kill()
            p.stop()
