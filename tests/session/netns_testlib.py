"""Helpers for the process-level session tests: JSON-lines subprocesses and a LAN of network namespaces.

:class:`JsonProc` runs a command whose stdout is one JSON object per line (``bitswarm ... --json``),
collects the lines on a reader thread and lets the test wait for an event with a deadline.

:class:`Lan` builds hosts as Linux network namespaces (iproute2) joined by a bridge that lives in
its own namespace, so nothing touches the root namespace's interfaces or routes: every host gets a
veth pair (one end in the host, one on the bridge), an address in a private /24, ``lo`` up, and a
``tbf`` qdisc limiting its uplink. :meth:`Lan.close` deletes every namespace it made (which also
deletes their veths and the bridge). See docs/testing-lan.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

Event = dict[str, Any]


class JsonProc:
    """A subprocess printing JSON lines; stderr goes to a file (read it with :meth:`stderr_tail`)."""

    def __init__(self, argv: Sequence[str], *, stderr_path: Path, name: str = "") -> None:
        self.name = name or Path(argv[0]).name
        self.argv = list(argv)
        self.events: list[Event] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self._reader = threading.Thread(target=self._read, name=f"read-{self.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                if not line:
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = {"event": "_unparsed", "line": line}
                self._queue.put(ev if isinstance(ev, dict) else {"event": "_unparsed", "line": line})
        finally:
            self._queue.put(None)  # EOF marker

    def next_event(self, deadline: float) -> Event | None:
        """The next event, None at EOF; AssertionError when ``deadline`` (monotonic) passes first."""
        left = deadline - time.monotonic()
        try:
            ev = self._queue.get(timeout=max(0.0, left))
        except queue.Empty:
            tail = self.stderr_tail()
            raise AssertionError(f"{self.name}: no output before the deadline\n{tail}") from None
        if ev is None:
            self._queue.put(None)  # stay at EOF for later callers
            return None
        self.events.append(ev)
        return ev

    def wait_event(self, pred: Callable[[Event], bool], timeout: float, what: str) -> Event:
        """Read events until one matches ``pred``; fail on EOF or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next_event(deadline)
            if ev is None:
                raise AssertionError(
                    f"{self.name} exited (rc={self.proc.poll()}) before {what}\n{self.stderr_tail()}"
                )
            if pred(ev):
                return ev

    def drain(self, timeout: float) -> None:
        """Read every remaining event until EOF (the process must be exiting)."""
        deadline = time.monotonic() + timeout
        while self.next_event(deadline) is not None:
            pass

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout:.0f} s\n{self.stderr_tail()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL (no clean shutdown) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; reap; close the stderr file."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(5)
        self._stderr.close()

    def stderr_tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            self._stderr.flush()
            return f"--- {self.name} stderr ---\n" + self._stderr_path.read_text(errors="replace")[-n:]
        return ""


# ----------------------------------------------------------------------------------------------
def run(argv: list[str], check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", *args], check)


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be built here (None when they can): not root, no iproute2, or
    ``ip netns add`` refused (e.g. in an unprivileged container)."""
    if os.geteuid() != 0:
        return "LAN test needs root (network namespaces)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} (iproute2) is not installed"
    probe = f"bwprobe{os.getpid()}"
    try:
        res = ip("netns", "add", probe, check=False)
        if res.returncode != 0:
            return f"ip netns add failed: {res.stderr.strip()}"
        res = ip("-n", probe, "link", "add", "vp0", "type", "veth", "peer", "name", "vp1", check=False)
        if res.returncode != 0:
            return f"cannot create veth pairs: {res.stderr.strip()}"
        res = ip("-n", probe, "link", "add", "brprobe", "type", "bridge", check=False)
        if res.returncode != 0:
            return f"cannot create bridges: {res.stderr.strip()}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"ip netns does not work here: {exc}"
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            ip("netns", "del", probe, check=False)
    return None


class Host:
    """One namespace on the LAN."""

    def __init__(self, ns: str, addr: str, veth: str) -> None:
        self.ns = ns
        self.addr = addr
        self.veth = veth

    def argv(self, *cmd: str) -> list[str]:
        """``cmd`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *cmd]


class Lan:
    """A bridged /24 of namespaces, private to this run (unique names from the pid and a counter).

    The subnet only exists inside these namespaces: the bridge has no address and sits in its own
    namespace, no host has a default route, so nothing can leave the test LAN.
    """

    _seq = 0

    def __init__(self, subnet: str = "10.77.0") -> None:
        Lan._seq += 1
        self.prefix = f"bw{os.getpid() % 100000}x{Lan._seq}"  # short: interface names are <= 15 chars
        self.subnet = subnet
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

    def add_host(self, name: str, octet: int, *, uplink: str | None = None) -> Host:
        """A namespace ``name`` at ``<subnet>.<octet>``; ``uplink`` (e.g. ``"10mbit"``) shapes what it
        sends with ``tbf`` (netem is not needed: tbf alone gives a bandwidth bottleneck)."""
        ns = f"{self.prefix}{name}"
        self._add_ns(ns)
        idx = len(self.hosts)
        veth, peer = f"eth{idx}", f"p{idx}"
        ip("link", "add", veth, "netns", ns, "type", "veth", "peer", "name", peer, "netns", self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "set", peer, "master", "br0")
        ip("-n", self.bridge_ns, "link", "set", peer, "up")
        addr = f"{self.subnet}.{octet}"
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", veth)
        ip("-n", ns, "link", "set", veth, "up")
        if uplink is not None:
            run(["tc", "-n", ns, "qdisc", "add", "dev", veth, "root", "tbf",
                  "rate", uplink, "burst", "32kbit", "latency", "400ms"])  # fmt: skip
        host = self.hosts[name] = Host(ns, addr, veth)
        return host

    def qdisc(self, host: Host) -> str:
        return run(["tc", "-n", host.ns, "-s", "qdisc", "show", "dev", host.veth], check=False).stdout

    def close(self) -> None:
        """Delete every namespace made (their veths and the bridge go with them). Idempotent."""
        while self._namespaces:
            delete_namespace(self._namespaces.pop())


@contextlib.contextmanager
def lan(subnet: str = "10.77.0") -> Iterator[Lan]:
    net = Lan(subnet)
    try:
        yield net
    finally:
        net.close()


def leftover_namespaces(prefix: str) -> list[str]:
    res = ip("netns", "list", check=False)
    return [line.split()[0] for line in res.stdout.splitlines() if line.startswith(prefix)]


def delete_namespace(ns: str) -> None:
    """SIGKILL every process still inside ``ns`` (a daemon such as miniupnpd would keep the namespace
    alive after ``ip netns del``), then delete it. Never raises."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        pids = ip("netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        ip("netns", "del", ns, check=False)


def remove_stale_namespaces(prefix: str) -> list[str]:
    """Delete namespaces named ``<prefix><pid>-...`` whose creating process ``pid`` is gone (a run that
    was SIGKILLed could not clean up); returns their names."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    removed = []
    for ns in leftover_namespaces(prefix):
        m = pattern.match(ns)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            delete_namespace(ns)
            removed.append(ns)
    return removed
