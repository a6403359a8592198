"""The recv_into path: get_buffer / buffer_updated, with and without a block sink."""

from __future__ import annotations

import asyncio
import os

import pytest
from wire_link import ALL_BITS, INFO_HASH, LAYOUT, PEER_A, PEER_B, connected_pair, drain

from bitswarm.wire import (
    NEED_DATA,
    Event,
    Handshake,
    HaveAll,
    Interested,
    LocalWireError,
    PeerConnection,
    Piece,
    PieceLayout,
    WireProtocolError,
)

PAYLOAD = os.urandom(LAYOUT.piece_length * (LAYOUT.num_pieces - 1) + LAYOUT.last_piece_size)


def piece_stream(sender: PeerConnection, block: int = 16384) -> tuple[bytes, list[Piece]]:
    out = [sender.send(HaveAll())]
    pieces = []
    for index in range(LAYOUT.num_pieces):
        size = LAYOUT.piece_size(index)
        for begin in range(0, size, block):
            length = min(block, size - begin)
            start = index * LAYOUT.piece_length + begin
            p = Piece(index, begin, PAYLOAD[start : start + length])
            pieces.append(p)
            out.append(sender.send(p))
            out.append(sender.send(Interested()))  # a small message between blocks
    return b"".join(out), pieces


class Assembly:
    """What a session would own: one buffer per piece, blocks written in place."""

    def __init__(self) -> None:
        self.buffers = [bytearray(LAYOUT.piece_size(i)) for i in range(LAYOUT.num_pieces)]
        self.calls = 0

    def sink(self, index: int, begin: int, length: int) -> memoryview | None:
        self.calls += 1
        return memoryview(self.buffers[index])[begin : begin + length]


def pump(conn: PeerConnection, stream: bytes, chunk: int) -> tuple[list[Event], int]:
    """Play asyncio's BufferedProtocol: get_buffer, recv_into (a slice copy here), buffer_updated."""
    events: list[Event] = []
    pos = direct = 0
    for _ in range(len(stream) + 10):
        if pos == len(stream):
            break
        buf = conn.get_buffer(-1)
        if conn._direct is not None:  # the kernel would write straight into the sink buffer
            direct += 1
        n = min(len(buf), chunk, len(stream) - pos)
        buf[:n] = stream[pos : pos + n]
        pos += n
        conn.buffer_updated(n)
        events.extend(drain(conn))
    return events, direct


@pytest.mark.parametrize("chunk", [7, 100, 16384 + 13, 65536, 1 << 20])
@pytest.mark.parametrize("use_sink", [True, False])
def test_buffered_path_delivers_every_block(chunk: int, use_sink: bool) -> None:
    a, b = connected_pair()
    stream, pieces = piece_stream(a)
    asm = Assembly()
    if use_sink:
        b.set_block_sink(asm.sink)
    events, direct = pump(b, stream, chunk)
    got = [e for e in events if isinstance(e, Piece)]
    assert got == pieces
    assert len(events) == 1 + 2 * len(pieces)
    if use_sink:
        assert b"".join(asm.buffers) == PAYLOAD
        assert asm.calls == len(pieces)
        for p in got:  # each event's data is the sink's own buffer
            assert isinstance(p.data, memoryview) and p.data.obj is asm.buffers[p.index]
        if chunk < 16384:
            assert direct > 0  # blocks were received in place
    else:
        assert all(isinstance(p.data, memoryview) and p.data.readonly for p in got)


def test_sink_may_decline_and_must_give_right_size() -> None:
    a, b = connected_pair()
    stream, pieces = piece_stream(a)
    b.set_block_sink(lambda i, begin, n: None)
    events, direct = pump(b, stream, 5000)
    assert [e for e in events if isinstance(e, Piece)] == pieces and direct == 0

    a, b = connected_pair()
    stream, _ = piece_stream(a)
    b.set_block_sink(lambda i, begin, n: memoryview(bytearray(n + 1)))
    with pytest.raises(LocalWireError):
        pump(b, stream, 1 << 20)


