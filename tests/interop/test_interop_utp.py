"""uTP (BEP 29) in the session against libtorrent (PyPI) set to uTP only, and set to TCP only.

libtorrent: ``enable_outgoing_tcp``/``enable_incoming_tcp`` off, uTP on (so any connection between
the two is uTP), and in the second mode also ``pe_forced`` with RC4 (MSE over uTP). bitswarm runs
with its default transports and ``encryption`` prefer or require. Both directions, v1 and hybrid
torrents, magnet links both ways; bytes verified, and bitswarm's peer is checked to be on uTP.
libtorrent's uTP is slow on loopback (~5 MB/s), so the files are small.

bitswarm dials loopback over TCP first; a uTP-only libtorrent's TCP listener accepts the connection
and closes it at once, so bitswarm's dials of it pass through the fallback: TCP closed before the
BitTorrent handshake, then uTP (checked: the address is remembered as one whose TCP failed). Against
libtorrent with uTP off, the reverse: a uTP-first dial that gets no answer is followed by TCP.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from test_interop_session import make_content, same_content

from bitswarm.metainfo import Torrent, magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.session import Session, SessionConfig, TorrentHandle
from bitswarm.session.config import make_peer_id
from realclients import libtorrent_peer
from testtools import until

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

MODES = ["utp", "utp+enc"]


def lt_settings(mode: str) -> dict[str, Any]:
    import libtorrent as lt

    settings: dict[str, Any] = {
        "enable_outgoing_utp": True,
        "enable_incoming_utp": True,
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
    }
    if mode == "utp+enc":
        settings.update(
            out_enc_policy=int(lt.enc_policy.pe_forced),
            in_enc_policy=int(lt.enc_policy.pe_forced),
            allowed_enc_level=int(lt.enc_level.pe_rc4),
            prefer_rc4=True,
        )
    return settings


def config(mode: str) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        enable_dht=False,
        encryption="require" if mode == "utp+enc" else "prefer",  # type: ignore[arg-type]
    )


async def wait_utp_peer(h: TorrentHandle, mode: str) -> None:
    """bitswarm's peer is on uTP (and RC4 under ``utp+enc``), checked while the transfer runs."""

    def connected() -> bool:
        peers = h.peers()
        if peers:
            assert [p["transport"] for p in peers] == ["utp+enc" if mode == "utp+enc" else "utp"]
            return True
        return h.status().progress == 1.0  # finished before we looked (the bytes are still checked)

    await until(connected, what="a peer connected")


CASES = [(m, v) for m in MODES for v in ("v1", "hybrid")]


def assert_reached_after_tcp(s: Session, t: Torrent, addr: tuple[str, int]) -> None:
    """The dial of ``addr`` went TCP first (loopback), TCP was closed before the handshake or
    refused, and uTP got through: the next dial goes uTP first."""
    rt = s.lookup(t.swarm_hash)
    assert rt is not None
    pm = rt.peer_manager
    assert pm.tcp_hint.get(addr) is False and pm.utp_hint.get(addr) is True
    assert pm.transports_for(addr) == ["utp", "tcp"]


@pytest.mark.parametrize(("mode", "version"), CASES)
async def test_libtorrent_utp_only_seeds_bitswarm_downloads(
    tmp_path: Path, mode: str, version: TorrentVersion
) -> None:
    content = make_content(tmp_path / "lt", True)
    data = create_torrent(content, version=version, piece_length=65536)
    with libtorrent_peer(**lt_settings(mode)) as lt_peer:
        h = lt_peer.add(data, content.parent)
        await asyncio.to_thread(lt_peer.wait_seeding, h, 30)
        async with Session(config(mode)) as s:
            t = parse_torrent(data)
            hl = await s.add(t, tmp_path / "bw", peers=[("127.0.0.1", lt_peer.port)])
            await wait_utp_peer(hl, mode)
            assert_reached_after_tcp(s, t, ("127.0.0.1", lt_peer.port))
            await hl.wait_complete(timeout=90)
    assert same_content(content, tmp_path / "bw" / content.name)


@pytest.mark.parametrize(("mode", "version"), CASES)
async def test_bitswarm_seeds_libtorrent_utp_only_downloads(
    tmp_path: Path, mode: str, version: TorrentVersion
) -> None:
    content = make_content(tmp_path / "bw", True)
    data = create_torrent(content, version=version, piece_length=65536)
    async with Session(config(mode)) as s:
        hs = await s.add(parse_torrent(data), content.parent)
        with libtorrent_peer(**lt_settings(mode)) as lt_peer:
            h = lt_peer.add(data, tmp_path / "lt")
            lt_peer.connect(h, s.port)  # libtorrent dials bitswarm's uTP socket
            await wait_utp_peer(hs, mode)
            await asyncio.to_thread(lt_peer.wait_seeding, h, 90)
    assert same_content(content, tmp_path / "lt" / content.name)


