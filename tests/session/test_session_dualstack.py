"""Dual-stack listening on loopback: a session on "::" (the default) serves an IPv4 and an IPv6
leecher on one TCP and one UDP socket, keys the IPv4 one as 127.0.0.1 (never ::ffff:127.0.0.1),
and an explicit address binds only its family. Skipped where the host has no IPv6 loopback."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import pytest

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.listen import bind_socket

pytestmark = pytest.mark.timeout(60)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_v6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")


def cfg(host: str, **kw: object) -> SessionConfig:
    return SessionConfig(listen_host=host, listen_port=0, enable_dht=False, **kw)  # type: ignore[arg-type]


def addresses(handle: object) -> set[str]:
    return {str(p["address"]).rsplit(":", 1)[0] for p in handle.peers()}  # type: ignore[attr-defined]


@needs_v6
@pytest.mark.parametrize("transports", ["tcp", "utp"])
async def test_dual_stack_seeder_serves_ipv4_and_ipv6_leechers(tmp_path: Path, transports: str) -> None:
    data = hashlib.shake_256(b"dual-stack").digest(700_000)
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "f.bin").write_bytes(data)
    t = parse_torrent(create_torrent(tmp_path / "seed" / "f.bin", piece_length=32768))
    async with (
        Session(cfg("::", transports=transports, enable_pex=False)) as seeder,
        Session(cfg("127.0.0.1", transports=transports)) as v4,
        Session(cfg("::1", transports=transports)) as v6,
    ):
        assert seeder.families == (4, 6) and v4.families == (4,) and v6.families == (6,)
        seen: set[str] = set()

        async def watch() -> None:
            async for ev in seeder.events():
                if ev.kind == "peer_connected":
                    seen.add(str(ev.data["address"]).rsplit(":", 1)[0])

        watcher = asyncio.get_running_loop().create_task(watch())
        await asyncio.sleep(0)
        await seeder.add(t, tmp_path / "seed")
        h4 = await v4.add(t, tmp_path / "v4", peers=[("127.0.0.1", seeder.port)])
        h6 = await v6.add(t, tmp_path / "v6", peers=[("::1", seeder.port)])
        await h4.wait_complete(timeout=40)
        await h6.wait_complete(timeout=40)
        assert addresses(h4) <= {"127.0.0.1"}
        assert addresses(h6) <= {"::1"}
        watcher.cancel()
        # the seeder saw both families on its one socket, the IPv4 one as plain IPv4
        assert seen == {"127.0.0.1", "::1"}, seen
    for d in ("v4", "v6"):
        assert (tmp_path / d / "f.bin").read_bytes() == data


@needs_v6
async def test_an_ipv4_only_session_skips_ipv6_candidates(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 40_000)
    t = parse_torrent(create_torrent(tmp_path / "f.bin"))
    async with Session(cfg("127.0.0.1")) as s:
        h = await s.add(t, tmp_path / "out")
        h.add_peer("::1", 6881)
        h.add_peer("::ffff:127.0.0.1", 6882)  # v4-mapped: kept as IPv4
        rt = s.lookup(t.swarm_hash)
        assert rt is not None
        assert set(rt.peer_manager.candidates) == {("127.0.0.1", 6882)}


@needs_v6
def test_bind_rules() -> None:
    dual = bind_socket("::", 0, socket.SOCK_STREAM)
    try:
        assert dual.families == (4, 6) and dual.sock.family == socket.AF_INET6
        assert dual.sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        # an IPv4 client reaches the dual-stack listener
        dual.sock.listen(1)
        with socket.create_connection(("127.0.0.1", dual.port), timeout=5):
            pass
    finally:
        dual.sock.close()
    only6 = bind_socket("::1", 0, socket.SOCK_DGRAM)
    only4 = bind_socket("0.0.0.0", 0, socket.SOCK_DGRAM)
    try:
        assert only6.families == (6,) and only6.sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert only4.families == (4,) and only4.sock.family == socket.AF_INET
    finally:
        only6.sock.close()
        only4.sock.close()


def test_wildcard_falls_back_to_ipv4_without_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "has_ipv6", False)
    b = bind_socket("::", 0, socket.SOCK_DGRAM)
    try:
        assert b.families == (4,) and b.sock.family == socket.AF_INET and b.host == "0.0.0.0"
    finally:
        b.sock.close()


@needs_v6
async def test_pex_added6_introduces_the_seeder_over_ipv6(tmp_path: Path) -> None:
    """A (dual-stack) seeds; B (::1) leeches slowly from A; C (::1) knows only B and meets A through
    B's ut_pex ``added6`` (A's address as B dialed it: [::1]:port)."""
    import random

    src = tmp_path / "a" / "data.bin"
    src.parent.mkdir(parents=True)
    src.write_bytes(random.Random(7).randbytes(1_000_000))
    t = parse_torrent(create_torrent(src, piece_length=65536))
    async with (
        Session(cfg("::", pex_interval=0.2)) as a,
        Session(cfg("::1", pex_interval=0.2)) as b,
        Session(cfg("::1", pex_interval=0.2)) as c,
    ):
        await a.add(t, src.parent)
        hb = await b.add(t, tmp_path / "b", peers=[("::1", a.port)])
        hb.set_rate_limits(upload=1024, download=32768)  # B stays a slow leecher of A
        async with asyncio.timeout(10):
            while not any(p["address"] == f"::1:{a.port}" for p in hb.peers()):
                await asyncio.sleep(0.05)
        hc = await c.add(t, tmp_path / "c", peers=[("::1", b.port)])
        await hc.wait_complete(timeout=30)
        rt = c.lookup(t.swarm_hash)
        assert rt is not None and ("::1", a.port) in rt.peer_manager.known_addresses()
        assert hb.status().uploaded <= 4 * 16384  # C's bytes came from A, known only through PEX
    assert (tmp_path / "c" / "data.bin").read_bytes() == src.read_bytes()


async def test_dht_families_follow_the_listen_sockets() -> None:
    hosts = {"127.0.0.1": (4,), "0.0.0.0": (4,)}
    if _has_ipv6_loopback():
        hosts |= {"::": (4, 6), "::1": (6,)}
    for host, families in hosts.items():
        async with Session(SessionConfig(listen_host=host, listen_port=0, dht_bootstrap=[])) as s:
            assert s.families == families
            assert s.dht is not None and s.dht.node.families == families, host
