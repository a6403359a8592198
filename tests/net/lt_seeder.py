"""A libtorrent seeder for tests/net: seeds one torrent from ``--data`` on ``--listen`` (libtorrent's
``listen_interfaces`` form, e.g. ``[2001:db8::c]:6881``) until SIGTERM. Prints JSON lines: ``seeding``
once every piece is checked, then ``peers`` (the addresses connected to it) every half second.

The session is :class:`realclients.LibtorrentPeer` (DHT, LSD, UPnP, NAT-PMP and uTP off).

    lt_seeder.py TORRENT --data DIR --listen [2001:db8::c]:6881
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/, for realclients

from realclients import LibtorrentPeer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("--data", required=True)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    peer = LibtorrentPeer(listen_interfaces=args.listen, user_agent="libtorrent-net-seeder")
    handle = peer.add(Path(args.torrent).read_bytes(), args.data)
    deadline = time.monotonic() + args.timeout
    seeding = False
    while not stop and time.monotonic() < deadline:
        peer.session.wait_for_alert(500)
        for alert in peer.session.pop_alerts():
            if isinstance(alert, peer.lt.torrent_error_alert | peer.lt.listen_failed_alert):
                print(json.dumps({"event": "error", "error": alert.message()}), flush=True)
        if not seeding and handle.status().is_seeding:
            seeding = True
            print(json.dumps({"event": "seeding", "port": peer.port}), flush=True)
        if seeding:
            peers = sorted(f"{p.ip[0]}:{p.ip[1]}" for p in handle.get_peer_info())
            print(json.dumps({"event": "peers", "peers": peers}), flush=True)
    peer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
