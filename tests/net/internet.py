"""A small internet in network namespaces: public hosts, home networks behind NAT routers, miniupnpd.

The test bed of docs/testing-net.md, for tests/net/ and bench/ scripts (they add ``tests/net`` and
``tests/session`` to ``sys.path``). Root only; :func:`require_internet` skips with the reason elsewhere
and fails instead when ``CI=true``. Every address exists only inside the namespaces:

* the "internet" is a bridge in its own namespace (``bwnet<pid>-inet``); public hosts and the routers'
  WAN sides sit on it with addresses from the benchmarking range ``198.18.0.0/24`` (RFC 2544) and
  ``2001:db8::/64`` (RFC 3849, documentation);
* each home is a router namespace (``bwnet<pid>-<home>``) with a WAN veth ``wan0`` on the public
  bridge and a LAN bridge ``lan0``; home hosts hang off ``lan0`` with a private ``/24`` and a default
  route to the router, which forwards and masquerades (``iptables -t nat ... MASQUERADE``);
* a home with ``service="miniupnpd"`` runs Debian's ``miniupnpd`` (nftables build) on its router: UPnP
  IGD at ``http://<router LAN>:5000/rootDesc.xml``, NAT-PMP/PCP at ``<router LAN>:5351``,
  ``secure_mode=yes``, and ``ext_ip=`` :data:`MINIUPNPD_EXT_IP` (miniupnpd 2.3.1 refuses to map
  anything when its outside address is private or reserved, as 198.18.x is: the external address it
  reports therefore differs from the router's real WAN address);
* an ``ipv6_only`` home gets a routed ``2001:db8:<n>::/64`` and no IPv4 at all (no NAT).

Namespaces are named ``bwnet<pid>-<name>``; :meth:`Internet.close` kills what still runs inside them and
deletes them, and every new :class:`Internet` first removes the namespaces of runs whose process is gone
(a SIGKILLed run cannot clean up). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_SESSION_TESTS = str(Path(__file__).resolve().parents[1] / "session")
if _SESSION_TESTS not in sys.path:
    sys.path.append(_SESSION_TESTS)

from netns_testlib import (  # noqa: E402
    delete_namespace,
    ip,
    leftover_namespaces,
    netns_unavailable_reason,
    remove_stale_namespaces,
    run,
)

__all__ = [
    "MINIUPNPD_EXT_IP",
    "NS_PREFIX",
    "PUBLIC4",
    "PUBLIC6",
    "Home",
    "Internet",
    "NetHost",
    "UpnpcMapping",
    "internet",
    "internet_unavailable_reason",
    "leftover_namespaces",
    "require_internet",
    "standard_internet",
    "upnpc_mappings",
]

NS_PREFIX = "bwnet"
PUBLIC4 = "198.18.0"  #: the public /24 (RFC 2544 benchmarking range: never routed outside)
PUBLIC6 = "2001:db8::"  #: the public /64 (RFC 3849 documentation range)
#: what miniupnpd reports as its external address (it refuses reserved ones such as 198.18.x);
#: a TEST-NET-looking but unreserved literal that nothing ever dials
MINIUPNPD_EXT_IP = "203.0.114.1"
UPNP_PORT = 5000
NATPMP_PORT = 5351
TOOLS = ("ip", "tc", "iptables")
SERVICE_TOOLS = ("miniupnpd", "nft", "upnpc")
APT_HINT = "apt-get install iproute2 iptables nftables miniupnpd-nftables miniupnpc (scripts/setup.sh)"


def internet_unavailable_reason(*, with_service: bool = True) -> str | None:
    """Why the test bed cannot be built here (None when it can)."""
    reason = netns_unavailable_reason()
    if reason is not None:
        return reason
    for tool in TOOLS + (SERVICE_TOOLS if with_service else ()):
        if shutil.which(tool) is None:
            return f"{tool} is not installed ({APT_HINT})"
    return None


def require_internet(*, with_service: bool = True) -> None:
    """Skip the calling test (pytest) when the test bed cannot be built; with ``CI=true`` fail instead."""
    import pytest

    reason = internet_unavailable_reason(with_service=with_service)
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the namespace internet is required in CI: {reason}")
    print(f"skipping the namespace internet test: {reason}", file=sys.stderr)
    pytest.skip(reason)


@dataclass
class NetHost:
    """One namespace: a public host, a home host, or a router (``addr`` = its WAN address)."""

    name: str
    ns: str
    addr: str | None  #: IPv4 address (None on an IPv6-only host)
    addr6: str | None = None
    dev: str = "eth0"

    def argv(self, *cmd: str) -> list[str]:
        """``cmd`` run inside this namespace."""
        return ["ip", "netns", "exec", self.ns, *cmd]

    def run(self, *cmd: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess[str]:
        res: subprocess.CompletedProcess[str] = run(self.argv(*cmd), check=check, timeout=timeout)
        return res

    def python(self, code: str, *, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run ``code`` with this interpreter inside the namespace (never raises on a failing script)."""
        res: subprocess.CompletedProcess[str] = run(
            self.argv(sys.executable, "-c", code), check=False, timeout=timeout
        )
        return res

    def listening(self, port: int, proto: str = "tcp") -> bool:
        flag = "-ltnH" if proto == "tcp" else "-lunH"
        out = run(self.argv("ss", flag), check=False).stdout
        local = [line.split()[3] for line in out.splitlines() if len(line.split()) > 3]
        return any(addr.endswith(f":{port}") for addr in local)


