"""MSE against a real libtorrent (PyPI) on loopback, with encryption forced on its side: we download
from it through our initiator and seed to it through our responder, payload checked byte for byte.

A small blocking driver joins a socket, the handshake, the wire codec and the payload cipher (the
session's asyncio transport does the same work; this file checks the protocol, not that code).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from bitswarm.bencode import encode
from bitswarm.mse import (
    NEED_DATA,
    CryptoMethod,
    EncryptionPolicy,
    HandshakeComplete,
    MSEHandshake,
    MSEProtocolError,
    PlaintextHandshake,
    SkeyIndex,
    StreamCipher,
)
from bitswarm.wire import NEED_DATA as WIRE_NEED_DATA
from bitswarm.wire import (
    ConnectionClosed,
    Event,
    ExtendedHandshake,
    Handshake,
    HandshakeHeader,
    HaveAll,
    HaveNone,
    Interested,
    PeerConnection,
    Piece,
    PieceLayout,
    Request,
    Reserved,
    Unchoke,
)
from realclients import libtorrent_peer, wait_for

lt = pytest.importorskip("libtorrent")
pytestmark = pytest.mark.interop

PIECE_LENGTH = 32 * 1024
OUR_BITS = Reserved.make(fast=True, extension_protocol=True)
PEER_ID = b"-BS0001-msetest00001"
FORCED = {"out_enc_policy": int(lt.enc_policy.forced), "in_enc_policy": int(lt.enc_policy.forced)}
LT_RC4 = {**FORCED, "allowed_enc_level": int(lt.enc_level.rc4)}
LT_BOTH_PLAIN_FIRST = {**FORCED, "allowed_enc_level": int(lt.enc_level.both), "prefer_rc4": False}
LT_BOTH_RC4_FIRST = {**FORCED, "allowed_enc_level": int(lt.enc_level.both), "prefer_rc4": True}
LT_PLAINTEXT_ONLY = {**FORCED, "allowed_enc_level": int(lt.enc_level.plaintext)}


def make_torrent(tmp: Path) -> tuple[bytes, bytes, bytes, PieceLayout]:
    data = os.urandom(5 * PIECE_LENGTH + 1234)
    (tmp / "seed").mkdir()
    (tmp / "seed" / "blob.bin").write_bytes(data)
    pieces = b"".join(
        hashlib.sha1(data[i : i + PIECE_LENGTH]).digest() for i in range(0, len(data), PIECE_LENGTH)
    )
    info = {b"name": b"blob.bin", b"length": len(data), b"piece length": PIECE_LENGTH, b"pieces": pieces}
    torrent = encode({b"info": info})
    return torrent, hashlib.sha1(encode(info)).digest(), data, PieceLayout.uniform(PIECE_LENGTH, len(data))


def handshake(sock: socket.socket, hs: MSEHandshake, timeout: float = 15.0) -> Any:
    """Drive ``hs`` over ``sock`` to its final event (every read bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = hs.data_to_send()
        if out:
            sock.sendall(out)
        ev = hs.next_event()
        if ev is not NEED_DATA:
            out = hs.data_to_send()
            if out:
                sock.sendall(out)
            return ev
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            continue
        hs.receive_data(chunk)
    raise AssertionError(f"MSE handshake not done within {timeout} s ({hs!r})")


class Link:
    """Wire codec over a socket, through the payload cipher when there is one."""

    def __init__(self, sock: socket.socket, conn: PeerConnection, cipher: StreamCipher | None) -> None:
        self.sock, self.conn, self.cipher = sock, conn, cipher
        self.buf = bytearray(1 << 20)
        self.view = memoryview(self.buf)

    def write(self, data: bytes) -> None:
        self.sock.sendall(self.cipher.encrypt(data) if self.cipher is not None else data)

    def send(self, *events: Event) -> None:
        self.write(b"".join(self.conn.send(e) for e in events))

    def until(self, want: type[Event], timeout: float = 15.0) -> list[Event]:
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.conn.next_event()
            if ev is WIRE_NEED_DATA:
                try:
                    n = self.sock.recv_into(self.buf)
                except TimeoutError:
                    continue
                assert n, f"peer closed; saw {seen}"
                if self.cipher is not None:
                    self.cipher.decrypt_in_place(self.view[:n])  # where the bytes landed
                self.conn.receive_data(bytes(self.view[:n]))
                continue
            assert isinstance(ev, Event) and not isinstance(ev, ConnectionClosed), seen
            seen.append(ev)
            if isinstance(ev, want):
                return seen
        raise AssertionError(f"no {want.__name__} within {timeout} s; saw {[type(e).__name__ for e in seen]}")


@pytest.mark.parametrize(
    ("lt_settings", "policy", "method"),
    [
        (LT_RC4, EncryptionPolicy.REQUIRE, CryptoMethod.RC4),
        (LT_RC4, EncryptionPolicy.PREFER, CryptoMethod.RC4),
        (LT_BOTH_PLAIN_FIRST, EncryptionPolicy.REQUIRE, CryptoMethod.RC4),
        (LT_BOTH_PLAIN_FIRST, EncryptionPolicy.PREFER, CryptoMethod.PLAINTEXT),  # libtorrent's default
        (LT_BOTH_RC4_FIRST, EncryptionPolicy.PREFER, CryptoMethod.RC4),
        (LT_PLAINTEXT_ONLY, EncryptionPolicy.PREFER, CryptoMethod.PLAINTEXT),
    ],
    ids=["rc4-require", "rc4-prefer", "both-require", "both-prefer", "both_rc4first-prefer", "plain-prefer"],
)
def test_download_from_libtorrent(
    tmp_path: Path, lt_settings: dict[str, Any], policy: EncryptionPolicy, method: CryptoMethod
) -> None:
    torrent, info_hash, data, layout = make_torrent(tmp_path)
    with libtorrent_peer(**lt_settings) as peer:
        handle = peer.add(torrent, tmp_path / "seed", seed_mode=True)
        peer.wait_seeding(handle)
        wait_for(lambda: not handle.status().paused, 15, "libtorrent to resume the torrent")
        with socket.create_connection(("127.0.0.1", peer.port), timeout=5) as sock:
            sock.settimeout(0.5)
            conn = PeerConnection(layout)
            ia = conn.send(Handshake(info_hash, PEER_ID, OUR_BITS))
            hs = MSEHandshake.initiator(info_hash, policy=policy, initial_payload=ia)
            done = handshake(sock, hs)
            assert isinstance(done, HandshakeComplete) and done.method is method
            link = Link(sock, conn, hs.cipher)
            if done.trailing:  # b"" would mean EOF to the wire codec
                conn.receive_data(done.trailing)
            head = link.until(Handshake)
            assert isinstance(head[0], HandshakeHeader) and head[0].info_hash == info_hash
            link.send(HaveNone(), ExtendedHandshake(m={}, client="bitswarm-test"))
            link.until(HaveAll)
            link.send(Interested())
            link.until(Unchoke)
            wanted = []
            for index in range(layout.num_pieces):
                size = layout.piece_size(index)
                wanted += [(index, b, min(16384, size - b)) for b in range(0, size, 16384)]
            link.send(*(Request(*w) for w in wanted))
            got = bytearray(len(data))
            for _ in wanted:
                piece = link.until(Piece)[-1]
                assert isinstance(piece, Piece)
                start = piece.index * PIECE_LENGTH + piece.begin
                got[start : start + len(piece.data)] = piece.data
            assert bytes(got) == data


@pytest.mark.parametrize(
    ("lt_settings", "policy", "prefer_rc4", "method"),
    [
        (LT_RC4, EncryptionPolicy.REQUIRE, True, CryptoMethod.RC4),
        (LT_BOTH_PLAIN_FIRST, EncryptionPolicy.PREFER, True, CryptoMethod.RC4),
        (LT_BOTH_PLAIN_FIRST, EncryptionPolicy.PREFER, False, CryptoMethod.PLAINTEXT),
        (LT_PLAINTEXT_ONLY, EncryptionPolicy.PREFER, True, CryptoMethod.PLAINTEXT),
    ],
    ids=["rc4-require", "both-prefer", "both-prefer_plaintext", "plain-prefer"],
)
def test_seed_to_libtorrent(
    tmp_path: Path,
    lt_settings: dict[str, Any],
    policy: EncryptionPolicy,
    prefer_rc4: bool,
    method: CryptoMethod,
) -> None:
    torrent, info_hash, data, layout = make_torrent(tmp_path)
    (tmp_path / "leech").mkdir()
    with libtorrent_peer(**lt_settings) as peer, socket.create_server(("127.0.0.1", 0)) as server:
        handle = peer.add(torrent, tmp_path / "leech")
        handle.connect_peer(("127.0.0.1", server.getsockname()[1]))
        server.settimeout(15)
        sock, _ = server.accept()
        with sock:
            sock.settimeout(0.5)
            hs = MSEHandshake.responder(SkeyIndex([info_hash]), policy=policy, prefer_rc4=prefer_rc4)
            done = handshake(sock, hs)
            assert isinstance(done, HandshakeComplete)
            assert done.method is method and done.skey == info_hash
            assert done.initial_payload[:20] == b"\x13BitTorrent protocol"  # libtorrent's IA
            conn = PeerConnection()
            conn.receive_data(done.initial_payload + done.trailing)
            link = Link(sock, conn, hs.cipher)
            head = link.until(HandshakeHeader)[-1]
            assert isinstance(head, HandshakeHeader) and head.info_hash == info_hash
            conn.set_layout(layout)
            link.send(Handshake(info_hash, PEER_ID, OUR_BITS))
            link.until(Handshake)
            link.send(HaveAll(), ExtendedHandshake(m={}, client="bitswarm-test"), Unchoke())
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not handle.status().is_seeding:
                try:
                    events = link.until(Request, timeout=1.0)
                except AssertionError:
                    continue
                req = events[-1]
                assert isinstance(req, Request)
                start = req.index * PIECE_LENGTH + req.begin
                header = conn.send_piece_header(req.index, req.begin, req.length)
                link.write(header + data[start : start + req.length])
            assert handle.status().is_seeding
    assert (tmp_path / "leech" / "blob.bin").read_bytes() == data


@pytest.mark.parametrize(
    ("lt_settings", "policy", "error"),
    [
        # libtorrent offers plaintext only; we require RC4
        (LT_PLAINTEXT_ONLY, EncryptionPolicy.REQUIRE, "no common crypto method"),
        # libtorrent speaks plaintext BitTorrent; we require MSE
        ({"out_enc_policy": int(lt.enc_policy.disabled)}, EncryptionPolicy.REQUIRE, "refused"),
    ],
    ids=["plaintext_provide", "plaintext_bittorrent"],
)
def test_libtorrent_refused_by_require(
    tmp_path: Path, lt_settings: dict[str, Any], policy: EncryptionPolicy, error: str
) -> None:
    torrent, info_hash, _, _ = make_torrent(tmp_path)
    (tmp_path / "leech").mkdir()
    with libtorrent_peer(**lt_settings) as peer, socket.create_server(("127.0.0.1", 0)) as server:
        handle = peer.add(torrent, tmp_path / "leech")
        handle.connect_peer(("127.0.0.1", server.getsockname()[1]))
        server.settimeout(15)
        sock, _ = server.accept()
        with sock:
            sock.settimeout(0.5)
            hs = MSEHandshake.responder(SkeyIndex([info_hash]), policy=policy)
            with pytest.raises(MSEProtocolError, match=error):
                handshake(sock, hs)


def test_plaintext_bittorrent_from_libtorrent_passes_under_prefer(tmp_path: Path) -> None:
    torrent, info_hash, _, _ = make_torrent(tmp_path)
    (tmp_path / "leech").mkdir()
    with (
        libtorrent_peer(out_enc_policy=int(lt.enc_policy.disabled)) as peer,
        socket.create_server(("127.0.0.1", 0)) as server,
    ):
        handle = peer.add(torrent, tmp_path / "leech")
        handle.connect_peer(("127.0.0.1", server.getsockname()[1]))
        server.settimeout(15)
        sock, _ = server.accept()
        with sock:
            sock.settimeout(0.5)
            ev = handshake(sock, MSEHandshake.responder(SkeyIndex([info_hash])))
            assert isinstance(ev, PlaintextHandshake) and ev.data[:20] == b"\x13BitTorrent protocol"
