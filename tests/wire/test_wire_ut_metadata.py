"""BEP 9 ut_metadata: message codec, assembler (out of order, timeouts, rejects, bad data) and server."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.errors import RemoteProtocolError
from bitswarm.metainfo import create_torrent, parse_info, parse_torrent
from bitswarm.wire import LocalWireError, WireProtocolError
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
def torrents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, bytes | None, bytes | None]]:
    """Real info dicts (v1, v2, hybrid) from create_torrent, each larger than one metadata piece."""
    root: Path = tmp_path_factory.mktemp("meta") / "d"
    root.mkdir()
    for i in range(500):
        (root / f"file_with_a_reasonably_long_name_number_{i}.bin").write_bytes(b"x" * (i % 7 + 1))
    out = {}
    for version in ("v1", "v2", "hybrid"):
        t = parse_torrent(create_torrent(root, version=version))  # type: ignore[arg-type]
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