@pytest.mark.parametrize("mode", MODES)
async def test_libtorrent_utp_only_fetches_a_magnet_from_bitswarm(tmp_path: Path, mode: str) -> None:
    content = make_content(tmp_path / "bw", True)
    t = parse_torrent(create_torrent(content, version="hybrid", piece_length=65536))
    async with Session(config(mode)) as s:
        await s.add(t, content.parent)
        uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[("127.0.0.1", s.port)]).to_uri()
        with libtorrent_peer(**lt_settings(mode)) as lt_peer:
            params = lt_peer.lt.parse_magnet_uri(uri)
            params.save_path = str(tmp_path / "lt")
            h = lt_peer.session.add_torrent(params)
            h.connect_peer(("127.0.0.1", s.port))
            await asyncio.to_thread(lt_peer.wait_seeding, h, 90)
    assert same_content(content, tmp_path / "lt" / content.name)


@pytest.mark.parametrize("mode", MODES)
async def test_bitswarm_fetches_a_magnet_from_libtorrent_utp_only(tmp_path: Path, mode: str) -> None:
    content = make_content(tmp_path / "lt", True)
    data = create_torrent(content, version="v1", piece_length=65536)
    t = parse_torrent(data)
    with libtorrent_peer(**lt_settings(mode)) as lt_peer:
        h = lt_peer.add(data, content.parent)
        await asyncio.to_thread(lt_peer.wait_seeding, h, 30)
        uri = dataclasses.replace(
            magnet_from_torrent(t), trackers=[], peers=[("127.0.0.1", lt_peer.port)]
        ).to_uri()
        async with Session(config(mode)) as s:
            hl = await s.add(uri, tmp_path / "bw", metadata_timeout=30)
            await wait_utp_peer(hl, mode)
            assert_reached_after_tcp(s, t, ("127.0.0.1", lt_peer.port))
            await hl.wait_complete(timeout=90)
    assert same_content(content, tmp_path / "bw" / content.name)


@pytest.mark.parametrize("first", ["tcp", "utp"])
async def test_bitswarm_downloads_from_libtorrent_tcp_only(tmp_path: Path, first: str) -> None:
    """libtorrent with uTP off (TCP only). bitswarm with its default transports dials this host over
    TCP first; dialing uTP first (the address marked as one whose TCP failed before), the uTP dial
    gets no answer within ``utp_connect_timeout`` and TCP follows, and the address is remembered as
    TCP first."""
    content = make_content(tmp_path / "lt", True)
    data = create_torrent(content, version="v1", piece_length=65536)
    t = parse_torrent(data)
    with libtorrent_peer() as lt_peer:  # realclients' default: uTP off
        h = lt_peer.add(data, content.parent)
        await asyncio.to_thread(lt_peer.wait_seeding, h, 30)
        async with Session(dataclasses.replace(config("utp"), utp_connect_timeout=1.0)) as s:
            hl = await s.add(t, tmp_path / "bw")
            rt = s.lookup(t.swarm_hash)
            assert rt is not None
            addr = ("127.0.0.1", lt_peer.port)
            if first == "utp":
                rt.peer_manager.note_tcp(addr, False)
            assert rt.peer_manager.transports_for(addr) == [first, *({"tcp", "utp"} - {first})]
            hl.add_peer(*addr)

            def on_tcp() -> bool:
                peers = hl.peers()
                assert all(str(p["transport"]).startswith("tcp") for p in peers)
                return bool(peers) or hl.status().progress == 1.0

            await until(on_tcp, what="a peer connected over TCP")
            await hl.wait_complete(timeout=90)
            assert rt.peer_manager.transports_for(addr) == ["tcp", "utp"]
            if first == "utp":
                assert rt.peer_manager.utp_hint[addr] is False
    assert same_content(content, tmp_path / "bw" / content.name)


async def test_bitswarm_pair_over_utp_only(tmp_path: Path) -> None:
    """bitswarm <-> bitswarm with uTP only on both sides (no TCP listener anywhere)."""
    content = make_content(tmp_path / "a", True)
    t = parse_torrent(create_torrent(content, version="hybrid", piece_length=65536))

    def cfg() -> SessionConfig:
        return dataclasses.replace(config("utp+enc"), transports=("utp",), peer_id=make_peer_id())

    async with Session(cfg()) as seeder, Session(cfg()) as leecher:
        await seeder.add(t, content.parent)
        hl = await leecher.add(t, tmp_path / "b", peers=[("127.0.0.1", seeder.port)])
        await wait_utp_peer(hl, "utp+enc")
        await hl.wait_complete(timeout=60)
    assert same_content(content, tmp_path / "b" / content.name)
