"""SOCKS5 proxy (issue 21, session/proxy.py) through a real SOCKS5 server: Debian's Dante (``danted``),
started by the test on 127.0.0.1 with its outgoing address bound to 127.0.0.5. A download through it:
the seeder sees only the proxy's address, and the HTTP tracker's announce comes from the proxy too.
While proxied there is no uTP socket and no DHT node, and a UDP tracker is never contacted."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from test_session_webseed import Nginx
from test_session_webseed import torrent as webseed_torrent

from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.proxy import parse_proxy
from testtools import require_tool, skip_missing, until
from trackertools import static_tracker

pytestmark = pytest.mark.timeout(90)

SEEDER, PROXY_OUT = "127.0.0.2", "127.0.0.5"


def danted_path() -> str:
    path = shutil.which("danted") or ("/usr/sbin/danted" if os.path.exists("/usr/sbin/danted") else None)
    if path is None:
        skip_missing("danted", "apt-get install dante-server (scripts/setup.sh does, as root)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def dante(tmp_path: Path, external: str = PROXY_OUT) -> AsyncIterator[str]:
    """A Dante SOCKS5 server on 127.0.0.1 that connects out from ``external``; yields its URL."""
    exe = danted_path()
    port = free_port()
    conf = tmp_path / "danted.conf"
    conf.write_text(
        "logoutput: stderr\n"
        f"internal: 127.0.0.1 port = {port}\n"
        f"external: {external}\n"
        "clientmethod: none\n"
        "socksmethod: none\n"
        "user.privileged: root\n"
        "user.unprivileged: nobody\n"
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
        "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }\n"
    )
    proc = await asyncio.create_subprocess_exec(
        exe, "-f", str(conf), "-p", str(tmp_path / "danted.pid"), "-N", "1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip

    def listening() -> bool:
        assert proc.returncode is None, "danted exited"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        await until(listening, timeout=15, what="danted listening")
        yield f"socks5://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def make(tmp_path: Path) -> tuple[Path, Torrent]:
    src = tmp_path / "seed" / "data.bin"
    src.parent.mkdir(parents=True)
    src.write_bytes(random.Random(9).randbytes(700_000))
    return src, parse_torrent(create_torrent(src, piece_length=32768))


async def test_a_download_through_dante_shows_only_the_proxy_address(tmp_path: Path) -> None:
    src, t = make(tmp_path)
    async with (
        dante(tmp_path) as proxy,
        Session(SessionConfig(listen_host=SEEDER, listen_port=0, enable_dht=False)) as seeder,
    ):
        hs = await seeder.add(t, src.parent)
        seen: set[str] = set()

        def seeder_peers() -> set[str]:
            seen.update(str(p["address"]).rsplit(":", 1)[0] for p in hs.peers())
            return seen

        # rate-limited (700 kB in ~2 s): unlimited, the transfer could end between two samples of
        # the leecher's peer list (seen once in CI)
        leech_cfg = SessionConfig(
            listen_host="127.0.0.1", listen_port=0, proxy=proxy, dht_bootstrap=[], download_rate_limit=400_000
        )
        async with (
            static_tracker([(SEEDER, seeder.port)]) as tracker,
            Session(leech_cfg) as leecher,
        ):
            assert leecher.utp is None and leecher.dht is None  # nothing over UDP while proxied
            assert leecher.transports == ["tcp"]
            h = await leecher.add(t, tmp_path / "leech", trackers=[tracker.url])
            done = asyncio.ensure_future(h.wait_complete(timeout=30))
            ours: set[str] = set()
            while not done.done():  # both views, sampled while the transfer runs
                seeder_peers()
                ours.update(str(p["address"]) for p in h.peers())
                await asyncio.sleep(0.01)
            await done
            assert seeder_peers() == {PROXY_OUT}  # never 127.0.0.1, the leecher's own address
            # the leecher's own view is the seeder's real address, not the proxy's
            assert ours == {f"{SEEDER}:{seeder.port}"}
            assert tracker.requests and {ip for ip, _ in tracker.requests} == {PROXY_OUT}
            assert h.tracker_status()[0].status == "ok"
            assert leecher.privacy_status()["proxy"] == proxy.removeprefix("socks5://")
    assert (tmp_path / "leech" / "data.bin").read_bytes() == src.read_bytes()


async def test_a_udp_tracker_is_not_contacted_through_a_proxy(tmp_path: Path) -> None:
    """A UDP tracker would see our address: its status says why it is skipped, and no datagram
    reaches it."""
    _, t = make(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        url = f"udp://127.0.0.1:{udp.getsockname()[1]}/announce"
        cfg = SessionConfig(
            listen_host="127.0.0.1", listen_port=0, proxy="socks5://127.0.0.1:9", dht_bootstrap=[]
        )
        async with Session(cfg) as s:
            h = await s.add(t, tmp_path / "leech", trackers=[url])
            await until(lambda: h.tracker_status()[0].status == "error", what="tracker error")
            assert "not used through the proxy" in (h.tracker_status()[0].error or "")
        with pytest.raises(BlockingIOError):
            udp.recv(2048)


async def test_an_unreachable_proxy_fails_dials_not_the_session(tmp_path: Path) -> None:
    src, t = make(tmp_path)
    dead = free_port()
    async with Session(SessionConfig(listen_host=SEEDER, listen_port=0, enable_dht=False)) as seeder:
        await seeder.add(t, src.parent)
        cfg = SessionConfig(
            listen_host="127.0.0.1", listen_port=0, proxy=f"socks5://127.0.0.1:{dead}", enable_dht=False
        )
        async with Session(cfg) as s:
            h = await s.add(t, tmp_path / "leech", peers=[(SEEDER, seeder.port)])
            rt = s.lookup(t.swarm_hash)
            assert rt is not None
            await until(lambda: not rt.peer_manager.connecting and rt.candidates[(SEEDER, seeder.port)] > 0)
            assert h.peers() == [] and h.status().progress == 0.0


def test_proxy_urls() -> None:
    p = parse_proxy("socks5://user:p%40ss@proxy.example:1080")
    assert (p.scheme, p.host, p.port, p.username, p.password) == (
        "socks5",
        "proxy.example",
        1080,
        "user",
        "p@ss",
    )
    assert parse_proxy("socks5h://[::1]:1080").url() == "socks5h://[::1]:1080"
    assert parse_proxy("socks5h://h:1").remote_dns
    for bad in (
        "http://h:1",
        "socks5://h",
        "socks5://:1080",
        "socks4://h:1",
        "socks5://h:1/x",
        "socks5://h:99999",
    ):
        with pytest.raises(ValueError):
            parse_proxy(bad)
    with pytest.raises(ValueError, match="tcp"):
        SessionConfig(proxy="socks5://h:1", transports=("utp",))
    with pytest.raises(ValueError):
        SessionConfig(proxy="ftp://h:1")


@pytest.fixture
def nginx_server(tmp_path: Path) -> Iterator[Nginx]:
    server = Nginx(tmp_path / "nginx")
    server.start(require_tool("nginx", "apt-get install nginx"))
    try:
        yield server
    finally:
        server.stop()


async def test_a_web_seed_through_dante(tmp_path: Path, nginx_server: Nginx) -> None:
    """A torrent whose only source is its web seed (nginx on loopback): fetched through the proxy,
    so nginx logs every request from 127.0.0.5."""
    nginx = nginx_server
    src, _ = make(tmp_path)
    (nginx.root / "mirror.bin").write_bytes(src.read_bytes())
    t = webseed_torrent(src, [f"{nginx.url}/mirror.bin"])
    async with dante(tmp_path) as proxy:
        cfg = SessionConfig(listen_host="127.0.0.1", listen_port=0, proxy=proxy, dht_bootstrap=[])
        async with Session(cfg) as s:
            h = await s.add(t, tmp_path / "dl")
            await h.wait_complete(timeout=60)
            assert h.status().web_seed_downloaded == src.stat().st_size
    log = (nginx.base / "access.log").read_text().splitlines()
    assert log and {line.split()[0] for line in log} == {PROXY_OUT}
    assert (tmp_path / "dl" / "data.bin").read_bytes() == src.read_bytes()
