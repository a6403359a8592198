"""bitswarm's PortMapper on the namespace internet (docs/testing-net.md): behind the miniupnpd router it
maps the TCP and UDP port (UPnP IGD, PCP, NAT-PMP), the public side reaches the home host through the
mapping, the mapping is renewed, and SIGTERM removes it; behind the router without a mapping service
it says so within a bounded time. Root only; skipped with the reason elsewhere, an error in CI."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
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
    udp_probe,
    upnpc_mappings,
)
from netns_testlib import Event, JsonProc

pytestmark = [pytest.mark.netns, pytest.mark.timeout(150)]

DRIVER = str(Path(__file__).with_name("portmap_driver.py"))
PORT = 6881
GREETING = b"bitswarm-behind-nat"  # portmap_driver.GREETING


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Internet]:
    require_internet()
    with internet(tmp_path) as built:
        yield standard_internet(built, ipv6_home=False)
    assert not leftover_namespaces(built.prefix), "namespaces left behind"


def start_mapper(host: NetHost, tmp: Path, *args: str) -> JsonProc:
    argv = host.argv(sys.executable, DRIVER, "--port", str(PORT), "--host", host.addr or "0.0.0.0", *args)
    return JsonProc(argv, stderr_path=tmp / f"mapper-{host.name}.err", name=f"mapper@{host.name}")


def mapped(ev: Event, method: str) -> dict[str, dict[str, object]]:
    """The ev's mappings of ``method`` by protocol."""
    return {m["protocol"]: m for m in ev["mappings"] if m["method"] == method}


def renewed(method: str, at_least: int) -> object:
    def pred(ev: Event) -> bool:
        maps = mapped(ev, method)
        return len(maps) == 2 and all(
            m["state"] == "mapped" and int(m["renewals"]) >= at_least
            for m in maps.values()  # type: ignore[call-overload]
        )

    return pred


def reachable_from_public(net: Internet, port: int = PORT) -> tuple[bytes | None, bytes | None]:
    """What ``pub1`` gets from the miniupnpd router's WAN address at ``port``: (TCP greeting, UDP echo)."""
    pub, router = net.public["pub1"], net.homes["upnp"].router
    assert router.addr is not None
    return tcp_probe(pub, router.addr, port), udp_probe(pub, router.addr, port, b"ping")


def answers_of(host: NetHost) -> tuple[bytes, bytes]:
    """What the driver in ``host`` answers (its greeting and echo end with its own address)."""
    addr = (host.addr or "").encode()
    return GREETING + b" " + addr, b"echo:ping " + addr


@pytest.mark.parametrize(
    ("methods", "extra", "method", "label"),
    [
        ("upnp", (), "upnp", "bitswarm"),
        ("natpmp", (), "pcp", "PCP MAP"),
        ("natpmp", ("--natpmp-only",), "natpmp", "NAT-PMP"),
    ],
    ids=["upnp", "pcp", "natpmp"],
)
def test_maps_renews_and_unmaps_behind_miniupnpd(
    net: Internet, tmp_path: Path, methods: str, extra: tuple[str, ...], method: str, label: str
) -> None:
    home = net.homes["upnp"]
    host = home.hosts["upnp1"]
    assert reachable_from_public(net) == (None, None)  # before: the NAT forwards nothing
    proc = start_mapper(host, tmp_path, "--methods", methods, "--lifetime", "120", "--max-renew", "2", *extra)
    try:
        settled = proc.wait_event(lambda e: e["event"] == "settled", 30, "the first mapping round")
        maps = mapped(settled, method)
        assert {p: m["state"] for p, m in maps.items()} == {"tcp": "mapped", "udp": "mapped"}, (
            settled,
            net.miniupnpd_log(home)[-2000:],
        )
        assert {m["external_port"] for m in maps.values()} == {PORT}
        assert settled["external_ip"] == MINIUPNPD_EXT_IP  # what miniupnpd reports (its ext_ip=)
        assert settled["external"] == [f"{MINIUPNPD_EXT_IP} ({method})"]
        listed = {(m.protocol, m.external_port, m.internal_client, m.internal_port)
                  for m in upnpc_mappings(host) if m.description.startswith(label)}  # fmt: skip
        assert listed == {("TCP", PORT, host.addr, PORT), ("UDP", PORT, host.addr, PORT)}
        # the public side reaches the home host at the router's real WAN address
        assert reachable_from_public(net) == answers_of(host)
        proc.wait_event(renewed(method, 1), 20, "a renewal of both mappings")  # type: ignore[arg-type]
        proc.proc.terminate()  # SIGTERM: a clean stop deletes the mappings
        stopped = proc.wait_event(lambda e: e["event"] == "stopped", 20, "the stop")
        assert {m["state"] for m in stopped["mappings"]} == {"removed"}
        assert proc.wait_exit(10) == 0
    finally:
        proc.stop()
    assert [m for m in upnpc_mappings(host) if m.internal_port == PORT] == []
    assert reachable_from_public(net) == (None, None)


