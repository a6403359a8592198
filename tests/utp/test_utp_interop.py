"""uTP against libtorrent (PyPI) on loopback, TCP off on its side: BitTorrent messages over our
uTP socket manager, bytes verified both ways.

* libtorrent seeds, we dial it over uTP and download every block (its sender, our receiver);
* libtorrent leeches and dials us over uTP; we serve every request (our sender, its receiver
  checks the SHA-1 of every piece).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bitswarm.utp import UtpSocketManager, UtpStream
from realclients import LibtorrentPeer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

PIECE = 256 * 1024
BLOCK = 16 * 1024
TIMEOUT = 60.0
UTP_ONLY = {
    "enable_outgoing_utp": True,
    "enable_incoming_utp": True,
    "enable_outgoing_tcp": False,
    "enable_incoming_tcp": False,
    "out_enc_policy": 2,  # disabled: this test speaks plaintext (MSE over uTP is the MSE suite's)
    "in_enc_policy": 2,
}


def make_torrent(lt: Any, path: Path) -> tuple[bytes, bytes]:
    ct = lt.create_torrent(lt.list_files(str(path)), PIECE, lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, str(path.parent))
    raw = bytes(lt.bencode(ct.generate()))
    info_hash = lt.torrent_info(lt.bdecode(raw)).info_hashes().v1.to_bytes()
    return raw, info_hash


class Peer(asyncio.BufferedProtocol):
    """A minimal BitTorrent peer over a UtpStream: handshake, then length-prefixed messages."""

    def __init__(self, info_hash: bytes, on_message: Callable[[Peer, int, bytes], None]) -> None:
        self.info_hash = info_hash
        self.on_message = on_message
        self.buf = bytearray(1 << 16)
        self.inbox = bytearray()
        self.handshaken = False
        self.changed = asyncio.Event()
        self.transport: UtpStream | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, UtpStream)
        self.transport = transport
        transport.write(b"\x13BitTorrent protocol" + bytes(8) + self.info_hash + b"-BW0001-" + os.urandom(12))

    def send(self, msg_id: int, body: bytes = b"") -> None:
        assert self.transport is not None
        self.transport.write(struct.pack(">IB", len(body) + 1, msg_id) + body)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.inbox += self.buf[:nbytes]
        if not self.handshaken:
            if len(self.inbox) < 68:
                return
            assert self.inbox[28:48] == self.info_hash
            del self.inbox[:68]
            self.handshaken = True
        while len(self.inbox) >= 4:
            (n,) = struct.unpack_from(">I", self.inbox)
            if len(self.inbox) < 4 + n:
                break
            msg = bytes(self.inbox[4 : 4 + n])
            del self.inbox[: 4 + n]
            if n:
                self.on_message(self, msg[0], msg[1:])
        self.changed.set()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self.changed.set()


async def until(peer: Peer, cond: Callable[[], bool]) -> None:
    while not cond():
        peer.changed.clear()
        await asyncio.wait_for(peer.changed.wait(), TIMEOUT)


async def test_download_from_libtorrent_over_utp(tmp_path: Path) -> None:
    lp = LibtorrentPeer(**UTP_ONLY)
    src = tmp_path / "seed" / "data.bin"
    src.parent.mkdir()
    content = os.urandom(32 * PIECE + 12345)  # 8 MiB
    src.write_bytes(content)
    torrent, info_hash = make_torrent(lp.lt, src)
    handle = lp.add(torrent, src.parent, seed_mode=True)
    mgr = await UtpSocketManager.open("127.0.0.1", 0)
    got = bytearray(len(content))
    state = {"unchoked": False, "blocks": 0}

    def on_message(peer: Peer, msg_id: int, body: bytes) -> None:
        if msg_id == 1:
            state["unchoked"] = True
        elif msg_id == 7:
            index, begin = struct.unpack_from(">II", body)
            off = index * PIECE + begin
            got[off : off + len(body) - 8] = body[8:]
            state["blocks"] += 1

    try:
        _, peer = await mgr.connect(
            ("127.0.0.1", lp.port), lambda: Peer(info_hash, on_message), timeout=TIMEOUT
        )
        await until(peer, lambda: peer.handshaken)
        peer.send(2)  # interested
        await until(peer, lambda: bool(state["unchoked"]))
        requests = [
            (i // PIECE, i % PIECE, min(BLOCK, len(content) - i)) for i in range(0, len(content), BLOCK)
        ]
        for index, begin, length in requests:
            peer.send(6, struct.pack(">III", index, begin, length))
        await until(peer, lambda: state["blocks"] == len(requests))
        assert bytes(got) == content
        assert handle.status().num_peers == 1
    finally:
        mgr.close()
        lp.close()


async def test_libtorrent_downloads_from_us_over_utp(tmp_path: Path) -> None:
    lp = LibtorrentPeer(**UTP_ONLY)
    src = tmp_path / "seed" / "data.bin"
    src.parent.mkdir()
    content = os.urandom(32 * PIECE + 777)  # 8 MiB
    src.write_bytes(content)
    torrent, info_hash = make_torrent(lp.lt, src)
    (tmp_path / "leech").mkdir()
    handle = lp.add(torrent, tmp_path / "leech")
    npieces = (len(content) + PIECE - 1) // PIECE
    peers: list[Peer] = []
    served = {"blocks": 0}

    def on_message(peer: Peer, msg_id: int, body: bytes) -> None:
        if msg_id == 2:  # interested -> unchoke
            peer.send(1)
        elif msg_id == 6:
            index, begin, length = struct.unpack(">III", body)
            off = index * PIECE + begin
            peer.send(7, struct.pack(">II", index, begin) + content[off : off + length])
            served["blocks"] += 1

    def accept() -> Peer:
        p = Peer(info_hash, on_message)
        peers.append(p)
        return p

    mgr = await UtpSocketManager.open("127.0.0.1", 0, accept=accept)
    try:
        handle.connect_peer(mgr.address)

        def bitfield_sent() -> bool:
            return bool(peers) and peers[0].handshaken

        deadline = time.monotonic() + TIMEOUT
        while not bitfield_sent():
            assert time.monotonic() < deadline, "libtorrent never dialled us over uTP"
            await asyncio.sleep(0.05)  # libtorrent runs in its own threads: poll its progress
        bits = bytearray((npieces + 7) // 8)
        for i in range(npieces):
            bits[i // 8] |= 0x80 >> (i % 8)
        peers[0].send(5, bytes(bits))
        while not handle.status().is_seeding:
            assert time.monotonic() < deadline, f"libtorrent stuck at {handle.status().progress:.0%}"
            await asyncio.sleep(0.05)
        assert (tmp_path / "leech" / "data.bin").read_bytes() == content
        assert hashlib.sha1(content).digest()  # the pieces passed libtorrent's SHA-1 checks
        assert served["blocks"] >= len(content) // BLOCK
    finally:
        mgr.close()
        lp.close()
