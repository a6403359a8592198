"""BEP 14 in the session: two sessions on one host find each other by LSD alone (no DHT, no tracker,
no peer address). Loopback multicast on a private 239.255.x.y group joined on 127.0.0.1 (see
test_session_lsd.py)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig

pytestmark = pytest.mark.timeout(60)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lsd_config(group: tuple[str, int], **kw: object) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        enable_dht=False,
        enable_lsd=True,
        lsd_group=group,
        lsd_interface="127.0.0.1",
        lsd_interval=1.0,
        **kw,  # type: ignore[arg-type]
    )


async def test_two_sessions_find_each_other_by_lsd(tmp_path: Path) -> None:
    src = tmp_path / "seed" / "data.bin"
    src.parent.mkdir(parents=True)
    src.write_bytes(random.Random(9).randbytes(400_000))
    t = parse_torrent(create_torrent(src, piece_length=32768))
    group = (f"239.255.{random.randrange(1, 255)}.{random.randrange(1, 255)}", free_udp_port())
    async with Session(lsd_config(group)) as seeder, Session(lsd_config(group)) as leecher:
        assert seeder.lsd is not None and leecher.lsd is not None
        await seeder.add(t, src.parent)
        h = await leecher.add(t, tmp_path / "leech")  # no peers, no trackers
        await h.wait_complete(timeout=30)
        assert leecher.lsd.received >= 1 or seeder.lsd.received >= 1
    assert (tmp_path / "leech" / "data.bin").read_bytes() == src.read_bytes()


async def test_lsd_is_off_by_default(tmp_path: Path) -> None:
    async with Session(SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False)) as s:
        assert s.lsd is None
