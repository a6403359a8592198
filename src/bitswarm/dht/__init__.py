"""Mainline DHT (BEP 5, 32, 42, 43, 44, 51): a sans-I/O node, its KRPC codec and an asyncio driver.

* :mod:`bitswarm.dht.krpc` - the KRPC codec (bytes in, typed messages out).
* :class:`DHTNode` - the protocol core; feed it datagrams, give it ``send`` and ``clock``.
* :class:`DHTServer` - the node on a real UDP socket (asyncio / uvloop).
* :class:`SimNetwork` - many nodes in one process on a fake transport (tests, experiments).

See ``docs/protocols/dht.md``.
"""

from typing import TYPE_CHECKING

# Lazy re-exports: ``from bitswarm.dht.bep42 import is_local_address`` (the peer session) must not
# import the whole node, its codec and the simulator (see :mod:`bitswarm._lazy`).
if TYPE_CHECKING:
    from bitswarm.dht.krpc import Addr, KRPCError, NodeInfo
    from bitswarm.dht.lookup import Item, Lookup, LookupResult
    from bitswarm.dht.node import DHTConfig, DHTNode, DHTStats, NodeRouter, QueryHook, load_state
    from bitswarm.dht.routing import RoutingTable
    from bitswarm.dht.server import DHTServer
    from bitswarm.dht.sim import SimNetwork
else:
    from bitswarm._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(
        globals(),
        {
            "Addr": ".krpc",
            "KRPCError": ".krpc",
            "NodeInfo": ".krpc",
            "Item": ".lookup",
            "Lookup": ".lookup",
            "LookupResult": ".lookup",
            "DHTConfig": ".node",
            "DHTNode": ".node",
            "DHTStats": ".node",
            "NodeRouter": ".node",
            "QueryHook": ".node",
            "load_state": ".node",
            "RoutingTable": ".routing",
            "DHTServer": ".server",
            "SimNetwork": ".sim",
        },
    )

__all__ = [
    "Addr",
    "DHTConfig",
    "DHTNode",
    "DHTServer",
    "DHTStats",
    "Item",
    "KRPCError",
    "Lookup",
    "LookupResult",
    "NodeInfo",
    "NodeRouter",
    "QueryHook",
    "RoutingTable",
    "SimNetwork",
    "load_state",
]
