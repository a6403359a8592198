"""The session's DHT node (BEP 5): trackerless magnet downloads, ``port`` messages, bootstrap rules,
and BEP 27 private torrents kept out of the DHT, PEX and LSD. Loopback only."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
from pathlib import Path

import pytest

from bitswarm.dht.server import DHTServer
from bitswarm.metainfo import Torrent, magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.config import PUBLIC_DHT_ROUTERS
from bitswarm.session.lsd import LocalDiscovery

pytestmark = pytest.mark.timeout(60)


def config(**kw: object) -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, **kw)  # type: ignore[arg-type]


def content(root: Path, size: int, seed: int = 3, name: str = "data.bin") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    p = root / name
    p.write_bytes(random.Random(seed).randbytes(size))
    return p


def torrent_of(path: Path, *, private: bool = False) -> Torrent:
    return parse_torrent(create_torrent(path, piece_length=32768, private=private))


async def until(cond: object, timeout: float, what: str) -> None:
    """Poll ``cond()`` every 50 ms for at most ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_magnet_download_over_the_dht_only(tmp_path: Path) -> None:
    """No tracker and no peer address anywhere: both sessions join a loopback bootstrap node; the
    seeder announces, the magnet leecher finds it with get_peers, fetches the metadata, downloads."""
    src = content(tmp_path / "seed", 700_000)
    t = torrent_of(src)
    uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[]).to_uri()
    async with DHTServer("127.0.0.1", 0) as boot:
        cfg = {"dht_bootstrap": [boot.address], "dht_announce_interval": 1.0}
        async with Session(config(**cfg)) as seeder, Session(config(**cfg)) as leecher:
            assert seeder.dht is not None and seeder.dht_port == seeder.port  # same number when free
            await seeder.add(t, src.parent)
            await until(lambda: boot.node.stored_peers(t.swarm_hash), 15, "seeder announce")
            assert ("127.0.0.1", seeder.port) in boot.node.stored_peers(t.swarm_hash)
            h = await leecher.add(uri, tmp_path / "leech", metadata_timeout=30)
            assert h.torrent.trackers == [] and h.torrent.info.raw == t.info.raw
            await h.wait_complete(timeout=30)
    assert (tmp_path / "leech" / src.name).read_bytes() == src.read_bytes()


async def test_port_message_puts_the_peer_node_in_the_routing_table(tmp_path: Path) -> None:
    """Neither node has a bootstrap; the BEP 5 ``port`` message after the handshake makes each ping
    the other's node, whose reply adds it to the routing table."""
    src = content(tmp_path / "seed", 100_000)
    t = torrent_of(src)
    async with Session(config(dht_bootstrap=[])) as a, Session(config(dht_bootstrap=[])) as b:
        assert a.dht is not None and b.dht is not None
        assert a.dht.node.routing_table_size() == 0
        await a.add(t, src.parent)
        await b.add(t, tmp_path / "b", peers=[("127.0.0.1", a.port)])
        await until(
            lambda: a.dht.node.routing_table_size() >= 1 and b.dht.node.routing_table_size() >= 1,  # type: ignore[union-attr]
            10,
            "port message pings",
        )


