"""IPv6 by default on the namespace internet (docs/testing-net.md): an IPv6-only bitswarm leecher
downloads from a dual-stack bitswarm seeder (peers from a UDP tracker reached over IPv6, and from the
DHT over IPv6 alone) and from a libtorrent seeder over IPv6; a dual-stack seeder serves an IPv4-only
and an IPv6-only leecher at once on its one TCP socket. Every byte is verified. Root only; skipped
with the reason elsewhere, an error in CI."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from internet import Internet, NetHost, internet, leftover_namespaces, require_internet
from netns_testlib import Event, JsonProc

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

BITSWARM = str(Path(sys.executable).with_name("bitswarm"))
LT_SEEDER = str(Path(__file__).with_name("lt_seeder.py"))
PORT = 6881
TRACKER_PORT = 6969
SIZE = 2 * 1024 * 1024


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Internet]:
    """tracker (198.18.0.2, 2001:db8::2), pub1/pub2 (dual-stack public peers), ``plain`` (IPv4 NAT,
    no mapping service) with plain1 10.0.2.10, ``v6`` (IPv6 only) with v61 2001:db8:3::a."""
    require_internet(with_service=False)
    with internet(tmp_path) as built:
        built.add_public_host("tracker", 2)
        built.add_public_host("pub1", 11)
        built.add_public_host("pub2", 12)
        plain = built.add_home("plain", 102, subnet="10.0.2")
        built.add_home_host(plain, "plain1", 10)
        v6 = built.add_home("v6", 103, subnet="2001:db8:3::", ipv6_only=True)
        built.add_home_host(v6, "v61", 10)
        yield built
    assert not leftover_namespaces(built.prefix), "namespaces left behind"


def make_torrent(tmp_path: Path, name: str, *trackers: str) -> tuple[Path, Path]:
    src = tmp_path / "seed" / name
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(hashlib.shake_256(name.encode()).digest(SIZE))
    torrent = tmp_path / f"{name}.torrent"
    argv = [BITSWARM, "create", str(src), "-o", str(torrent), "-q"]
    for url in trackers:
        argv += ["--tracker", url]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return src, torrent


def seeder(host: NetHost, torrent: Path, src: Path, tmp_path: Path, *extra: str) -> JsonProc:
    """``bitswarm seed`` on ``host`` with the default ``--host`` (dual-stack ``::``)."""
    proc = JsonProc(
        host.argv(BITSWARM, "seed", str(torrent), "--data", str(src.parent), "--port", str(PORT), "--json",
                  *extra),
        stderr_path=tmp_path / f"seed-{host.name}.err", name=f"seed@{host.name}",
    )  # fmt: skip
    proc.wait_event(lambda e: e.get("event") == "seeding", 60, f"the seeder on {host.name} to verify")
    return proc


def download(host: NetHost, torrent: Path, out: Path, tmp_path: Path, *extra: str) -> JsonProc:
    return JsonProc(
        host.argv(BITSWARM, "download", str(torrent), "-o", str(out), "--port", str(PORT), "--json", *extra),
        stderr_path=tmp_path / f"get-{host.name}.err",
        name=f"get@{host.name}",
    )


def completed(proc: JsonProc, what: str) -> Event:
    return proc.wait_event(lambda e: e.get("event") == "torrent_completed", 90, what)


def connected_from(proc: JsonProc) -> set[str]:
    """The IPs of every ``peer_connected`` event ``proc`` printed so far."""
    return {str(e["address"]).rsplit(":", 1)[0] for e in proc.events if e.get("event") == "peer_connected"}


def saw_peers(proc: JsonProc, ips: set[str], timeout: float = 20) -> None:
    """Wait until ``proc`` has printed a ``peer_connected`` event from each of ``ips``."""
    if not ips <= connected_from(proc):
        proc.wait_event(lambda e: ips <= connected_from(proc), timeout, f"peers from {sorted(ips)}")


def same_bytes(got: Path, src: Path) -> bool:
    return hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


@pytest.mark.parametrize("scheme", ["udp", "http"])
def test_ipv6_only_leecher_gets_the_seeder_from_a_tracker_over_ipv6(
    net: Internet, tmp_path: Path, scheme: str
) -> None:
    """The torrent names a tracker by its IPv6 address only: the dual-stack seeder announces over
    IPv6, the tracker answers the IPv6-only leecher with IPv6 peers (UDP: BEP 15 over IPv6; HTTP:
    BEP 7 ``peers6``), and the leecher downloads from the seeder's IPv6 address."""
    tracker_host, pub1, v61 = net.public["tracker"], net.public["pub1"], net.homes["v6"].hosts["v61"]
    t6 = f"[{tracker_host.addr6}]:{TRACKER_PORT}"
    url = f"udp://{t6}" if scheme == "udp" else f"http://{t6}/announce"
    src, torrent = make_torrent(tmp_path, f"v6-{scheme}.bin", url)
    procs: list[JsonProc] = []
    try:
        tracker = JsonProc(
            tracker_host.argv(BITSWARM, "tracker", "--udp", t6, "--http", t6, "--db", "none",
                              "--mode", "open", "--interval", "5", "--json"),
            stderr_path=tmp_path / "tracker.err", name="tracker",
        )  # fmt: skip
        procs.append(tracker)
        tracker.wait_event(lambda e: "udp" in e or "http" in e, 30, "the tracker to listen")
        seed = seeder(pub1, torrent, src, tmp_path, "--no-dht")
        procs.append(seed)
        leech = download(v61, torrent, tmp_path / "got", tmp_path, "--no-dht")
        procs.append(leech)
        completed(leech, "the IPv6-only download")
        assert same_bytes(tmp_path / "got" / src.name, src)
        assert connected_from(leech) == {pub1.addr6}, leech.events[-3:]
        saw_peers(seed, {v61.addr6})
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_ipv6_only_leecher_finds_the_seeder_in_the_ipv6_dht(net: Internet, tmp_path: Path) -> None:
    """No tracker: a DHT node on the tracker host (dual-stack), the seeder and the IPv6-only leecher
    join through its IPv6 address; the leecher's get_peers over IPv6 finds the seeder (BEP 32)."""
    tracker_host, pub1, v61 = net.public["tracker"], net.public["pub1"], net.homes["v6"].hosts["v61"]
    boot = f"[{tracker_host.addr6}]:{PORT}"
    src, torrent = make_torrent(tmp_path, "v6-dht.bin")
    procs: list[JsonProc] = []
    try:
        dht = JsonProc(
            tracker_host.argv(BITSWARM, "dht", "--host", "::", "--port", str(PORT), "--json",
                              "--interval", "1"),
            stderr_path=tmp_path / "dht.err", name="dht",
        )  # fmt: skip
        procs.append(dht)
        dht.wait_event(lambda e: True, 30, "the DHT node to start")
        seed = seeder(pub1, torrent, src, tmp_path, "--bootstrap", boot)
        procs.append(seed)
        leech = download(v61, torrent, tmp_path / "got", tmp_path, "--bootstrap", boot)
        procs.append(leech)
        completed(leech, "the download found through the IPv6 DHT")
        assert same_bytes(tmp_path / "got" / src.name, src)
        assert connected_from(leech) == {pub1.addr6}
    finally:
        for proc in reversed(procs):
            proc.stop()


