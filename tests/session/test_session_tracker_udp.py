"""A session's UDP tracker announces share one socket and one BEP 15 connect (issue 24: 10,000
torrents held up to 10,000 sockets and a daemon stop made a socket, a connect and an announce each)."""

from __future__ import annotations

import random
from pathlib import Path

from tests.session.test_session_idle import config, eventually
from tests.tracker.test_tracker_udp_endpoint import _tracker

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session
from bitswarm.tracker import Event
from bitswarm.tracker import udp_codec as u


async def test_many_torrents_announce_over_one_socket_and_one_connect(tmp_path: Path) -> None:
    n = 12
    server, transport, url = await _tracker(hold=1)
    try:
        async with Session(config()) as session:
            endpoint = session.tracker_udp
            for i in range(n):
                root = tmp_path / f"t{i}"
                root.mkdir()
                f = root / "data.bin"
                f.write_bytes(random.Random(i).randbytes(20_000))
                t = parse_torrent(create_torrent(f, version="v1", piece_length=16384))
                await session.add(t, root, trackers=[url], use_torrent_trackers=False)
            await eventually(lambda: server.kinds().count("AnnounceRequest") >= n)
            assert endpoint.sockets_opened == 1 and endpoint.sockets == 1
            assert server.kinds().count("ConnectRequest") == 1
            await eventually(lambda: endpoint.in_flight == 0)  # every reply reached its torrent
        # the ``stopped`` announces went out over the same socket, with the cached connection id
        announces = [r for r in server.received if isinstance(r, u.AnnounceRequest)]
        stopped = [r for r in announces if r.event is Event.STOPPED]
        assert len(stopped) == n
        assert server.kinds().count("ConnectRequest") == 1 and endpoint.sockets_opened == 1
        assert endpoint.closed and endpoint.sockets == 0  # the session closed it
    finally:
        transport.close()
