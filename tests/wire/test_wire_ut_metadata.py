"""BEP 9 ut_metadata: message codec, assembler (out of order, timeouts, rejects, bad data) and server."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.errors import RemoteProtocolError
from bitswarm.metainfo import create_torrent, parse_info, parse_torrent
from bitswarm.wire import (
    NEED_DATA,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    HandshakeHeader,
    HaveNone,
    LocalWireError,
    PeerConnection,
    Reserved,
    WireProtocolError,
)
from bitswarm.wire.ut_metadata import (
    MAX_METADATA_SIZE,
    METADATA_PIECE_SIZE,
    ExtensionProtocolError,
    MetadataAssembler,
    MetadataComplete,
    MetadataData,
    MetadataFailed,
    MetadataReject,
    MetadataRequest,
    MetadataServer,
    MetadataUnknown,
    decode_metadata_message,
    encode_metadata_message,
    metadata_piece_count,
)


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of 500 small files: its info dicts are larger than two metadata pieces."""
    root: Path = tmp_path_factory.mktemp("meta") / "d"
    root.mkdir()
    for i in range(500):
        (root / f"file_with_a_reasonably_long_name_number_{i}.bin").write_bytes(b"x" * (i % 7 + 1))
    return root


@pytest.fixture(scope="module")
def torrent_files(seed_dir: Path) -> dict[str, bytes]:
    """Real .torrent files (v1, v2, hybrid) from create_torrent."""
    return {v: create_torrent(seed_dir, version=v) for v in ("v1", "v2", "hybrid")}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def torrents(torrent_files: dict[str, bytes]) -> dict[str, tuple[bytes, bytes | None, bytes | None]]:
    """Version -> (raw info dict, v1 info-hash, v2 info-hash)."""
    out = {}
    for version, data in torrent_files.items():
        t = parse_torrent(data)
        assert len(t.info.raw) > 2 * METADATA_PIECE_SIZE
        out[version] = (t.info.raw, t.info_hash_v1, t.info_hash_v2)
    return out


# --- codec ----------------------------------------------------------------------------------------


def test_bep9_examples() -> None:
    assert encode_metadata_message(MetadataRequest(0)) == b"d8:msg_typei0e5:piecei0ee"
    assert decode_metadata_message(b"d8:msg_typei0e5:piecei0ee") == MetadataRequest(0)
    assert decode_metadata_message(b"d8:msg_typei2e5:piecei3ee") == MetadataReject(3)
    payload = b"d8:msg_typei1e5:piecei0e10:total_sizei5ee" + b"hello"
    assert decode_metadata_message(payload) == MetadataData(0, 5, b"hello")
    assert encode_metadata_message(MetadataData(0, 5, b"hello")) == payload


@given(
    total=st.integers(1, MAX_METADATA_SIZE),
    data=st.data(),
)
def test_data_round_trip(total: int, data: st.DataObject) -> None:
    n = metadata_piece_count(total)
    piece = data.draw(st.integers(0, n - 1))
    length = METADATA_PIECE_SIZE if piece < n - 1 else total - piece * METADATA_PIECE_SIZE
    msg = MetadataData(piece, total, bytes([piece % 256]) * length)
    assert decode_metadata_message(encode_metadata_message(msg)) == msg


@given(piece=st.integers(0, MAX_METADATA_SIZE // METADATA_PIECE_SIZE - 1))
def test_request_reject_round_trip(piece: int) -> None:
    for msg in (MetadataRequest(piece), MetadataReject(piece)):
        assert decode_metadata_message(encode_metadata_message(msg)) == msg


def test_unknown_msg_type_is_ignored_not_an_error() -> None:
    assert decode_metadata_message(b"d8:msg_typei7e5:piecei0ee") == MetadataUnknown(7)
    assert decode_metadata_message(b"d8:msg_typei-1ee") == MetadataUnknown(-1)


def test_unknown_keys_ignored() -> None:
    assert decode_metadata_message(b"d8:msg_typei2e5:piecei1e10:total_sizei99ee") == MetadataReject(1)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"le",
        b"i0e",
        b"d5:piecei0ee",  # no msg_type
        b"d8:msg_type1:05:piecei0ee",  # msg_type not an int
        b"d8:msg_typei0ee",  # no piece
        b"d8:msg_typei0e5:piecei-1ee",  # negative piece
        b"d8:msg_typei0e5:piecei4096ee",  # beyond 64 MiB / 16 KiB
        b"d8:msg_typei0e5:piecei0eexyz",  # bytes after a request
        b"d8:msg_typei2e5:piecei0eex",  # bytes after a reject
        b"d8:msg_typei1e5:piecei0ee",  # data without total_size
        b"d8:msg_typei1e5:piecei0e10:total_sizei0eex",  # empty metadata
        b"d8:msg_typei1e5:piecei0e10:total_sizei67108865ee",  # > 64 MiB
        b"d8:msg_typei1e5:piecei1e10:total_sizei5eehello",  # piece beyond total
        b"d8:msg_typei1e5:piecei0e10:total_sizei5eehell",  # short
        b"d8:msg_typei1e5:piecei0e10:total_sizei5eehello!",  # long
        b"d8:msg_typei1e5:piecei0e10:total_sizei20000ee" + b"x" * 100,  # non-last piece not 16 KiB
        b"d5:piecei0e8:msg_typei0ee",  # unsorted keys (strict bencode)
        b"d8:msg_typei0e5:piecei0e",  # truncated
        b"d" + b"9:abcdefghii1e" * 100 + b"e",  # header longer than any BEP 9 header
    ],
)
def test_garbage_raises_typed_error(payload: bytes) -> None:
    with pytest.raises(ExtensionProtocolError):
        decode_metadata_message(payload)


