"""Helpers shared by the fault tests (tests/faults, docs/testing-faults.md).

Reuses :class:`JsonProc` and the network-namespace :class:`Lan` of ``tests/session/netns_testlib.py``
(imported from there, not copied) and adds: payload/torrent makers around the real ``bitswarm create``,
a rate-limited seeder runner (the Python API: the CLI has no rate-limit option) and :class:`Procs`, a
context manager that SIGKILLs and reaps every process it was given, whatever happens in the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

_SESSION_TESTS = str(Path(__file__).resolve().parents[1] / "session")
if _SESSION_TESTS not in sys.path:
    sys.path.append(_SESSION_TESTS)

from netns_testlib import (  # noqa: E402
    Event,
    Host,
    JsonProc,
    Lan,
    leftover_namespaces,
    netns_unavailable_reason,
)

from realclients import free_port, wait_for, wait_tcp  # noqa: E402

__all__ = [
    "BITSWARM",
    "Event",
    "Host",
    "JsonProc",
    "Lan",
    "Procs",
    "create_torrent",
    "free_port",
    "leftover_namespaces",
    "make_payload",
    "netns_unavailable_reason",
    "sha256_file",
    "start_rate_limited_seeder",
    "wait_for",
    "wait_tcp",
]

BITSWARM = str(Path(sys.executable).with_name("bitswarm"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_payload(path: Path, size: int, seed: int) -> Path:
    """``size`` pseudo-random bytes from a seeded RNG at ``path`` (parent directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def create_torrent(
    src: Path, out: Path, *, piece: int, trackers: Sequence[str] = (), v1: bool = True
) -> dict[str, Any]:
    """``bitswarm create`` (v1 only by default: one info-hash for trackers); its ``--json`` result."""
    argv = [BITSWARM, "create", str(src), "-o", str(out), "--piece-size", str(piece), "--json", "-q"]
    if v1:
        argv.append("--v1")
    for t in trackers:
        argv += ["--tracker", t]
    res = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    info: dict[str, Any] = json.loads(res.stdout)
    return info


SEEDER_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from bitswarm.session import Session, SessionConfig

    async def main() -> None:
        torrent, data, rate, host, port, *trackers = sys.argv[1:]
        rate, port = int(rate), int(port)
        cfg = SessionConfig(listen_host=host, listen_port=port, upload_rate_limit=rate)
        async with Session(cfg) as session:
            handle = await session.add(torrent, data, trackers=trackers)
            print(json.dumps({"event": "seeding", "port": session.port,
                              "state": handle.status().state}), flush=True)
            for _ in range(100000):  # bounded; the test kills us long before
                print(json.dumps({"event": "progress", "time": asyncio.get_running_loop().time(),
                                  **handle.status().as_dict()}), flush=True)
                await asyncio.sleep(0.2)

    asyncio.run(main())
    """
)


def start_rate_limited_seeder(
    tmp: Path,
    torrent: Path,
    data_dir: Path,
    rate: int,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    trackers: Sequence[str] = (),
    name: str = "seeder",
    wrap: Sequence[str] = (),
) -> tuple[JsonProc, int]:
    """A seeder session limited to ``rate`` bytes/s up; prints ``{"event": "seeding", "port"}`` then a
    ``progress`` line (with ``uploaded`` and a CLOCK_MONOTONIC ``time``) every 0.2 s. Returns the
    process (already seeding) and its port. ``wrap`` prefixes the command (``ip netns exec NS``)."""
    script = tmp / "rate_limited_seeder.py"
    if not script.exists():
        script.write_text(SEEDER_SCRIPT)
    argv = [*wrap, sys.executable, str(script), str(torrent), str(data_dir), str(rate), host, str(port)]
    proc = JsonProc([*argv, *trackers], stderr_path=tmp / f"{name}.err", name=name)
    try:
        ev = proc.wait_event(lambda e: e["event"] == "seeding", 60, f"{name} to start seeding")
        assert ev["state"] == "seeding", ev
    except BaseException:
        proc.kill()
        proc.stop()
        raise
    return proc, int(ev["port"])


class Procs:
    """Every process a test starts; on exit each is SIGKILLed (if still running), reaped and its
    stderr file closed, so no process outlives a failing test."""

    def __init__(self) -> None:
        self.procs: list[JsonProc] = []

    def add(self, proc: JsonProc) -> JsonProc:
        self.procs.append(proc)
        return proc

    def start(self, argv: Sequence[str], *, stderr_path: Path, name: str) -> JsonProc:
        return self.add(JsonProc(argv, stderr_path=stderr_path, name=name))

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.kill()
                p.stop()
        self.procs.clear()

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def procs() -> Iterator[Procs]:
    group = Procs()
    try:
        yield group
    finally:
        group.close()


def last_seeder_upload(seeder: JsonProc, after: float, timeout: float = 15.0) -> int:
    """``uploaded`` from the first seeder progress line stamped after ``after`` (monotonic clock)."""
    deadline = time.monotonic() + timeout
    while True:
        ev = seeder.next_event(deadline)
        assert ev is not None, f"the seeder exited\n{seeder.stderr_tail()}"
        if ev["event"] == "progress" and ev["time"] > after:
            return int(ev["uploaded"])
