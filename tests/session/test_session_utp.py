"""uTP (BEP 29) in the session: ``SessionConfig.transports``, one UDP socket for uTP and the DHT,
uTP first with a TCP fallback (TCP first on loopback, uTP after it), one connection per peer across
transports and a quick redial.

bitswarm <-> bitswarm on loopback; the interop with libtorrent is in ``tests/interop``. Loopback is
dialed over TCP first, so a test that means uTP selects it (``transports`` "utp" on the dialing
side), and a test of the uTP-first order marks the address as one whose TCP failed before.
The dial decisions alone (no sockets, injected time): ``test_session_dial.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bitswarm.metainfo import Torrent, magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.mse import EncryptionPolicy
from bitswarm.session import Session, SessionConfig
from bitswarm.session.config import parse_transports
from bitswarm.session.peer_manager import REDIAL_BACKOFF, REDIAL_SECONDS
from bitswarm.session.torrent import TorrentHandle

if TYPE_CHECKING:
    pass

pytestmark = pytest.mark.timeout(60)


def config(transports: str = "utp,tcp", **kw: object) -> SessionConfig:
    kw.setdefault("enable_dht", False)
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        transports=transports,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def make_torrent(root: Path, version: TorrentVersion = "v1", size: int = 700_000) -> tuple[Path, Torrent]:
    root.mkdir(parents=True, exist_ok=True)
    f = root / "data.bin"
    f.write_bytes(random.Random(7).randbytes(size))
    return f, parse_torrent(create_torrent(f, version=version, piece_length=32768))


async def eventually_peers(
    handle: TorrentHandle, n: int = 1, timeout: float = 10.0
) -> list[dict[str, object]]:
    async with asyncio.timeout(timeout):
        while len(peers := handle.peers()) < n:
            await asyncio.sleep(0.02)
    return peers


def test_transports_parse() -> None:
    assert parse_transports("tcp,utp") == ("utp", "tcp")  # uTP is dialed first
    assert parse_transports(" UTP ") == ("utp",)
    assert parse_transports(["tcp"]) == ("tcp",)
    assert SessionConfig().transports == ("utp", "tcp")
    for bad in ("", "tcp,quic", ","):
        with pytest.raises(ValueError, match="transports"):
            parse_transports(bad)
    with pytest.raises(ValueError, match="transports"):
        SessionConfig(transports="sctp")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("transports", "encryption", "version"),
    [
        ("utp", EncryptionPolicy.OFF, "v1"),
        ("utp", EncryptionPolicy.REQUIRE, "hybrid"),
        ("utp,tcp", EncryptionPolicy.PREFER, "v2"),
    ],
)
async def test_transfer_over_utp(
    tmp_path: Path, transports: str, encryption: EncryptionPolicy, version: TorrentVersion
) -> None:
    """The leecher dials uTP only; the seeder accepts uTP (uTP only: no TCP listener at all, or
    both transports); MSE runs over it."""
    f, t = make_torrent(tmp_path / "seed", version, size=3_000_000)
    slow = config("utp", encryption=encryption, download_rate_limit=1_500_000)
    async with Session(config(transports, encryption=encryption)) as seeder, Session(slow) as leecher:
        if transports == "utp":
            assert seeder.transports == ["utp"]
            with pytest.raises(OSError):  # nothing listens on TCP
                await asyncio.open_connection("127.0.0.1", seeder.port)
        await seeder.add(t, f.parent)
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        # RC4 payload under require; prefer <-> prefer obfuscates only the handshake (prefer_rc4 off)
        kind = "utp+enc" if encryption is EncryptionPolicy.REQUIRE else "utp"
        assert [p["transport"] for p in await eventually_peers(hl)] == [kind]
        assert [p["transport"] for p in await eventually_peers(seeder.torrents[0])] == [kind]
        await hl.wait_complete(timeout=40)
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


async def dial_utp_first(leecher: Session, hl: TorrentHandle, t: Torrent, addr: tuple[str, int]) -> None:
    """Give ``hl`` the peer at ``addr`` (loopback) to dial uTP first: as an address whose TCP dial
    failed before (loopback is otherwise dialed over TCP first)."""
    rt = leecher.lookup(t.swarm_hash)
    assert rt is not None
    rt.peer_manager.note_tcp(addr, False)
    assert rt.peer_manager.transports_for(addr) == ["utp", "tcp"]
    hl.add_peer(*addr)


async def test_utp_dial_falls_back_to_tcp(tmp_path: Path) -> None:
    """A TCP-only peer dialed uTP first: the uTP dial fails (nothing answers on its UDP port) and
    TCP connects; the next dial of that address tries TCP first (the rate limit keeps the peer long
    enough to see)."""
    f, t = make_torrent(tmp_path / "seed", size=3_000_000)
    async with (
        Session(config("tcp", upload_rate_limit=1_500_000)) as seeder,
        Session(config("utp,tcp", utp_connect_timeout=0.5)) as leecher,
    ):
        assert seeder.utp is None
        await seeder.add(t, f.parent)
        hl = await leecher.add(t, tmp_path / "leech")
        addr = ("127.0.0.1", seeder.port)
        await dial_utp_first(leecher, hl, t, addr)
        assert [p["transport"] for p in await eventually_peers(hl)] == ["tcp"]
        await hl.wait_complete(timeout=30)
        rt = leecher.lookup(t.swarm_hash)
        assert rt is not None
        assert rt.peer_manager.utp_hint[addr] is False
        assert rt.peer_manager.transports_for(addr) == ["tcp", "utp"]
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


async def test_loopback_peers_talk_tcp_by_default(tmp_path: Path) -> None:
    """Default transports on both sides: a peer on this host is dialed over TCP first (uTP costs
    ~4x the CPU per byte on loopback: docs/protocols/utp.md, "Dialing"), and no uTP dial is made."""
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config()) as seeder, Session(config()) as leecher:
        assert leecher.utp is not None and seeder.utp is not None
        await seeder.add(t, f.parent)
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await hl.wait_complete(timeout=30)
        assert [p["transport"] for p in seeder.torrents[0].peers()] in ([], ["tcp"])
        assert leecher.utp.stats.unreachable == 0
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


async def test_utp_only_peer_on_loopback_is_reached_after_tcp(tmp_path: Path) -> None:
    """A uTP-only peer on this host, dialed with the default transports (TCP first on loopback):
    nothing listens on its TCP port, the dial goes on over uTP, and the next dial of that address
    goes over uTP first."""
    f, t = make_torrent(tmp_path / "seed", size=3_000_000)
    async with Session(config("utp")) as seeder, Session(config(download_rate_limit=1_500_000)) as leecher:
        await seeder.add(t, f.parent)
        addr = ("127.0.0.1", seeder.port)
        hl = await leecher.add(t, tmp_path / "leech", peers=[addr])
        assert [p["transport"] for p in await eventually_peers(hl)] == ["utp"]
        rt = leecher.lookup(t.swarm_hash)
        assert rt is not None
        assert rt.peer_manager.transports_for(addr) == ["utp", "tcp"]
        await hl.wait_complete(timeout=30)
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


@pytest.mark.skipif(sys.platform != "linux", reason="ICMP errors reach a UDP socket on Linux only")
async def test_first_dial_of_a_tcp_only_peer_falls_back_at_once(tmp_path: Path) -> None:
    """uTP first with the default 3 s uTP connect timeout: the TCP-only peer's kernel answers the
    SYN with ICMP port unreachable, the uTP dial fails at once and TCP connects."""
    f, t = make_torrent(tmp_path / "seed", size=3_000_000)
    async with Session(config("tcp", upload_rate_limit=1_500_000)) as seeder, Session(config()) as leecher:
        assert leecher.config.utp_connect_timeout >= 3
        await seeder.add(t, f.parent)
        loop = asyncio.get_running_loop()
        start = loop.time()
        hl = await leecher.add(t, tmp_path / "leech")
        await dial_utp_first(leecher, hl, t, ("127.0.0.1", seeder.port))
        assert [p["transport"] for p in await eventually_peers(hl)] == ["tcp"]
        assert loop.time() - start < 1.0
        assert leecher.utp is not None and leecher.utp.stats.unreachable == 1


async def test_dht_shares_the_utp_socket(tmp_path: Path) -> None:
    """One UDP socket on the listen port: the DHT's KRPC goes through uTP's socket manager."""
    cfg = config(enable_dht=True, dht_bootstrap=[])
    async with Session(cfg) as a, Session(config(enable_dht=True, dht_bootstrap=[])) as b:
        assert a.utp is not None and a.dht is not None
        assert a.dht.address == a.utp.address == ("127.0.0.1", a.port)
        before = a.utp.stats.other_in
        assert b.dht is not None
        b.dht.node.ping(("127.0.0.1", a.port))
        async with asyncio.timeout(5):
            while b.dht.node.routing_table_size() == 0:
                await asyncio.sleep(0.02)
        assert a.utp.stats.other_in > before


@pytest.mark.parametrize("transports", ["utp,tcp", "utp"])
async def test_simultaneous_connect_leaves_one_connection(tmp_path: Path, transports: str) -> None:
    """Both peers dial each other at once (over TCP, loopback's first transport, or over uTP only):
    each ends with one connection, the same one on both sides, and the transfer runs on it."""
    f, t = make_torrent(tmp_path / "seed", size=3_000_000)
    slow = config(transports, upload_rate_limit=500_000)  # still sending a second later
    async with Session(slow) as seeder, Session(config(transports)) as leecher:
        hs = await seeder.add(t, f.parent)
        hl = await leecher.add(t, tmp_path / "leech")
        hs.add_peer("127.0.0.1", leecher.port)
        hl.add_peer("127.0.0.1", seeder.port)
        await eventually_peers(hl)
        await asyncio.sleep(1.0)  # every duplicate has been settled by now
        lp, sp = hl.peers(), hs.peers()
        assert len(lp) == 1 and len(sp) == 1
        assert lp[0]["transport"] == sp[0]["transport"]
        # the one connection: the leecher's local end is the seeder's remote end
        seeder_rt, leecher_rt = seeder.lookup(t.swarm_hash), leecher.lookup(t.swarm_hash)
        assert seeder_rt is not None and leecher_rt is not None
        (a,) = leecher_rt.peers.values()
        (b,) = seeder_rt.peers.values()
        assert a.outgoing != b.outgoing
        await hl.wait_complete(timeout=40)
        assert len(hl.peers()) <= 1
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


async def test_closed_connection_is_redialled_quickly(tmp_path: Path) -> None:
    """The seeder drops the leecher's connection: the leecher dials it again within seconds (it
    waited 30 s before)."""
    f, t = make_torrent(tmp_path / "seed", size=3_000_000)
    async with Session(config(upload_rate_limit=500_000)) as seeder, Session(config()) as leecher:
        await seeder.add(t, f.parent)
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        await eventually_peers(hl)
        seeder_rt = seeder.lookup(t.swarm_hash)
        assert seeder_rt is not None
        (first,) = seeder_rt.peers.values()
        first.close("test drops it")
        async with asyncio.timeout(5):
            while not seeder_rt.peers or next(iter(seeder_rt.peers.values())) is first:
                await asyncio.sleep(0.02)
        assert hl.status().progress < 1.0


@pytest.mark.parametrize("encryption", [EncryptionPolicy.OFF, EncryptionPolicy.REQUIRE])
async def test_magnet_over_utp_only(tmp_path: Path, encryption: EncryptionPolicy) -> None:
    """A uTP-only seeder: the magnet's metadata fetch dials uTP too (it dialed TCP only)."""
    f, t = make_torrent(tmp_path / "seed", "hybrid")
    async with (
        Session(config("utp", encryption=encryption)) as seeder,
        Session(config("utp", encryption=encryption)) as leecher,
    ):
        await seeder.add(t, f.parent)
        uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[("127.0.0.1", seeder.port)])
        hl = await leecher.add(uri.to_uri(), tmp_path / "leech", metadata_timeout=20)
        await hl.wait_complete(timeout=30)
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


