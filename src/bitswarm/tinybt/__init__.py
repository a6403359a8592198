"""tinybt's Python API (seed 004) on bitswarm's DHT: code written for tinybt runs against it.

tinybt (fredstober/tinybt) is a small Python BitTorrent/Mainline DHT library; its README documents
``KRPCPeer`` (``krpc.py``) and the ``DHT`` class (``dht.py``). This package offers the same names,
arguments and defaults as a blocking facade over :mod:`bitswarm.dht` running on a background event
loop thread:

    from bitswarm.tinybt import DHT
    dht = DHT(("0.0.0.0", 10001), bootstrap_connection=("router.bittorrent.com", 6881),
              user_setup={"discover_t": 180, "check_t": 30, "check_N": 10}, user_router=None)
    peers = list(dht.dht_get_peers(info_hash))
    dht.dht_announce_peer(info_hash)
    print(dht.get_external_connection())
    dht.shutdown()

Module-level ``init(...)`` / ``shutdown()`` / ``get_external_connection()`` drive one default peer.
The mapping of each line of the seed to this code is in ``docs/seeds.md``.
"""

from bitswarm.dht.node import NodeRouter as DHT_Router
from bitswarm.tinybt._loop import AsyncResult, AsyncTimeout, KRPCDict, KRPCRemoteError
from bitswarm.tinybt.dht import DEFAULT_SETUP, DHT, DHTQueryHandler, get_external_connection, init, shutdown
from bitswarm.tinybt.krpc import KRPCPeer, QueryHandler, SendResponse

__all__ = [
    "DEFAULT_SETUP",
    "DHT",
    "AsyncResult",
    "AsyncTimeout",
    "DHTQueryHandler",
    "DHT_Router",
    "KRPCDict",
    "KRPCPeer",
    "KRPCRemoteError",
    "QueryHandler",
    "SendResponse",
    "get_external_connection",
    "init",
    "shutdown",
]