def test_both_methods_together_behind_miniupnpd(net: Internet, tmp_path: Path) -> None:
    """The default: UPnP and PCP in parallel; each maps, and stop removes everything."""
    host = net.homes["upnp"].hosts["upnp1"]
    proc = start_mapper(host, tmp_path)
    try:
        settled = proc.wait_event(lambda e: e["event"] == "settled", 30, "the first mapping round")
        states = {(m["method"], m["protocol"]): m["state"] for m in settled["mappings"]}
        assert states == {("upnp", "tcp"): "mapped", ("upnp", "udp"): "mapped",
                          ("pcp", "tcp"): "mapped", ("pcp", "udp"): "mapped"}, settled  # fmt: skip
        assert reachable_from_public(net) == answers_of(host)
        proc.proc.terminate()
        proc.wait_event(lambda e: e["event"] == "stopped", 20, "the stop")
    finally:
        proc.stop()
    assert [m for m in upnpc_mappings(host) if m.internal_port == PORT] == []


def test_second_host_gets_another_external_port(net: Internet, tmp_path: Path) -> None:
    """Two hosts of one home want port 6881: UPnP answers the second with ConflictInMappingEntry (718)
    and the mapper takes another external port; PCP lets the gateway pick one. The public side
    reaches each host at its own external port."""
    home = net.homes["upnp"]
    first, second = home.hosts["upnp1"], net.add_home_host(home, "upnp2", 11)
    procs = [start_mapper(first, tmp_path, "--methods", "upnp")]
    try:
        procs[0].wait_event(lambda e: e["event"] == "settled", 30, "the first host's mappings")
        for methods, method in (("upnp", "upnp"), ("natpmp", "pcp")):
            proc = start_mapper(second, tmp_path, "--methods", methods)
            procs.append(proc)
            settled = proc.wait_event(lambda e: e["event"] == "settled", 30, "the second host's mappings")
            maps = mapped(settled, method)
            assert {m["state"] for m in maps.values()} == {"mapped"}, settled
            tcp_port, udp_port = (int(maps[p]["external_port"]) for p in ("tcp", "udp"))  # type: ignore[call-overload]
            assert PORT not in (tcp_port, udp_port), settled
            if method == "upnp":
                assert tcp_port == udp_port  # one port for both, as peers expect
            greeting, echo = answers_of(second)
            assert reachable_from_public(net, tcp_port)[0] == greeting, (method, tcp_port)
            assert reachable_from_public(net, udp_port)[1] == echo, (method, udp_port)
            assert reachable_from_public(net) == answers_of(first)
            proc.proc.terminate()
            proc.wait_event(lambda e: e["event"] == "stopped", 20, "the stop")
            assert proc.wait_exit(10) == 0
            assert [m for m in upnpc_mappings(second) if m.internal_client == second.addr] == []
    finally:
        for proc in procs:
            proc.stop()


def test_no_mapping_service_is_reported_in_bounded_time(net: Internet, tmp_path: Path) -> None:
    host = net.homes["plain"].hosts["plain1"]
    started = time.monotonic()
    proc = start_mapper(host, tmp_path)
    try:
        settled = proc.wait_event(lambda e: e["event"] == "settled", 30, "the first mapping round")
        assert settled["ok"] and settled["seconds"] < 10, settled
        assert {m["state"] for m in settled["mappings"]} == {"unavailable"}
        assert settled["summary"].startswith("no mapping service ("), settled["summary"]
        assert "UPnP IGD" in settled["summary"] and "NAT-PMP/PCP" in settled["summary"]
        assert settled["external_ip"] is None
        proc.proc.terminate()
        proc.wait_event(lambda e: e["event"] == "stopped", 20, "the stop")
    finally:
        proc.stop()
    assert time.monotonic() - started < 30


BITSWARM = str(Path(sys.executable).with_name("bitswarm"))
LEECHER = str(Path(__file__).with_name("lt_leecher.py"))


