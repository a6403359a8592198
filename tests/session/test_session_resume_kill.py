"""Crash-resume of the real ``bitswarm download`` CLI: SIGKILLed five times mid-download, restarted on
the same directory each time; the pieces verified before a kill must never be downloaded again.

The seeder is a small runner script (the Python API, because the CLI has no rate-limit option) with
an upload rate limit, so the download lasts a few seconds and the kills land inside it. Kill points
come from a seeded RNG as piece counts, and each kill fires on the first ``progress`` event at or past
its count. After each kill the run's remaining stdout is drained: every ``piece_verified`` line the
process printed before dying is kept. Storage only reports a piece verified after its write
returned, so the bytes are in the page cache and survive SIGKILL; on restart storage sees the file
changed since its last resume record, re-hashes it and finds those pieces.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from netns_testlib import JsonProc

from realclients import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BITSWARM = str(Path(sys.executable).with_name("bitswarm"))
SIZE = 32 * 1024 * 1024
PIECE = 64 * 1024
KILLS = 5
SEED_RATE = 6 * 1024 * 1024  #: seeder upload limit, bytes/s: the download takes ~5-6 s of transfer
#: Bytes a killed run may have received without them reaching a verified piece on disk: pieces being
#: assembled or written, what the seeder's token bucket let out in a burst, socket buffers. The peers
#: talk uTP (the leecher dials uTP only: loopback is otherwise dialed over TCP first, and this is
#: the costlier case): the seeder counts a block as sent once its uTP
#: stream queues it, and a stream queues up to ``UtpConfig.send_high_water`` (1 MiB, about one
#: bandwidth-delay product at 100 Mbit/s and 80 ms) before it pushes back, so a kill can cost that too
#: (measured: ~1.4 MiB per kill over uTP, ~0.06 MiB over TCP).
WASTE_PER_KILL = 16 * PIECE + (1 << 20)

SEEDER_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from bitswarm.session import Session, SessionConfig

    async def main() -> None:
        torrent, data, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
        cfg = SessionConfig(listen_host="127.0.0.1", listen_port=0, upload_rate_limit=rate)
        async with Session(cfg) as session:
            handle = await session.add(torrent, data)
            print(json.dumps({"event": "seeding", "port": session.port,
                              "state": handle.status().state}), flush=True)
            for _ in range(100000):  # bounded; the test kills us long before
                print(json.dumps({"event": "progress", "time": asyncio.get_running_loop().time(),
                                  **handle.status().as_dict()}), flush=True)
                await asyncio.sleep(0.2)

    asyncio.run(main())
    """
)