@pytest.mark.parametrize("encryption", [EncryptionPolicy.PREFER, EncryptionPolicy.REQUIRE])
async def test_a_dial_closed_in_the_handshake_is_retried_quickly(
    tmp_path: Path, encryption: EncryptionPolicy
) -> None:
    """The peer hangs up in the handshake (its torrent is not running yet): the address is dialed
    again within seconds, not after the 30 s of a failed dial. Under ``require`` it hangs up in
    the MSE handshake, under ``prefer`` in the BitTorrent one (after MSE is refused)."""
    f, t = make_torrent(tmp_path / "seed")
    cfg = config(encryption=encryption)
    async with Session(cfg) as seeder, Session(config(encryption=encryption)) as leecher:
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        rt = leecher.lookup(t.swarm_hash)
        assert rt is not None
        pm = rt.peer_manager
        addr = ("127.0.0.1", seeder.port)
        async with asyncio.timeout(10):  # dialed, connected, refused ("unknown torrent")
            while pm.candidates.get(addr, 0.0) == 0.0 or pm.connecting:
                await asyncio.sleep(0.02)
        # the dial is over: the address is due again after a step of the back-off (1 s; 2 s or 4 s
        # if this poll came late, after a redial), not after a failed dial's 30 s. Read on the peer
        # manager's clock: no wall-time bound here.
        assert pm.candidates[addr] - pm.clock.now() <= 4 * REDIAL_BACKOFF < REDIAL_SECONDS
        await seeder.add(t, f.parent)
        # the redial connects and the download completes; not "a peer shows up": the 700 kB are
        # done and the connection closed ("both seeds") within a poll's interval under load
        await hl.wait_complete(timeout=30)
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


