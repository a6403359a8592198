"""What the tracker client keeps per torrent (issue 24, memory at 10,000 torrents): slotted
announce state, and one UDP client per tracker shared by every torrent over a session's endpoint."""

from __future__ import annotations

import gc

from bitswarm.tracker.client import AnnounceManager, AnnounceSchedule, UdpTrackerClient
from bitswarm.tracker.udp_endpoint import UdpTrackerEndpoint

URL = "udp://127.0.0.1:6969/announce"


def test_per_torrent_announce_state_is_slotted() -> None:
    manager = AnnounceManager([[URL]], info_hash=b"\1" * 20, peer_id=b"\2" * 20, port=1)
    for obj in (manager, manager.schedule, AnnounceSchedule(), UdpTrackerClient(URL)):
        assert not hasattr(obj, "__dict__"), type(obj)


def test_clients_over_one_endpoint_are_shared_per_tracker_and_settings() -> None:
    endpoint = UdpTrackerEndpoint()
    first = UdpTrackerClient(URL).with_endpoint(endpoint)
    assert first.endpoint is endpoint
    assert UdpTrackerClient(URL).with_endpoint(endpoint) is first
    other_tracker = UdpTrackerClient("udp://127.0.0.1:6970/announce").with_endpoint(endpoint)
    other_settings = UdpTrackerClient(URL, max_retries=2).with_endpoint(endpoint)
    assert other_tracker is not first and other_settings is not first
    assert other_settings.max_retries == 2 and other_tracker.port == 6970
    assert UdpTrackerClient(URL).with_endpoint(UdpTrackerEndpoint()) is not first  # per endpoint
    del first, other_tracker, other_settings
    gc.collect()
    assert len(endpoint.clients) == 0  # kept only while a torrent uses it