def kill_after_progress_past(proc: JsonProc, target: int, run: int, first_done: list[int]) -> None:
    """Read ``proc``'s events until a ``progress`` line has ``pieces_done >= target`` (and this run
    verified at least one piece), SIGKILL it, then drain what it printed before dying."""
    deadline = time.monotonic() + 40
    new = 0
    while True:
        ev = proc.next_event(deadline)
        assert ev is not None, f"run {run} exited before piece {target}\n{proc.stderr_tail()}"
        assert ev["event"] != "torrent_completed", f"run {run} finished before its kill point {target}"
        new += ev["event"] == "piece_verified"
        if ev["event"] == "progress":
            # progress lines start only after storage has re-checked the data on disk
            if len(first_done) == run:
                first_done.append(int(ev["pieces_done"]))
            if int(ev["pieces_done"]) >= target and new:
                break
    proc.kill()
    proc.drain(10)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_survives_five_sigkills_without_refetching_verified_pieces(tmp_path: Path) -> None:
    t0 = time.monotonic()
    rng = random.Random(20240605)
    src = tmp_path / "seed" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(rng.randbytes(SIZE))
    torrent = tmp_path / "payload.torrent"
    subprocess.run(
        [BITSWARM, "create", str(src), "-o", str(torrent), "--v1", "--piece-size", str(PIECE)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    num_pieces = SIZE // PIECE
    script = tmp_path / "rate_limited_seeder.py"
    script.write_text(SEEDER_SCRIPT)

    # Kill points: five piece counts spread over 8%..80% of the download, at least 5% apart.
    lo, hi, gap = int(0.08 * num_pieces), int(0.80 * num_pieces), int(0.05 * num_pieces)
    for _ in range(1000):
        targets = sorted(rng.sample(range(lo, hi), KILLS))
        if all(b - a >= gap for a, b in itertools.pairwise(targets)):
            break
    else:  # pragma: no cover
        raise AssertionError("could not draw kill points")

    out = tmp_path / "down"
    procs: list[JsonProc] = []
    seeder = JsonProc(
        [sys.executable, str(script), str(torrent), str(src.parent), str(SEED_RATE)],
        stderr_path=tmp_path / "seeder.err", name="seeder",
    )  # fmt: skip
    procs.append(seeder)
    try:
        ev = seeder.wait_event(lambda e: e["event"] == "seeding", 30, "the seeder to start")
        assert ev["state"] == "seeding"
        seed_port = ev["port"]
        download = [BITSWARM, "download", str(torrent), "-o", str(out), "--peer", f"127.0.0.1:{seed_port}",
                    "--port", "0", "--host", "127.0.0.1", "--json", "--transports", "utp"]  # fmt: skip

        verified_runs: list[list[int]] = []
        first_done: list[int] = []  # pieces_done in each run's first progress event
        for run in range(KILLS + 1):
            proc = JsonProc(download, stderr_path=tmp_path / f"download{run}.err", name=f"download#{run}")
            procs.append(proc)
            before = {i for v in verified_runs for i in v}
            if run < KILLS:
                kill_after_progress_past(proc, targets[run], run, first_done)
            else:
                assert proc.wait_exit(60) == 0, proc.stderr_tail()
                finished_at = time.monotonic()
                proc.drain(10)
                assert any(e["event"] == "torrent_completed" for e in proc.events)
            verified = [int(e["index"]) for e in proc.events if e["event"] == "piece_verified"]
            progress = [e for e in proc.events if e["event"] == "progress"]
            if len(first_done) == run and progress:
                first_done.append(int(progress[0]["pieces_done"]))
            assert len(verified) == len(set(verified)), f"run {run} verified a piece twice"
            again = sorted(before & set(verified))
            assert not again, f"run {run} downloaded again pieces verified before a kill: {again[:20]}"
            # every piece verified before the crash was found on disk by the restarted run
            assert first_done[run] >= len(before), (run, first_done[run], len(before))
            verified_runs.append(verified)
            proc.stop()

        assert sha256(out / "payload.bin") == sha256(src)
        got = {i for v in verified_runs for i in v}
        # Pieces whose event was lost with the kill are found on disk, not downloaded: <= num_pieces.
        assert len(got) <= num_pieces and len(got) > num_pieces // 2
        assert all(len(v) > 0 for v in verified_runs), [len(v) for v in verified_runs]

        # Everything the seeder ever sent (its upload counter covers all six runs, including bytes
        # lost with each kill) stays within the file size plus a few pieces per kill.
        # (the seeder stamps its lines with the loop clock, which is CLOCK_MONOTONIC like ours)
        def final_upload() -> int | None:
            ev = seeder.next_event(time.monotonic() + 10)
            assert ev is not None, seeder.stderr_tail()
            if ev["event"] != "progress" or ev["time"] <= finished_at:
                return None
            return int(ev["uploaded"])

        sent = wait_for(final_upload, 15, "a seeder progress line after the download finished", 0)
        waste = sent - SIZE
        assert 0 <= waste <= KILLS * WASTE_PER_KILL, f"seeder sent {sent} bytes for {SIZE}: {waste} wasted"
        print(
            f"\nresume-kill: kills at pieces {targets}, verified per run {[len(v) for v in verified_runs]},"
            f" found on restart {first_done}, wasted {waste} B, {time.monotonic() - t0:.1f} s"
        )
    finally:
        for p in procs:
            p.kill()
            p.stop()
