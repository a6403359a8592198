#!/usr/bin/env python3
"""libtorrent's side of ``bench_many_torrents.py``: one session with N seeding torrents.

    many_torrents_lt.py --torrents DIR --data DIR --resume DIR [--dht] --mode add|load

``add``: add every ``DIR/*.torrent`` (its data checked), write each torrent's resume data into
``--resume``, print one JSON line and exit. ``load``: add every torrent with its resume data (no
check), print ``{"event": "seeding", "seconds": ...}`` once all of them seed, then idle until SIGTERM.
uTP, LSD, UPnP and NAT-PMP are off; DHT only with ``--dht``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import libtorrent as lt


def _session(dht: bool) -> lt.session:
    return lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": dht,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "alert_mask": lt.alert_category.status | lt.alert_category.error | lt.alert_category.storage,
            # one save_resume_data alert per torrent: the default queue (2,000 on 2.x) dropped some
            # at 10,000 and the ``add`` pass waited for them forever
            "alert_queue_size": 100_000,
            "active_limit": 100_000,
            "active_checking": 100_000,
            "active_seeds": 100_000,
            "active_downloads": 100_000,
            "active_tracker_limit": 100_000,
            "active_dht_limit": 100_000,
            "dht_bootstrap_nodes": "",
        }
    )


def _wait_seeding(ses: lt.session, handles: list[lt.torrent_handle], deadline: float) -> bool:
    pending = set(range(len(handles)))
    while pending and time.monotonic() < deadline:
        ses.wait_for_alert(200)
        ses.pop_alerts()
        for i in list(pending):
            st = handles[i].status(0)
            if st.is_seeding:
                pending.discard(i)
    return not pending


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--torrents", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--resume", type=Path, required=True)
    ap.add_argument("--mode", choices=("add", "load"), required=True)
    ap.add_argument("--dht", action="store_true")
    args = ap.parse_args()
    t0 = time.monotonic()
    ses = _session(args.dht)
    files = sorted(args.torrents.glob("*.torrent"))
    handles: list[lt.torrent_handle] = []
    for f in files:
        res = args.resume / (f.stem + ".resume")
        if args.mode == "load" and res.exists():
            atp = lt.read_resume_data(res.read_bytes())
            atp.ti = lt.torrent_info(str(f))
        else:
            atp = lt.add_torrent_params()
            atp.ti = lt.torrent_info(str(f))
        atp.save_path = str(args.data)
        handles.append(ses.add_torrent(atp))
    ok = _wait_seeding(ses, handles, time.monotonic() + 600)
    took = time.monotonic() - t0
    if args.mode == "add":
        args.resume.mkdir(parents=True, exist_ok=True)
        for h in handles:
            h.save_resume_data(lt.torrent_handle.save_info_dict)
        left = len(handles)
        names = {h.info_hash(): f.stem for h, f in zip(handles, files, strict=True)}
        while left:
            ses.wait_for_alert(1000)
            for a in ses.pop_alerts():
                if isinstance(a, lt.save_resume_data_alert):
                    stem = names[a.handle.info_hash()]
                    (args.resume / (stem + ".resume")).write_bytes(lt.write_resume_data_buf(a.params))
                    left -= 1
                elif isinstance(a, lt.save_resume_data_failed_alert):
                    left -= 1
        print(json.dumps({"event": "added", "seconds": took, "ok": ok}), flush=True)
        return 0
    print(json.dumps({"event": "seeding", "seconds": took, "ok": ok}), flush=True)
    stop = False

    def _term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    while not stop:
        ses.wait_for_alert(500)
        ses.pop_alerts()
    # a real stop, as the bitswarm daemon's is measured: resume data of what changed (nothing, for
    # idle seeds), then the session's destructor (``stopped`` announces, bounded by its
    # stop_tracker_timeout)
    for h in ses.get_torrents():
        if h.need_save_resume_data():
            h.save_resume_data()
    del ses
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
