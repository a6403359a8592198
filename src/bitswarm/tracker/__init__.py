"""BitTorrent trackers: the BEP 15 UDP and BEP 3/7/23/48 HTTP codecs (sans-I/O, both directions,
shared with the tracker server) and the asyncio tracker client with BEP 12 multitracker tiers.

Modules: :mod:`bitswarm.tracker.udp_codec`, :mod:`bitswarm.tracker.http_codec`,
:mod:`bitswarm.tracker.client`. See ``docs/protocols/tracker.md``.
"""

from bitswarm.tracker._common import (
    TRACKER_FAILURES,
    Event,
    TrackerEncodeError,
    TrackerError,
    TrackerProtocolError,
    TrackerTimeout,
    TrackerUnreachable,
    TrackerUrlError,
)
from bitswarm.tracker.client import (
    AllTrackersFailed,
    AnnounceManager,
    AnnounceParams,
    AnnounceResult,
    AnnounceSchedule,
    HttpTrackerClient,
    ScrapeResult,
    TrackerClient,
    TransferStats,
    UdpTrackerClient,
    normalize_tracker_url,
    open_tracker,
    tiers_from_metainfo,
)

__all__ = [
    "TRACKER_FAILURES",
    "AllTrackersFailed",
    "AnnounceManager",
    "AnnounceParams",
    "AnnounceResult",
    "AnnounceSchedule",
    "Event",
    "HttpTrackerClient",
    "ScrapeResult",
    "TrackerClient",
    "TrackerEncodeError",
    "TrackerError",
    "TrackerProtocolError",
    "TrackerTimeout",
    "TrackerUnreachable",
    "TrackerUrlError",
    "TransferStats",
    "UdpTrackerClient",
    "normalize_tracker_url",
    "open_tracker",
    "tiers_from_metainfo",
]
