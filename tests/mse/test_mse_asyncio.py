"""The transport seam, sketched: an asyncio ``BufferedProtocol`` runs the MSE handshake, then lets the
wire codec choose every receive buffer (its scratch, or a block's slot in the piece buffer) and
decrypts the bytes in place there before the codec sees them. Two such peers on loopback move a
torrent's blocks; the blocks must land in the leecher's piece buffer through the in-place path.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from bitswarm.mse import (
    NEED_DATA,
    CryptoMethod,
    EncryptionPolicy,
    HandshakeComplete,
    MSEHandshake,
    SkeyIndex,
    StreamCipher,
)
from bitswarm.wire import NEED_DATA as WIRE_NEED_DATA
from bitswarm.wire import (
    PAUSED,
    Event,
    Handshake,
    HandshakeHeader,
    HaveAll,
    Interested,
    PeerConnection,
    Piece,
    PieceLayout,
    Request,
    Reserved,
    Unchoke,
)

INFO_HASH = bytes(range(40, 60))
PIECE = 64 * 1024
BLOCK = 16 * 1024
DATA = os.urandom(7 * PIECE + 5000)
LAYOUT = PieceLayout.uniform(PIECE, len(DATA))
BITS = Reserved.make(fast=True)


class EncryptedPeer(asyncio.BufferedProtocol):
    """MSE first, then the wire codec with in-place decryption of every received byte."""

    def __init__(self, hs: MSEHandshake, conn: PeerConnection) -> None:
        self.hs: MSEHandshake | None = hs
        self.conn = conn
        self.cipher: StreamCipher | None = None
        self.transport: asyncio.Transport | None = None
        self.scratch = bytearray(64 * 1024)
        self.view = memoryview(self.scratch)
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._flush_handshake()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(self.cipher.encrypt(data) if self.cipher is not None else data)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.hs is not None:
            self.view = memoryview(self.scratch)
        else:
            self.view = self.conn.get_buffer(sizehint)  # the codec's scratch or a block slot
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self.hs is not None:
                self._handshake_bytes(bytes(self.view[:nbytes]))
                return
            if self.cipher is not None:
                self.cipher.decrypt_in_place(self.view[:nbytes])
            self.conn.buffer_updated(nbytes)
            self._drain()
        except Exception as exc:
            if not self.failed.done():
                self.failed.set_result(exc)
            assert self.transport is not None
            self.transport.abort()

    def _flush_handshake(self) -> None:
        assert self.hs is not None and self.transport is not None
        out = self.hs.data_to_send()
        if out:
            self.transport.write(out)

    def _handshake_bytes(self, data: bytes) -> None:
        hs = self.hs
        assert hs is not None
        hs.receive_data(data)
        ev = hs.next_event()
        self._flush_handshake()
        if ev is NEED_DATA:
            return
        assert isinstance(ev, HandshakeComplete)
        self.cipher, self.hs = hs.cipher, None
        payload = ev.initial_payload + ev.trailing
        if payload:  # b"" would be EOF
            self.conn.receive_data(payload)
        self._drain()

    def _drain(self) -> None:
        while True:
            ev = self.conn.next_event()
            if ev is WIRE_NEED_DATA:
                return
            if ev is PAUSED:
                self.on_paused()
                continue
            assert isinstance(ev, Event)
            self.on_event(ev)

    def on_paused(self) -> None:
        raise AssertionError("unexpected PAUSED")

    def on_event(self, ev: Event) -> None:
        raise NotImplementedError


class Seeder(EncryptedPeer):
    def on_paused(self) -> None:
        self.conn.set_layout(LAYOUT)
        self.write(self.conn.send(Handshake(INFO_HASH, b"-BS0001-seeder000000", BITS)))

    def on_event(self, ev: Event) -> None:
        if isinstance(ev, HandshakeHeader):
            return
        if isinstance(ev, Handshake):
            if self.conn.our_handshake is None:
                self.on_paused()
            self.write(self.conn.send(HaveAll()) + self.conn.send(Unchoke()))
        elif isinstance(ev, Request):
            start = ev.index * PIECE + ev.begin
            self.write(
                self.conn.send_piece_header(ev.index, ev.begin, ev.length) + DATA[start : start + ev.length]
            )


class Leecher(EncryptedPeer):
    def __init__(self, hs: MSEHandshake, conn: PeerConnection) -> None:
        super().__init__(hs, conn)
        self.got = bytearray(len(DATA))
        self.in_place = 0
        self.blocks = 0
        self.wanted = sum(-(-LAYOUT.piece_size(i) // BLOCK) for i in range(LAYOUT.num_pieces))
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        conn.set_block_sink(self.sink)

    def sink(self, index: int, begin: int, length: int) -> memoryview:
        start = index * PIECE + begin
        return memoryview(self.got)[start : start + length]

    def on_event(self, ev: Event) -> None:
        if isinstance(ev, HaveAll):
            requests = []
            for index in range(LAYOUT.num_pieces):
                size = LAYOUT.piece_size(index)
                requests += [Request(index, b, min(BLOCK, size - b)) for b in range(0, size, BLOCK)]
            self.write(b"".join(self.conn.send(r) for r in [Interested(), *requests]))
        elif isinstance(ev, Piece):
            self.blocks += 1
            if isinstance(ev.data, memoryview) and ev.data.obj is self.got:
                self.in_place += 1  # the kernel wrote it in our piece buffer; decrypted there
            else:
                start = ev.index * PIECE + ev.begin
                self.got[start : start + len(ev.data)] = ev.data
            if self.blocks == self.wanted and not self.done.done():
                self.done.set_result(None)


@pytest.mark.parametrize("prefer_rc4", [True, False])
async def test_blocks_decrypted_in_the_piece_buffer(prefer_rc4: bool) -> None:
    loop = asyncio.get_running_loop()
    seeders: list[Seeder] = []

    def seeder() -> Seeder:
        hs = MSEHandshake.responder(SkeyIndex([INFO_HASH]), prefer_rc4=prefer_rc4)
        seeders.append(Seeder(hs, PeerConnection()))
        return seeders[-1]

    server = await loop.create_server(seeder, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        conn = PeerConnection(LAYOUT)
        ia = conn.send(Handshake(INFO_HASH, b"-BS0001-leecher00000", BITS))
        hs = MSEHandshake.initiator(INFO_HASH, policy=EncryptionPolicy.PREFER, initial_payload=ia)
        transport, leecher = await loop.create_connection(lambda: Leecher(hs, conn), "127.0.0.1", port)
        try:
            finished, _ = await asyncio.wait(
                [leecher.done, leecher.failed, *(s.failed for s in seeders)],
                timeout=20,
                return_when=asyncio.FIRST_COMPLETED,
            )
            assert leecher.done in finished, [f.result() for f in finished]
            assert bytes(leecher.got) == DATA
            assert (leecher.cipher is not None) is prefer_rc4
            assert hs.method is (CryptoMethod.RC4 if prefer_rc4 else CryptoMethod.PLAINTEXT)
            assert leecher.in_place > 0  # the zero-copy path ran (and, with RC4, decrypted in place)
        finally:
            transport.close()
    finally:
        server.close()
        await server.wait_closed()