async def test_magnet_with_both_sides_dialing_ends_with_one_connection(tmp_path: Path) -> None:
    """The seeder dials the magnet leecher while the leecher fetches the metadata from it (refused:
    no torrent there yet) and again after (quick redial) while the leecher's torrent dials too:
    one connection is left on each side, the same one, and the download completes on it."""
    f, t = make_torrent(tmp_path / "seed", "hybrid", size=3_000_000)
    async with Session(config(upload_rate_limit=400_000)) as seeder, Session(config()) as leecher:
        hs = await seeder.add(t, f.parent, peers=[("127.0.0.1", leecher.port)])
        uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[("127.0.0.1", seeder.port)])
        hl = await leecher.add(uri.to_uri(), tmp_path / "leech", metadata_timeout=20)
        await eventually_peers(hl)
        await eventually_peers(hs)
        await asyncio.sleep(3.0)  # the seeder's redials (1 s, 2 s) have come and been settled
        seeder_rt, leecher_rt = seeder.lookup(t.swarm_hash), leecher.lookup(t.swarm_hash)
        assert seeder_rt is not None and leecher_rt is not None
        assert hl.status().progress < 1.0  # still downloading (400 kB/s): both ends are up
        (a,) = leecher_rt.peers.values()
        (b,) = seeder_rt.peers.values()
        assert a.outgoing != b.outgoing and a.transport_kind == b.transport_kind
        await hl.wait_complete(timeout=30)
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()
