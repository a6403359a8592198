"""Fault: a leecher (the real ``bitswarm download --json``) SIGKILLed 20 times at random moments.

Each run is restarted on the same directory. Kill moments come from a seeded RNG: some runs die a
random 0.05-0.8 s after they are spawned (while Python starts, while storage re-checks the partial
file, around the first connection), the others a random 0.1-0.7 s after their first ``progress``
line (mid-transfer). A run is also killed as soon as it reaches its share of the file (at most
85 % after the 20th kill), so no run can finish before its kill. The seeder is rate limited (2 MiB/s)
so the kills land inside the download.

Expected: the 21st run completes and exits 0 with the seeder's exact bytes; no piece verified by one
run (``piece_verified`` events, drained after each kill) is verified again by a later run; every
piece verified before a kill is found on disk by the next run that gets as far as its first progress
line; and the seeder's total upload over all runs exceeds the file size by at most a bounded waste
per kill (bytes in flight or in half-assembled pieces when the process died).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from faults_testlib import (
    BITSWARM,
    JsonProc,
    create_torrent,
    last_seeder_upload,
    make_payload,
    procs,
    sha256_file,
    start_rate_limited_seeder,
)

from bitswarm.cli._peer import resume_dir_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SIZE = 32 * 1024 * 1024
PIECE = 64 * 1024
KILLS = 20
SEED_RATE = 2 * 1024 * 1024
#: Bytes a killed run may have received without them reaching a verified piece on disk: what the
#: seeder's token bucket let out in its burst (a quarter second) plus pieces being assembled.
WASTE_PER_KILL = 16 * PIECE  # measured: ~30 KiB per kill on average


def run_until_killed(proc: JsonProc, kill_at: float, piece_cap: int, run: int) -> str:
    """Let ``proc`` run until the monotonic time ``kill_at`` (a timer thread SIGKILLs it) or until it
    has ``piece_cap`` pieces, whichever is first; read everything it printed. Returns why it died."""
    why = "time"
    timer = threading.Timer(max(0.0, kill_at - time.monotonic()), proc.proc.kill)
    timer.start()
    try:
        deadline = time.monotonic() + 60
        base: int | None = None
        new = 0
        while True:
            ev = proc.next_event(deadline)
            if ev is None:
                break
            assert ev["event"] != "torrent_completed", f"run {run} completed before its kill"
            new += ev["event"] == "piece_verified"
            if ev["event"] == "progress" and base is None:
                base = int(ev["pieces_done"])
            if base is not None and base + new >= piece_cap and proc.proc.poll() is None:
                why = "cap"
                proc.proc.kill()
    finally:
        timer.cancel()
    proc.kill()  # reap
    rc = proc.proc.returncode
    assert rc == -9, f"run {run} exited by itself (rc={rc})\n{proc.stderr_tail()}"
    return why


def test_leecher_survives_twenty_sigkills_at_random_moments(tmp_path: Path) -> None:
    t0 = time.monotonic()
    rng = random.Random(7_2024_11)
    src = make_payload(tmp_path / "seed" / "payload.bin", SIZE, seed=rng.randrange(2**32))
    torrent = tmp_path / "payload.torrent"
    create_torrent(src, torrent, piece=PIECE)
    num_pieces = SIZE // PIECE
    out = tmp_path / "down"

    with procs() as group:
        seeder, seed_port = start_rate_limited_seeder(tmp_path, torrent, src.parent, SEED_RATE)
        group.add(seeder)
        # uTP (the leecher dials uTP only: loopback is otherwise dialed over TCP first): the seeder
        # drops a killed run's uTP connection about a second after its first ICMP port unreachable
        # (or 7.5 s of unanswered retransmissions), as the kernel resets its TCP connections
        download = [BITSWARM, "download", str(torrent), "-o", str(out), "--peer", f"127.0.0.1:{seed_port}",
                    "--port", "0", "--host", "127.0.0.1", "--json", "--transports", "utp"]  # fmt: skip

        verified_runs: list[list[int]] = []
        first_done: list[int | None] = []  # pieces_done in each run's first progress line
        causes: list[str] = []
        for run in range(KILLS + 1):
            before = {i for v in verified_runs for i in v}
            proc = group.start(download, stderr_path=tmp_path / f"download{run}.err", name=f"download#{run}")
            if run < KILLS:
                spawned = time.monotonic()
                if rng.random() < 0.3:  # anywhere in start-up
                    kill_at = spawned + rng.uniform(0.05, 0.8)
                    kind = "startup"
                else:  # mid-transfer: after the first progress line
                    ev = proc.wait_event(lambda e: e["event"] == "progress", 30, f"run {run} to start")
                    kill_at = time.monotonic() + rng.uniform(0.1, 0.7)
                    kind = "transfer"
                    del ev
                cap = int(0.85 * num_pieces * (run + 1) / KILLS)
                why = run_until_killed(proc, kill_at, max(cap, 1), run)
                causes.append(f"{kind}/{why}")
            else:
                assert proc.wait_exit(90) == 0, proc.stderr_tail()
                finished_at = time.monotonic()
                proc.drain(10)
                assert any(e["event"] == "torrent_completed" for e in proc.events)
            verified = [int(e["index"]) for e in proc.events if e["event"] == "piece_verified"]
            progress = [e for e in proc.events if e["event"] == "progress"]
            first_done.append(int(progress[0]["pieces_done"]) if progress else None)
            assert len(verified) == len(set(verified)), f"run {run} verified a piece twice"
            again = sorted(before & set(verified))
            assert not again, f"run {run} downloaded again pieces verified before a kill: {again[:20]}"
            found = first_done[run]
            if found is not None:  # the run got past its re-check: it found every verified piece
                assert found >= len(before), (run, found, len(before))
            verified_runs.append(verified)
            proc.stop()

        assert sha256_file(out / "payload.bin") == sha256_file(src)
        got = {i for v in verified_runs for i in v}
        assert len(got) <= num_pieces
        assert sum(1 for c in causes if c.startswith("transfer")) >= KILLS // 2, causes
        killed_with_data = sum(1 for v in verified_runs[:-1] if v)
        assert killed_with_data >= KILLS // 4, [len(v) for v in verified_runs]

        sent = last_seeder_upload(seeder, finished_at)
        waste = sent - SIZE
        assert 0 <= waste <= KILLS * WASTE_PER_KILL, f"seeder sent {sent} bytes for {SIZE}: {waste} wasted"
        leftovers = sorted(p.name for p in resume_dir_for(out).glob("*.tmp.*"))
        print(
            f"\nsigkill x{KILLS}: causes {causes}\n verified per run {[len(v) for v in verified_runs]},"
            f" found on restart {first_done}\n wasted {waste} B ({waste / KILLS / 1024:.0f} KiB/kill),"
            f" resume temp files left by kills: {len(leftovers)}, {time.monotonic() - t0:.1f} s"
        )
