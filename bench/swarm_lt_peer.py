#!/usr/bin/env python3
"""One libtorrent peer for ``bench_swarm.py``: seeds or downloads one torrent through its tracker.

Prints JSON lines like ``bitswarm download --json``: ``started``, ``seeding`` (seeder ready),
``torrent_completed`` (leecher has every piece), ``progress`` every half second (``uploaded``,
``downloaded``, ``peers``) and keeps seeding until SIGTERM/SIGINT or stdin closes.

Settings: listen on ``--host:--port`` only, uTP off (``--utp``: uTP only, outgoing and incoming TCP
off), DHT/LSD/UPnP/NAT-PMP off, encryption off
(``out_enc_policy``/``in_enc_policy`` 2 = disabled), the torrent neither auto-managed nor paused,
``seed_mode`` for the seeder (pieces verified lazily before their first upload).

    swarm_lt_peer.py TORRENT --save DIR --host 10.78.0.3 --port 6881 [--seed]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("--save", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--seed", action="store_true")
    ap.add_argument("--utp", action="store_true", help="uTP only: outgoing and incoming TCP off")
    ap.add_argument(
        "--wait-go",
        action="store_true",
        help='print "ready" with the session up, add the torrent on a "go" line',
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra settings_pack int/bool"
    )
    args = ap.parse_args()

    import libtorrent as lt

    stop = threading.Event()
    go = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def watch_stdin() -> None:  # the harness closing our stdin (or dying) stops us too
        try:
            while data := os.read(0, 4096):
                if b"go" in data:
                    go.set()
        except OSError:
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    settings: dict[str, Any] = {
        "listen_interfaces": f"{args.host}:{args.port}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": args.utp,
        "enable_incoming_utp": args.utp,
        "enable_outgoing_tcp": not args.utp,
        "enable_incoming_tcp": not args.utp,
        "out_enc_policy": 2,
        "in_enc_policy": 2,
        "user_agent": "libtorrent-swarm-bench",
        "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
    }
    for kv in args.set:
        k, _, v = kv.partition("=")
        settings[k] = (v.lower() == "true") if v.lower() in ("true", "false") else int(v)
    ses = lt.session(settings)
    if args.wait_go:
        emit({"event": "ready"})
        while not go.wait(0.1):
            if stop.is_set():
                return 0
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.save
    params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
    if args.seed:
        params.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(params)
    emit({"event": "started", "port": ses.listen_port()})
    completed = False
    last = 0.0
    deadline_seed = time.monotonic() + 60
    while not stop.is_set():
        ses.wait_for_alert(100)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_error_alert):
                emit({"event": "torrent_error", "error": a.message()})
        st = h.status()
        if not completed and st.is_seeding and not st.paused:
            completed = True
            emit({"event": "seeding" if args.seed else "torrent_completed"})
        if args.seed and not completed and time.monotonic() > deadline_seed:
            emit({"event": "torrent_error", "error": "seeder never reached the seeding state"})
            return 1
        now = time.monotonic()
        if now - last >= 0.5:
            last = now
            emit(
                {
                    "event": "progress",
                    "state": "seeding" if st.is_seeding else "downloading",
                    "progress": st.progress,
                    "uploaded": st.total_payload_upload,
                    "downloaded": st.total_payload_download,
                    "redundant": st.total_redundant_bytes,
                    "peers": st.num_peers,
                    "upload_rate": st.upload_payload_rate,
                    "download_rate": st.download_payload_rate,
                }
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
