"""The rate limits (``ratelimit.py``) hold on a real transfer over TCP on loopback.

Over TCP one read brings many blocks at once (up to 256 KiB, parsed in place), unlike uTP's one
packet per delivery: a limit that held over uTP ran at six times its rate over TCP. Only a lower
bound on the elapsed time is asserted (a loaded machine only makes a transfer slower).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig

pytestmark = pytest.mark.timeout(60)

SIZE = 1_500_000
LIMIT = 500_000


def config(**kw: object) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        transports="tcp",  # type: ignore[arg-type]
        enable_dht=False,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "where", ["session download", "torrent download", "session upload", "torrent upload"]
)
async def test_a_limited_transfer_over_tcp_takes_at_least_its_size_over_the_limit(
    tmp_path: Path, where: str
) -> None:
    side, kind = where.split()
    seed = tmp_path / "seed"
    seed.mkdir()
    f = seed / "data.bin"
    f.write_bytes(random.Random(3).randbytes(SIZE))
    t = parse_torrent(create_torrent(f, piece_length=32768))
    limit = {f"{kind}_rate_limit": LIMIT} if side == "session" else {}
    seeder_cfg = config(**limit) if kind == "upload" else config()
    leecher_cfg = config(**limit) if kind == "download" else config()
    async with Session(seeder_cfg) as seeder, Session(leecher_cfg) as leecher:
        hs = await seeder.add(t, seed)
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        if side == "torrent":
            (hl if kind == "download" else hs).set_rate_limits(**{kind: LIMIT})  # type: ignore[arg-type]
        start = time.monotonic()
        await hl.wait_complete(timeout=50)
        elapsed = time.monotonic() - start
        assert {p["transport"] for p in hl.peers()} <= {"tcp", "tcp+enc"}
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()
    # the first quarter second's burst is free; the rest goes at the limit
    assert elapsed >= SIZE / LIMIT * 0.6, (
        f"{SIZE / elapsed / 1000:.0f} kB/s over a {LIMIT // 1000} kB/s limit"
    )
