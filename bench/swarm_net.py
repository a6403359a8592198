"""Plumbing for ``bench_swarm.py``: a LAN of network namespaces and JSON-lines child processes.

:class:`Net` builds hosts as Linux network namespaces on one bridge that lives in its own namespace
(the shape of tests/session/netns_testlib.py and docs/testing-lan.md): a veth pair per host, an
address in a private /24 that exists only inside these namespaces (the bridge has no address, no
host has a default route), ``lo`` up, a ``tbf`` qdisc on the host's end limiting its uplink and,
optionally, one on the bridge's end limiting its downlink. :meth:`Net.close` deletes every
namespace it made (veths and the bridge go with them). Names are ``bsw<pid>-<host>``; namespaces
left by a run whose process is gone (SIGKILL) are removed by :func:`remove_stale_namespaces`.

:class:`Proc` runs a command whose stdout is JSON lines, stamps each line with its arrival time on a
reader thread, and samples CPU seconds and peak RSS from ``/proc/<pid>`` (``ip netns exec`` execs
its command, so the pid is the real process).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Event = dict[str, Any]
CLK_TCK = os.sysconf("SC_CLK_TCK")
NS_RE = re.compile(r"^bsw(\d+)-")


def run(argv: list[str], check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", *args], check)


def list_namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list", check=False).stdout.splitlines() if line]


def remove_stale_namespaces() -> list[str]:
    """Delete ``bsw<pid>-*`` namespaces whose creating process no longer exists."""
    removed = []
    for ns in list_namespaces():
        m = NS_RE.match(ns)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            ip("netns", "del", ns, check=False)
            removed.append(ns)
    return removed


def netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "tc"):
        if run(["which", tool], check=False).returncode != 0:
            return f"{tool} (iproute2) is not installed"
    return None


class Host:
    def __init__(self, name: str, ns: str, addr: str, dev: str, up_bps: int | None) -> None:
        self.name = name
        self.ns = ns
        self.addr = addr
        self.dev = dev  #: the veth end inside the host: its tx is what the host sends
        self.up_bps = up_bps

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def tx_bytes_sysfs(self, counter: str = "tx_bytes") -> int:
        """``/sys/class/net/<dev>/statistics/<counter>`` (default ``tx_bytes``) inside the namespace."""
        res = run(self.argv("cat", f"/sys/class/net/{self.dev}/statistics/{counter}"), check=False)
        return int(res.stdout.strip()) if res.stdout.strip().isdigit() else -1


def proc_net_tx(pid: int, dev: str) -> int | None:
    """tx bytes of ``dev`` in the network namespace of process ``pid`` (``/proc/<pid>/net/dev``)."""
    try:
        text = Path(f"/proc/{pid}/net/dev").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name.strip() == dev:
            return int(rest.split()[8])
    return None


class Net:
    """A bridged /24 of namespaces private to this process."""

    def __init__(self, subnet: str = "10.78.0", mtu: int | None = None) -> None:
        self.prefix = f"bsw{os.getpid()}-"
        self.subnet = subnet
        self.mtu = mtu
        self.bridge_ns = f"{self.prefix}br"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        try:
            self._add_ns(self.bridge_ns)
            ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def _add_ns(self, ns: str) -> None:
        ip("netns", "add", ns)
        self._namespaces.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")

    def add_host(
        self, name: str, octet: int, *, up_bps: int | None = None, down_bps: int | None = None
    ) -> Host:
        """Namespace ``bsw<pid>-<name>`` at ``<subnet>.<octet>``; ``up_bps``/``down_bps`` in bit/s."""
        ns = f"{self.prefix}{name}"
        self._add_ns(ns)
        idx = len(self.hosts)
        dev, peer = "eth0", f"p{idx}"
        ip("link", "add", dev, "netns", ns, "type", "veth", "peer", "name", peer, "netns", self.bridge_ns)
        if self.mtu:
            ip("-n", ns, "link", "set", dev, "mtu", str(self.mtu))
            ip("-n", self.bridge_ns, "link", "set", peer, "mtu", str(self.mtu))
        ip("-n", self.bridge_ns, "link", "set", peer, "master", "br0")
        ip("-n", self.bridge_ns, "link", "set", peer, "up")
        addr = f"{self.subnet}.{octet}"
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        ip("-n", ns, "link", "set", dev, "up")
        if up_bps:
            self._tbf(ns, dev, up_bps, self.mtu)
        if down_bps:
            self._tbf(self.bridge_ns, peer, down_bps, self.mtu)
        host = self.hosts[name] = Host(name, ns, addr, dev, up_bps)
        return host

    @staticmethod
    def _tbf(ns: str, dev: str, bps: int, mtu: int | None = None) -> None:
        # the same shape as the LAN test: small burst (4000 B; two frames when the MTU is larger:
        # tbf drops a packet bigger than its bucket), 400 ms of queue
        burst = f"{max(32, -(-(2 * (mtu or 0) + 64) * 8 // 1000))}kbit"
        run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf",
             "rate", f"{bps}bit", "burst", burst, "latency", "400ms"])  # fmt: skip

    def close(self) -> None:
        """Delete every namespace made (their veths and the bridge go too). Idempotent."""
        while self._namespaces:
            ns = self._namespaces.pop()
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                ip("netns", "del", ns, check=False)


# ----------------------------------------------------------------------------------------------


class Proc:
    """A child printing JSON lines; every line is stamped with ``_t`` (time.monotonic at arrival)."""

    #: Environment of every child (None: ours); bench_swarm.py sets PYTHONPATH here for ``--src``.
    env: dict[str, str] | None = None

    def __init__(self, argv: Sequence[str], *, name: str, stderr_path: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._eof = False
        self._stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=cwd,
            env=Proc.env,
        )
        self.pid = self.proc.pid
        self.cpu_s = 0.0
        self.peak_rss = 0
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for raw in self.proc.stdout:
                now = time.monotonic()
                line = raw.decode(errors="replace").strip()
                if not line:
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = {"event": "_unparsed", "line": line}
                if not isinstance(ev, dict):
                    ev = {"event": "_unparsed", "line": line}
                ev["_t"] = now
                with self._cond:
                    self.events.append(ev)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def find(self, pred: Callable[[Event], bool]) -> Event | None:
        with self._cond:
            return next((e for e in self.events if pred(e)), None)

    def wait_for(self, pred: Callable[[Event], bool], timeout: float, what: str) -> Event:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ev = next((e for e in self.events if pred(e)), None)
                if ev is not None:
                    return ev
                if self._eof:
                    raise RuntimeError(
                        f"{self.name} exited (rc={self.proc.poll()}) before {what}\n{self.tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name}: no {what} within {timeout:.0f} s\n{self.tail()}")
                self._cond.wait(min(left, 1.0))

    def last(self, kind: str) -> Event | None:
        with self._cond:
            return next((e for e in reversed(self.events) if e.get("event") == kind), None)

    def sample(self) -> None:
        """Update CPU seconds (user+system) and peak RSS (VmHWM) from /proc while it runs."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            self.cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
        except (OSError, IndexError, ValueError):
            pass

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, SIGKILL after ``grace`` s, reap, close pipes."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        self._reader.join(5)
        self._stderr.close()

    def tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            self._stderr.flush()
            return f"--- {self.name} stderr ---\n" + self._stderr_path.read_text(errors="replace")[-n:]
        return ""


def stop_all(procs: list[Proc], grace: float = 5.0) -> None:
    """SIGTERM every process at once, then wait for each (SIGKILL after ``grace``)."""
    for p in procs:
        if p.alive():
            with contextlib.suppress(OSError):
                p.proc.terminate()
    for p in procs:
        p.stop(grace)
