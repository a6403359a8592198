"""The daemon's issue-20 settings (daemon.toml): ``super_seed`` makes every seeding torrent a BEP 16
super-seed, ``preallocate = "full"`` fails a torrent whose files do not fit before it downloads, and
a bad ``preallocate`` is one line with exit code 2."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.session.test_session_messages import RawPeer
from tests.storage.test_storage_preallocate import small_fs

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.wire import Bitfield, Handshake, Have, HaveAll, HaveNone, Reserved
from testtools import eventually, until

BW = [sys.executable, "-m", "bitswarm"]
pytestmark = pytest.mark.timeout(90)


@contextmanager
def daemon(tmp_path: Path, toml: str) -> Iterator[dict[str, str]]:
    conf = tmp_path / "daemon.toml"
    conf.write_text(toml)
    proc = subprocess.Popen(
        [*BW, "daemon", "--port", "0", "--host", "127.0.0.1", "--api", "127.0.0.1:0",
         "--data", str(tmp_path / "data"), "--no-dht", "--json", "--config", str(conf)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        yield json.loads(line)
    finally:
        proc.terminate()
        proc.wait(15)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def ctl(info: dict[str, str], tmp_path: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [*BW, "ctl", *args, "--api", str(info["api"]), "--data", str(tmp_path / "data"), "--json"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_bad_preallocate_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "daemon.toml").write_text('preallocate = "zeros"\n')
    done = subprocess.run(
        [*BW, "daemon", "--port", "0", "--api", "127.0.0.1:0", "--data", str(tmp_path / "d"), "--no-dht",
         "--config", str(tmp_path / "daemon.toml")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "bitswarm: error: preallocate must be sparse or full, not 'zeros'"


async def test_super_seed_setting(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(8 * 16384))
    data = create_torrent(src / "f.bin", version="v1", piece_length=16384)
    (tmp_path / "f.torrent").write_bytes(data)
    t = parse_torrent(data)
    with daemon(tmp_path, "super_seed = true\n") as info:
        added = ctl(info, tmp_path, "add", str(tmp_path / "f.torrent"), "--save-path", str(src))
        await until(lambda: ctl(info, tmp_path, "show", str(added["id"]))["state"] == "seeding", timeout=20,
                    interval=0.1, what="seeding")  # fmt: skip
        reader, writer = await asyncio.open_connection("127.0.0.1", int(info["peer_port"]))
        peer = RawPeer(t, reader, writer)
        try:
            peer.send(Handshake(t.swarm_hash, b"-XX0000-" + os.urandom(12), Reserved.make(fast=True)))
            while not isinstance(await peer.next(), Handshake):
                pass
            first = await peer.next()
            assert isinstance(first, HaveNone), first  # no bitfield from a super-seed
            while not isinstance(ev := await peer.next(), Have):
                assert not isinstance(ev, Bitfield | HaveAll)
        finally:
            writer.close()


def test_preallocate_full_setting_fails_a_torrent_that_does_not_fit(tmp_path: Path) -> None:
    tiny = small_fs(tmp_path / "tiny")
    target = next(tiny)
    try:
        (tmp_path / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
        (tmp_path / "big.torrent").write_bytes(create_torrent(tmp_path / "big.bin", version="v1"))
        with daemon(tmp_path, 'preallocate = "full"\n') as info:
            added = ctl(info, tmp_path, "add", str(tmp_path / "big.torrent"), "--save-path", str(target))

            def in_error() -> Any:
                shown = ctl(info, tmp_path, "show", str(added["id"]))
                return shown["state"] == "error" and shown

            shown = eventually(in_error, timeout=20, interval=0.1, what="the torrent in error")
            assert "not enough disk space" in str(shown.get("error")), shown
        assert not (target / "big.bin").exists()
    finally:
        tiny.close()
