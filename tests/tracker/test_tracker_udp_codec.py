"""BEP 15 codec: exact layouts, round trips both directions, and garbage only ever raising the typed error."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.errors import LocalProtocolError, RemoteProtocolError
from bitswarm.tracker.udp_codec import (
    MAX_SCRAPE_HASHES,
    PROTOCOL_ID,
    Action,
    AnnounceRequest,
    AnnounceResponse,
    ConnectRequest,
    ConnectResponse,
    ErrorResponse,
    Event,
    ScrapeRequest,
    ScrapeResponse,
    ScrapeStats,
    TrackerEncodeError,
    TrackerProtocolError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    peek_transaction_id,
)

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i63 = st.integers(0, 2**63 - 1)
h20 = st.binary(min_size=20, max_size=20)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
port = st.integers(0, 65535)

announce_requests = st.builds(
    AnnounceRequest,
    connection_id=u64,
    transaction_id=u32,
    info_hash=h20,
    peer_id=h20,
    downloaded=i63,
    left=i63,
    uploaded=i63,
    event=st.sampled_from(Event),
    key=u32,
    port=port,
    ip=st.none() | ipv4.filter(lambda a: a != "0.0.0.0"),
    num_want=st.integers(-1, 2**31 - 1),
)
requests = st.one_of(
    st.builds(ConnectRequest, u32),
    announce_requests,
    st.builds(ScrapeRequest, u64, u32, st.lists(h20, min_size=1, max_size=MAX_SCRAPE_HASHES).map(tuple)),
)


def _responses(ip: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    return st.one_of(
        st.builds(ConnectResponse, u32, u64),
        st.builds(
            AnnounceResponse, u32, u32, u32, u32, st.lists(st.tuples(ip, port), max_size=30).map(tuple)
        ),
        st.builds(
            ScrapeResponse, u32, st.lists(st.builds(ScrapeStats, u32, u32, u32), max_size=74).map(tuple)
        ),
        st.builds(ErrorResponse, u32, st.text(max_size=100)),
    )


def test_connect_request_layout() -> None:
    data = encode_request(ConnectRequest(0xDEADBEEF))
    assert data == bytes.fromhex("0000041727101980") + b"\0\0\0\0" + bytes.fromhex("deadbeef")
    assert decode_request(data) == ConnectRequest(0xDEADBEEF)


def test_announce_request_layout_is_98_bytes_with_fields_in_bep15_order() -> None:
    req = AnnounceRequest(
        connection_id=7,
        transaction_id=9,
        info_hash=b"I" * 20,
        peer_id=b"P" * 20,
        downloaded=1,
        left=2,
        uploaded=3,
        event=Event.STARTED,
        key=0x01020304,
        port=6881,
        ip="10.0.0.1",
    )
    data = encode_request(req)
    assert len(data) == 98
    assert struct.unpack(">QII", data[:16]) == (7, 1, 9)
    assert data[16:36] == b"I" * 20 and data[36:56] == b"P" * 20
    assert struct.unpack(">QQQIIIiH", data[56:]) == (1, 2, 3, 2, 0x0A000001, 0x01020304, -1, 6881)
    assert decode_request(data) == req
    assert decode_request(data + b"\x02\x05/path") == req  # BEP 41 options after the fixed part


def test_announce_response_peer_size_follows_socket_family() -> None:
    v4 = AnnounceResponse(1, 1800, 3, 4, (("1.2.3.4", 6881), ("5.6.7.8", 1)))
    data = encode_response(v4)
    assert len(data) == 20 + 2 * 6
    assert data[20:26] == bytes([1, 2, 3, 4, 0x1A, 0xE1])
    assert decode_response(data, expecting=Action.ANNOUNCE) == v4
    v6 = AnnounceResponse(1, 1800, 3, 4, (("::1", 6881), ("2001:db8::5", 80)))
    data6 = encode_response(v6, ipv6=True)
    assert len(data6) == 20 + 2 * 18
    assert decode_response(data6, ipv6=True) == v6
    with pytest.raises(TrackerProtocolError):  # 35 bytes of peers is not n*18
        decode_response(data6[:-1], ipv6=True)
    with pytest.raises(TrackerEncodeError):
        encode_response(v6)  # an IPv6 peer cannot go in a 6-byte entry


def test_scrape_and_error() -> None:
    req = ScrapeRequest(5, 6, (b"a" * 20, b"b" * 20))
    assert len(encode_request(req)) == 16 + 40
    assert decode_request(encode_request(req)) == req
    resp = ScrapeResponse(6, (ScrapeStats(1, 2, 3), ScrapeStats(4, 5, 6)))
    assert encode_response(resp)[8:20] == struct.pack(">III", 1, 2, 3)
    assert decode_response(encode_response(resp), expecting=Action.SCRAPE) == resp
    err = ErrorResponse(6, "torrent not registered")
    assert decode_response(encode_response(err), expecting=Action.SCRAPE) == err
    assert peek_transaction_id(encode_response(err)) == 6


def test_typed_errors() -> None:
    with pytest.raises(TrackerProtocolError):
        decode_request(b"\0" * 15)
    with pytest.raises(TrackerProtocolError):  # connect without the magic
        decode_request(struct.pack(">QII", 1, 0, 1))
    with pytest.raises(TrackerProtocolError):  # unknown action
        decode_request(struct.pack(">QII", 1, 9, 1))
    with pytest.raises(TrackerProtocolError):  # short announce
        decode_request(struct.pack(">QII", 1, 1, 1) + b"\0" * 50)
    with pytest.raises(TrackerProtocolError):  # too many hashes
        decode_request(struct.pack(">QII", 1, 2, 1) + b"\0" * 20 * (MAX_SCRAPE_HASHES + 1))
    with pytest.raises(TrackerProtocolError):  # wrong action for what we asked
        decode_response(encode_response(ConnectResponse(1, 2)), expecting=Action.ANNOUNCE)
    with pytest.raises(TrackerProtocolError):
        decode_response(struct.pack(">II", 7, 1))
    with pytest.raises(TrackerEncodeError):
        encode_request(ScrapeRequest(1, 1, ()))
    with pytest.raises(TrackerEncodeError):
        encode_request(ConnectRequest(-1))
    assert issubclass(TrackerProtocolError, RemoteProtocolError)
    assert issubclass(TrackerEncodeError, LocalProtocolError)
    assert PROTOCOL_ID == 0x41727101980


@given(requests)
def test_request_round_trip(req: object) -> None:
    data = encode_request(req)  # type: ignore[arg-type]
    assert decode_request(data) == req
    assert encode_request(decode_request(data)) == data


@given(st.booleans().flatmap(lambda six: st.tuples(st.just(six), _responses(ipv6 if six else ipv4))))
def test_response_round_trip(case: tuple[bool, object]) -> None:
    six, resp = case
    data = encode_response(resp, ipv6=six)  # type: ignore[arg-type]
    back = decode_response(data, ipv6=six)
    assert back == resp
    assert encode_response(back, ipv6=six) == data


@given(st.binary(max_size=200))
def test_garbage_request_raises_only_typed_error(data: bytes) -> None:
    with contextlib.suppress(TrackerProtocolError):
        decode_request(data)


@given(st.binary(max_size=200), st.booleans(), st.none() | st.sampled_from(Action))
def test_garbage_response_raises_only_typed_error(data: bytes, six: bool, expecting: Action | None) -> None:
    with contextlib.suppress(TrackerProtocolError):
        decode_response(data, ipv6=six, expecting=expecting)


@given(st.sampled_from([0, 1, 2, 3]), u32, st.binary(max_size=120))
def test_structured_garbage_responses(action: int, tid: int, body: bytes) -> None:
    try:
        resp = decode_response(struct.pack(">II", action, tid) + body)
    except TrackerProtocolError:
        return
    assert resp.transaction_id == tid
