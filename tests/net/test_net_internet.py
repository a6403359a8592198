"""The namespace internet itself (tests/net/internet.py, docs/testing-net.md): NAT, routing, miniupnpd,
cleanup. Root only; skipped with the reason elsewhere, an error in CI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from internet import (
    MINIUPNPD_EXT_IP,
    NS_PREFIX,
    Internet,
    internet,
    leftover_namespaces,
    require_internet,
    standard_internet,
    tcp_probe,
    upnpc_mappings,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

ECHO_PEER = (
    "import socket, sys\n"
    "s = socket.create_server(('::', int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True)\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    c, a = s.accept()\n"
    "    c.sendall(a[0].encode())\n"
    "    c.close()\n"
)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Internet]:
    require_internet()
    with internet(tmp_path) as built:
        yield standard_internet(built)
    assert not leftover_namespaces(built.prefix), "namespaces left behind"


def _echo_server(host_argv: list[str], port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*host_argv, sys.executable, "-c", ECHO_PEER, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    proc.stdout.close()
    assert line == "ready"
    return proc


def test_nat_routing_and_ipv6(net: Internet) -> None:
    """Homes reach the public side through their NAT (the public side sees the router's WAN address);
    the public side cannot open a connection into a home; the IPv6-only home is routed both ways."""
    pub = net.public["pub1"]
    upnp, plain, v6 = net.homes["upnp"], net.homes["plain"], net.homes["v6"]
    server = _echo_server(pub.argv(), 7001)
    try:
        assert tcp_probe(upnp.hosts["upnp1"], "198.18.0.11", 7001) == b"::ffff:" + upnp.router.addr.encode()
        assert tcp_probe(plain.hosts["plain1"], "198.18.0.11", 7001) == b"::ffff:198.18.0.102"
        assert tcp_probe(v6.hosts["v61"], "2001:db8::b", 7001) == b"2001:db8:3::a"
        assert tcp_probe(plain.hosts["plain1"], "2001:db8::b", 7001) is None  # no IPv6 in an IPv4 home
    finally:
        server.kill()
        server.wait()
    inside = _echo_server(plain.hosts["plain1"].argv(), 7002)
    inside6 = _echo_server(v6.hosts["v61"].argv(), 7002)
    try:
        assert tcp_probe(pub, "198.18.0.102", 7002) is None  # NAT: nothing forwarded
        assert tcp_probe(pub, "10.0.2.10", 7002, timeout=1) is None  # private: not routed
        assert tcp_probe(pub, "2001:db8:3::a", 7002) == b"2001:db8::b"
    finally:
        for proc in (inside, inside6):
            proc.kill()
            proc.wait()


def test_miniupnpd_maps_with_upnpc(net: Internet) -> None:
    """miniupnpd maps a port for ``upnpc`` in its home (reporting MINIUPNPD_EXT_IP), the public side
    reaches the home host through it, and the mapping is gone after ``upnpc -d``."""
    home = net.homes["upnp"]
    host = home.hosts["upnp1"]
    pub = net.public["pub1"]
    res = host.run("upnpc", "-e", "bed", "-a", "192.168.1.10", "7003", "7003", "TCP", "120", check=False)
    assert f"ExternalIPAddress = {MINIUPNPD_EXT_IP}" in res.stdout, res.stdout + net.miniupnpd_log(home)
    assert [(m.protocol, m.external_port, m.internal_client) for m in upnpc_mappings(host)] == [
        ("TCP", 7003, "192.168.1.10")
    ]
    server = _echo_server(host.argv(), 7003)
    try:
        assert tcp_probe(pub, home.router.addr or "", 7003) == b"::ffff:198.18.0.11"
    finally:
        server.kill()
        server.wait()
    host.run("upnpc", "-d", "7003", "TCP", check=False)
    assert upnpc_mappings(host) == []


BUILD_AND_WAIT = """
import sys, time
sys.path.insert(0, {here!r})
from pathlib import Path
from internet import Internet, standard_internet
net = standard_internet(Internet(Path({work!r})), ipv6_home=False)
print(net.prefix, flush=True)
time.sleep(600)
"""


def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    """A run SIGKILLed with its namespaces and miniupnpd up leaves them behind; the next Internet
    kills the orphaned miniupnpd and deletes them."""
    require_internet()
    code = BUILD_AND_WAIT.format(here=str(Path(__file__).parent), work=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        prefix = proc.stdout.readline().strip()
        assert prefix.startswith(NS_PREFIX), prefix
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    left = leftover_namespaces(prefix)
    assert len(left) >= 5, left
    pids = subprocess.run(["ip", "netns", "pids", f"{prefix}upnp"], capture_output=True, text=True).stdout
    assert pids.split(), "miniupnpd should still run in the orphaned router namespace"
    (tmp_path / "next").mkdir()
    with internet(tmp_path / "next"):
        assert leftover_namespaces(prefix) == []
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids.split()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids.split()), "orphaned miniupnpd still runs"


def _alive(pid: str) -> bool:
    """``pid`` exists and is not a zombie (an orphan's reaper may be slow)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
