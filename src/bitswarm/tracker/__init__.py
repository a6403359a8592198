"""BitTorrent trackers: the BEP 15 UDP and BEP 3/7/23/48 HTTP codecs (sans-I/O, both directions,
shared with the tracker server) and the asyncio tracker client with BEP 12 multitracker tiers.

Modules: :mod:`bitswarm.tracker.udp_codec`, :mod:`bitswarm.tracker.http_codec`,
:mod:`bitswarm.tracker.client`. See ``docs/protocols/tracker.md``.
"""

from typing import TYPE_CHECKING

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

# The client is re-exported lazily (see :mod:`bitswarm._lazy`): importing the package, or only a
# codec (the tracker server does), does not import the asyncio client.
if TYPE_CHECKING:
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
else:
    from bitswarm._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(
        globals(),
        dict.fromkeys(
            (
                "AllTrackersFailed",
                "AnnounceManager",
                "AnnounceParams",
                "AnnounceResult",
                "AnnounceSchedule",
                "HttpTrackerClient",
                "ScrapeResult",
                "TrackerClient",
                "TransferStats",
                "UdpTrackerClient",
                "normalize_tracker_url",
                "open_tracker",
                "tiers_from_metainfo",
            ),
            ".client",
        ),
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
