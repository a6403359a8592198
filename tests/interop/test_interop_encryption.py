"""MSE/PE against real clients that REQUIRE encryption over TCP: libtorrent (PyPI) and aria2 (Debian).

libtorrent: ``out_enc_policy``/``in_enc_policy`` = ``pe_forced`` and ``allowed_enc_level`` = ``pe_rc4``
(it refuses plaintext handshakes and the plaintext method), uTP off. bitswarm runs with
``encryption = require``. Both directions, v1 and hybrid torrents, and magnet links; bytes verified,
and the connection is checked to be RC4 on both ends. aria2: ``--bt-require-crypto=true
--bt-min-crypto-level=arc4`` (peers found through opentracker).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from test_interop_session import make_content, same_content

from bitswarm.metainfo import magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.session import Session, SessionConfig, TorrentHandle
from realclients import Aria2, libtorrent_peer, opentracker, wait_for
from testtools import until

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


def lt_forced() -> dict[str, Any]:
    import libtorrent as lt

    return {
        "out_enc_policy": int(lt.enc_policy.pe_forced),
        "in_enc_policy": int(lt.enc_policy.pe_forced),
        "allowed_enc_level": int(lt.enc_level.pe_rc4),
        "prefer_rc4": True,
    }


def config() -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        enable_dht=False,
        encryption="require",  # type: ignore[arg-type]
    )


def lt_rc4_peers(lt_peer: Any, handle: Any) -> list[bool]:
    """For each of libtorrent's peers on ``handle`` past its handshakes: is the connection RC4?"""
    flags = lt_peer.lt.peer_info
    return [
        bool(p.flags & flags.rc4_encrypted)
        for p in handle.get_peer_info()
        if not p.flags & (flags.connecting | flags.handshake)
    ]


async def wait_encrypted_peer(h: TorrentHandle) -> None:
    """bitswarm sees its peer on an RC4 connection (checked while the transfer runs)."""

    def connected() -> bool:
        peers = h.peers()
        if peers:
            assert [(p["transport"], p["encrypted"]) for p in peers] == [("tcp+enc", True)]
            return True
        return h.status().progress == 1.0  # finished before we looked (the bytes are still checked)

    await until(connected, what="a peer connected")


#: libtorrent's download limit (bytes/s) while the test looks at the connection: minutes for the content.
THROTTLE = 16384

CASES = [("v1", False), ("v1", True), ("hybrid", False), ("hybrid", True)]


@pytest.mark.parametrize(("version", "multi"), CASES)
async def test_libtorrent_requiring_encryption_seeds_bitswarm_downloads(
    tmp_path: Path, version: TorrentVersion, multi: bool
) -> None:
    content = make_content(tmp_path / "lt", multi)
    data = create_torrent(content, version=version, piece_length=65536)
    with libtorrent_peer(**lt_forced()) as lt_peer:
        h = lt_peer.add(data, content.parent)
        await asyncio.to_thread(lt_peer.wait_seeding, h, 30)
        async with Session(config()) as s:
            hl = await s.add(parse_torrent(data), tmp_path / "bw", peers=[("127.0.0.1", lt_peer.port)])
            await wait_encrypted_peer(hl)
            await hl.wait_complete(timeout=60)
    assert same_content(content, tmp_path / "bw" / content.name)


@pytest.mark.parametrize(("version", "multi"), CASES)
async def test_bitswarm_requiring_encryption_seeds_libtorrent_downloads(
    tmp_path: Path, version: TorrentVersion, multi: bool
) -> None:
    content = make_content(tmp_path / "bw", multi)
    data = create_torrent(content, version=version, piece_length=65536)
    async with Session(config()) as s:
        hs = await s.add(parse_torrent(data), content.parent)
        with libtorrent_peer(**lt_forced()) as lt_peer:
            h = lt_peer.add(data, tmp_path / "lt")
            # Throttled until both ends have been looked at: unthrottled, the few MB cross loopback in
            # tens of ms and the finished leecher is dropped at once ("both seeds"), so a poll could
            # miss the connection entirely (it did, under load).
            h.set_download_limit(THROTTLE)
            lt_peer.connect(h, s.port)
            seen = await asyncio.to_thread(
                wait_for, lambda: lt_rc4_peers(lt_peer, h), 30, "a libtorrent peer"
            )
            assert seen == [True]
            await wait_encrypted_peer(hs)
            assert hs.peers(), "the connection was up while throttled"
            h.set_download_limit(0)  # unlimited
            await asyncio.to_thread(lt_peer.wait_seeding, h, 60)
    assert same_content(content, tmp_path / "lt" / content.name)


