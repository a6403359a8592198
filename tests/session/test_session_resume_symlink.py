"""A ``.bitswarm`` symlink planted in the download directory cannot redirect resume data (issue 16)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from pathlib import Path

import pytest

from bitswarm.metainfo import Torrent, magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.storage.resume import ResumePathError

pytestmark = pytest.mark.timeout(60)


def _config() -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False)


def _torrent(tmp_path: Path) -> tuple[Torrent, Path]:
    src = tmp_path / "seed" / "data.bin"
    src.parent.mkdir()
    src.write_bytes(random.Random(3).randbytes(100_000))
    return parse_torrent(create_torrent(src, piece_length=16384)), src


def _plant(save: Path, outside: Path) -> None:
    outside.mkdir()
    save.mkdir(parents=True, exist_ok=True)
    (save / ".bitswarm").symlink_to(outside, target_is_directory=True)


async def test_adding_a_torrent_refuses_a_symlinked_resume_dir(tmp_path: Path) -> None:
    t, src = _torrent(tmp_path)
    outside = tmp_path / "outside"
    _plant(src.parent, outside)
    async with Session(_config()) as s:
        with pytest.raises(ResumePathError, match="symbolic link"):
            await s.add(t, src.parent)
        assert s.torrents == []
    assert list(outside.iterdir()) == []


async def test_a_magnet_is_refused_before_its_metadata_is_fetched(tmp_path: Path) -> None:
    t, _ = _torrent(tmp_path)
    outside = tmp_path / "outside"
    save = tmp_path / "leech"
    _plant(save, outside)
    uri = dataclasses.replace(magnet_from_torrent(t), peers=[("127.0.0.1", 1)]).to_uri()
    async with Session(_config()) as s:
        start = time.monotonic()
        with pytest.raises(ResumePathError):
            await s.add(uri, save, metadata_timeout=30)
        assert time.monotonic() - start < 5  # not after the 30 s metadata wait
    assert list(outside.iterdir()) == []


async def test_a_link_swapped_in_after_the_add_gets_no_resume_data(tmp_path: Path) -> None:
    t, src = _torrent(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    async with Session(_config()) as s:
        h = await s.add(t, src.parent)
        assert h.status().state == "seeding"
        rdir = src.parent / ".bitswarm"
        rdir.rename(tmp_path / "moved-away")
        rdir.symlink_to(outside, target_is_directory=True)
        await h.save_resume()
        await asyncio.sleep(0)
    assert list(outside.iterdir()) == []  # neither the periodic nor the final save went through it
