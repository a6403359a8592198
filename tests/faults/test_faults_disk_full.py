"""Fault: the download directory fills up (ENOSPC) mid-download, then the user makes room.

The first ``bitswarm download --json`` of an 8 MiB torrent runs with its output directory on a
4 MiB tmpfs, mounted inside a private mount namespace (``unshare -m``: the mount is invisible to
the rest of the machine and disappears with the namespace). When it has exited, the same shell
copies the partial file and the resume directory (``.bitswarm``) to a directory on the normal
disk — the user "moving the download somewhere bigger". A second run resumes there.

Expected: the first run exits 1 with one clear line on stderr, ``bitswarm: error: ...`` naming the
full disk (ENOSPC), and no traceback; its JSON events end with ``torrent_error``. The second run
finds every piece the first one verified on disk (none is downloaded again), completes, exits 0 and
has exactly the seeder's bytes: the half-written piece at the moment the disk filled never counts.

Root only (mount namespaces and tmpfs mounts); skips with the reason elsewhere.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faults_testlib import (
    BITSWARM,
    Event,
    Procs,
    create_torrent,
    make_payload,
    sha256_file,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SIZE = 8 * 1024 * 1024
PIECE = 64 * 1024
TMPFS_SIZE = "4m"


def mount_namespace_unavailable(probe_dir: Path) -> str | None:
    """Why a private tmpfs cannot be mounted here (None when it can)."""
    if os.geteuid() != 0:
        return "the disk-full test needs root (a tmpfs in a private mount namespace)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare/mount (util-linux) are not installed"
    probe_dir.mkdir(parents=True, exist_ok=True)
    where = shlex.quote(str(probe_dir))
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs -o size=1m tmpfs {where} && test -w {where}"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {res.stderr.strip()}"
    return None


@dataclass
class FullRun:
    """The first (disk-full) run, shared by the tests of this module."""

    tmp: Path
    src: Path
    torrent: Path
    seed_port: int
    rc: int
    stderr: str
    events: list[Event]
    moved: Path  #: where the partial data and .bitswarm were copied after the run
    procs: Procs


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullRun]:
    tmp = tmp_path_factory.mktemp("diskfull")
    reason = mount_namespace_unavailable(tmp / "probe")
    if reason is not None:
        pytest.skip(reason)
    src = make_payload(tmp / "seed" / "big.bin", SIZE, seed=5)
    torrent = tmp / "big.torrent"
    create_torrent(src, torrent, piece=PIECE)
    group = Procs()
    try:
        seeder = group.start(
            [BITSWARM, "seed", str(torrent), "--data", str(src.parent), "--host", "127.0.0.1", "--port", "0",
             "--json"],
            stderr_path=tmp / "seeder.err", name="seeder",
        )  # fmt: skip
        port = int(seeder.wait_event(lambda e: e["event"] == "seeding", 60, "the seeder")["port"])
        small, moved = tmp / "small", tmp / "moved"
        small.mkdir()
        moved.mkdir()
        download = [BITSWARM, "download", str(torrent), "-o", str(small), "--peer", f"127.0.0.1:{port}",
                    "--host", "127.0.0.1", "--port", "0", "--json"]  # fmt: skip
        q = shlex.quote
        # the shell stays (it copies the data out afterwards), so killing it must not orphan the
        # download: it gets SIGKILL when the shell dies (setpriv), else it dies within 60 s anyway
        guard = ["timeout", "-s", "KILL", "60"]
        if shutil.which("setpriv"):
            guard = ["setpriv", "--pdeathsig", "KILL"]
        script = (
            f"mount -t tmpfs -o size={TMPFS_SIZE} tmpfs {q(str(small))} || exit 97\n"
            f"{shlex.join([*guard, *download])}\n"
            "rc=$?\n"
            f"cp -a {q(str(small))}/. {q(str(moved))}/ || exit 98\n"
            "exit $rc\n"
        )
        first = group.start(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stderr_path=tmp / "first.err",
            name="download#1",
        )
        rc = first.wait_exit(60)
        first.drain(10)
        assert rc not in (97, 98), first.stderr_tail()
        stderr = (tmp / "first.err").read_text(errors="replace")
        yield FullRun(tmp, src, torrent, port, rc, stderr, list(first.events), moved, group)
    finally:
        group.close()


def test_disk_full_fails_cleanly_then_resumes_elsewhere_with_identical_bytes(full_run: FullRun) -> None:
    t0 = time.monotonic()
    run = full_run
    # -- the first run: one clear error line, no traceback
    assert run.rc == 1, (run.rc, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert lines, "no error message"
    last = lines[-1]
    assert last.startswith("bitswarm: error: "), run.stderr
    assert "disk full" in last.lower() and "ENOSPC" in last, last
    errors = [e for e in run.events if e["event"] == "torrent_error"]
    assert len(errors) == 1 and "ENOSPC" in errors[0]["error"], errors
    assert run.events[-1]["event"] in ("torrent_error", "progress"), run.events[-3:]
    verified1 = [int(e["index"]) for e in run.events if e["event"] == "piece_verified"]
    num_pieces = SIZE // PIECE
    assert 0 < len(verified1) < num_pieces // 2 + 1, len(verified1)  # 4 MiB of 8 fit, at most
    assert (run.moved / "big.bin").exists()

    # -- the second run, in the bigger directory
    second = run.procs.start(
        [BITSWARM, "download", str(run.torrent), "-o", str(run.moved), "--peer", f"127.0.0.1:{run.seed_port}",
         "--host", "127.0.0.1", "--port", "0", "--json"],
        stderr_path=run.tmp / "second.err", name="download#2",
    )  # fmt: skip
    assert second.wait_exit(60) == 0, second.stderr_tail()
    second.drain(10)
    assert any(e["event"] == "torrent_completed" for e in second.events)
    first_progress = next(e for e in second.events if e["event"] == "progress")
    assert int(first_progress["pieces_done"]) >= len(verified1), (first_progress, len(verified1))
    verified2 = [int(e["index"]) for e in second.events if e["event"] == "piece_verified"]
    again = sorted(set(verified1) & set(verified2))
    assert not again, f"pieces verified before the disk filled were downloaded again: {again}"
    assert sha256_file(run.moved / "big.bin") == sha256_file(run.src)
    print(
        f"\ndisk full: first run verified {len(verified1)}/{num_pieces} pieces then {last!r};"
        f" second run found {first_progress['pieces_done']} on disk and fetched {len(verified2)};"
        f" {time.monotonic() - t0:.1f} s"
    )


def test_disk_full_leaves_no_resume_temp_file(full_run: FullRun) -> None:
    """After the ENOSPC failure, the resume directory holds no ``*.resume.tmp.<pid>`` debris."""
    leftovers = sorted(p.name for p in (full_run.moved / ".bitswarm").glob("*.tmp.*"))
    assert not leftovers, leftovers


def test_disk_full_error_is_a_single_stderr_line(full_run: FullRun) -> None:
    """The disk-full failure prints exactly one line on stderr."""
    lines = [ln for ln in full_run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