def test_bootstrap_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Public routers only without an explicit list, on a public/wildcard address, and without
    BITSWARM_NO_PUBLIC_DHT."""
    monkeypatch.delenv("BITSWARM_NO_PUBLIC_DHT", raising=False)
    assert Session(config()).dht_bootstrap_nodes() == []
    assert Session(SessionConfig(listen_host="192.168.1.5")).dht_bootstrap_nodes() == []
    assert Session(SessionConfig(listen_host="0.0.0.0")).dht_bootstrap_nodes() == PUBLIC_DHT_ROUTERS
    given = [("127.0.0.1", 7000)]
    assert Session(SessionConfig(listen_host="0.0.0.0", dht_bootstrap=given)).dht_bootstrap_nodes() == given
    assert Session(SessionConfig(listen_host="0.0.0.0", dht_bootstrap=[])).dht_bootstrap_nodes() == []
    monkeypatch.setenv("BITSWARM_NO_PUBLIC_DHT", "1")
    assert Session(SessionConfig(listen_host="0.0.0.0")).dht_bootstrap_nodes() == []


async def test_default_loopback_session_sends_no_dht_traffic(tmp_path: Path) -> None:
    src = content(tmp_path / "seed", 50_000)
    async with Session(config()) as s:
        assert s.dht is not None and s.reserved.dht
        await s.add(torrent_of(src), src.parent)
        rt = next(iter(s._torrents.values()))
        await until(lambda: rt.dht_lookups >= 1, 5, "first DHT round")
        assert s.dht.node.stats.sent == 0
    async with Session(config(enable_dht=False)) as off:
        assert off.dht is None and not off.reserved.dht


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_private_torrent_uses_no_dht_pex_or_lsd(tmp_path: Path) -> None:
    """BEP 27: the public torrent is announced on the DHT and LSD and offers ut_pex; the private one
    in the same session does none of it."""
    pub_src = content(tmp_path / "pub", 60_000, seed=1, name="public.bin")
    prv_src = content(tmp_path / "prv", 60_000, seed=2, name="private.bin")
    pub, prv = torrent_of(pub_src), torrent_of(prv_src, private=True)
    assert prv.info.private and not pub.info.private
    group = (f"239.255.{random.randrange(1, 255)}.{random.randrange(1, 255)}", free_udp_port())
    heard: set[bytes] = set()
    listener = LocalDiscovery(9, lambda h, a: heard.add(h), interface="127.0.0.1", group=group)
    async with DHTServer("127.0.0.1", 0) as boot, listener:
        cfg = config(
            dht_bootstrap=[boot.address],
            dht_announce_interval=0.5,
            enable_lsd=True,
            lsd_group=group,
            lsd_interface="127.0.0.1",
            lsd_interval=0.5,
        )
        async with Session(cfg) as s:
            hp = await s.add(pub, pub_src.parent)
            hv = await s.add(prv, prv_src.parent)
            await until(
                lambda: boot.node.stored_peers(pub.swarm_hash) and pub.swarm_hash in heard, 15, "public"
            )
            await asyncio.sleep(1.5)  # three more announce rounds of the public torrent
            assert not boot.node.stored_peers(prv.swarm_hash)
            assert prv.swarm_hash not in heard
            rt_pub, rt_prv = s._torrents[hp.info_hash], s._torrents[hv.info_hash]
            assert rt_pub.pex is not None and rt_prv.pex is None
            assert rt_prv.dht_lookups == 0 and rt_pub.dht_lookups >= 2
            # LSD news of the private torrent is ignored too
            s._on_lsd_peer(prv.swarm_hash, ("127.0.0.1", 4444))
            s._on_lsd_peer(pub.swarm_hash, ("127.0.0.1", 4444))
            assert ("127.0.0.1", 4444) not in rt_prv.candidates and ("127.0.0.1", 4444) in rt_pub.candidates


async def test_cli_download_magnet_with_bootstrap_only(tmp_path: Path) -> None:
    """``bitswarm download MAGNET -o DIR --bootstrap HOST:PORT``: no tracker, no --peer."""
    import json
    import sys

    src = content(tmp_path / "seed", 300_000, seed=11)
    t = torrent_of(src)
    uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[]).to_uri()
    out = tmp_path / "out"
    async with DHTServer("127.0.0.1", 0) as boot:
        cfg = config(dht_bootstrap=[boot.address], dht_announce_interval=1.0)
        async with Session(cfg) as seeder:
            await seeder.add(t, src.parent)
            await until(lambda: boot.node.stored_peers(t.swarm_hash), 15, "seeder announce")
            bhost, bport = boot.address
            proc = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "bitswarm", "download", uri, "-o", str(out)],
                *["--host", "127.0.0.1", "--port", "0", "--bootstrap", f"{bhost}:{bport}", "--json"],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                stdout, stderr = await asyncio.wait_for(proc.communicate(), 45)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    events = [json.loads(line)["event"] for line in stdout.decode().splitlines() if line.startswith("{")]
    assert "metadata" in events and "torrent_completed" in events
    assert (out / src.name).read_bytes() == src.read_bytes()



@pytest.mark.parametrize("seeding", [True, False])
async def test_a_seed_announces_seed_1_and_a_leecher_does_not(tmp_path: Path, seeding: bool) -> None:
    """BEP 33 counts seeds from ``announce_peer``'s ``seed`` flag: a seeding session announces with
    ``seed=1``, a downloading one (no peers: it stays one) without; a scrape tells them apart."""
    src = content(tmp_path / "seed", 300_000)
    t = torrent_of(src)
    async with DHTServer("127.0.0.1", 0) as boot:
        cfg = {"dht_bootstrap": [boot.address], "dht_announce_interval": 1.0}
        async with Session(config(**cfg)) as s:
            await s.add(t, src.parent if seeding else tmp_path / "leech")
            await until(lambda: boot.node.stored_peers(t.swarm_hash), 15, "announce")
            async with DHTServer("127.0.0.1", 0, bootstrap=[boot.address]) as client:
                res = await client.scrape(t.swarm_hash, timeout=10)
    assert (res.seeds_estimate, res.peers_estimate) == ((1, 0) if seeding else (0, 1))
