"""The codec against a real libtorrent (PyPI) on loopback, both as initiator and as receiver."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest

from bitswarm.bencode import encode
from bitswarm.wire import (
    NEED_DATA,
    Bitfield,
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
PEER_ID = b"-BS0001-wiretest0001"


def make_torrent(tmp: Path) -> tuple[bytes, bytes, bytes, PieceLayout]:
    """A single-file v1 torrent (BEP 3) built by hand, and its payload on disk under ``tmp/seed``."""
    data = os.urandom(5 * PIECE_LENGTH + 1234)
    (tmp / "seed").mkdir()
    (tmp / "seed" / "blob.bin").write_bytes(data)
    pieces = b"".join(
        hashlib.sha1(data[i : i + PIECE_LENGTH]).digest() for i in range(0, len(data), PIECE_LENGTH)
    )
    info = {b"name": b"blob.bin", b"length": len(data), b"piece length": PIECE_LENGTH, b"pieces": pieces}
    torrent = encode({b"info": info})
    return torrent, hashlib.sha1(encode(info)).digest(), data, PieceLayout.uniform(PIECE_LENGTH, len(data))


class Link:
    """A blocking loopback socket driven through the codec, every read bounded by a deadline."""

    def __init__(self, sock: socket.socket, conn: PeerConnection) -> None:
        self.sock, self.conn = sock, conn
        sock.settimeout(0.5)

    def send(self, *events: Event) -> None:
        self.sock.sendall(b"".join(self.conn.send(e) for e in events))

    def until(self, want: type[Event], timeout: float = 15.0) -> list[Event]:
        """Events up to and including the first ``want``."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.conn.next_event()
            if ev is NEED_DATA:
                try:
                    chunk = self.sock.recv(1 << 20)
                except TimeoutError:
                    continue
                self.conn.receive_data(chunk)
                assert chunk, f"peer closed; saw {seen}"
                continue
            assert isinstance(ev, Event)
            seen.append(ev)
            if isinstance(ev, want):
                return seen
        raise AssertionError(f"no {want.__name__} within {timeout} s; saw {[type(e).__name__ for e in seen]}")


def test_download_from_libtorrent(tmp_path: Path) -> None:
    torrent, info_hash, data, layout = make_torrent(tmp_path)
    with libtorrent_peer() as peer:
        handle = peer.add(torrent, tmp_path / "seed", seed_mode=True)
        peer.wait_seeding(handle)
        wait_for(lambda: not handle.status().paused, 15, "libtorrent to resume the torrent")
        with socket.create_connection(("127.0.0.1", peer.port), timeout=5) as sock:
            link = Link(sock, PeerConnection(layout))
            link.send(Handshake(info_hash, PEER_ID, OUR_BITS))
            head = link.until(Handshake)
            assert isinstance(head[0], HandshakeHeader) and head[0].info_hash == info_hash
            assert link.conn.fast and link.conn.extension_protocol
            link.send(HaveNone(), ExtendedHandshake(m={"ut_metadata": 1}, client="bitswarm-test"))
            first = link.until(HaveAll)  # libtorrent announces a complete seed with have_all (BEP 6)
            link.send(Interested())
            events = first + link.until(Unchoke)
            ext = [e for e in events if isinstance(e, ExtendedHandshake)]
            assert ext and ext[0].client and "ut_metadata" in ext[0].m
            got = bytearray(len(data))
            wanted = []
            for index in range(layout.num_pieces):
                size = layout.piece_size(index)
                wanted += [(index, b, min(16384, size - b)) for b in range(0, size, 16384)]
            link.send(*(Request(*w) for w in wanted))
            for _ in wanted:
                piece = link.until(Piece)[-1]
                assert isinstance(piece, Piece)
                start = piece.index * PIECE_LENGTH + piece.begin
                got[start : start + len(piece.data)] = piece.data
            assert bytes(got) == data
        assert handle.is_valid()


def test_seed_to_libtorrent(tmp_path: Path) -> None:
    torrent, info_hash, data, layout = make_torrent(tmp_path)
    (tmp_path / "leech").mkdir()
    # libtorrent tries MSE/PE (obfuscation) first on outgoing connections; the wire codec is plain BEP 3.
    plain = {"out_enc_policy": int(lt.enc_policy.disabled)}
    with libtorrent_peer(**plain) as peer, socket.create_server(("127.0.0.1", 0)) as server:
        handle = peer.add(torrent, tmp_path / "leech")
        handle.connect_peer(("127.0.0.1", server.getsockname()[1]))
        server.settimeout(15)
        sock, _ = server.accept()
        with sock:
            conn = PeerConnection()
            link = Link(sock, conn)
            header = link.until(HandshakeHeader)[-1]
            assert isinstance(header, HandshakeHeader) and header.info_hash == info_hash
            conn.set_layout(layout)  # a session would look the torrent up here
            link.send(Handshake(header.info_hash, PEER_ID, OUR_BITS))
            link.until(Handshake)
            link.send(HaveAll(), ExtendedHandshake(m={}, client="bitswarm-test"), Unchoke())
            served = 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not handle.status().is_seeding:
                try:
                    events = link.until(Request, timeout=1.0)
                except AssertionError:
                    continue
                for ev in events:
                    assert not isinstance(ev, Bitfield | HaveAll)  # libtorrent has nothing yet
                req = events[-1]
                assert isinstance(req, Request) and not req.oversized
                start = req.index * PIECE_LENGTH + req.begin
                header_bytes = conn.send_piece_header(req.index, req.begin, req.length)
                sock.sendmsg([header_bytes, data[start : start + req.length]])
                served += 1
            assert handle.status().is_seeding, f"libtorrent did not finish ({served} blocks served)"
    assert (tmp_path / "leech" / "blob.bin").read_bytes() == data
