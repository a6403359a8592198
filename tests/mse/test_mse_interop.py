"""MSE against a real libtorrent (PyPI) on loopback, with encryption forced on its side: we download
from it through our initiator and seed to it through our responder, payload checked byte for byte,
for v1, v2 and hybrid torrents (the v2 SKEY is the truncated SHA-256 info-hash).

A small blocking driver joins a socket, the handshake, the wire codec and the payload cipher (the
session's asyncio transport does the same work; this file checks the protocol, not that code).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bitswarm.metainfo import make_torrent
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
    skey_for,
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
from realclients import LibtorrentPeer, libtorrent_peer, wait_for

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
LT_NO_MSE = {"out_enc_policy": int(lt.enc_policy.disabled)}


@dataclass
class Torrent:
    metainfo: bytes
    data: bytes
    layout: PieceLayout
    skeys: list[bytes]  # v1 hash and/or truncated v2 hash


def torrent(tmp: Path, version: str) -> Torrent:
    """One file under ``tmp/seed`` and a .torrent for it made by bitswarm.metainfo."""
    data = os.urandom(5 * PIECE_LENGTH + 1234)
    (tmp / "seed").mkdir()
    (tmp / "seed" / "blob.bin").write_bytes(data)
    made = make_torrent(tmp / "seed" / "blob.bin", version=version, piece_length=PIECE_LENGTH)  # type: ignore[arg-type]
    skeys = [skey_for(h) for h in (made.info_hash_v1, made.info_hash_v2) if h is not None]
    return Torrent(made.data, data, PieceLayout.uniform(PIECE_LENGTH, len(data)), skeys)


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


@contextlib.contextmanager
def dialled_by_libtorrent(
    tmp: Path, t: Torrent, settings: dict[str, Any]
) -> Iterator[tuple[Any, socket.socket]]:
    """A libtorrent leecher of ``t`` that dials us; yields its torrent handle and the accepted socket."""
    (tmp / "leech").mkdir()
    with libtorrent_peer(**settings) as peer, socket.create_server(("127.0.0.1", 0)) as server:
        handle = peer.add(t.metainfo, tmp / "leech")
        handle.connect_peer(("127.0.0.1", server.getsockname()[1]))
        server.settimeout(15)
        sock, _ = server.accept()
        with sock:
            sock.settimeout(0.5)
            yield handle, sock


def seeding(peer: LibtorrentPeer, t: Torrent, tmp: Path) -> Any:
    handle = peer.add(t.metainfo, tmp / "seed", seed_mode=True)
    peer.wait_seeding(handle)
    wait_for(lambda: not handle.status().paused, 15, "libtorrent to resume the torrent")
    return handle


@pytest.mark.parametrize(
    ("version", "key", "lt_settings", "policy", "method"),
    [
        ("v1", 0, LT_RC4, EncryptionPolicy.REQUIRE, CryptoMethod.RC4),
        ("v1", 0, LT_RC4, EncryptionPolicy.PREFER, CryptoMethod.RC4),
        ("v1", 0, LT_BOTH_PLAIN_FIRST, EncryptionPolicy.REQUIRE, CryptoMethod.RC4),
        ("v1", 0, LT_BOTH_PLAIN_FIRST, EncryptionPolicy.PREFER, CryptoMethod.PLAINTEXT),  # lt's default
        ("v1", 0, LT_BOTH_RC4_FIRST, EncryptionPolicy.PREFER, CryptoMethod.RC4),
        ("v1", 0, LT_PLAINTEXT_ONLY, EncryptionPolicy.PREFER, CryptoMethod.PLAINTEXT),
        ("v2", 0, LT_RC4, EncryptionPolicy.REQUIRE, CryptoMethod.RC4),
        ("hybrid", 0, LT_RC4, EncryptionPolicy.REQUIRE, CryptoMethod.RC4),
        ("hybrid", 1, LT_RC4, EncryptionPolicy.REQUIRE, CryptoMethod.RC4),
    ],
    ids=[
        "v1-rc4-require",
        "v1-rc4-prefer",
        "v1-both-require",
        "v1-both-prefer",
        "v1-both_rc4first-prefer",
        "v1-plain-prefer",
        "v2-rc4-require",
        "hybrid_v1key-rc4-require",
        "hybrid_v2key-rc4-require",
    ],
)
def test_download_from_libtorrent(
    tmp_path: Path,
    version: str,
    key: int,
    lt_settings: dict[str, Any],
    policy: EncryptionPolicy,
    method: CryptoMethod,
) -> None:
    t = torrent(tmp_path, version)
    skey = t.skeys[key]
    with libtorrent_peer(**lt_settings) as peer:
        seeding(peer, t, tmp_path)
        with socket.create_connection(("127.0.0.1", peer.port), timeout=5) as sock:
            sock.settimeout(0.5)
            conn = PeerConnection(t.layout)
            ia = conn.send(Handshake(skey, PEER_ID, OUR_BITS))
            hs = MSEHandshake.initiator(skey, policy=policy, initial_payload=ia)
            done = handshake(sock, hs)
            assert isinstance(done, HandshakeComplete) and done.method is method
            link = Link(sock, conn, hs.cipher)
            if done.trailing:  # b"" would mean EOF to the wire codec
                conn.receive_data(done.trailing)
            head = link.until(Handshake)
            assert isinstance(head[0], HandshakeHeader) and head[0].info_hash == skey
            link.send(HaveNone(), ExtendedHandshake(m={}, client="bitswarm-test"))
            link.until(HaveAll)
            link.send(Interested())
            link.until(Unchoke)
            wanted = []
            for index in range(t.layout.num_pieces):
                size = t.layout.piece_size(index)
                wanted += [(index, b, min(16384, size - b)) for b in range(0, size, 16384)]
            link.send(*(Request(*w) for w in wanted))
            got = bytearray(len(t.data))
            for _ in wanted:
                piece = link.until(Piece)[-1]
                assert isinstance(piece, Piece)
                start = piece.index * PIECE_LENGTH + piece.begin
                got[start : start + len(piece.data)] = piece.data
            assert bytes(got) == t.data


@pytest.mark.parametrize(
    ("version", "lt_settings", "policy", "prefer_rc4", "method"),
    [
        ("v1", LT_RC4, EncryptionPolicy.REQUIRE, True, CryptoMethod.RC4),
        ("v1", LT_BOTH_PLAIN_FIRST, EncryptionPolicy.PREFER, True, CryptoMethod.RC4),
        ("v1", LT_BOTH_PLAIN_FIRST, EncryptionPolicy.PREFER, False, CryptoMethod.PLAINTEXT),
        ("v1", LT_PLAINTEXT_ONLY, EncryptionPolicy.PREFER, True, CryptoMethod.PLAINTEXT),
        ("v2", LT_RC4, EncryptionPolicy.REQUIRE, True, CryptoMethod.RC4),
        ("hybrid", LT_RC4, EncryptionPolicy.REQUIRE, True, CryptoMethod.RC4),
    ],
    ids=["v1-rc4-require", "v1-both-prefer", "v1-both-prefer_plaintext", "v1-plain-prefer", "v2", "hybrid"],
)
def test_seed_to_libtorrent(
    tmp_path: Path,
    version: str,
    lt_settings: dict[str, Any],
    policy: EncryptionPolicy,
    prefer_rc4: bool,
    method: CryptoMethod,
) -> None:
    t = torrent(tmp_path, version)
    with dialled_by_libtorrent(tmp_path, t, lt_settings) as (handle, sock):
        hs = MSEHandshake.responder(SkeyIndex(t.skeys), policy=policy, prefer_rc4=prefer_rc4)
        done = handshake(sock, hs)
        assert isinstance(done, HandshakeComplete)
        assert done.method is method and done.skey in t.skeys
        assert done.initial_payload[:20] == b"\x13BitTorrent protocol"  # libtorrent's IA
        conn = PeerConnection()
        conn.receive_data(done.initial_payload + done.trailing)
        link = Link(sock, conn, hs.cipher)
        head = link.until(HandshakeHeader)[-1]
        assert isinstance(head, HandshakeHeader) and head.info_hash == done.skey
        conn.set_layout(t.layout)
        link.send(Handshake(done.skey, PEER_ID, OUR_BITS))
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
            link.write(header + t.data[start : start + req.length])
        assert handle.status().is_seeding
    assert (tmp_path / "leech" / "blob.bin").read_bytes() == t.data


@pytest.mark.parametrize(
    ("lt_settings", "error"),
    [
        (LT_PLAINTEXT_ONLY, "no common crypto method"),  # libtorrent offers plaintext only
        (LT_NO_MSE, "plaintext BitTorrent handshake refused"),  # libtorrent does not speak MSE
    ],
    ids=["plaintext_provide", "plaintext_bittorrent"],
)
def test_require_refuses_libtorrent_without_rc4(
    tmp_path: Path, lt_settings: dict[str, Any], error: str
) -> None:
    t = torrent(tmp_path, "v1")
    with dialled_by_libtorrent(tmp_path, t, lt_settings) as (_, sock):
        hs = MSEHandshake.responder(SkeyIndex(t.skeys), policy=EncryptionPolicy.REQUIRE)
        with pytest.raises(MSEProtocolError, match=error):
            handshake(sock, hs)


def test_plaintext_bittorrent_from_libtorrent_passes_under_prefer(tmp_path: Path) -> None:
    t = torrent(tmp_path, "v1")
    with dialled_by_libtorrent(tmp_path, t, LT_NO_MSE) as (_, sock):
        ev = handshake(sock, MSEHandshake.responder(SkeyIndex(t.skeys)))
        assert isinstance(ev, PlaintextHandshake) and ev.data[:20] == b"\x13BitTorrent protocol"
