"""BEP 21 partial seeds (``upload_only``) and BEP 54 ``lt_donthave`` on live connections, against
scripted peers (our wire codec driven by the test) and bitswarm sessions."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest
from tests.session.test_session_messages import RawPeer, config, make_torrent

from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session
from bitswarm.session.peer import LT_DONTHAVE_ID
from bitswarm.wire import (
    Bitfield,
    Extended,
    ExtendedHandshake,
    Handshake,
    HaveAll,
    Interested,
    NotInterested,
    Request,
    Reserved,
    Unchoke,
)
from bitswarm.wire.lt_donthave import UPLOAD_ONLY_KEY, decode_donthave, encode_donthave, upload_only_of

pytestmark = pytest.mark.timeout(60)

PIECE = 16384
OUR_DONTHAVE = 5  # the id our scripted peer receives lt_donthave on


def two_files(root: Path) -> tuple[Path, Torrent]:
    """A torrent of two piece-aligned files (4 pieces each) under ``root/two``."""
    base = root / "two"
    base.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    (base / "a.bin").write_bytes(rng.randbytes(4 * PIECE))
    (base / "b.bin").write_bytes(rng.randbytes(4 * PIECE))
    return base, parse_torrent(create_torrent(base, piece_length=PIECE))


async def dial(
    t: Torrent, port: int, *, upload_only: bool | None = None
) -> tuple[RawPeer, ExtendedHandshake]:
    """A scripted peer with the extension protocol: handshake, our extended handshake (offering
    lt_donthave; ``upload_only`` if given); returns it and the session's extended handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    peer = RawPeer(t, reader, writer)
    reserved = Reserved.make(fast=True, extension_protocol=True)
    peer.send(Handshake(t.swarm_hash, b"-XX0000-" + os.urandom(12), reserved))
    while not isinstance(await peer.next(), Handshake):
        pass
    extra = {} if upload_only is None else {UPLOAD_ONLY_KEY: int(upload_only)}
    peer.send(ExtendedHandshake(m={"lt_donthave": OUR_DONTHAVE}, extra=extra))
    while not isinstance(ev := await peer.next(), ExtendedHandshake):
        pass
    return peer, ev


async def closed(peer: RawPeer, timeout: float = 10.0) -> bool:
    try:
        while True:
            await peer.next(timeout=timeout)
    except ConnectionError:
        return True


async def partial_seed(tmp_path: Path, session: Session) -> tuple[Torrent, Path]:
    """``session`` holds a.bin only and skips b.bin: a partial seed."""
    src, t = two_files(tmp_path / "full")
    save = tmp_path / "partial"
    (save / "two").mkdir(parents=True)
    (save / "two" / "a.bin").write_bytes((src / "a.bin").read_bytes())
    h = await session.add(t, save, file_priorities=[1, 0])
    assert h.status().state == "seeding" and not h.pieces().all()
    return t, src


async def test_partial_seed_sends_upload_only_and_full_seed_does_not(tmp_path: Path) -> None:
    async with Session(config()) as s:
        t, _ = await partial_seed(tmp_path, s)
        peer, hs = await dial(t, s.port)
        try:
            assert upload_only_of(hs.extra) is True
            assert hs.m.get("lt_donthave") == LT_DONTHAVE_ID
            ev = await peer.next()
            assert isinstance(ev, Bitfield) and ev.bits[0] == 0xF0  # pieces 0-3: a.bin only
        finally:
            peer.writer.close()
    src, t2 = make_torrent(tmp_path / "seed", 4 * PIECE, PIECE)
    async with Session(config()) as s:
        await s.add(t2, src.parent)
        peer, hs = await dial(t2, s.port)
        peer.writer.close()
        assert upload_only_of(hs.extra) is None


async def test_partial_seed_becoming_a_leecher_says_so(tmp_path: Path) -> None:
    """Selecting the skipped file again: a new extended handshake with upload_only 0."""
    async with Session(config()) as s:
        t, _ = await partial_seed(tmp_path, s)
        peer, hs = await dial(t, s.port)
        try:
            assert upload_only_of(hs.extra) is True
            await s.torrents[0].set_file_priorities([1, 1])
            while not isinstance(ev := await peer.next(), ExtendedHandshake):
                pass
            assert upload_only_of(ev.extra) is False and ev.m == {}
        finally:
            peer.writer.close()


