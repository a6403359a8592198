#!/usr/bin/env python3
"""One whole libtorrent process for ``bench_transfer.py --mode cli``: seeds, or downloads and exits.

The counterpart of ``bitswarm seed`` / ``bitswarm download``: a seeder prints
``{"event": "seeding", "port": N}`` once its torrent is seeding and runs until stdin closes or
SIGTERM; a leecher connects to ``--peer HOST:PORT``, prints ``torrent_completed`` when every piece
is verified and exits (the session's destructor runs, as a client's exit would).

Settings (like the bench's in-process libtorrent): listen on 127.0.0.1, DHT/LSD/UPnP/NAT-PMP off,
uTP off (libtorrent's uTP crawls on loopback), encryption off, the torrent neither auto-managed nor
paused, ``seed_mode`` for the seeder (pieces verified lazily before their first upload).

    lt_transfer_peer.py TORRENT --save DIR --seed
    lt_transfer_peer.py TORRENT --save DIR --peer 127.0.0.1:6881
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
    ap.add_argument("--seed", action="store_true")
    ap.add_argument("--peer", help="HOST:PORT to connect to (leecher)")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()

    import libtorrent as lt

    settings: dict[str, Any] = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "out_enc_policy": 2,  # pe_settings: disabled
        "in_enc_policy": 2,
        "user_agent": "libtorrent-bench",
        "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
    }
    ses = lt.session(settings)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.save
    params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
    if args.seed:
        params.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(params)

    if args.seed:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())

        def watch_stdin() -> None:  # the harness closing our stdin (or dying) stops us too
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        deadline = time.monotonic() + 60
        while not (st := h.status()).is_seeding or st.paused:
            if time.monotonic() > deadline:
                emit({"event": "torrent_error", "error": "never reached the seeding state"})
                return 1
            time.sleep(0.005)
        emit({"event": "seeding", "port": ses.listen_port()})
        while not stop.wait(0.2):
            ses.pop_alerts()
        return 0

    if not args.peer:
        ap.error("a leecher needs --peer HOST:PORT")
    host, _, port = args.peer.rpartition(":")
    deadline = time.monotonic() + 30
    while (st := h.status()).paused or st.state != lt.torrent_status.downloading:
        if st.is_seeding:
            break
        if time.monotonic() > deadline:
            emit({"event": "torrent_error", "error": "never left the checking state"})
            return 1
        time.sleep(0.002)
    h.connect_peer((host, int(port)))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        ses.wait_for_alert(50)
        finished = False
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_finished_alert):
                finished = True
            elif isinstance(a, lt.torrent_error_alert):
                emit({"event": "torrent_error", "error": a.message()})
                return 1
        if finished or h.status().is_seeding:
            emit({"event": "torrent_completed"})
            return 0
    emit({"event": "torrent_error", "error": "timed out"})
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
