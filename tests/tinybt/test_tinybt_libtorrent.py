"""tinybt's API against a real Mainline DHT implementation: libtorrent (PyPI) on loopback.

A first tinybt node (bootstrapping from its own address) is libtorrent's bootstrap node; libtorrent
seeds a torrent and announces it; a second tinybt node finds libtorrent with ``dht_get_peers`` and
announces itself, and libtorrent's DHT then reports that peer to its torrent.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.tinybt import DHT
from realclients import libtorrent_peer, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


def test_tinybt_finds_and_is_found_by_libtorrent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITSWARM_NO_PUBLIC_DHT", "1")
    src = tmp_path / "film.bin"
    src.write_bytes(random.Random(4).randbytes(200_000))
    data = create_torrent(src, version="v1", piece_length=65536)
    ih = parse_torrent(data).swarm_hash
    with DHT(("127.0.0.1", 0), ("127.0.0.1", 0)) as first:
        host, port = first.listen_connection
        settings = {
            "enable_dht": True,
            "dht_bootstrap_nodes": f"{host}:{port}",
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_enforce_node_id": False,
        }
        with libtorrent_peer(**settings) as lt_peer:
            lt = lt_peer.lt
            cat = lt.alert.category_t
            lt_peer.session.apply_settings(
                {
                    "alert_mask": cat.error_notification
                    | cat.status_notification
                    | cat.dht_operation_notification
                }
            )
            h = lt_peer.add(data, tmp_path)
            h.unset_flags(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
            h.resume()
            lt_peer.wait_seeding(h, 30)
            with DHT(("127.0.0.1", 0), first.listen_connection) as second:

                def found() -> bool:
                    h.force_dht_announce()
                    return ("127.0.0.1", lt_peer.port) in set(second.dht_get_peers(ih, timeout=2, retries=0))

                wait_for(found, 45, "libtorrent's announce through tinybt's dht_get_peers", interval=0.5)
                assert second.dht_announce_peer(ih, implied_port=0) >= 1
                # a DHT lookup by libtorrent returns our announce
                peers: set[tuple[str, int]] = set()

                def lt_sees_us() -> bool:
                    lt_peer.session.dht_get_peers(lt.sha1_hash(ih))
                    for alert in lt_peer.session.pop_alerts():
                        if isinstance(alert, lt.dht_get_peers_reply_alert):
                            peers.update((str(a), int(p)) for a, p in alert.peers())
                    return ("127.0.0.1", second.listen_connection[1]) in peers

                wait_for(lt_sees_us, 30, "tinybt's announce through libtorrent's get_peers", interval=0.5)