def test_error_hierarchy() -> None:
    assert issubclass(ExtensionProtocolError, WireProtocolError)
    assert issubclass(ExtensionProtocolError, RemoteProtocolError)
    assert ExtensionProtocolError("x").hint == "close"


@given(st.binary(max_size=300))
def test_fuzz_only_typed_error(payload: bytes) -> None:
    try:
        msg = decode_metadata_message(payload)
    except ExtensionProtocolError:
        return
    if not isinstance(msg, MetadataUnknown):
        assert decode_metadata_message(encode_metadata_message(msg)) == msg


@given(st.binary(max_size=60))
def test_fuzz_after_valid_prefix(tail: bytes) -> None:
    for head in (b"d8:msg_typei1e5:piecei0e10:total_sizei", b"d8:msg_typei0e5:piecei", b"d8:msg_type"):
        with contextlib.suppress(ExtensionProtocolError):
            decode_metadata_message(head + tail)


def test_local_errors() -> None:
    with pytest.raises(LocalWireError):
        encode_metadata_message(MetadataRequest(-1))
    with pytest.raises(LocalWireError):
        encode_metadata_message(MetadataData(0, 5, b"hell"))
    with pytest.raises(LocalWireError):
        encode_metadata_message(MetadataData(0, MAX_METADATA_SIZE + 1, b"x" * METADATA_PIECE_SIZE))


# --- assembler ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_assembler_out_of_order_from_two_peers(torrents: dict, version: str) -> None:
    raw, h1, h2 = torrents[version]
    server = MetadataServer(raw)
    asm = MetadataAssembler(h1, h2, len(raw))
    assert asm.num_pieces == server.num_pieces == metadata_piece_count(len(raw)) >= 3
    asked: dict[int, str] = {}
    for peer in ("A", "B") * asm.num_pieces:
        i = asm.next_request(peer, now=0.0)
        if i is not None:
            asked[i] = peer
    assert sorted(asked) == list(range(asm.num_pieces))
    assert asm.next_request("C", now=1.0) is None  # all outstanding, none timed out
    result = None
    for i in reversed(range(asm.num_pieces)):  # answers arrive last piece first
        reply = server.respond(MetadataRequest(i), asked[i])
        assert isinstance(reply, MetadataData)
        wire = decode_metadata_message(encode_metadata_message(reply))
        assert isinstance(wire, MetadataData)
        assert result is None
        result = asm.receive(asked[i], wire.piece, wire.data)
    assert isinstance(result, MetadataComplete)
    assert result.raw_info == raw
    _info, p1, p2 = parse_info(result.raw_info)
    assert (p1, p2) == (h1, h2)


def test_assembler_v1_hash_only_for_hybrid(torrents: dict) -> None:
    raw, h1, _ = torrents["hybrid"]
    asm = MetadataAssembler(h1, None, len(raw))
    server = MetadataServer(raw)
    results = [asm.receive("A", i, server.piece(i) or b"") for i in range(asm.num_pieces)]
    assert results[:-1] == [None] * (asm.num_pieces - 1)
    assert results[-1] == MetadataComplete(raw)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_assembler_wrong_data_resets_and_names_suppliers(torrents: dict, version: str) -> None:
    raw, h1, h2 = torrents[version]
    server = MetadataServer(raw)
    asm = MetadataAssembler(h1, h2, len(raw))
    n = asm.num_pieces
    for i in range(n - 1):
        assert asm.receive("honest" if i else "other", i, server.piece(i) or b"") is None
    bad = bytearray(server.piece(n - 1) or b"")
    bad[0] ^= 1
    result = asm.receive("liar", n - 1, bytes(bad))
    assert result == MetadataFailed(frozenset({"honest", "other", "liar"}))
    assert asm.have_count == 0
    # starts over: every piece is requestable again, and good data completes it
    assert asm.next_request("honest", 0.0) == 0
    for i in range(n):
        result = asm.receive("honest", i, server.piece(i) or b"")
    assert result == MetadataComplete(raw)