@pytest.mark.parametrize("version", ["v1", "hybrid"])
async def test_libtorrent_requiring_encryption_fetches_a_magnet_from_bitswarm(
    tmp_path: Path, version: TorrentVersion
) -> None:
    content = make_content(tmp_path / "bw", True)
    t = parse_torrent(create_torrent(content, version=version, piece_length=65536))
    async with Session(config()) as s:
        await s.add(t, content.parent)
        uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[("127.0.0.1", s.port)]).to_uri()
        with libtorrent_peer(**lt_forced()) as lt_peer:
            lt = lt_peer.lt
            params = lt.parse_magnet_uri(uri)
            params.save_path = str(tmp_path / "lt")
            h = lt_peer.session.add_torrent(params)
            h.connect_peer(("127.0.0.1", s.port))
            await asyncio.to_thread(lt_peer.wait_seeding, h, 60)
            assert lt_rc4_peers(lt_peer, h) in ([], [True])
    assert same_content(content, tmp_path / "lt" / content.name)


@pytest.mark.parametrize("version", ["v1", "hybrid"])
async def test_bitswarm_fetches_a_magnet_from_libtorrent_requiring_encryption(
    tmp_path: Path, version: TorrentVersion
) -> None:
    content = make_content(tmp_path / "lt", True)
    data = create_torrent(content, version=version, piece_length=65536)
    t = parse_torrent(data)
    with libtorrent_peer(**lt_forced()) as lt_peer:
        h = lt_peer.add(data, content.parent)
        await asyncio.to_thread(lt_peer.wait_seeding, h, 30)
        uri = dataclasses.replace(
            magnet_from_torrent(t), trackers=[], peers=[("127.0.0.1", lt_peer.port)]
        ).to_uri()
        async with Session(config()) as s:
            hl = await s.add(uri, tmp_path / "bw", metadata_timeout=30)
            await hl.wait_complete(timeout=60)
    assert same_content(content, tmp_path / "bw" / content.name)


ARIA2_CRYPTO = ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]


async def test_aria2_requiring_encryption_seeds_bitswarm_downloads(tmp_path: Path) -> None:
    content = make_content(tmp_path / "aria", True)
    t = parse_torrent(create_torrent(content, version="v1", piece_length=65536))
    with opentracker([t.swarm_hash]) as tracker:
        data = create_torrent(content, version="v1", piece_length=65536, trackers=[[tracker.announce_http]])
        torrent_file = tmp_path / "a.torrent"
        torrent_file.write_bytes(data)
        aria = Aria2(torrent_file, content.parent, seed=True, extra_args=ARIA2_CRYPTO)
        try:
            async with Session(config()) as s:
                h = await s.add(parse_torrent(data), tmp_path / "bw")
                await wait_encrypted_peer(h)
                await h.wait_complete(timeout=90)
        finally:
            aria.close()
    assert same_content(content, tmp_path / "bw" / content.name)


async def test_bitswarm_requiring_encryption_seeds_aria2_downloads(tmp_path: Path) -> None:
    content = make_content(tmp_path / "bw", False)
    t = parse_torrent(create_torrent(content, version="v1", piece_length=65536))
    with opentracker([t.swarm_hash]) as tracker:
        data = create_torrent(content, version="v1", piece_length=65536, trackers=[[tracker.announce_http]])
        (tmp_path / "c.torrent").write_bytes(data)
        async with Session(config()) as s:
            h = await s.add(parse_torrent(data), content.parent)
            aria = Aria2(tmp_path / "c.torrent", tmp_path / "aria", seed=False, extra_args=ARIA2_CRYPTO)
            try:
                await wait_encrypted_peer(h)
                code = await asyncio.to_thread(aria.wait, 90)
            finally:
                aria.close()
        assert code == 0
    assert same_content(content, tmp_path / "aria" / content.name)
