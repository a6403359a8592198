"""Magnet links (BEP 9): metadata from ``x.pe`` peers, verification, lying peers, cached metadata."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from bitswarm.metainfo import Torrent, magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.session import Session, SessionConfig, SessionError
from bitswarm.session.magnet import MetadataFetch
from bitswarm.wire import (
    NEED_DATA,
    Extended,
    ExtendedHandshake,
    Handshake,
    HandshakeHeader,
    HaveAll,
    PeerConnection,
    Reserved,
)
from bitswarm.wire.ut_metadata import (
    MetadataData,
    MetadataRequest,
    decode_metadata_message,
    encode_metadata_message,
)

pytestmark = pytest.mark.timeout(60)


def config(**kw: object) -> SessionConfig:
    kw.setdefault("enable_dht", False)
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, **kw)  # type: ignore[arg-type]


def make_content(root: Path, size: int, seed: int = 1, name: str = "data.bin") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    p = root / name
    p.write_bytes(random.Random(seed).randbytes(size))
    return p


def torrent_of(path: Path, version: TorrentVersion = "v1", piece_length: int = 16384) -> Torrent:
    return parse_torrent(create_torrent(path, version=version, piece_length=piece_length))


def magnet_uri(t: Torrent, peers: list[tuple[str, int]], *, v1: bool = True) -> str:
    m = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=peers)
    if not v1:
        m = dataclasses.replace(m, info_hash_v1=None)
    return m.to_uri()


@pytest.mark.parametrize("version", ["v1", "hybrid"])
async def test_magnet_with_x_pe_only(tmp_path: Path, version: TorrentVersion) -> None:
    """No tracker, no DHT: the magnet's x.pe peer sends the metadata, then the content. The v1 case
    has 700 files, so its info dictionary is three 16 KiB metadata pieces. A hybrid torrent from a
    magnet has no piece layers: they come by BEP 52 hash requests (test_session_hash_exchange.py)."""
    root = tmp_path / "seed" / "many"
    rng = random.Random(5)
    count = 700 if version == "v1" else 3
    for i in range(count):
        make_content(root, 300 + rng.randrange(2000), seed=i, name=f"a-rather-long-file-name-{i:04d}.bin")
    t = torrent_of(root, version)
    if version == "v1":
        assert len(t.info.raw) > 2 * 16384
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, root.parent)
        h = await leecher.add(magnet_uri(t, [("127.0.0.1", seeder.port)]), tmp_path / "leech")
        assert h.torrent.info.raw == t.info.raw and h.info_hash == t.swarm_hash
        assert h.torrent.trackers == []
        await h.wait_complete(timeout=40)
    for p in root.iterdir():
        assert (tmp_path / "leech" / "many" / p.name).read_bytes() == p.read_bytes()


async def test_metadata_is_cached_for_the_next_add(tmp_path: Path) -> None:
    src = make_content(tmp_path / "seed", 200_000)
    t = torrent_of(src)
    async with Session(config()) as seeder:
        await seeder.add(t, src.parent)
        async with Session(config()) as leecher:
            h = await leecher.add(magnet_uri(t, [("127.0.0.1", seeder.port)]), tmp_path / "leech")
            await h.wait_complete(timeout=30)
    # again, with no peer at all and no DHT: the verified metadata saved next to the resume data
    async with Session(config()) as again:
        h2 = await again.add(magnet_uri(t, []), tmp_path / "leech", metadata_timeout=2)
        assert h2.status().state == "seeding"
    assert (tmp_path / "leech" / ".bitswarm" / f"{t.swarm_hash.hex()}.info").read_bytes() == t.info.raw


async def test_metadata_timeout(tmp_path: Path) -> None:
    src = make_content(tmp_path / "seed", 50_000)
    t = torrent_of(src)
    async with Session(config()) as s:
        dead = s.port  # our own port: skipped; nobody else has it
        with pytest.raises(SessionError, match="within 1 s"):
            await s.add(
                magnet_uri(t, [("127.0.0.1", dead), ("127.0.0.1", 1)]), tmp_path / "x", metadata_timeout=1
            )
        assert s.torrents == []
    for cfg in (config(), config(enable_dht=True)):  # DHT off, or on without any node to ask
        async with Session(cfg) as s2:
            with pytest.raises(SessionError, match="magnet link: it has no peers"):
                await s2.add(magnet_uri(t, []), tmp_path / "y")


class LyingPeer:
    """A peer that offers ut_metadata of the right size and sends garbage for every piece."""

    def __init__(self, info_hash: bytes, size: int) -> None:
        self.info_hash = info_hash
        self.size = size
        self.connections = 0
        self.pieces_sent = 0
        self.server: asyncio.Server | None = None
        self.error: Exception | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        codec = PeerConnection()
        their_ut = 0
        try:
            while data := await reader.read(65536):
                codec.receive_data(data)
                while (ev := codec.next_event()) is not NEED_DATA:
                    out = b""
                    if isinstance(ev, HandshakeHeader):
                        reserved = Reserved.make(fast=True, extension_protocol=True)
                        out += codec.send(Handshake(self.info_hash, b"-LY0001-" + bytes(12), reserved))
                    elif isinstance(ev, Handshake):
                        out += codec.send(ExtendedHandshake(m={"ut_metadata": 3}, metadata_size=self.size))
                        out += codec.send(HaveAll())
                    elif isinstance(ev, ExtendedHandshake):
                        their_ut = ev.m.get("ut_metadata", 0)
                    elif isinstance(ev, Extended) and ev.ext_id == 3:
                        msg = decode_metadata_message(ev.payload)
                        if isinstance(msg, MetadataRequest) and their_ut:
                            n = min(16384, self.size - msg.piece * 16384)
                            bad = MetadataData(msg.piece, self.size, b"x" * n)
                            out += codec.send(Extended(their_ut, encode_metadata_message(bad)))
                            self.pieces_sent += 1
                    if out:
                        writer.write(out)
                await writer.drain()
        except Exception as exc:
            self.error = exc
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_lying_peer_is_dropped_and_never_asked_again(tmp_path: Path) -> None:
    src = make_content(tmp_path / "seed", 100_000)
    t = torrent_of(src)
    liar = LyingPeer(t.swarm_hash, len(t.info.raw))
    lport = await liar.start()
    try:  # plaintext TCP: the liar counts connections (prefer would dial MSE first, uTP before TCP)
        async with Session(config(encryption="off", transports="tcp")) as s:
            m = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[])
            fetch = MetadataFetch(s, m, peers=[("127.0.0.1", lport)], trackers=[])
            with pytest.raises(TimeoutError):
                await fetch.run(3.0)
            assert fetch.bad == {("127.0.0.1", lport)}
            assert liar.connections == 1 and liar.pieces_sent >= 1
            # with the liar and an honest seeder the magnet still resolves to the right metadata
            async with Session(config()) as seeder:
                await seeder.add(t, src.parent)
                uri = magnet_uri(t, [("127.0.0.1", lport), ("127.0.0.1", seeder.port)])
                h = await s.add(uri, tmp_path / "leech", metadata_timeout=20)
                assert h.torrent.info.raw == t.info.raw
                await h.wait_complete(timeout=30)
    finally:
        await liar.stop()
    assert (tmp_path / "leech" / src.name).read_bytes() == src.read_bytes()


async def test_seeder_serves_metadata_in_its_extended_handshake(tmp_path: Path) -> None:
    """Our extended handshake offers ut_metadata, ut_pex and metadata_size; requests are answered
    with the exact info-dictionary slices, an out-of-range piece with a reject."""
    src = make_content(tmp_path / "seed", 1_000_000)
    t = torrent_of(src)
    async with Session(config()) as seeder:
        await seeder.add(t, src.parent)
        reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
        codec = PeerConnection()
        reserved = Reserved.make(fast=True, extension_protocol=True)
        writer.write(codec.send(Handshake(t.swarm_hash, b"-TT0001-" + bytes(12), reserved)))
        got: dict[int, bytes] = {}
        hs: ExtendedHandshake | None = None
        try:
            async with asyncio.timeout(10):
                while hs is None or len(got) < 2:
                    data = await reader.read(65536)
                    assert data
                    codec.receive_data(data)
                    while (ev := codec.next_event()) is not NEED_DATA:
                        if isinstance(ev, Handshake):
                            writer.write(codec.send(ExtendedHandshake(m={"ut_metadata": 7})))
                        elif isinstance(ev, ExtendedHandshake):
                            hs = ev
                            ut = hs.m["ut_metadata"]
                            writer.write(
                                codec.send(Extended(ut, encode_metadata_message(MetadataRequest(0))))
                                + codec.send(Extended(ut, encode_metadata_message(MetadataRequest(99))))
                            )
                        elif isinstance(ev, Extended) and ev.ext_id == 7:
                            msg = decode_metadata_message(ev.payload)
                            got[msg.piece] = msg.data if isinstance(msg, MetadataData) else b"reject"
        finally:
            writer.close()
            await writer.wait_closed()
    assert hs is not None and hs.metadata_size == len(t.info.raw)
    assert set(hs.m) >= {"ut_metadata", "ut_pex"}
    assert got[0] == t.info.raw[:16384] and got[99] == b"reject"
