"""bitswarm — a complete BitTorrent system: peer, tracker, Mainline DHT node and file index.

The public library surface is re-exported from the subsystem packages:
``bitswarm.bencode``, ``bitswarm.metainfo``, ``bitswarm.wire``, ``bitswarm.storage``,
``bitswarm.tracker``, ``bitswarm.dht``, ``bitswarm.session`` and ``bitswarm.index``.
"""

from bitswarm.errors import (
    BitswarmError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)

__version__ = "0.1.0"

__all__ = [
    "BitswarmError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "__version__",
]
