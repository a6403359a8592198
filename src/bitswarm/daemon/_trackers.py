"""Tracker and DHT status of one daemon torrent (``GET /api/v1/torrents/{id}/trackers``, the
``trackers`` of its details, ``ctl show``, the web UI's trackers tab): the engine's
:meth:`~bitswarm.session.torrent.TorrentHandle.tracker_status` while it runs, else its tiers as
``not contacted``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bitswarm.session.announce import DhtStatus, TrackerStatus

if TYPE_CHECKING:
    from bitswarm.session.torrent import TorrentHandle

#: announce tiers (a torrent's, or the URLs added to it)
Tiers = list[list[str]]


def tracker_rows(handle: TorrentHandle | None, tiers: Tiers) -> list[dict[str, Any]]:
    """One dict per tracker (:class:`~bitswarm.session.announce.TrackerStatus` fields)."""
    if handle is not None:
        return [t.as_dict() for t in handle.tracker_status()]
    return [
        TrackerStatus(url=url, tier=n, status="not contacted").as_dict()
        for n, tier in enumerate(tiers)
        for url in tier
    ]


def tracker_report(handle: TorrentHandle | None, tiers: Tiers) -> dict[str, Any]:
    """The trackers, the DHT, the peers known and the one-line ``waiting_reason`` (None unless a
    downloading torrent has no peer)."""
    if handle is None:
        return {
            "trackers": tracker_rows(None, tiers),
            "dht": DhtStatus(enabled=False).as_dict(),
            "known_peers": 0,
            "waiting_reason": None,
        }
    status = handle.status()
    return {
        "trackers": tracker_rows(handle, tiers),
        "dht": handle.dht_status().as_dict(),
        "known_peers": status.known_peers,
        "waiting_reason": status.waiting_reason,
    }
