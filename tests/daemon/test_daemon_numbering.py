"""Transmission's integer ids (issue 24): each torrent gets its id when it is added (or, for a data
directory of an older version, at the start that finds it without one), saved with its record, so
that no ``torrent-get`` numbers or writes anything (the first one at 10,000 torrents was its p99);
ids stay stable across restarts and the id of a removed torrent is never given again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from daemon_testlib import session_config

from bitswarm.daemon import Daemon
from bitswarm.daemon.transmission import TransmissionRPC
from bitswarm.metainfo import create_torrent

pytestmark = pytest.mark.timeout(60)


def _raws(tmp_path: Path, n: int) -> list[bytes]:
    content = tmp_path / "content"
    content.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        f = content / f"f{i:02d}.bin"
        f.write_bytes(os.urandom(3000 + i))
        out.append(create_torrent(f, version="v1", piece_length=16384))
    return out


def _saved_nums(d: Daemon) -> dict[str, object]:
    """id → the Transmission id in the record on disk."""
    return {p.stem: json.loads(p.read_bytes())["compat"].get("num") for p in d.data.torrents.glob("*.json")}


def _files(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.glob("*.json")}


def _mtime(p: Path) -> int | None:
    return p.stat().st_mtime_ns if p.exists() else None


async def _torrent_get_ids(d: Daemon) -> dict[str, int]:
    rpc = TransmissionRPC(d, "t")
    got = await rpc.torrent_get({"fields": ["id", "hashString"], "format": "table"})
    assert got["torrents"][0] == ["id", "hashString"]
    return {tid: num for num, tid in got["torrents"][1:]}


async def test_ids_are_given_at_add_and_saved_before_any_torrent_get(tmp_path: Path) -> None:
    raws = _raws(tmp_path, 4)
    async with Daemon(tmp_path / "d", session_config()) as d:
        tids = [(await d.add_torrent(raw, paused=True))["id"] for raw in raws[:3]]
        magnet = "magnet:?xt=urn:btih:" + "ab" * 20 + "&dn=m"
        tids.append((await d.add_magnet(magnet, paused=True))["id"])
        # on disk already, before the Transmission API was ever asked
        assert _saved_nums(d) == {tid: i + 1 for i, tid in enumerate(tids)}
        before = _files(d.data.torrents)
        settings = _mtime(d.data.root / "settings.json")
        assert await _torrent_get_ids(d) == {tid: i + 1 for i, tid in enumerate(tids)}
        assert _files(d.data.torrents) == before  # torrent-get wrote no record
        assert _mtime(d.data.root / "settings.json") == settings  # nor the settings


async def test_ids_are_stable_across_restarts_and_never_given_twice(tmp_path: Path) -> None:
    raws = _raws(tmp_path, 4)
    data = tmp_path / "d"
    async with Daemon(data, session_config()) as d:
        tids = [(await d.add_torrent(raw, paused=True))["id"] for raw in raws[:3]]
        await d.remove(tids[2])  # the last id: never given again, even after a restart
        await d.remove(tids[0])
    async with Daemon(data, session_config()) as d:
        assert await _torrent_get_ids(d) == {tids[1]: 2}
        added = await d.add_torrent(raws[3], paused=True)
        assert d.number(added["id"]) == 4
    async with Daemon(data, session_config()) as d:
        assert await _torrent_get_ids(d) == {tids[1]: 2, added["id"]: 4}


async def test_an_older_data_directory_is_numbered_at_start_oldest_first(tmp_path: Path) -> None:
    raws = _raws(tmp_path, 3)
    data = tmp_path / "d"
    async with Daemon(data, session_config()) as d:
        tids = [(await d.add_torrent(raw, paused=True))["id"] for raw in raws]
    # as an older version left them: the first one numbered (and last_num at 5), the others not
    for i, tid in enumerate(tids):
        p = data / "torrents" / f"{tid}.json"
        rec = json.loads(p.read_bytes())
        rec["compat"] = {"num": 5} if i == 0 else {}
        p.write_bytes(json.dumps(rec).encode())
    (data / "settings.json").write_text(json.dumps({"last_num": 5}))
    async with Daemon(data, session_config()) as d:
        assert _saved_nums(d) == {tids[0]: 5, tids[1]: 6, tids[2]: 7}
        before = _files(d.data.torrents)
        assert await _torrent_get_ids(d) == {tids[0]: 5, tids[1]: 6, tids[2]: 7}
        assert _files(d.data.torrents) == before
