"""A small LAN of network namespaces: one tracker, one seeder and three leechers, uplinks shaped with tbf.

Every host is its own namespace on a bridge (see netns_testlib and docs/testing-lan.md); the real CLI
runs in each (``ip netns exec NS bitswarm ...``): ``bitswarm tracker`` on 10.77.0.1, ``bitswarm seed``
on .2 (20 Mbit/s up) and ``bitswarm download`` on .3-.5 (10 Mbit/s up each). Leechers get no
``--peer``: the tracker is their only source of peers. Every leecher must finish with the seeder's
exact bytes. Root only (CI runs as root); elsewhere it skips and says why.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_testlib import JsonProc, Lan, leftover_namespaces, netns_unavailable_reason

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(150)]

BITSWARM = str(Path(sys.executable).with_name("bitswarm"))
SIZE = 8 * 1024 * 1024
TRACKER_PORT = 6969
PEER_PORT = 6881  # every host has its own network stack: the same port everywhere is fine
SEEDER_UP = "20mbit"
LEECHER_UP = "10mbit"


@pytest.fixture
def lan() -> Iterator[Lan]:
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"skipping the LAN test: {reason}", file=sys.stderr)
        pytest.skip(reason)
    net = Lan("10.77.0")
    try:
        yield net
    finally:
        net.close()
        assert not leftover_namespaces(net.prefix), "namespaces left behind"


def scrape_complete(lan: Lan, host_name: str, url: str, info_hash: bytes) -> int:
    """``complete`` for ``info_hash`` from the tracker's HTTP scrape, asked from inside ``host_name``."""
    code = (
        "import sys, urllib.parse, urllib.request\n"
        "from bitswarm.bencode import decode\n"
        f"h = bytes.fromhex({info_hash.hex()!r})\n"
        f"u = {url!r} + '?info_hash=' + urllib.parse.quote_from_bytes(h)\n"
        "r = decode(urllib.request.urlopen(u, timeout=3).read())\n"
        "print(r[b'files'].get(h, {}).get(b'complete', 0))\n"
    )
    res = subprocess.run(
        lan.hosts[host_name].argv(sys.executable, "-c", code), capture_output=True, text=True, timeout=30
    )
    return int(res.stdout.strip()) if res.returncode == 0 and res.stdout.strip().isdigit() else -1


def test_lan_swarm_through_tracker_with_shaped_uplinks(lan: Lan, tmp_path: Path) -> None:
    t0 = time.monotonic()
    tracker_host = lan.add_host("trk", 1)
    seeder_host = lan.add_host("seed", 2, uplink=SEEDER_UP)
    leecher_hosts = [lan.add_host(f"l{i}", 3 + i, uplink=LEECHER_UP) for i in range(3)]
    announce = f"http://{tracker_host.addr}:{TRACKER_PORT}/announce"

    src = tmp_path / "seed" / "lan.bin"
    src.parent.mkdir()
    src.write_bytes(hashlib.shake_256(b"bitswarm-lan").digest(SIZE))
    torrent = tmp_path / "lan.torrent"
    made = subprocess.run(
        [BITSWARM, "create", str(src), "-o", str(torrent), "--tracker", announce, "--json", "-q"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    info = json.loads(made.stdout)
    v1_hash = bytes.fromhex(info["info_hash_v1"])

    procs: list[JsonProc] = []
    try:
        tracker = JsonProc(
            tracker_host.argv(BITSWARM, "tracker", "--http", f"{tracker_host.addr}:{TRACKER_PORT}",
                              "--no-udp", "--db", "none", "--mode", "open", "--json"),
            stderr_path=tmp_path / "tracker.err", name="tracker",
        )  # fmt: skip
        procs.append(tracker)
        bound = tracker.wait_event(lambda e: "http" in e, 30, "the tracker to listen")
        assert bound["http"] == [announce]

        seeder = JsonProc(
            seeder_host.argv(BITSWARM, "seed", str(torrent), "--data", str(src.parent),
                             "--host", seeder_host.addr, "--port", str(PEER_PORT), "--json"),
            stderr_path=tmp_path / "seeder.err", name="seeder",
        )  # fmt: skip
        procs.append(seeder)
        seeder.wait_event(lambda e: e["event"] == "seeding", 60, "the seeder to verify its data")
        # The leechers must find the seeder in the tracker's first answer: wait for its announce.
        deadline = time.monotonic() + 30
        while scrape_complete(lan, "trk", announce.replace("/announce", "/scrape"), v1_hash) < 1:
            assert time.monotonic() < deadline, f"seeder never announced\n{seeder.stderr_tail()}"
            assert seeder.proc.poll() is None, seeder.stderr_tail()

        start = time.monotonic()
        leechers = []
        for i, host in enumerate(leecher_hosts):
            out = tmp_path / f"leech{i}"
            leecher = JsonProc(
                host.argv(BITSWARM, "download", str(torrent), "-o", str(out),
                          "--host", host.addr, "--port", str(PEER_PORT), "--json"),
                stderr_path=tmp_path / f"leech{i}.err", name=f"leecher{i}",
            )  # fmt: skip
            leechers.append(leecher)
            procs.append(leecher)
        finished: list[float] = []
        deadline = start + 90  # one budget for the whole swarm
        for lp in leechers:
            left = max(1.0, deadline - time.monotonic())
            lp.wait_event(lambda e: e["event"] == "torrent_completed", left, f"{lp.name} to complete")
            assert lp.wait_exit(30) == 0, lp.stderr_tail()
            finished.append(time.monotonic() - start)
            lp.drain(10)
        elapsed = max(finished)

        want = hashlib.sha256(src.read_bytes()).hexdigest()
        for i, lp in enumerate(leechers):
            got = tmp_path / f"leech{i}" / "lan.bin"
            assert hashlib.sha256(got.read_bytes()).hexdigest() == want, f"{lp.name} has different bytes"
            peers = {e["address"].rsplit(":", 1)[0] for e in lp.events if e["event"] == "peer_connected"}
            assert peers and peers <= {h.addr for h in [seeder_host, *leecher_hosts]}, peers

        # The shaping is in the path: the seeder's tbf carried at least one copy of the file, and no
        # leecher can have received faster than every uplink together allows (20 + 2 x 10 Mbit/s).
        sent_by = {}
        for host in [seeder_host, *leecher_hosts]:
            stats = lan.qdisc(host)
            assert "qdisc tbf" in stats, stats
            sent_by[host.ns] = int(stats.split("Sent ", 1)[1].split(" ", 1)[0])
        sent = sent_by[seeder_host.ns]
        assert sent >= SIZE, sent_by
        assert min(finished) >= SIZE / (40e6 / 8) * 0.9, finished
        uploads = [max((e.get("uploaded", 0) for e in lp.events), default=0) for lp in leechers]
        assert sum(uploads) > 0, "the leechers never traded pieces with each other"
        print(
            f"\nLAN: 3 leechers done in {[round(f, 1) for f in finished]} s (slowest {elapsed:.1f} s),"
            f" seeder tbf sent {sent / 2**20:.1f} MiB, leecher uploads {[u // 1024 for u in uploads]} KiB,"
            f" test {time.monotonic() - t0:.1f} s"
        )
    finally:
        for p in procs:
            p.kill()
            p.stop()