async def test_both_upload_only_close_and_an_upload_only_peer_is_no_seed(tmp_path: Path) -> None:
    async with Session(config()) as s:
        t, _ = await partial_seed(tmp_path, s)
        peer, _ = await dial(t, s.port, upload_only=True)
        try:
            peer.send(Bitfield(bytes([0x0F])))  # it has b.bin only, which we do not want
            assert await closed(peer)
        finally:
            peer.writer.close()
    # a downloader keeps an upload-only peer that has pieces it wants, and does not count it a seed
    _base, t = two_files(tmp_path / "src2")
    async with Session(config(encryption="off")) as leecher:
        server_got: asyncio.Queue[object] = asyncio.Queue()

        async def scripted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = RawPeer(t, reader, writer)
            try:
                while not isinstance(await peer.next(), Handshake):
                    pass
                reserved = Reserved.make(fast=True, extension_protocol=True)
                peer.send(Handshake(t.swarm_hash, b"-XX0000-" + os.urandom(12), reserved))
                peer.send(ExtendedHandshake(m={"lt_donthave": OUR_DONTHAVE}, extra={UPLOAD_ONLY_KEY: 1}))
                peer.send(Bitfield(bytes([0xF0])))  # a.bin's pieces: a partial seed
                while True:
                    ev = await peer.next(timeout=20)
                    if isinstance(ev, Interested | NotInterested):
                        await server_got.put(type(ev))
            except (TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(scripted, "127.0.0.1", 0)
        try:
            h = await leecher.add(t, tmp_path / "leech", peers=[server.sockets[0].getsockname()[:2]])
            assert await asyncio.wait_for(server_got.get(), 10) is Interested
            (p,) = h.peers()
            assert p["seed"] is False
        finally:
            server.close()


async def test_lt_donthave_received_updates_availability_and_interest(tmp_path: Path) -> None:
    _base, t = two_files(tmp_path / "src")
    async with Session(config(encryption="off")) as leecher:
        events: asyncio.Queue[object] = asyncio.Queue()

        async def scripted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = RawPeer(t, reader, writer)
            try:
                while not isinstance(await peer.next(), Handshake):
                    pass
                reserved = Reserved.make(fast=True, extension_protocol=True)
                peer.send(Handshake(t.swarm_hash, b"-XX0000-" + os.urandom(12), reserved))
                peer.send(ExtendedHandshake(m={"lt_donthave": OUR_DONTHAVE}))
                while not isinstance(hs := await peer.next(), ExtendedHandshake):
                    pass
                donthave = hs.m["lt_donthave"]
                peer.send(HaveAll())  # a seed ... that drops every piece again, one by one
                while not isinstance(await peer.next(), Interested):
                    pass
                for i in range(t.info.num_pieces):
                    peer.send(Extended(donthave, encode_donthave(i)))
                while True:
                    ev = await peer.next(timeout=20)
                    await events.put(type(ev))
            except (TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(scripted, "127.0.0.1", 0)
        try:
            h = await leecher.add(t, tmp_path / "leech", peers=[server.sockets[0].getsockname()[:2]])
            while await asyncio.wait_for(events.get(), 10) is not NotInterested:
                pass  # it has nothing we want any more
            rt = leecher.torrents[0]._rt
            assert rt.picker.availability == [0] * t.info.num_pieces
            (p,) = h.peers()
            assert p["seed"] is False
        finally:
            server.close()


async def test_a_dropped_piece_is_announced_with_lt_donthave(tmp_path: Path) -> None:
    """A seed-mode seed whose piece 2 is bad on disk: the upload of piece 2 fails its check, every
    peer that offered lt_donthave hears that the piece is gone, and the seed downloads it again."""
    src, t = make_torrent(tmp_path / "seed", 8 * PIECE, PIECE)
    good = src.read_bytes()
    with open(src, "r+b") as f:
        f.seek(2 * PIECE + 100)
        f.write(b"garbage")
    async with Session(config()) as s, Session(config()) as helper:
        (tmp_path / "helper").mkdir()
        (tmp_path / "helper" / "f.bin").write_bytes(good)
        await helper.add(t, tmp_path / "helper")
        h = await s.add(t, src.parent, seed_mode=True)
        assert h.status().state == "seeding"
        asker, _ = await dial(t, s.port)
        watcher, _ = await dial(t, s.port)
        try:
            asker.send(Interested())
            while not isinstance(await asker.next(), Unchoke):
                pass
            asker.send(Request(2, 0, PIECE))
            while True:
                ev = await watcher.next()
                if isinstance(ev, Extended) and ev.ext_id == OUR_DONTHAVE:
                    assert decode_donthave(ev.payload) == 2
                    break
            assert not h.pieces().get(2)
            # downloading again: the piece comes from a good peer
            h.add_peer("127.0.0.1", helper.port)
            await h.wait_complete(timeout=30)
            assert h.pieces().all()
        finally:
            asker.writer.close()
            watcher.writer.close()
    assert src.read_bytes() == good
