"""What a torrent's announces keep (issue 24, memory at 10,000 torrents): slotted objects, and one
UDP tracker client per tracker for all the torrents of a session's shared endpoint."""

from __future__ import annotations

from bitswarm.session.announce import AnnounceDriver, AnnounceGate, TrackerBook
from bitswarm.session.clock import ManualClock
from bitswarm.tracker.client import AnnounceManager
from bitswarm.tracker.udp_endpoint import UdpTrackerEndpoint

URL = "udp://127.0.0.1:6969/announce"


def _book(endpoint: UdpTrackerEndpoint) -> TrackerBook:
    book = TrackerBook([[URL]], emit=lambda kind, **data: None)
    book.udp = endpoint
    return book


def test_the_torrents_of_one_endpoint_share_the_tracker_client() -> None:
    endpoint = UdpTrackerEndpoint()
    books = [_book(endpoint) for _ in range(3)]
    clients = [book.client_factory(URL) for book in books]
    inner = {id(c._inner) for c in clients}  # type: ignore[attr-defined]
    assert len(inner) == 1
    assert all(not hasattr(c, "__dict__") for c in clients)


def test_a_torrents_announce_objects_are_slotted() -> None:
    book = _book(UdpTrackerEndpoint())
    manager = AnnounceManager(
        [[URL]], info_hash=b"\1" * 20, peer_id=b"\2" * 20, port=1, client_factory=book.client_factory
    )
    driver = AnnounceDriver(
        clock=ManualClock(),
        swarm_hash=b"\1" * 20,
        port=lambda: 1,
        add_peer=lambda host, port: None,
        want_more_peers=lambda: False,
        announcer=manager,
        dht=None,
        dht_interval=1800.0,
        book=book,
        gate=AnnounceGate(),
    )
    for obj in (book, manager, driver):
        assert not hasattr(obj, "__dict__"), type(obj)
