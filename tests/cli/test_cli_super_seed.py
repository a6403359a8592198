"""``bitswarm seed --super-seed``: a peer that connects gets ``have none`` and single ``have``s,
never a bitfield (BEP 16)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from tests.session.test_session_messages import RawPeer

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.wire import Bitfield, Handshake, Have, HaveAll, HaveNone, Reserved

BW = [sys.executable, "-m", "bitswarm"]
pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("super_seed", [True, False])
async def test_seed_super_seed_withholds_the_bitfield(tmp_path: Path, super_seed: bool) -> None:
    (tmp_path / "f.bin").write_bytes(os.urandom(8 * 16384))
    data = create_torrent(tmp_path / "f.bin", version="v1", piece_length=16384)
    (tmp_path / "f.torrent").write_bytes(data)
    t = parse_torrent(data)
    proc = await asyncio.create_subprocess_exec(
        *BW, "seed", str(tmp_path / "f.torrent"), "-d", str(tmp_path), "--port", "0", "--host", "127.0.0.1",
        "--no-dht", "--json", "--transports", "tcp", *(["--super-seed"] if super_seed else []),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = None
        async with asyncio.timeout(30):
            while port is None and (line := await proc.stdout.readline()):
                msg = json.loads(line) if line.startswith(b"{") else {}
                if msg.get("event") == "seeding":
                    port = int(msg["port"])
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = RawPeer(t, reader, writer)
        try:
            peer.send(Handshake(t.swarm_hash, b"-XX0000-" + os.urandom(12), Reserved.make(fast=True)))
            while not isinstance(await peer.next(), Handshake):
                pass
            first = await peer.next()
            if not super_seed:
                assert isinstance(first, HaveAll)
                return
            assert isinstance(first, HaveNone), first
            while not isinstance(ev := await peer.next(), Have):
                assert not isinstance(ev, Bitfield | HaveAll)
        finally:
            writer.close()
    finally:
        proc.terminate()
        await proc.wait()