@pytest.mark.interop
def test_ipv6_only_bitswarm_downloads_from_libtorrent_over_ipv6(net: Internet, tmp_path: Path) -> None:
    if importlib.util.find_spec("libtorrent") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("libtorrent (PyPI, in .[dev]) is required in CI")
        pytest.skip("libtorrent (PyPI) is not installed: pip install -e '.[dev]'")
    pub2, v61 = net.public["pub2"], net.homes["v6"].hosts["v61"]
    src, torrent = make_torrent(tmp_path, "v6-lt.bin")
    procs: list[JsonProc] = []
    try:
        lt = JsonProc(
            pub2.argv(sys.executable, LT_SEEDER, str(torrent), "--data", str(src.parent),
                      "--listen", f"[{pub2.addr6}]:{PORT}"),
            stderr_path=tmp_path / "lt.err", name="lt-seeder",
        )  # fmt: skip
        procs.append(lt)
        lt.wait_event(lambda e: e.get("event") == "seeding", 60, "libtorrent to check its data")
        leech = download(
            v61, torrent, tmp_path / "got", tmp_path, "--no-dht", "--peer", f"[{pub2.addr6}]:{PORT}"
        )
        procs.append(leech)
        completed(leech, "the download from libtorrent over IPv6")
        assert same_bytes(tmp_path / "got" / src.name, src)
        assert connected_from(leech) == {pub2.addr6}
        seen = lt.wait_event(
            lambda e: e.get("event") == "peers" and bool(e["peers"]), 20, "libtorrent's peers"
        )
        assert any(p.startswith(f"{v61.addr6}:") for p in seen["peers"]), seen
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_dual_stack_seeder_serves_an_ipv4_and_an_ipv6_leecher(net: Internet, tmp_path: Path) -> None:
    """One seeder on the default ``::``: the IPv4-only leecher (behind NAT) dials 198.18.0.11, the
    IPv6-only one 2001:db8::b; both complete, and the seeder saw one peer of each family (the IPv4 one
    as plain IPv4, the NAT router's address)."""
    pub1, plain1 = net.public["pub1"], net.homes["plain"].hosts["plain1"]
    v61, router4 = net.homes["v6"].hosts["v61"], net.homes["plain"].router
    src, torrent = make_torrent(tmp_path, "dual.bin")
    procs: list[JsonProc] = []
    try:
        seed = seeder(pub1, torrent, src, tmp_path, "--no-dht")
        procs.append(seed)
        get4 = download(
            plain1, torrent, tmp_path / "got4", tmp_path, "--no-dht", "--peer", f"{pub1.addr}:{PORT}"
        )
        get6 = download(
            v61, torrent, tmp_path / "got6", tmp_path, "--no-dht", "--peer", f"[{pub1.addr6}]:{PORT}"
        )
        procs += [get4, get6]
        completed(get4, "the IPv4-only download")
        completed(get6, "the IPv6-only download")
        assert same_bytes(tmp_path / "got4" / src.name, src)
        assert same_bytes(tmp_path / "got6" / src.name, src)
        saw_peers(seed, {router4.addr, v61.addr6})
        assert not any(a.startswith("::ffff:") for a in connected_from(seed))
    finally:
        for proc in reversed(procs):
            proc.stop()