@dataclass
class Home:
    """A home network: its router and the hosts on its LAN."""

    name: str
    router: NetHost  #: ``router.addr``/``addr6`` are its WAN addresses on the public bridge
    lan_addr: str  #: the router's LAN address (IPv4, or IPv6 in an IPv6-only home)
    subnet: str  #: e.g. ``"192.168.1"`` or ``"2001:db8:3::"``
    service: str | None  #: ``"miniupnpd"`` or None
    ipv6_only: bool = False
    hosts: dict[str, NetHost] = field(default_factory=dict)
    service_log: Path | None = None

    @property
    def ext_ip(self) -> str | None:
        """The external address a mapping service reports (not the address the public side sees)."""
        return MINIUPNPD_EXT_IP if self.service == "miniupnpd" else self.router.addr


class Internet:
    """The namespaces of one test bed; build with :meth:`add_public_host` and :meth:`add_home`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"{NS_PREFIX}{os.getpid()}-"
        self.public: dict[str, NetHost] = {}
        self.homes: dict[str, Home] = {}
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._ports = 0
        remove_stale_namespaces(NS_PREFIX)
        self.inet_ns = self._add_ns("inet")
        try:
            ip("-n", self.inet_ns, "link", "add", "br0", "type", "bridge")
            ip("-n", self.inet_ns, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    # -- building -------------------------------------------------------------------------------
    def _add_ns(self, name: str) -> str:
        ns = f"{self.prefix}{name}"
        if len(ns) > 60:
            raise ValueError(f"namespace name too long: {ns}")
        ip("netns", "add", ns)
        self._namespaces.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        # no duplicate address detection: IPv6 addresses are usable at once
        for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}=0"], check=False)
        return ns

    def _plug_public(self, ns: str, dev: str) -> None:
        self._ports += 1
        peer = f"p{self._ports}"
        ip("link", "add", dev, "netns", ns, "type", "veth", "peer", "name", peer, "netns", self.inet_ns)
        ip("-n", self.inet_ns, "link", "set", peer, "master", "br0")
        ip("-n", self.inet_ns, "link", "set", peer, "up")
        ip("-n", ns, "link", "set", dev, "up")

    def add_public_host(self, name: str, octet: int, *, ipv6: bool = True) -> NetHost:
        """A host on the public bridge at ``198.18.0.<octet>`` (and ``2001:db8::<octet>``)."""
        ns = self._add_ns(name)
        self._plug_public(ns, "eth0")
        addr = f"{PUBLIC4}.{octet}"
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        addr6 = None
        if ipv6:
            addr6 = f"{PUBLIC6}{octet:x}"
            ip("-n", ns, "addr", "add", f"{addr6}/64", "dev", "eth0", "nodad")
        host = self.public[name] = NetHost(name, ns, addr, addr6)
        # routes back into the IPv6 homes (their /64s are routed, not NATed)
        for home in self.homes.values():
            if home.ipv6_only and addr6 is not None:
                assert home.router.addr6 is not None
                ip("-n", ns, "-6", "route", "add", f"{home.subnet}/64", "via", home.router.addr6)
        return host

    def add_home(
        self,
        name: str,
        wan_octet: int,
        *,
        subnet: str = "192.168.1",
        service: str | None = None,
        ipv6_only: bool = False,
        natpmp: bool = True,
        upnp: bool = True,
    ) -> Home:
        """A router ``name`` at ``198.18.0.<wan_octet>`` on the public side and ``<subnet>.1`` inside.

        ``service="miniupnpd"`` starts miniupnpd on it (UPnP and/or NAT-PMP/PCP as ``upnp``/``natpmp``
        say). ``ipv6_only``: ``subnet`` is a ``2001:db8:<n>::`` prefix, the router forwards IPv6 only.
        """
        if service not in (None, "miniupnpd"):
            raise ValueError(f"unknown mapping service {service!r}")
        if service is not None and ipv6_only:
            raise ValueError("miniupnpd is only set up for an IPv4 home")
        ns = self._add_ns(name)
        self._plug_public(ns, "wan0")
        wan4 = f"{PUBLIC4}.{wan_octet}"
        wan6 = f"{PUBLIC6}{wan_octet:x}"
        ip("-n", ns, "addr", "add", f"{wan4}/24", "dev", "wan0")
        ip("-n", ns, "addr", "add", f"{wan6}/64", "dev", "wan0", "nodad")
        ip("-n", ns, "link", "add", "lan0", "type", "bridge")
        ip("-n", ns, "link", "set", "lan0", "up")
        router = NetHost(f"{name}-router", ns, wan4, wan6, dev="wan0")
        if ipv6_only:
            lan_addr = f"{subnet}1"
            ip("-n", ns, "addr", "add", f"{lan_addr}/64", "dev", "lan0", "nodad")
            router.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            for host in self.public.values():
                if host.addr6 is not None:
                    ip("-n", host.ns, "-6", "route", "add", f"{subnet}/64", "via", wan6)
        else:
            lan_addr = f"{subnet}.1"
            ip("-n", ns, "addr", "add", f"{lan_addr}/24", "dev", "lan0")
            router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            router.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE")
        home = self.homes[name] = Home(name, router, lan_addr, subnet, service, ipv6_only)
        if service == "miniupnpd":
            self._start_miniupnpd(home, natpmp=natpmp, upnp=upnp)
        return home

    def add_home_host(self, home: Home, name: str, octet: int) -> NetHost:
        """A host on ``home``'s LAN at ``<subnet>.<octet>`` with a default route to the router."""
        ns = self._add_ns(name)
        self._ports += 1
        peer = f"l{self._ports}"
        router_ns = home.router.ns
        ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", router_ns)
        ip("-n", router_ns, "link", "set", peer, "master", "lan0")
        ip("-n", router_ns, "link", "set", peer, "up")
        ip("-n", ns, "link", "set", "eth0", "up")
        if home.ipv6_only:
            addr6 = f"{home.subnet}{octet:x}"
            ip("-n", ns, "addr", "add", f"{addr6}/64", "dev", "eth0", "nodad")
            ip("-n", ns, "-6", "route", "add", "default", "via", home.lan_addr)
            host = NetHost(name, ns, None, addr6)
        else:
            addr = f"{home.subnet}.{octet}"
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "route", "add", "default", "via", home.lan_addr)
            host = NetHost(name, ns, addr)
        home.hosts[name] = host
        return host

    # -- miniupnpd ------------------------------------------------------------------------------
    def _start_miniupnpd(self, home: Home, *, natpmp: bool, upnp: bool) -> None:
        router = home.router
        # Debian's nft_init.sh needs a helper script the package does not ship: make the tables here.
        # miniupnpd 2.3.1 (nftables) adds its rules to the chains below, all in ``table inet filter``.
        rules = self.workdir / f"{home.name}-miniupnpd.nft"
        rules.write_text(
            "table inet filter {\n"
            "  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }\n"
            "  chain miniupnpd { }\n"
            "  chain prerouting { type nat hook prerouting priority -100; policy accept;"
            " jump prerouting_miniupnpd; }\n"
            "  chain postrouting { type nat hook postrouting priority 100; policy accept;"
            " jump postrouting_miniupnpd; }\n"
            "  chain prerouting_miniupnpd { }\n"
            "  chain postrouting_miniupnpd { }\n"
            "}\n"
        )
        router.run("nft", "-f", str(rules))
        conf = self.workdir / f"{home.name}-miniupnpd.conf"
        conf.write_text(
            "ext_ifname=wan0\n"
            f"ext_ip={MINIUPNPD_EXT_IP}\n"
            f"listening_ip=lan0\n"
            f"port={UPNP_PORT}\n"
            f"enable_natpmp={'yes' if natpmp else 'no'}\n"
            f"enable_upnp={'yes' if upnp else 'no'}\n"
            "secure_mode=yes\n"
            "system_uptime=yes\n"
            "notify_interval=60\n"
            "clean_ruleset_interval=600\n"
            "min_lifetime=30\n"
            "uuid=3b0a3e4c-77f1-4b4e-9a55-bb0a6f0c0001\n"
            f"lease_file={self.workdir / (home.name + '-miniupnpd.leases')}\n"
            f"allow 1024-65535 {home.subnet}.0/24 1024-65535\n"
            "deny 0-65535 0.0.0.0/0 0-65535\n"
        )
        log = home.service_log = self.workdir / f"{home.name}-miniupnpd.log"
        pidfile = self.workdir / f"{home.name}-miniupnpd.pid"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                router.argv("miniupnpd", "-d", "-f", str(conf), "-P", str(pidfile)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            ready = (not upnp or router.listening(UPNP_PORT, "tcp")) and (
                not natpmp or router.listening(NATPMP_PORT, "udp")
            )
            if ready:
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"miniupnpd did not start in {home.name}:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def miniupnpd_log(self, home: Home) -> str:
        return home.service_log.read_text(errors="replace") if home.service_log else ""

    # -- cleanup --------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the services, kill what still runs in the namespaces, delete them. Idempotent."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        self._procs.clear()
        while self._namespaces:
            delete_namespace(self._namespaces.pop())


@contextlib.contextmanager
def internet(workdir: Path) -> Iterator[Internet]:
    """An empty :class:`Internet`, closed on exit whatever happens."""
    net = Internet(workdir)
    try:
        yield net
    finally:
        net.close()


def standard_internet(net: Internet, *, ipv6_home: bool = True) -> Internet:
    """The topology of docs/testing-net.md:

    ====================  =====================================  ==================================
    namespace             address                                role
    ====================  =====================================  ==================================
    ``tracker``           198.18.0.2, 2001:db8::2                tracker + DHT bootstrap host
    ``pub1``, ``pub2``    198.18.0.11/.12, 2001:db8::b/c         public peers
    ``upnp`` (router)     198.18.0.101 / LAN 192.168.1.1         NAT + miniupnpd (UPnP, NAT-PMP/PCP)
    ``upnp1``             192.168.1.10                           host in the miniupnpd home
    ``plain`` (router)    198.18.0.102 / LAN 10.0.2.1            NAT, no mapping service
    ``plain1``            10.0.2.10                              host in the plain home
    ``v6`` (router)       2001:db8::67 / LAN 2001:db8:3::1       IPv6-only home, routed
    ``v61``               2001:db8:3::a                          host in the IPv6-only home
    ====================  =====================================  ==================================
    """
    net.add_public_host("tracker", 2)
    net.add_public_host("pub1", 11)
    net.add_public_host("pub2", 12)
    upnp = net.add_home("upnp", 101, subnet="192.168.1", service="miniupnpd")
    net.add_home_host(upnp, "upnp1", 10)
    plain = net.add_home("plain", 102, subnet="10.0.2")
    net.add_home_host(plain, "plain1", 10)
    if ipv6_home:
        v6 = net.add_home("v6", 103, subnet="2001:db8:3::", ipv6_only=True)
        net.add_home_host(v6, "v61", 10)
    return net


@dataclass(frozen=True)
class UpnpcMapping:
    """One line of ``upnpc -l``."""

    protocol: str  #: "TCP" or "UDP"
    external_port: int
    internal_client: str
    internal_port: int
    description: str
    lease: int


_UPNPC_LINE = re.compile(
    r"^\s*\d+\s+(TCP|UDP)\s+(\d+)->([\d.]+):(\d+)\s+'([^']*)'\s+'[^']*'\s+(\d+)", re.MULTILINE
)


def upnpc_mappings(host: NetHost, timeout: float = 15) -> list[UpnpcMapping]:
    """The mappings the home's IGD lists, asked with ``upnpc -l`` from ``host`` inside the home."""
    out = host.run("upnpc", "-l", timeout=timeout, check=False).stdout
    return [
        UpnpcMapping(m[1], int(m[2]), m[3], int(m[4]), m[5], int(m[6])) for m in _UPNPC_LINE.finditer(out)
    ]


_PROBE = """\
import socket, sys
proto, addr, port, timeout, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), \\
    bytes.fromhex(sys.argv[5])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
try:
    if proto == "tcp":
        s = socket.create_connection((addr, port), timeout=timeout)
        s.sendall(payload)
    else:
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.sendto(payload, (addr, port))
except OSError:
    sys.exit(3)
try:
    data = s.recv(4096)
except OSError:
    if proto == "udp":
        sys.exit(3)
    data = b""
sys.stdout.write(data.hex())
"""


def _probe(src: NetHost, proto: str, addr: str, port: int, payload: bytes, timeout: float) -> bytes | None:
    argv = src.argv(sys.executable, "-c", _PROBE, proto, addr, str(port), str(timeout), payload.hex())
    res = run(argv, check=False, timeout=timeout + 10)
    return bytes.fromhex(res.stdout.strip()) if res.returncode == 0 else None


def tcp_probe(
    src: NetHost, addr: str, port: int, *, payload: bytes = b"", timeout: float = 3
) -> bytes | None:
    """Connect from ``src`` to ``addr:port`` and send ``payload``; the first bytes the other side sends
    (b"" if it sends none before closing), or None when the connection fails."""
    return _probe(src, "tcp", addr, port, payload, timeout)


def udp_probe(src: NetHost, addr: str, port: int, payload: bytes, *, timeout: float = 3) -> bytes | None:
    """Send one datagram from ``src`` to ``addr:port``; the first reply, or None when none comes."""
    return _probe(src, "udp", addr, port, payload, timeout)


def hosts_of(net: Internet) -> Sequence[NetHost]:
    """Every host and router of ``net`` (for reachability tables)."""
    out: list[NetHost] = list(net.public.values())
    for home in net.homes.values():
        out.append(home.router)
        out.extend(home.hosts.values())
    return out


def drop_unsolicited(home: Home) -> None:
    """Make ``home``'s router drop what arrives on its WAN side unasked, as a home router's firewall
    does (the NAT still forwards replies to flows its hosts opened). Without it, a datagram sent to the
    router's WAN port is answered with ICMP port unreachable and leaves a conntrack entry that makes
    the NAT give the next outgoing flow to that sender another source port (the hole-punching tests
    and tests/net/reachability.py use it on both plain homes)."""
    router = home.router
    router.run("iptables", "-A", "INPUT", "-i", "wan0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
               "-j", "ACCEPT")  # fmt: skip
    router.run("iptables", "-A", "INPUT", "-i", "wan0", "-j", "DROP")


def add_second_plain_home(net: Internet) -> Home:
    """A second home without a mapping service (``plain2``: router 198.18.0.104, LAN 10.0.4.0/24, host
    ``plain21`` at 10.0.4.10), for two NATed peers that cannot dial each other (BEP 55 tests)."""
    home = net.add_home("plain2", 104, subnet="10.0.4")
    net.add_home_host(home, "plain21", 10)
    return home