def public_lt_download(
    pub: NetHost, torrent: Path, tmp_path: Path, wan: str, procs: list[JsonProc], seeder: JsonProc
) -> bytes:
    """A public libtorrent leecher that only dials out downloads ``torrent`` into ``tmp_path/leech``
    from the home seeder at ``wan`` (the router's forwarded address: its only peer); the bytes."""
    leecher = JsonProc(
        pub.argv(sys.executable, LEECHER, str(torrent), "--save", str(tmp_path / "leech"),
                 "--host", pub.addr or "", "--port", str(PORT), "--timeout", "60"),
        stderr_path=tmp_path / "leecher.err", name="leecher",
    )  # fmt: skip
    procs.append(leecher)
    done = leecher.wait_event(lambda e: e["event"] in ("torrent_completed", "timeout"), 90, "the download")
    assert done["event"] == "torrent_completed", (done, seeder.stderr_tail())
    assert done["peers"] == [wan]  # it dialled the router's WAN address
    return (tmp_path / "leech" / "nat.bin").read_bytes()
TRACKER_PORT = 6969
SIZE = 3 * 1024 * 1024


@pytest.mark.interop
def test_public_libtorrent_leecher_downloads_from_a_seeder_behind_miniupnpd(
    net: Internet, tmp_path: Path
) -> None:
    """``bitswarm seed`` in the miniupnpd home with the PortMapper beside it (the seeder itself maps
    nothing: the test run sets BITSWARM_NO_PORT_MAPPING; test_net_portmap_cli.py lets it map); a public
    libtorrent leecher that accepts no connection gets the seeder's address from the
    tracker (the NAT'd 198.18.0.101:6881) and downloads every byte through the mapping."""
    require_internet()
    if importlib.util.find_spec("libtorrent") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("libtorrent (PyPI, in .[dev]) is required in CI")
        pytest.skip("libtorrent (PyPI) is not installed: pip install -e '.[dev]'")
    home = net.homes["upnp"]
    seed_host, tracker_host, pub = home.hosts["upnp1"], net.public["tracker"], net.public["pub1"]
    announce = f"http://{tracker_host.addr}:{TRACKER_PORT}/announce"
    src = tmp_path / "seed" / "nat.bin"
    src.parent.mkdir()
    src.write_bytes(hashlib.shake_256(b"bitswarm-behind-nat").digest(SIZE))
    torrent = tmp_path / "nat.torrent"
    subprocess.run([BITSWARM, "create", str(src), "-o", str(torrent), "--tracker", announce, "-q"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    # the leecher only dials out: nothing may connect to it
    for proto in ("tcp", "udp"):
        pub.run("iptables", "-A", "INPUT", "-p", proto, "--dport", str(PORT), "-j", "DROP")
    procs: list[JsonProc] = []
    try:
        tracker = JsonProc(
            tracker_host.argv(BITSWARM, "tracker", "--http", f"{tracker_host.addr}:{TRACKER_PORT}",
                              "--no-udp", "--db", "none", "--mode", "open", "--json"),
            stderr_path=tmp_path / "tracker.err", name="tracker",
        )  # fmt: skip
        procs.append(tracker)
        tracker.wait_event(lambda e: "http" in e, 30, "the tracker to listen")
        seeder = JsonProc(
            seed_host.argv(BITSWARM, "seed", str(torrent), "--data", str(src.parent), "--port", str(PORT),
                           "--no-dht", "--json"),
            stderr_path=tmp_path / "seeder.err", name="seeder",
        )  # fmt: skip
        procs.append(seeder)
        seeder.wait_event(lambda e: e["event"] == "seeding", 60, "the seeder to verify its data")
        assert tcp_probe(pub, home.router.addr or "", PORT) is None  # no mapping: the seeder is unreachable
        mapper = start_mapper(seed_host, tmp_path, "--methods", "upnp,natpmp", "--no-listen")
        procs.append(mapper)
        settled = mapper.wait_event(lambda e: e["event"] == "settled", 30, "the mappings")
        assert {m["state"] for m in settled["mappings"]} == {"mapped"}, settled
        got = public_lt_download(pub, torrent, tmp_path, f"{home.router.addr}:{PORT}", procs, seeder)
        assert hashlib.sha256(got).digest() == hashlib.sha256(src.read_bytes()).digest()
        mapper.proc.terminate()
        mapper.wait_event(lambda e: e["event"] == "stopped", 20, "the mapper to stop")
    finally:
        for proc in reversed(procs):
            proc.stop()
    assert [m for m in upnpc_mappings(seed_host) if m.internal_port == PORT] == []
