"""A public libtorrent leecher for tests/net: downloads one torrent, learning peers from its tracker,
and exits when it has every piece. Prints JSON lines: ``progress`` (with the peers' addresses) and
``torrent_completed``; exit code 1 with ``timeout`` when ``--timeout`` passes first.

The session is :class:`realclients.LibtorrentPeer` (DHT, LSD, UPnP, NAT-PMP and uTP off) listening on
``--host:--port``: the only way to the seeder is the tracker's answer and a TCP connection this
leecher dials (the test also drops incoming connections to it with iptables).

    lt_leecher.py TORRENT --save DIR --host 198.18.0.11 [--port 6881] [--timeout 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/, for realclients

from realclients import LibtorrentPeer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("--save", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    peer = LibtorrentPeer(listen_interfaces=f"{args.host}:{args.port}", user_agent="libtorrent-net-leecher")
    handle = peer.add(Path(args.torrent).read_bytes(), args.save)
    deadline = time.monotonic() + args.timeout
    seen: set[str] = set()
    event = "timeout"
    while time.monotonic() < deadline:
        peer.session.wait_for_alert(200)
        for alert in peer.session.pop_alerts():
            if isinstance(alert, peer.lt.torrent_error_alert | peer.lt.tracker_error_alert):
                print(json.dumps({"event": "error", "error": alert.message()}), flush=True)
        seen.update(f"{p.ip[0]}:{p.ip[1]}" for p in handle.get_peer_info())
        status = handle.status()
        if status.is_seeding:
            event = "torrent_completed"
            break
        print(
            json.dumps({"event": "progress", "progress": status.progress, "peers": sorted(seen)}), flush=True
        )
    print(json.dumps({"event": event, "peers": sorted(seen)}), flush=True)
    peer.close()
    return 0 if event == "torrent_completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
