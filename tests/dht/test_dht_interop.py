"""Interop with libtorrent's DHT (the pip package) on loopback: each side finds the other's announce."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest

from bitswarm.dht.server import DHTServer
from testtools import until

lt = pytest.importorskip("libtorrent")

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]


async def _poll_alerts(ses: Any, match: Callable[[Any], Any], seconds: float) -> Any:

    def alert() -> Any:
        for a in ses.pop_alerts():
            found = match(a)
            if found is not None:
                return found
        return None

    try:
        return await until(alert, timeout=seconds, interval=0.05)
    except AssertionError:
        return None


async def test_libtorrent_dht_interop() -> None:
    first = DHTServer("127.0.0.1", 0)
    await first.start()
    servers = [first]
    ses = None
    try:
        for _ in range(9):
            s = DHTServer("127.0.0.1", 0, bootstrap=[first.address])
            await s.start(wait_bootstrap=10)
            servers.append(s)
        ses = lt.session(
            {
                "listen_interfaces": "127.0.0.1:0",
                "enable_dht": True,
                "enable_lsd": False,
                "enable_upnp": False,
                "enable_natpmp": False,
                "dht_bootstrap_nodes": f"127.0.0.1:{first.address[1]}",
                "dht_restrict_routing_ips": False,
                "dht_restrict_search_ips": False,
                "dht_enforce_node_id": False,
                "dht_prefer_verified_node_ids": False,
                "alert_mask": lt.alert_category.all,
            }
        )
        booted = await _poll_alerts(ses, lambda a: a if isinstance(a, lt.dht_bootstrap_alert) else None, 20)
        assert booted is not None, "libtorrent did not bootstrap from our node"

        # libtorrent announces, our nodes store it and our lookup finds it
        ih = random.Random(1).randbytes(20)
        ses.dht_announce(lt.sha1_hash(ih), 7777, 0)
        with contextlib.suppress(AssertionError):  # asserted below
            await until(lambda: sum(bool(s.node.stored_peers(ih)) for s in servers) >= 3, timeout=20)
        holders = [s for s in servers if s.node.stored_peers(ih)]
        assert len(holders) >= 3
        assert ("127.0.0.1", 7777) in await servers[5].lookup(ih, timeout=10)

        # we announce, libtorrent's get_peers finds it
        ih2 = random.Random(2).randbytes(20)
        res = await servers[3].announce(ih2, 8888, timeout=10)
        assert res.stored >= 6
        ses.dht_get_peers(lt.sha1_hash(ih2))
        peers = await _poll_alerts(
            ses, lambda a: a.peers() if isinstance(a, lt.dht_get_peers_reply_alert) else None, 20
        )
        assert peers is not None and ("127.0.0.1", 8888) in peers
        # libtorrent answered our queries, so it is in our routing tables (as a responder)
        lt_port = ses.listen_port()
        assert any(e.addr == ("127.0.0.1", lt_port) for s in servers for e in s.node.tables[4].entries())
    finally:
        for s in servers:
            await s.stop()
        del ses
