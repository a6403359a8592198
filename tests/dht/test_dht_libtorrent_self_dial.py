"""Issue 18 end to end: a libtorrent seeder with its default one-connection-per-IP policy, on loopback.

With the old DHT node, libtorrent's second announce got its own address back from get_peers, dialled
itself, detected the self-connection and banned that peer entry — i.e. 127.0.0.1, so the bitswarm
peer fetching the magnet could never connect ("no peer sent the metadata"). Our node no longer hands
a requester its own endpoint (tests/dht/test_dht_get_peers_self.py is the unit test).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from bitswarm.dht.server import DHTServer
from bitswarm.metainfo import magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from realclients import libtorrent_peer, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]


async def test_libtorrent_seeder_does_not_ban_loopback_after_its_own_dht_lookup(tmp_path: Path) -> None:
    src = tmp_path / "lt" / "film.bin"
    src.parent.mkdir()
    src.write_bytes(random.Random(18).randbytes(400_000))
    data = create_torrent(src, version="v1", piece_length=65536)
    t = parse_torrent(data)
    uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[]).to_uri()
    async with DHTServer("127.0.0.1", 0) as boot:
        methods: list[bytes] = []
        boot.node.query_hook = lambda q, addr: bool(methods.append(q.method))  # watch, answer normally
        settings = {
            "enable_dht": True,
            "dht_bootstrap_nodes": f"{boot.address[0]}:{boot.address[1]}",
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_enforce_node_id": False,
            "allow_multiple_connections_per_ip": False,  # libtorrent's default
            "out_enc_policy": 2,
            "in_enc_policy": 2,
        }
        with libtorrent_peer(**settings) as lt_peer:
            lt = lt_peer.lt
            h = lt_peer.add(data, src.parent)
            h.unset_flags(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
            h.resume()
            await asyncio.to_thread(lt_peer.wait_seeding, h, 30)
            h.force_dht_announce()
            stored = await asyncio.to_thread(
                wait_for, lambda: boot.node.stored_peers(t.swarm_hash), 30, "libtorrent's DHT announce"
            )
            assert stored == [("127.0.0.1", lt_peer.port)]
            # the lookup that used to return libtorrent's own address (it dials it as soon as it is
            # returned); its announce_peer comes after the lookup
            announces = methods.count(b"announce_peer")
            h.force_dht_announce()
            await asyncio.to_thread(
                wait_for, lambda: methods.count(b"announce_peer") > announces, 30, "libtorrent's re-announce"
            )
            # a bitswarm peer on the same IP finds libtorrent through the DHT and fetches the magnet
            async with Session(SessionConfig("127.0.0.1", 0, dht_bootstrap=[boot.address])) as bw:
                await (await bw.add(uri, tmp_path / "bw", metadata_timeout=30)).wait_complete(timeout=30)
    assert (tmp_path / "bw" / src.name).read_bytes() == src.read_bytes()
