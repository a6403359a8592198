"""Real clients through the bitswarm tracker: libtorrent seeds (announcing over HTTP and UDP),
aria2c downloads (announcing over HTTP)."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from tracker_server_testlib import running

from testtools import require_tool, until

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


async def _until(cond: Callable[[], object], seconds: float) -> bool:
    try:  # bounded polling of another process's state
        return bool(await until(cond, timeout=seconds, interval=0.05))
    except AssertionError:
        return False


async def test_libtorrent_seeds_aria2c_downloads_through_tracker(tmp_path: Path) -> None:
    lt = pytest.importorskip("libtorrent")
    aria2c = require_tool("aria2c")
    seed_dir, dl_dir = tmp_path / "seed", tmp_path / "dl"
    seed_dir.mkdir()
    dl_dir.mkdir()
    payload = os.urandom(300_000)
    (seed_dir / "payload.bin").write_bytes(payload)
    async with running(http=(("127.0.0.1", 0),), udp=(("127.0.0.1", 0),)) as server:
        http_url = f"http://127.0.0.1:{server.http_addresses[0][1]}/announce"
        udp_url = f"udp://127.0.0.1:{server.udp_addresses[0][1]}/announce"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            fs = lt.file_storage()
            lt.add_files(fs, str(seed_dir / "payload.bin"))
            ct = lt.create_torrent(fs, 16384, lt.create_torrent.v1_only)
            ct.add_tracker(http_url, 0)
            ct.add_tracker(udp_url, 1)
            lt.set_piece_hashes(ct, str(seed_dir))
            torrent_file = tmp_path / "payload.torrent"
            torrent_file.write_bytes(lt.bencode(ct.generate()))
        session = lt.session(
            {
                "listen_interfaces": "127.0.0.1:0",
                "enable_dht": False,
                "enable_lsd": False,
                "enable_upnp": False,
                "enable_natpmp": False,
                "enable_outgoing_utp": False,
                "enable_incoming_utp": False,
                "announce_to_all_trackers": True,
                "announce_to_all_tiers": True,
                "allow_multiple_connections_per_ip": True,
            }
        )
        try:
            params = lt.add_torrent_params()
            params.ti = lt.torrent_info(str(torrent_file))
            params.save_path = str(seed_dir)
            params.flags |= lt.torrent_flags.seed_mode
            handle = session.add_torrent(params)
            core = server.core
            assert core is not None
            assert await _until(lambda: core.announces["http"] >= 1 and core.announces["udp"] >= 1, 20)
            # a hybrid torrent is announced under its v1 and (truncated) v2 info-hash (BEP 52)
            records = list(server.store.peers())
            assert records and all(r.seeder and r.peer_id.startswith(b"-LT") for r in records)
            proc = await asyncio.create_subprocess_exec(
                aria2c,
                f"--dir={dl_dir}",
                "--seed-time=0",
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--bt-tracker-connect-timeout=5",
                "--summary-interval=0",
                "--console-log-level=warn",
                "--bt-require-crypto=false",
                "--bt-min-crypto-level=plain",
                "--allow-overwrite=true",
                "--check-integrity=true",
                str(torrent_file),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                _, err = await asyncio.wait_for(proc.communicate(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                pytest.fail(f"aria2c did not finish; tracker stats {await core.stats()}")
            assert proc.returncode == 0, err.decode(errors="replace")
            assert (dl_dir / "payload.bin").read_bytes() == payload
            assert core.announces["http"] >= 2  # aria2c announced too
            assert handle.status().num_complete >= 0
        finally:
            session.pause()
            del session
