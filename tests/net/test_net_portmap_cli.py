"""The peer commands map their port by default (issue 19), on the namespace internet (docs/testing-net.md):
``bitswarm seed`` behind the miniupnpd router maps its TCP and UDP port by itself, a public libtorrent
leecher that only dials out downloads every byte through the mapping, and SIGTERM removes the mapping;
``bitswarm download`` behind it removes its mapping when it exits after completing, and ``bitswarm daemon``
maps by default, shows the mapping in its stats and removes it on SIGTERM; behind the router
without a mapping service the seeder says so quickly and still stops at once. Root only; skipped with the
reason elsewhere, an error in CI."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from internet import (
    MINIUPNPD_EXT_IP,
    Internet,
    NetHost,
    internet,
    leftover_namespaces,
    require_internet,
    standard_internet,
    tcp_probe,
    upnpc_mappings,
)
from netns_testlib import Event, JsonProc
from test_net_portmap import public_lt_download

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

BITSWARM = str(Path(sys.executable).with_name("bitswarm"))
LEECHER = str(Path(__file__).with_name("lt_leecher.py"))
DRIVER = str(Path(__file__).with_name("portmap_driver.py"))  # a PortMapper alone, for a competing host
PORT = 6881
TRACKER_PORT = 6969
SIZE = 3 * 1024 * 1024


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Internet]:
    require_internet()
    with internet(tmp_path) as built:
        yield standard_internet(built, ipv6_home=False)
    assert not leftover_namespaces(built.prefix), "namespaces left behind"


def mapping_on(host: NetHost, *cmd: str) -> list[str]:
    """``cmd`` in ``host`` with port mapping allowed (the test run's BITSWARM_NO_PORT_MAPPING unset)."""
    return host.argv("env", "-u", "BITSWARM_NO_PORT_MAPPING", *cmd)


def ours(host: NetHost) -> set[tuple[str, int, int]]:
    """(protocol, external port, internal port) of the IGD's mappings to ``host``."""
    return {(m.protocol, m.external_port, m.internal_port) for m in upnpc_mappings(host)
            if m.internal_client == host.addr}  # fmt: skip


def seen(proc: JsonProc, pred: Callable[[Event], bool], timeout: float, what: str) -> Event:
    """The first event of ``proc`` matching ``pred``, read already or still to come."""
    for ev in proc.events:
        if pred(ev):
            return ev
    return proc.wait_event(pred, timeout, what)


def mapped_event(ev: Event) -> bool:
    if ev.get("event") != "port_mapping":
        return False
    states = {(m["method"], m["protocol"]): m["state"] for m in ev["mappings"]}
    return states.get(("upnp", "tcp")) == "mapped" and states.get(("upnp", "udp")) == "mapped"


def make_torrent(tmp_path: Path, name: str, announce: str) -> tuple[Path, Path]:
    src = tmp_path / "seed" / name
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(hashlib.shake_256(name.encode()).digest(SIZE))
    torrent = tmp_path / f"{name}.torrent"
    subprocess.run([BITSWARM, "create", str(src), "-o", str(torrent), "--tracker", announce, "-q"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return src, torrent


def start_tracker(net: Internet, tmp_path: Path) -> tuple[JsonProc, str]:
    host = net.public["tracker"]
    proc = JsonProc(
        host.argv(BITSWARM, "tracker", "--http", f"{host.addr}:{TRACKER_PORT}", "--no-udp", "--db", "none",
                  "--mode", "open", "--json"),
        stderr_path=tmp_path / "tracker.err", name="tracker",
    )  # fmt: skip
    proc.wait_event(lambda e: "http" in e, 30, "the tracker to listen")
    return proc, f"http://{host.addr}:{TRACKER_PORT}/announce"


@pytest.mark.interop
def test_seed_maps_its_port_a_public_libtorrent_leecher_downloads_and_sigterm_unmaps(
    net: Internet, tmp_path: Path
) -> None:
    if importlib.util.find_spec("libtorrent") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("libtorrent (PyPI, in .[dev]) is required in CI")
        pytest.skip("libtorrent (PyPI) is not installed: pip install -e '.[dev]'")
    home = net.homes["upnp"]
    seed_host, pub = home.hosts["upnp1"], net.public["pub1"]
    assert home.router.addr is not None
    procs: list[JsonProc] = []
    for proto in ("tcp", "udp"):  # the leecher only dials out: nothing may connect to it
        pub.run("iptables", "-A", "INPUT", "-p", proto, "--dport", str(PORT), "-j", "DROP")
    try:
        tracker, announce = start_tracker(net, tmp_path)
        procs.append(tracker)
        src, torrent = make_torrent(tmp_path, "nat.bin", announce)
        assert ours(seed_host) == set()
        seeder = JsonProc(
            mapping_on(seed_host, BITSWARM, "seed", str(torrent), "--data", str(src.parent), "--port",
                       str(PORT), "--no-dht", "--json"),
            stderr_path=tmp_path / "seeder.err", name="seeder",
        )  # fmt: skip
        procs.append(seeder)
        ev = seeder.wait_event(mapped_event, 30, "the seeder's UPnP mappings")
        assert ev["external_address"] == MINIUPNPD_EXT_IP  # what miniupnpd reports (its ext_ip=)
        assert ev["advertised_port"] == PORT
        assert {("TCP", PORT, PORT), ("UDP", PORT, PORT)} <= ours(seed_host)
        seen(seeder, lambda e: e.get("event") == "seeding", 60, "the seeder to verify its data")
        assert tcp_probe(pub, home.router.addr, PORT) is not None  # the router forwards to the seeder
        got = public_lt_download(pub, torrent, tmp_path, f"{home.router.addr}:{PORT}", procs, seeder)
        assert hashlib.sha256(got).digest() == hashlib.sha256(src.read_bytes()).digest()
        seeder.proc.terminate()  # SIGTERM: the CLI's stop path removes the mappings before it exits
        seeder.wait_exit(10)
    finally:
        for proc in reversed(procs):
            proc.stop()
    assert ours(seed_host) == set()
    assert tcp_probe(pub, home.router.addr, PORT) is None


@pytest.mark.interop
def test_a_second_seeder_behind_the_router_announces_its_other_external_port(
    net: Internet, tmp_path: Path
) -> None:
    """``upnp1`` holds external port 6881 (the PortMapper driver, nothing listening behind it: a first
    announce made before the mapping leads nowhere); ``bitswarm seed --port 6881`` in
    ``upnp2`` is mapped to another external port, announces that one to the tracker at once, and a
    public libtorrent leecher that only dials out downloads every byte from it there."""
    if importlib.util.find_spec("libtorrent") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("libtorrent (PyPI, in .[dev]) is required in CI")
        pytest.skip("libtorrent (PyPI) is not installed: pip install -e '.[dev]'")
    home = net.homes["upnp"]
    first, second, pub = home.hosts["upnp1"], net.add_home_host(home, "upnp2", 11), net.public["pub1"]
    assert home.router.addr is not None
    for proto in ("tcp", "udp"):
        pub.run("iptables", "-A", "INPUT", "-p", proto, "--dport", str(PORT), "-j", "DROP")
    procs: list[JsonProc] = []
    try:
        holder = JsonProc(
            first.argv(sys.executable, DRIVER, "--port", str(PORT), "--host", first.addr or "",
                       "--methods", "upnp,natpmp", "--no-listen"),
            stderr_path=tmp_path / "holder.err", name="holder",
        )  # fmt: skip
        procs.append(holder)
        holder.wait_event(lambda e: e["event"] == "settled", 30, "upnp1's mappings of 6881")
        tracker, announce = start_tracker(net, tmp_path)
        procs.append(tracker)
        src, torrent = make_torrent(tmp_path, "second.bin", announce)
        seeder = JsonProc(
            mapping_on(second, BITSWARM, "seed", str(torrent), "--data", str(src.parent), "--port", str(PORT),
                       "--no-dht", "--json"),
            stderr_path=tmp_path / "seeder.err", name="seeder",
        )  # fmt: skip
        procs.append(seeder)
        mapped = seen(seeder, mapped_event, 30, "the second seeder's UPnP mappings")
        external = int(mapped["advertised_port"])
        assert external != PORT, mapped
        assert ("TCP", external, PORT) in ours(second)
        # the reannounce with the external port: a tracker reply after the mapping
        seeder.wait_event(lambda e: e.get("event") == "tracker_reply", 30, "the reannounce")
        leecher = JsonProc(
            pub.argv(sys.executable, LEECHER, str(torrent), "--save", str(tmp_path / "leech"),
                     "--host", pub.addr or "", "--port", str(PORT), "--timeout", "60"),
            stderr_path=tmp_path / "leecher.err", name="leecher",
        )  # fmt: skip
        procs.append(leecher)
        finished = ("torrent_completed", "timeout")
        done = leecher.wait_event(lambda e: e["event"] in finished, 90, "the download")
        told = [(e["event"], e.get("advertised_port")) for e in seeder.events if e["event"] != "progress"]
        assert done["event"] == "torrent_completed", (done, told, leecher.events[-3:], seeder.stderr_tail())
        # the tracker gave the router's address at the seeder's external ports (the PCP one the first
        # mapping brought, then UPnP's), never 6881, which leads to upnp1
        held = {f"{home.router.addr}:{port}" for proto, port, _ in ours(second) if proto == "TCP"}
        assert f"{home.router.addr}:{PORT}" not in held and f"{home.router.addr}:{external}" in held, held
        assert set(done["peers"]) & held, (done, held)  # 6881 leads to upnp1, where nothing listens
        got = (tmp_path / "leech" / "second.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(src.read_bytes()).digest()
        seeder.proc.terminate()
        seeder.wait_exit(10)
    finally:
        for proc in reversed(procs):
            proc.stop()
    assert ours(second) == set()


def test_download_unmaps_when_it_exits_after_completing(net: Internet, tmp_path: Path) -> None:
    home = net.homes["upnp"]
    leech_host, pub = home.hosts["upnp1"], net.public["pub1"]
    procs: list[JsonProc] = []
    try:
        tracker, announce = start_tracker(net, tmp_path)
        procs.append(tracker)
        src, torrent = make_torrent(tmp_path, "pub.bin", announce)
        seeder = JsonProc(
            pub.argv(BITSWARM, "seed", str(torrent), "--data", str(src.parent), "--port", str(PORT),
                     "--no-dht", "--json"),
            stderr_path=tmp_path / "seeder.err", name="public-seeder",
        )  # fmt: skip
        procs.append(seeder)
        seeder.wait_event(lambda e: e.get("event") == "seeding", 60, "the public seeder")
        # 300 KiB/s: the 3 MiB take ~10 s, time for the mappings (PCP at once, UPnP after 1 s) to be made,
        # and listed by upnpc, while it downloads
        leecher = JsonProc(
            mapping_on(leech_host, BITSWARM, "download", str(torrent), "-o", str(tmp_path / "got"),
                       "--port", str(PORT), "--no-dht", "--download-limit", "300k", "--json"),
            stderr_path=tmp_path / "leecher.err", name="leecher",
        )  # fmt: skip
        procs.append(leecher)
        leecher.wait_event(mapped_event, 30, "the leecher's UPnP mappings")
        assert {("TCP", PORT, PORT), ("UDP", PORT, PORT)} <= ours(leech_host)
        seen(leecher, lambda e: e.get("event") == "torrent_completed", 60, "the download")
        assert leecher.wait_exit(20) == 0, leecher.stderr_tail()
        got = (tmp_path / "got" / "pub.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(src.read_bytes()).digest()
    finally:
        for proc in reversed(procs):
            proc.stop()
    assert ours(leech_host) == set()  # the clean exit removed both mappings


def test_without_a_mapping_service_the_seeder_says_so_fast_and_stops_at_once(
    net: Internet, tmp_path: Path
) -> None:
    home = net.homes["plain"]
    host = home.hosts["plain1"]
    tracker, announce = start_tracker(net, tmp_path)
    src, torrent = make_torrent(tmp_path, "plain.bin", announce)
    started = time.monotonic()
    seeder = JsonProc(
        mapping_on(host, BITSWARM, "seed", str(torrent), "--data", str(src.parent), "--port", str(PORT),
                   "--no-dht", "--json"),
        stderr_path=tmp_path / "seeder.err", name="seeder",
    )  # fmt: skip
    try:
        seen(seeder, lambda e: e.get("event") == "seeding", 60, "the seeder")
        ev = seen(
            seeder,
            lambda e: e.get("event") == "port_mapping" and e["summary"].startswith("no mapping service"),
            20, "the seeder to give up mapping",
        )  # fmt: skip
        assert time.monotonic() - started < 15, ev
        # no mapping, but our tracker's BEP 24 ``external ip`` (the NAT's outside address, one
        # tracker's vote decides) may have told the seeder where it is already
        assert ev["advertised_port"] == PORT and ev["external_address"] in (None, home.router.addr), ev
        told = seen(seeder, lambda e: e.get("event") == "external_address", 20, "the tracker's external ip")
        assert told["addresses"] == [home.router.addr], told
        stopping = time.monotonic()
        seeder.proc.terminate()
        seeder.wait_exit(10)
        assert time.monotonic() - stopping < 2.5
    finally:
        seeder.stop()
        tracker.stop()


STATS = """\
import json, sys, urllib.request
auth = {"Authorization": "Bearer " + sys.argv[2]}
req = urllib.request.Request(sys.argv[1] + "/api/v1/stats", headers=auth)
print(json.dumps(json.load(urllib.request.urlopen(req, timeout=5))["reachability"]))
"""


def test_daemon_maps_by_default_shows_it_in_stats_and_unmaps_on_sigterm(
    net: Internet, tmp_path: Path
) -> None:
    host = net.homes["upnp"].hosts["upnp1"]
    data = tmp_path / "daemon"
    daemon = JsonProc(
        mapping_on(host, BITSWARM, "daemon", "--port", str(PORT), "--api", "127.0.0.1:0", "--data", str(data),
                   "--no-dht", "--json"),
        stderr_path=tmp_path / "daemon.err", name="daemon",
    )  # fmt: skip
    try:
        url = seen(daemon, lambda e: e.get("event") == "listening", 30, "the daemon")["api"]
        token = (data / "token").read_text().strip()

        def reachability() -> dict[str, object]:
            out = host.run(sys.executable, "-c", STATS, url, token).stdout
            return json.loads(out)  # type: ignore[no-any-return]

        deadline = time.monotonic() + 30
        while not str((reach := reachability())["summary"]).startswith("mapped"):
            assert time.monotonic() < deadline, reach
            time.sleep(0.5)
        assert reach["port_mapping"] == "on" and reach["external_address"] == MINIUPNPD_EXT_IP
        assert {("TCP", PORT, PORT), ("UDP", PORT, PORT)} <= ours(host)
        daemon.proc.terminate()
        assert daemon.wait_exit(15) == 0, daemon.stderr_tail()
    finally:
        daemon.stop()
    assert ours(host) == set()


def test_the_progress_display_says_once_where_peers_reach_the_seeder(net: Internet, tmp_path: Path) -> None:
    """Without --json the seeder prints one line when its port is mapped (PCP first, UPnP a second
    later: still one line), and nothing about mapping when it stops."""
    host = net.homes["upnp"].hosts["upnp1"]
    tracker, announce = start_tracker(net, tmp_path)
    src, torrent = make_torrent(tmp_path, "human.bin", announce)
    err = tmp_path / "human.err"
    with err.open("wb") as sink:
        proc = subprocess.Popen(
            mapping_on(host, BITSWARM, "seed", str(torrent), "--data", str(src.parent), "--port", str(PORT),
                       "--no-dht"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while {("TCP", PORT, PORT), ("UDP", PORT, PORT)} - ours(host):
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.5)
            time.sleep(4)  # UPnP maps the same port a second after PCP (miniupnpd lists it once)
        finally:
            proc.terminate()
            proc.wait(10)
            tracker.stop()
    lines = err.read_text().splitlines()
    mapping = [line for line in lines if "mapp" in line]
    assert len(mapping) == 1 and mapping[0].startswith(f"mapped tcp {MINIUPNPD_EXT_IP}:{PORT}"), lines
    assert ours(host) == set()
