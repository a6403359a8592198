"""A public libtorrent session as the BEP 55 relay for tests/net/test_net_holepunch.py.

A leecher of the torrent (download limited, so it never has a piece to give) that accepts uTP and TCP
and sends PEX (libtorrent's default ut_pex plugin, flag 0x08 for peers that offered
``ut_holepunch``). libtorrent answers a rendezvous by looking up the connection whose *remote
endpoint* is the target and sending each side the other's remote endpoint: the NATed peers must
reach it over uTP (their UDP source is their listen socket), so uTP is on here. Prints JSON lines:
``started``, ``holepunch`` (libtorrent's own peer-log line of each ut_holepunch message it sends or
receives, e.g. ``==> HOLEPUNCH [ msg: connect to: 198.18.0.104 ERROR:  ]``), ``peers`` every second.

    lt_relay.py TORRENT --save DIR --host 198.18.0.11 [--port 6881] [--download-limit 1024]
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

_stop = False


def _on_term(signum: int, frame: object) -> None:
    global _stop
    _stop = True


def peer_log_mask() -> int:
    import libtorrent as lt

    cat = lt.alert.category_t
    return int(cat.error_notification | cat.status_notification | cat.peer_log_notification)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("--save", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--download-limit", type=int, default=1024)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _on_term)
    peer = LibtorrentPeer(
        listen_interfaces=f"{args.host}:{args.port}",
        user_agent="libtorrent-net-relay",
        enable_outgoing_utp=True,
        enable_incoming_utp=True,
        download_rate_limit=args.download_limit,
        alert_mask=peer_log_mask(),
    )
    Path(args.save).mkdir(parents=True, exist_ok=True)
    handle = peer.add(Path(args.torrent).read_bytes(), args.save)
    print(json.dumps({"event": "started", "port": peer.port, "version": peer.lt.__version__}), flush=True)
    next_report = 0.0
    while not _stop:
        peer.session.wait_for_alert(200)
        for alert in peer.session.pop_alerts():
            text = alert.message()
            if isinstance(alert, peer.lt.peer_log_alert) and "HOLEPUNCH [ msg" in text:
                print(json.dumps({"event": "holepunch", "log": text}), flush=True)
        now = time.monotonic()
        if now >= next_report:
            next_report = now + 1.0
            peers = [{"address": f"{p.ip[0]}:{p.ip[1]}"} for p in handle.get_peer_info()]
            print(json.dumps({"event": "peers", "peers": peers}), flush=True)
    peer.close()
    print(json.dumps({"event": "stopped"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