def test_assembler_hybrid_needs_both_hashes(torrents: dict) -> None:
    raw, h1, _h2 = torrents["hybrid"]
    wrong_v2 = hashlib.sha256(b"another torrent").digest()
    asm = MetadataAssembler(h1, wrong_v2, len(raw))
    server = MetadataServer(raw)
    for i in range(asm.num_pieces):
        result = asm.receive("A", i, server.piece(i) or b"")
    assert result == MetadataFailed(frozenset({"A"}))


def test_assembler_timeouts_and_rejects() -> None:
    raw = b"d4:name1:x" + b"e" * (2 * METADATA_PIECE_SIZE)  # 3 pieces; content irrelevant here
    asm = MetadataAssembler(hashlib.sha1(raw).digest(), None, len(raw), timeout=5.0)
    assert [asm.next_request("A", 0.0) for _ in range(4)] == [0, 1, 2, None]
    assert asm.outstanding("A") == [0, 1, 2]
    assert asm.next_request("B", 4.9) is None
    assert asm.next_request("B", 5.0) == 0  # A's request for 0 timed out
    assert asm.next_request("A", 5.0) is None  # A's own expired requests are not re-given to A
    asm.reject("A", 1)
    assert asm.next_request("A", 5.0) is None  # A rejected 1
    assert asm.next_request("B", 5.0) == 1
    asm.drop_peer("A")
    assert asm.outstanding("A") == []
    assert asm.next_request("C", 5.0) == 2
    # a late answer from A for piece 0 (now B's) is still accepted; B's duplicate is ignored
    asm.receive("A", 0, raw[:METADATA_PIECE_SIZE])
    assert asm.receive("B", 0, raw[:METADATA_PIECE_SIZE]) is None
    assert asm.have_count == 1
    assert asm.outstanding("B") == [1]
    asm.receive("B", 1, raw[METADATA_PIECE_SIZE : 2 * METADATA_PIECE_SIZE])
    assert asm.receive("C", 2, raw[2 * METADATA_PIECE_SIZE :]) == MetadataComplete(raw)


def test_assembler_rejects_bad_piece_shapes() -> None:
    asm = MetadataAssembler(b"\0" * 20, None, METADATA_PIECE_SIZE + 10)
    with pytest.raises(ExtensionProtocolError):
        asm.receive("A", 2, b"x")
    with pytest.raises(ExtensionProtocolError):
        asm.receive("A", 1, b"x" * 11)
    with pytest.raises(ExtensionProtocolError):
        asm.receive("A", 0, b"x" * 10)
    for size in (0, -1, MAX_METADATA_SIZE + 1):
        with pytest.raises(ExtensionProtocolError):
            MetadataAssembler(b"\0" * 20, None, size)
    with pytest.raises(ValueError):
        MetadataAssembler(None, None, 10)


# --- server ---------------------------------------------------------------------------------------


def test_server_slices_and_flood_protection(torrents: dict) -> None:
    raw = torrents["v1"][0]
    server = MetadataServer(raw, max_requests_per_peer=4)
    assert b"".join(server.piece(i) or b"" for i in range(server.num_pieces)) == raw
    assert server.respond(MetadataRequest(server.num_pieces)) == MetadataReject(server.num_pieces)
    answers = [server.respond(MetadataRequest(0), "A") for _ in range(5)]
    assert all(isinstance(a, MetadataData) for a in answers[:4])
    assert answers[4] == MetadataReject(0)
    assert isinstance(server.respond(MetadataRequest(0), "B"), MetadataData)
    server.forget("A")
    assert isinstance(server.respond(MetadataRequest(0), "A"), MetadataData)


def test_encoded_data_fits_extended_limit(torrents: dict) -> None:
    from bitswarm.wire import MAX_EXTENDED_MESSAGE

    raw = torrents["hybrid"][0]
    server = MetadataServer(raw)
    msg = server.respond(MetadataRequest(0))
    assert len(encode_metadata_message(msg)) < MAX_EXTENDED_MESSAGE


# --- interop: libtorrent (PyPI) on loopback ----------------------------------------------------------

OUR_UT_METADATA = 3
PEER_ID = b"-BS0001-utmetatest01"


