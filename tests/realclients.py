"""Harnesses that run the real reference clients on loopback: libtorrent (PyPI), aria2c, opentracker.

Shared by the interop tests. Every wait is bounded; every process is stopped by the context manager.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from testtools import eventually


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds
    (:func:`testtools.eventually`)."""
    return eventually(predicate, timeout=timeout, interval=interval, what=what)


def wait_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    def up() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        return False

    wait_for(up, timeout, f"{host}:{port} to accept connections")


# ----------------------------------------------------------------------------------------------
class LibtorrentPeer:
    """A libtorrent session on 127.0.0.1, uTP, DHT, LSD, UPnP and NAT-PMP off (loopback speed)."""

    def __init__(self, **settings: Any) -> None:
        try:
            import libtorrent as lt
        except ImportError:  # pragma: no cover
            pytest.skip("libtorrent (PyPI) is not installed: pip install -e '.[dev]'")
        self.lt = lt
        base = {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "allow_multiple_connections_per_ip": True,
            "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
            "user_agent": "libtorrent-test",
        }
        base.update(settings)
        self.session = lt.session(base)

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def add(self, torrent: bytes, save_path: str | os.PathLike[str], *, seed_mode: bool = False) -> Any:
        lt = self.lt
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(lt.bdecode(torrent))
        params.save_path = str(save_path)
        if seed_mode:
            params.flags |= lt.torrent_flags.seed_mode
        return self.session.add_torrent(params)

    def wait_seeding(self, handle: Any, timeout: float = 30.0) -> None:
        def done() -> bool:
            self.session.pop_alerts()
            st = handle.status()
            return bool(st.is_seeding)

        wait_for(done, timeout, "libtorrent to have all pieces")

    def connect(self, handle: Any, port: int, host: str = "127.0.0.1") -> None:
        handle.connect_peer((host, port))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            for h in self.session.get_torrents():
                self.session.remove_torrent(h)
        self.session = None


@contextlib.contextmanager
def libtorrent_peer(**settings: Any) -> Iterator[LibtorrentPeer]:
    peer = LibtorrentPeer(**settings)
    try:
        yield peer
    finally:
        peer.close()


# ----------------------------------------------------------------------------------------------
class OpenTracker:
    """opentracker from Debian on 127.0.0.1 (HTTP and UDP on one port number), serving a whitelist.

    Debian's build refuses to run as root without ``-u nobody -d DIR`` and serves only the
    info-hashes listed (hex lines) in the ``-w`` file, relative to DIR.
    """

    def __init__(self, info_hashes: list[bytes]) -> None:
        exe = shutil.which("opentracker")
        if exe is None:
            pytest.skip("opentracker is not installed (apt-get install opentracker)")
        self.dir = tempfile.mkdtemp(prefix="opentracker-")
        os.chmod(self.dir, 0o755)
        Path(self.dir, "whitelist").write_text("".join(h.hex() + "\n" for h in info_hashes))
        os.chmod(Path(self.dir, "whitelist"), 0o644)
        self.proc: subprocess.Popen[bytes] | None = None
        for _ in range(5):
            self.port = free_port()
            cmd = [exe, "-i", "127.0.0.1", "-p", str(self.port), "-P", str(self.port), "-w", "whitelist"]
            if os.geteuid() == 0:
                cmd += ["-u", "nobody", "-d", self.dir]
            self.proc = subprocess.Popen(
                cmd, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_tcp("127.0.0.1", self.port, timeout=5)
                return
            except AssertionError:
                self.proc.kill()
                self.proc.wait(5)
        raise AssertionError("opentracker did not start")

    @property
    def announce_http(self) -> str:
        return f"http://127.0.0.1:{self.port}/announce"

    @property
    def announce_udp(self) -> str:
        return f"udp://127.0.0.1:{self.port}/announce"

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def opentracker(info_hashes: list[bytes]) -> Iterator[OpenTracker]:
    tracker = OpenTracker(info_hashes)
    try:
        yield tracker
    finally:
        tracker.close()


# ----------------------------------------------------------------------------------------------
class Aria2:
    """aria2c from Debian, seeding or downloading one torrent on 127.0.0.1 (DHT/LPD/PEX off)."""

    def __init__(
        self,
        torrent_path: str | os.PathLike[str],
        directory: str | os.PathLike[str],
        *,
        seed: bool,
        extra_args: Sequence[str] = (),
    ):
        exe = shutil.which("aria2c")
        if exe is None:
            pytest.skip("aria2c is not installed (apt-get install aria2)")
        self.port = free_port()
        cmd = [
            exe,
            f"--dir={directory}",
            f"--listen-port={self.port}",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--bt-external-ip=127.0.0.1",
            "--bt-tracker-interval=1",
            "--bt-tracker-connect-timeout=5",
            "--check-integrity=true",
            "--file-allocation=none",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--disable-ipv6=true",
            "--follow-torrent=false",
        ]
        if seed:
            cmd += ["--seed-ratio=0.0", "--seed-time=60", "--bt-seed-unverified=false"]
        else:
            cmd += ["--seed-time=0"]
        cmd += extra_args
        cmd.append(str(torrent_path))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
            raise AssertionError(f"aria2c did not finish in {timeout:.0f} s:\n{out[-2000:]}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
