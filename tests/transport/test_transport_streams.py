"""The transport seam (bitswarm.transport): a peer connection runs on any PeerStream.

Unit tests of ``deliver`` and ``CipherStream`` without sockets, and a whole download between two
sessions over an in-memory stream pair wrapped in MSE's RC4 cipher: the seeder routes the incoming
stream by the handshake's info-hash (it seeds two torrents), blocks are decrypted in place in the
leecher's piece buffers, and the download completes with the seeder's bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterable
from pathlib import Path

import pytest

from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.mse import RC4Stream, StreamCipher
from bitswarm.session import Session, SessionConfig
from bitswarm.transport import CipherStream, PeerStream, StreamReceiver, deliver

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """A StreamReceiver that hands out small buffers and keeps what arrives."""

    def __init__(self, size: int = 5) -> None:
        self.size = size
        self.buffers: list[bytearray] = []
        self.got = bytearray()
        self.stream: PeerStream | None = None
        self.lost = False

    def connection_made(self, stream: PeerStream) -> None:
        self.stream = stream

    def get_buffer(self, sizehint: int) -> memoryview:
        self.buffers.append(bytearray(self.size))
        return memoryview(self.buffers[-1])

    def buffer_updated(self, nbytes: int) -> None:
        self.got += self.buffers[-1][:nbytes]

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class MemoryStream:
    """One end of an in-memory stream pair: what one end writes, the other's receiver gets (in
    chunks of at most ``chunk`` bytes, through get_buffer/buffer_updated, on later loop turns)."""

    kind = "mem"
    encrypted = False

    def __init__(self, receiver: StreamReceiver, address: tuple[str, int], chunk: int = 7000) -> None:
        self.receiver = receiver
        self.address = address
        self.chunk = chunk
        self.other: MemoryStream | None = None
        self.inbox = bytearray()
        self.paused = False
        self.closed = False
        self.sent = bytearray()  #: every byte written (what the wire carried)

    @property
    def peer_address(self) -> tuple[str, int] | None:
        return self.address

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def writelines(self, parts: Iterable[bytes | memoryview]) -> None:
        data = b"".join(parts)
        self.sent += data
        if self.other is not None and not self.other.closed:
            self.other.inbox += data
            asyncio.get_running_loop().call_soon(self.other.pump)

    def pump(self) -> None:
        while self.inbox and not self.paused and not self.closed:
            part = bytes(self.inbox[: self.chunk])
            del self.inbox[: len(part)]
            deliver(self.receiver, part)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        asyncio.get_running_loop().call_soon(self.pump)

    def set_receive_hint(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = asyncio.get_running_loop()
        loop.call_soon(self.receiver.connection_lost, None)
        if self.other is not None:
            loop.call_soon(self.other.close)

    abort = close


def memory_pair(
    a: StreamReceiver, b: StreamReceiver, a_addr: tuple[str, int], b_addr: tuple[str, int]
) -> tuple[MemoryStream, MemoryStream]:
    sa, sb = MemoryStream(a, b_addr), MemoryStream(b, a_addr)
    sa.other, sb.other = sb, sa
    b.connection_made(sb)  # the accepting side first: it waits for the handshake
    a.connection_made(sa)
    return sa, sb


def rc4_pair() -> tuple[StreamCipher, StreamCipher]:
    k1, k2 = b"1" * 20, b"2" * 20
    return StreamCipher(RC4Stream(k1), RC4Stream(k2)), StreamCipher(RC4Stream(k2), RC4Stream(k1))


def test_deliver_fills_as_many_buffers_as_it_takes() -> None:
    r = Recorder(size=5)
    deliver(r, b"abcdefghijkl")
    assert r.got == b"abcdefghijkl" and len(r.buffers) == 3


def test_cipher_stream_decrypts_in_the_receivers_own_buffer_and_encrypts_writes() -> None:
    ours, theirs = rc4_pair()
    top = Recorder(size=4)
    wrapped = CipherStream(top, ours)
    sent: list[bytes] = []

    class Inner:
        kind, encrypted, peer_address = "tcp", False, ("10.0.0.1", 6881)

        def writelines(self, parts: Iterable[bytes]) -> None:
            sent.extend(parts)

    wrapped.connection_made(Inner())  # type: ignore[arg-type]
    assert top.stream is wrapped and wrapped.kind == "tcp" and wrapped.encrypted
    assert wrapped.peer_address == ("10.0.0.1", 6881)
    deliver(wrapped, theirs.encrypt(b"hello, peer"))
    assert top.got == b"hello, peer"
    assert b"".join(top.buffers).startswith(b"hell")  # plaintext lies in the receiver's buffers
    wrapped.write(b"ping")
    wrapped.writelines([b"po", memoryview(b"ng")])
    assert theirs.decrypt(b"".join(sent)) == b"pingpong"


async def test_a_download_over_an_encrypted_in_memory_stream(tmp_path: Path) -> None:
    rng = random.Random(5)
    data = rng.randbytes(600_000)
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "m.bin").write_bytes(data)
    (tmp_path / "seed" / "other.bin").write_bytes(rng.randbytes(50_000))
    t = parse_torrent(create_torrent(tmp_path / "seed" / "m.bin", piece_length=65536))
    other = parse_torrent(create_torrent(tmp_path / "seed" / "other.bin", piece_length=16384))

    def cfg() -> SessionConfig:  # each its own peer id
        return SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, enable_lsd=False)

    async with Session(cfg()) as seeder, Session(cfg()) as leecher:
        await seeder.add(other, tmp_path / "seed")
        await seeder.add(t, tmp_path / "seed")
        h = await leecher.add(t, tmp_path / "down")
        rt = leecher.lookup(t.swarm_hash)
        assert rt is not None
        ours, theirs = rc4_pair()
        out_conn = rt.outgoing_connection(("10.1.1.1", 6881))
        in_conn = seeder.incoming_connection()  # no torrent yet: the handshake picks it
        _, b = memory_pair(
            CipherStream(out_conn, ours),
            CipherStream(in_conn, theirs),
            ("10.2.2.2", 50000),
            ("10.1.1.1", 6881),
        )
        await h.wait_complete(timeout=30)
        assert in_conn.torrent is not None and in_conn.torrent.swarm_hash == t.swarm_hash
        assert out_conn.transport_kind == "mem+enc" and in_conn.transport_kind == "mem+enc"
        assert len(b.sent) > len(data) and data[1000:2000] not in b.sent  # the wire carried ciphertext
    got = (tmp_path / "down" / "m.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
