"""The ``--json`` output of the peer commands: its contract, kept while it got cheaper (issue 24).

One JSON object per line on stdout; a session event's line is ``{"event": kind, "info_hash": ...,
"name": ..., **data}`` (the text ``json.dumps`` makes with compact separators); a ``progress`` line is
``{"event": "progress", **status}``; lines keep the order they were made in and reach a reader
while the process runs (within the event-loop iteration that made them), not at its exit.

The unit tests run the CLI's display on a real (unstarted) session's events, stdout swapped for a
buffer; the last test runs real ``bitswarm seed`` / ``download --seed --json`` processes on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.cli.test_cli_exit import SLOW_TICK

from bitswarm.cli import _app, _peer
from bitswarm.session import SessionEvent, TorrentStatus

IH = "8bdb48a1a86d6f04170cbed7f970c6378d100110"

#: Events as the session makes them, and odd ones: each must come out as the generic form makes it.
EVENTS = [
    SessionEvent("piece_verified", IH, "payload.bin", {"index": 0}),
    SessionEvent("piece_verified", IH, "payload.bin", {"index": 2047}),
    SessionEvent("piece_verified", IH, "payload.bin", {"index": 10**30}),
    SessionEvent("piece_verified", IH, "payload.bin", {"index": True}),  # a bool is JSON true
    SessionEvent("piece_verified", IH, "payload.bin", {"index": 3.0}),
    SessionEvent("piece_verified", IH, "payload.bin", {"index": "7"}),
    SessionEvent("piece_verified", IH, 'é "quoted" \\ \n ☃', {"index": 5}),  # escaped as json does
    SessionEvent("piece_verified", "", "", {"index": 1, "extra": None}),
    SessionEvent("torrent_completed", IH, "payload.bin", {}),
    SessionEvent("peer_connected", IH, "payload.bin", {"address": "127.0.0.1:1", "encrypted": False}),
    SessionEvent("hash_failed", IH, "payload.bin", {"index": 3, "peers": ["a", "b"], "nested": {"x": 1.5}}),
    SessionEvent("port_mapping", "", "", {"summary": "mapped 1.2.3.4:6881 (UPnP)"}),
    SessionEvent("odd", IH, "payload.bin", {"event": "override"}),  # the data's own "event" wins
]


def reference_line(ev: SessionEvent) -> str:
    """The line as the CLI wrote it before issue 24: ``print_json({"event": kind, **kwargs})``."""
    return json.dumps(
        {"event": ev.kind, "info_hash": ev.info_hash, "name": ev.name, **ev.data}, separators=(",", ":")
    )


@contextlib.contextmanager
def captured() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    old = sys.stdout
    sys.stdout = buf
    try:
        yield buf
    finally:
        _app.json_lines.flush()
        sys.stdout = old


def test_event_lines_are_the_generic_json_text_in_order() -> None:
    async def run() -> str:
        display = _peer._Display(True)
        for ev in EVENTS * 2:  # the second time from the kept prefixes
            display.session_event(ev)
        await asyncio.sleep(0)
        return out.getvalue()

    with captured() as out:
        text = asyncio.run(run())
    assert text == "".join(reference_line(ev) + "\n" for ev in EVENTS * 2)


def test_an_event_whose_data_repeats_a_head_key_fails_as_before() -> None:
    """``info_hash`` or ``name`` in an event's data: the generic form raised (a keyword given
    twice), and so does the display, rather than writing a line with a key twice."""
    display = _peer._Display(True)
    with captured() as out, pytest.raises(TypeError):
        display.session_event(SessionEvent("odd", IH, "n", {"name": "again"}))
    assert out.getvalue() == ""


def test_lines_reach_stdout_in_the_loop_iteration_that_made_them() -> None:
    """Written while a loop runs, the lines of one iteration go out together at the start of the
    next one — every line, whole, in order; none waits for a later event or the end."""
    seen: list[str] = []

    async def run() -> None:
        display = _peer._Display(True)
        for i in range(3):
            display.session_event(SessionEvent("piece_verified", IH, "f", {"index": i}))
        display.event("started", name="f", info_hash=IH, port=1)
        await asyncio.sleep(0)
        seen.append(out.getvalue())
        display.session_event(SessionEvent("torrent_completed", IH, "f", {}))
        await asyncio.sleep(0)
        seen.append(out.getvalue())

    with captured() as out:
        asyncio.run(run())
    first = [json.loads(x) for x in seen[0].splitlines()]
    assert [e["event"] for e in first] == ["piece_verified"] * 3 + ["started"]
    assert [e["index"] for e in first[:3]] == [0, 1, 2]
    assert seen[1].splitlines()[4:] == [reference_line(SessionEvent("torrent_completed", IH, "f", {}))]


def test_print_json_writes_at_once_after_the_kept_lines() -> None:
    async def run() -> str:
        display = _peer._Display(True)
        display.session_event(SessionEvent("piece_verified", IH, "f", {"index": 1}))
        _app.print_json({"event": "mutable", "seq": 1})  # not batched: out before the loop turns
        return out.getvalue()

    with captured() as out:
        text = asyncio.run(run())
    assert [json.loads(x)["event"] for x in text.splitlines()] == ["piece_verified", "mutable"]
    with captured() as out:  # no loop: at once
        _app.print_json({"a": [1, "é"]})
        assert out.getvalue() == '{"a":[1,"\\u00e9"]}\n'


def test_lines_left_when_the_loop_ends_are_written_by_flush_and_a_new_loop_schedules_anew() -> None:
    async def make(i: int) -> None:
        _app.json_lines.write(f'{{"n":{i}}}\n')  # the loop ends before its flush runs

    with captured() as out:
        asyncio.run(make(1))
        _app.json_lines.flush()
        assert out.getvalue() == '{"n":1}\n'

        async def later() -> None:
            _app.json_lines.write('{"n":2}\n')
            await asyncio.sleep(0)
            assert out.getvalue() == '{"n":1}\n{"n":2}\n'

        asyncio.run(later())


def test_progress_line_is_the_event_then_every_status_field(tmp_path: Path) -> None:
    """A seeding torrent of a real session: its ``progress`` line is the generic form of its
    status, and ``update`` returns the status it showed (``_drive`` reads the state from it)."""
    from bitswarm.metainfo import make_torrent, parse_torrent
    from bitswarm.session import Session, SessionConfig

    (tmp_path / "é.bin").write_bytes(os.urandom(100_000))
    torrent = parse_torrent(make_torrent(tmp_path / "é.bin").data)
    config = SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, port_mapping=False)

    async def run() -> tuple[TorrentStatus, TorrentStatus]:
        async with Session(config) as session:
            handle = await session.add(torrent, tmp_path, resume_dir=str(tmp_path / "resume"))
            shown = _peer._Display(True).update(handle)
            await asyncio.sleep(0)
            return shown, handle.status()

    with captured() as out:
        shown, now = asyncio.run(asyncio.wait_for(run(), 30))
    assert shown.state == now.state == "seeding" and shown.name == "é.bin"
    assert (
        out.getvalue() == json.dumps({"event": "progress", **shown.as_dict()}, separators=(",", ":")) + "\n"
    )
    assert list(json.loads(out.getvalue())) == ["event", *(f.name for f in dataclasses.fields(TorrentStatus))]


# -- real processes ------------------------------------------------------------------------------

BW = [sys.executable, "-m", "bitswarm"]
LOOP = ["--port", "0", "--host", "127.0.0.1", "--no-dht", "--no-port-mapping", "--json"]


class Lines:
    """The stdout lines of a process, read by a thread as they come (a reader waits with a timeout)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line)
        self.queue.put("")

    def until(self, done: Any, timeout: float) -> list[dict[str, Any]]:
        """JSON lines up to the first for which ``done`` holds (each must be one JSON object)."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while True:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"not within {timeout} s: {seen[-3:]}") from None
            assert line, f"exited ({self.proc.poll()}) after {seen[-3:]}"
            assert line.endswith("\n") and line.count("\n") == 1
            msg = json.loads(line)
            assert isinstance(msg, dict)
            seen.append(msg)
            if done(msg):
                return seen


@pytest.mark.timeout(120)
def test_download_seed_json_lines_arrive_while_it_runs(tmp_path: Path) -> None:
    """``download --seed --json`` (a swarm peer of the benchmark): every line is one JSON object;
    each piece's ``piece_verified`` line has exactly the keys it had, in order, once per piece;
    ``torrent_completed`` and a seeding ``progress`` line come after the last piece — and all of it
    is read while the process keeps running (it seeds until stopped): nothing waits for the exit.
    The leecher's progress tick is an hour and its stdout block-buffered, so a line that is not
    flushed in time stays in the buffer (the lines after it would not fill it) and never comes."""
    data = tmp_path / "seed" / "f.bin"
    data.parent.mkdir()
    data.write_bytes(os.urandom(40 * 16384 + 1000))  # 41 pieces of 16 KiB
    torrent = tmp_path / "f.torrent"
    subprocess.run([*BW, "create", str(data), "-o", str(torrent), "-l", "16k", "-q"], check=True, timeout=60)
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    env.pop("PYTHONUNBUFFERED", None)  # stdout a pipe, block-buffered as a user's: the CLI flushes
    procs: list[subprocess.Popen[str]] = []
    try:
        seed = [*BW, "seed", str(torrent), "--data", str(data.parent), *LOOP]
        seeder = subprocess.Popen(seed, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        procs.append(seeder)
        port = Lines(seeder).until(lambda m: m["event"] == "seeding", 60)[-1]["port"]
        leecher = subprocess.Popen(  # no progress tick but the final one: no line pushes another out
            [sys.executable, "-c", SLOW_TICK, "download", str(torrent), "-o", str(tmp_path / "out"),
             "--peer", f"127.0.0.1:{port}", "--seed", *LOOP],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        procs.append(leecher)
        lines = Lines(leecher).until(lambda m: m["event"] == "progress" and m["state"] == "seeding", 60)
        assert leecher.poll() is None  # still seeding: every line above came while it ran
        kinds = [m["event"] for m in lines]
        started = lines[kinds.index("started")]
        verified = [m for m in lines if m["event"] == "piece_verified"]
        assert all(list(m) == ["event", "info_hash", "name", "index"] for m in verified)
        assert {(m["info_hash"], m["name"]) for m in verified} == {(started["info_hash"], "f.bin")}
        assert sorted(m["index"] for m in verified) == list(range(41))
        completed = kinds.index("torrent_completed")
        assert completed > max(i for i, k in enumerate(kinds) if k == "piece_verified")
        assert list(lines[completed]) == ["event", "info_hash", "name"]
        fields = [f.name for f in dataclasses.fields(TorrentStatus)]
        assert all(list(m) == ["event", *fields] for m in lines if m["event"] == "progress")
        assert (tmp_path / "out" / "f.bin").read_bytes() == data.read_bytes()
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
