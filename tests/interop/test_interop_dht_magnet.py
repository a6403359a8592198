"""Trackerless magnet downloads against libtorrent (PyPI) over a loopback DHT.

One bitswarm :class:`DHTServer` is the bootstrap node of both clients; nobody is told a peer address
and there is no tracker. libtorrent: DHT on with our node as its bootstrap and the loopback
restrictions off (routing/search IP restrictions, node-id enforcement), LSD/UPnP/NAT-PMP/uTP off,
encryption off, torrents neither paused nor auto-managed (a paused torrent drops connections).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from bitswarm.dht.server import DHTServer
from bitswarm.metainfo import magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from realclients import libtorrent_peer, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]


def lt_settings(boot: tuple[str, int]) -> dict[str, Any]:
    return {
        "enable_dht": True,
        "dht_bootstrap_nodes": f"{boot[0]}:{boot[1]}",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "out_enc_policy": 2,
        "in_enc_policy": 2,
    }


def run_freely(lt: Any, handle: Any) -> None:
    handle.unset_flags(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    handle.resume()


def content(root: Path, size: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    p = root / "film.bin"
    p.write_bytes(random.Random(21).randbytes(size))
    return p


@pytest.mark.parametrize("version", ["v1", "hybrid"])
async def test_libtorrent_seeds_bitswarm_fetches_magnet_over_dht(tmp_path: Path, version: str) -> None:
    src = content(tmp_path / "lt", 1_200_000)
    data = create_torrent(src, version=version, piece_length=65536)  # type: ignore[arg-type]
    t = parse_torrent(data)
    uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[]).to_uri()
    async with DHTServer("127.0.0.1", 0) as boot:
        with libtorrent_peer(**lt_settings(boot.address)) as lt_peer:
            h = lt_peer.add(data, src.parent)
            run_freely(lt_peer.lt, h)
            await asyncio.to_thread(lt_peer.wait_seeding, h, 30)
            h.force_dht_announce()
            await asyncio.to_thread(
                wait_for, lambda: boot.node.stored_peers(t.swarm_hash), 60, "libtorrent's DHT announce"
            )
            cfg = SessionConfig(
                listen_host="127.0.0.1",
                listen_port=0,
                dht_bootstrap=[boot.address],
                dht_announce_interval=2.0,
            )
            async with Session(cfg) as s:
                hb = await s.add(uri, tmp_path / "bw", metadata_timeout=60)
                assert hb.torrent.info.raw == t.info.raw
                await hb.wait_complete(timeout=60)
    assert (tmp_path / "bw" / src.name).read_bytes() == src.read_bytes()


async def test_bitswarm_seeds_libtorrent_fetches_magnet_over_dht(tmp_path: Path) -> None:
    src = content(tmp_path / "bw", 1_200_000)
    t = parse_torrent(create_torrent(src, version="v1", piece_length=65536))
    uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[]).to_uri()
    async with DHTServer("127.0.0.1", 0) as boot:
        cfg = SessionConfig(
            listen_host="127.0.0.1", listen_port=0, dht_bootstrap=[boot.address], dht_announce_interval=2.0
        )
        async with Session(cfg) as s:
            await s.add(t, src.parent)
            await asyncio.to_thread(
                wait_for, lambda: boot.node.stored_peers(t.swarm_hash), 20, "bitswarm's DHT announce"
            )
            with libtorrent_peer(**lt_settings(boot.address)) as lt_peer:
                lt = lt_peer.lt
                params = lt.parse_magnet_uri(uri)
                params.save_path = str(tmp_path / "lt")
                params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
                h = lt_peer.session.add_torrent(params)
                # libtorrent looks the torrent up once when it is added, maybe before its DHT has
                # bootstrapped; ask again every 2 s until it has a peer (then wait for the download)
                async with asyncio.timeout(60):
                    while not h.status().num_peers and not h.status().is_seeding:
                        h.force_dht_announce()
                        await asyncio.sleep(2.0)  # the re-announce interval, not an ordering wait
                await asyncio.to_thread(lt_peer.wait_seeding, h, 60)
    assert (tmp_path / "lt" / src.name).read_bytes() == src.read_bytes()
