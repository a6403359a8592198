"""bitswarm's BitTorrent tracker server: HTTP (BEP 3/7/23/48) and UDP (BEP 15) front ends over one
swarm store (in memory, or Redis shared by several instances), open / whitelist / private modes,
SQLite persistence, an admin REST API, ``/stats`` and Prometheus ``/metrics``.

See ``docs/protocols/tracker-server.md``.
"""

from bitswarm.tracker.server.app import TrackerServer
from bitswarm.tracker.server.config import Mode, TrackerConfig, parse_address
from bitswarm.tracker.server.errors import TrackerConfigError, TrackerServerError
from bitswarm.tracker.server.state import MemoryStore, PeerRecord

__all__ = [
    "MemoryStore",
    "Mode",
    "PeerRecord",
    "TrackerConfig",
    "TrackerConfigError",
    "TrackerServer",
    "TrackerServerError",
    "parse_address",
]