class Link:
    """A blocking loopback socket driven through the wire codec, every read bounded by a deadline."""

    def __init__(self, sock: socket.socket, conn: PeerConnection) -> None:
        self.sock, self.conn = sock, conn
        sock.settimeout(0.5)

    def send(self, *events: Event) -> None:
        self.sock.sendall(b"".join(self.conn.send(e) for e in events))

    def until(self, want: type[Event], timeout: float = 15.0) -> list[Event]:
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.conn.next_event()
            if ev is NEED_DATA:
                try:
                    chunk = self.sock.recv(1 << 20)
                except TimeoutError:
                    continue
                assert chunk, f"peer closed; saw {seen}"
                self.conn.receive_data(chunk)
                continue
            assert isinstance(ev, Event)
            seen.append(ev)
            if isinstance(ev, want):
                return seen
        raise AssertionError(f"no {want.__name__} within {timeout} s; saw {[type(e).__name__ for e in seen]}")


@pytest.mark.interop
def test_fetch_metadata_from_libtorrent(seed_dir: Path, torrent_files: dict, torrents: dict) -> None:
    """A magnet-style fetch: only the info-hashes known, the hybrid info dict comes from a libtorrent seed."""
    pytest.importorskip("libtorrent")
    from realclients import libtorrent_peer, wait_for

    raw, h1, h2 = torrents["hybrid"]
    with libtorrent_peer() as peer:
        handle = peer.add(torrent_files["hybrid"], seed_dir.parent, seed_mode=True)
        peer.wait_seeding(handle)
        wait_for(lambda: not handle.status().paused, 15, "libtorrent to resume the torrent")
        with socket.create_connection(("127.0.0.1", peer.port), timeout=5) as sock:
            link = Link(sock, PeerConnection())
            link.send(Handshake(h1, PEER_ID, Reserved.make(fast=True, extension_protocol=True)))
            link.until(Handshake)
            link.send(
                HaveNone(), ExtendedHandshake(m={"ut_metadata": OUR_UT_METADATA}, client="bitswarm-test")
            )
            theirs = link.until(ExtendedHandshake)[-1]
            assert isinstance(theirs, ExtendedHandshake) and theirs.metadata_size == len(raw)
            lt_id = theirs.m["ut_metadata"]
            asm = MetadataAssembler(h1, h2, theirs.metadata_size)
            now = time.monotonic()
            while (i := asm.next_request("lt", now)) is not None:
                link.send(Extended(lt_id, encode_metadata_message(MetadataRequest(i))))
            result = None
            for _ in range(asm.num_pieces):
                ev = link.until(Extended)[-1]
                assert isinstance(ev, Extended) and ev.ext_id == OUR_UT_METADATA
                msg = decode_metadata_message(ev.payload)
                assert isinstance(msg, MetadataData) and msg.total_size == len(raw)
                result = asm.receive("lt", msg.piece, msg.data)
            assert result == MetadataComplete(raw)


@pytest.mark.interop
def test_serve_metadata_to_libtorrent_magnet(tmp_path: Path, torrents: dict) -> None:
    """libtorrent added by magnet (btih only) gets the info dict from our MetadataServer and accepts it."""
    lt = pytest.importorskip("libtorrent")
    from realclients import libtorrent_peer

    raw, h1, _ = torrents["hybrid"]
    md = MetadataServer(raw)
    plain = {"out_enc_policy": int(lt.enc_policy.disabled)}
    with libtorrent_peer(**plain) as peer, socket.create_server(("127.0.0.1", 0)) as server:
        params = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + h1.hex())
        params.save_path = str(tmp_path)
        handle = peer.session.add_torrent(params)
        handle.connect_peer(("127.0.0.1", server.getsockname()[1]))
        server.settimeout(15)
        sock, _ = server.accept()
        with sock:
            link = Link(sock, PeerConnection())
            header = link.until(HandshakeHeader)[-1]
            assert isinstance(header, HandshakeHeader) and header.info_hash == h1
            link.send(Handshake(h1, PEER_ID, Reserved.make(fast=True, extension_protocol=True)))
            link.until(Handshake)
            ours = ExtendedHandshake(m={"ut_metadata": OUR_UT_METADATA}, metadata_size=len(raw))
            link.send(HaveNone(), ours)
            lt_id = None
            served = 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not handle.status().has_metadata:
                try:
                    events = link.until(Extended, timeout=1.0)
                except AssertionError:
                    continue
                for ev in events:
                    if isinstance(ev, ExtendedHandshake):
                        lt_id = ev.m["ut_metadata"]
                    if isinstance(ev, Extended) and ev.ext_id == OUR_UT_METADATA:
                        req = decode_metadata_message(ev.payload)
                        assert isinstance(req, MetadataRequest) and lt_id is not None
                        reply = md.respond(req, "lt")
                        link.send(Extended(lt_id, encode_metadata_message(reply)))
                        served += 1
            assert handle.status().has_metadata, f"libtorrent has no metadata after {served} pieces served"
            assert served >= md.num_pieces
            ti = handle.torrent_file()
            assert ti.info_hashes().v1.to_bytes() == h1
            assert ti.info_hashes().has_v2()  # it took the whole hybrid info dict