def test_eof_and_receive_data_during_a_direct_block() -> None:
    a, b = connected_pair()
    asm = Assembly()
    b.set_block_sink(asm.sink)
    wire = a.send(HaveAll()) + a.send(Piece(0, 0, PAYLOAD[:16384]))
    _events, direct = pump(b, wire[:-100], 1000)
    assert direct > 0 and b.next_event() is NEED_DATA
    with pytest.raises(LocalWireError):
        b.receive_data(b"x")
    b.receive_data(b"")
    with pytest.raises(WireProtocolError, match="middle"):
        b.next_event()


def test_bad_header_is_reported_by_next_event_not_get_buffer() -> None:
    a, b = connected_pair(layout=PieceLayout.uniform(16384, 16384 * 2))
    b.set_block_sink(Assembly().sink)
    bad = (9 + 16384).to_bytes(4, "big") + b"\x07" + (0).to_bytes(4, "big") + (1).to_bytes(4, "big")
    _events, _ = pump(b, a.send(HaveAll()) + bad + bytes(100), 1 << 20)
    b.get_buffer(-1)
    buf = b.get_buffer(-1)
    n = 16384 - 100
    buf[:n] = bytes(n)
    b.buffer_updated(n)
    with pytest.raises(WireProtocolError, match="past the end"):
        b.next_event()


async def test_real_buffered_protocol_over_loopback() -> None:
    """The documented driver pattern, on a real loopback socket."""
    seeder, leecher = PeerConnection(LAYOUT), PeerConnection(LAYOUT)
    seeder_hs = seeder.send(Handshake(INFO_HASH, PEER_A, ALL_BITS))
    leecher.receive_data(seeder_hs)
    drain(leecher)
    seeder.receive_data(leecher.send(Handshake(INFO_HASH, PEER_B, ALL_BITS)))
    drain(seeder)
    stream, pieces = piece_stream(seeder)
    asm = Assembly()
    leecher.set_block_sink(asm.sink)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Event]] = loop.create_future()

    class Leecher(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.events: list[Event] = []

        def get_buffer(self, sizehint: int) -> memoryview:
            return leecher.get_buffer(sizehint)

        def buffer_updated(self, nbytes: int) -> None:
            leecher.buffer_updated(nbytes)
            self.events.extend(drain(leecher))
            if len(self.events) == 1 + 2 * len(pieces) and not done.done():
                done.set_result(self.events)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in range(0, len(stream), 50_000):
            writer.write(stream[i : i + 50_000])
            await writer.drain()
        await done
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(Leecher, "127.0.0.1", port)
    try:
        events = await asyncio.wait_for(done, 10)
    finally:
        transport.close()
        server.close()
        await server.wait_closed()
    assert [e for e in events if isinstance(e, Piece)] == pieces
    assert b"".join(asm.buffers) == PAYLOAD


def test_direct_remaining_counts_the_bytes_of_the_block_still_to_come() -> None:
    a, b = connected_pair()
    stream, _ = piece_stream(a)
    b.set_block_sink(Assembly().sink)
    assert b.direct_remaining == 0
    pos, seen = 0, []
    for _ in range(len(stream)):
        if pos == len(stream):
            break
        buf = b.get_buffer(-1)
        rest = b.direct_remaining
        if b._direct is not None:
            assert rest == len(buf) > 0  # in place: exactly the rest of the block
        else:
            assert rest == 0
        n = min(len(buf), 1000, len(stream) - pos)
        buf[:n] = stream[pos : pos + n]
        pos += n
        b.buffer_updated(n)
        if rest:
            assert b.direct_remaining == rest - n  # 0 once the block is complete
            seen.append(rest)
        drain(b)
    assert seen and max(seen) < 16384 + 1
