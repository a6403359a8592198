"""``--no-holepunch`` on the peer commands and the daemon's ``holepunch`` setting (issue 19): BEP 55
hole punching is on by default; the option (or ``holepunch = false`` in daemon.toml) turns it off in
the session, which then leaves ``ut_holepunch`` out of its extension handshake; the daemon shows the
setting read-only on its settings page."""

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

import httpx
import pytest
from tests.session.test_session_messages import RawPeer

from bitswarm.cli import _peer, _stream
from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import SessionConfig
from bitswarm.wire import ExtendedHandshake, Handshake, Reserved

BW = [sys.executable, "-m", "bitswarm"]
ENV = {**os.environ, "BITSWARM_NO_PUBLIC_DHT": "1", "COLUMNS": "80"}
pytestmark = pytest.mark.timeout(90)


class _Configured(Exception):
    def __init__(self, config: SessionConfig) -> None:
        self.config = config


@pytest.fixture
def content(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(4 * 16384))
    tfile = tmp_path / "f.torrent"
    tfile.write_bytes(create_torrent(src / "f.bin", version="v1", piece_length=16384))
    return src, tfile


def _configs(
    monkeypatch: pytest.MonkeyPatch, content: tuple[Path, Path], tmp_path: Path, **kw: Any
) -> list[bool]:
    """``enable_holepunch`` of the session config each of download, seed, share and stream builds
    with the keyword arguments ``kw`` (the command stops right after building it)."""
    real = _peer._config

    def capture(*args: Any, **kwargs: Any) -> SessionConfig:
        raise _Configured(real(*args, **kwargs))

    for module in (_peer, _stream):
        monkeypatch.setattr(module, "_config", capture)
        monkeypatch.setattr(module, "catch_stop_signals", lambda: None)
    src, tfile = content
    monkeypatch.chdir(tmp_path)
    calls = [
        lambda: _peer.download(str(tfile), tmp_path / "out", host="127.0.0.1", port=0, **kw),
        lambda: _peer.seed(str(tfile), src, host="127.0.0.1", port=0, **kw),
        lambda: _peer.share(src / "f.bin", host="127.0.0.1", port=0, force=True, **kw),
        lambda: _stream.stream(str(tfile), tmp_path / "out", host="127.0.0.1", peer_port=0, **kw),
    ]
    seen = []
    for call in calls:
        with pytest.raises(_Configured) as got:
            call()
        seen.append(got.value.config.enable_holepunch)
    return seen


def test_peer_commands_punch_holes_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, content: tuple[Path, Path], tmp_path: Path
) -> None:
    assert _configs(monkeypatch, content, tmp_path) == [True] * 4
    assert _configs(monkeypatch, content, tmp_path, no_holepunch=True) == [False] * 4
    for command in ("download", "seed", "share", "stream"):
        done = subprocess.run([*BW, command, "--help"], capture_output=True, text=True, timeout=60, env=ENV)
        assert "--no-holepunch" in done.stdout, command


async def _extension_names(port: int, tfile: Path) -> set[str]:
    """The extensions a peer at 127.0.0.1:``port`` offers in its BEP 10 handshake."""
    t = parse_torrent(tfile.read_bytes())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    peer = RawPeer(t, reader, writer)
    try:
        peer.send(
            Handshake(
                t.swarm_hash, b"-XX0000-" + os.urandom(12), Reserved.make(fast=True, extension_protocol=True)
            )
        )
        while not isinstance(ev := await peer.next(), ExtendedHandshake):
            pass
        return {name for name, ext_id in ev.m.items() if ext_id}
    finally:
        writer.close()


@contextmanager
def _running(args: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [*BW, *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        yield proc, line
    finally:
        proc.terminate()
        proc.wait(15)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize("off", [False, True])
async def test_seed_without_holepunch_offers_no_ut_holepunch(
    off: bool, content: tuple[Path, Path], tmp_path: Path
) -> None:
    src, tfile = content
    args = ["seed", str(tfile), "--data", str(src), "--host", "127.0.0.1", "--port", "0", "--no-dht",
            "--no-port-mapping", "--json", *(["--no-holepunch"] if off else [])]  # fmt: skip
    with _running(args, tmp_path) as (proc, _):
        assert proc.stdout is not None
        while '"seeding"' not in (line := proc.stdout.readline()):
            assert line, "seed ended early"
        names = await _extension_names(int(json.loads(line)["port"]), tfile)
    assert "ut_metadata" in names
    assert ("ut_holepunch" in names) is not off


@pytest.mark.parametrize("toml", ["", "holepunch = false\n"])
async def test_daemon_holepunch_setting(toml: str, content: tuple[Path, Path], tmp_path: Path) -> None:
    off = "false" in toml
    conf = tmp_path / "daemon.toml"
    conf.write_text(toml)
    data = tmp_path / "data"
    args = ["daemon", "--port", "0", "--host", "127.0.0.1", "--api", "127.0.0.1:0", "--data", str(data),
            "--no-dht", "--no-port-mapping", "--json", "--config", str(conf)]  # fmt: skip
    src, tfile = content
    with _running(args, tmp_path) as (_, line):
        info = json.loads(line)
        token = (data / "token").read_text().strip()
        async with httpx.AsyncClient(
            base_url=str(info["api"]), headers={"Authorization": f"Bearer {token}"}
        ) as c:
            settings = (await c.get("/api/v1/settings")).json()
            page = (await c.get("/settings")).text
            got = await c.post(
                "/api/v1/torrents", content=tfile.read_bytes(), params={"save_path": str(src)},
                headers={"Content-Type": "application/x-bittorrent"},
            )  # fmt: skip
            assert got.status_code < 300, got.text
            tid = got.json()["id"]

            async def seeding() -> bool:
                return bool((await c.get(f"/api/v1/torrents/{tid}")).json()["state"] == "seeding")

            for _ in range(200):
                if await seeding():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the daemon never seeds the torrent")
        assert settings["holepunch"] == ("off" if off else "on")
        assert 'id="s-holepunch"' in page and 'data-kind="readonly"' in page
        names = await _extension_names(int(info["peer_port"]), tfile)
    assert ("ut_holepunch" in names) is not off
