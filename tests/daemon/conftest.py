"""Fixtures of the daemon tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from compat_testlib import Swarm, swarm_of


@pytest.fixture
async def swarm(tmp_path: Path) -> AsyncIterator[Swarm]:
    """A daemon and a seeder of a three-file torrent (tests of the Transmission and qBittorrent APIs)."""
    async with swarm_of(tmp_path) as s:
        yield s
