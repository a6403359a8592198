"""KRPC codec: round trips of every message shape, typed helpers, and garbage input."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bitswarm.bencode import encode as bencode
from bitswarm.dht import krpc
from bitswarm.dht.krpc import (
    AnnouncePeerArgs,
    Error,
    FindNodeArgs,
    GetArgs,
    GetPeersArgs,
    KRPCError,
    NodeInfo,
    PingArgs,
    PutArgs,
    Query,
    Response,
    ResponseBody,
    SampleInfohashesArgs,
)

ID = bytes(range(20))
IH = bytes(range(100, 120))


@pytest.mark.parametrize(
    "args",
    [
        PingArgs(ID),
        FindNodeArgs(ID, IH),
        FindNodeArgs(ID, IH, frozenset([b"n4", b"n6"])),
        GetPeersArgs(ID, IH, frozenset([b"n6"])),
        AnnouncePeerArgs(ID, IH, 6881, b"tok"),
        AnnouncePeerArgs(ID, IH, 0, b"tok", implied_port=True, seed=True),
        GetArgs(ID, IH, seq=4),
        PutArgs(ID, b"tok", b"12:Hello World!"),
        PutArgs(ID, b"tok", b"d1:ai1ee", k=b"k" * 32, sig=b"s" * 64, seq=7, salt=b"salt", cas=6),
        SampleInfohashesArgs(ID, IH),
    ],
)
def test_query_round_trip_and_typed_args(args: krpc.QueryArgs) -> None:
    method = {
        PingArgs: b"ping",
        FindNodeArgs: b"find_node",
        GetPeersArgs: b"get_peers",
        AnnouncePeerArgs: b"announce_peer",
        GetArgs: b"get",
        PutArgs: b"put",
        SampleInfohashesArgs: b"sample_infohashes",
    }[type(args)]
    q = Query(b"\x00\xff", method, args.to_args(), v=b"BW\x00\x01", ro=True)
    data = krpc.encode(q)
    back = krpc.decode(data)
    assert back == q
    assert krpc.encode(back) == data
    assert krpc.parse_query(back) == args


def test_transaction_id_is_opaque_and_echoed() -> None:
    for t in (b"", b"\x00", b"\xff\xfe\x00abc", bytes(range(40))):
        r = Response(t, {b"id": ID})
        assert krpc.decode(krpc.encode(r)).t == t


def test_response_fields_round_trip() -> None:
    body = ResponseBody(
        id=ID,
        nodes=[NodeInfo(IH, ("1.2.3.4", 6881)), NodeInfo(ID, ("255.0.0.1", 1))],
        nodes6=[NodeInfo(IH, ("2001:db8::1", 51413))],
        token=b"\x01\x02",
        values=[("5.6.7.8", 80), ("2001:db8::2", 443)],
        v=b"li1ei2ee",
        k=b"k" * 32,
        sig=b"s" * 64,
        seq=9,
        samples=[IH, ID],
        interval=300,
        num=2,
    )
    r = Response(b"aa", body.to_values(), ip=("9.8.7.6", 1234))
    raw = krpc.encode(r)
    assert b"2:ip6:\x09\x08\x07\x06\x04\xd2" in raw  # BEP 42 compact top-level ip
    back = krpc.decode(raw)
    assert isinstance(back, Response)
    assert back.ip == ("9.8.7.6", 1234)
    assert krpc.parse_response(back) == body
    values = back.values
    assert len(values[b"nodes"]) == 52 and len(values[b"nodes6"]) == 38
    assert [len(x) for x in values[b"values"]] == [6, 18]


def test_compact_forms() -> None:
    assert krpc.encode_compact_addr(("1.2.3.4", 0x1AE1)) == b"\x01\x02\x03\x04\x1a\xe1"
    assert krpc.decode_compact_addr(b"\x01\x02\x03\x04\x1a\xe1") == ("1.2.3.4", 6881)
    six = krpc.encode_compact_addr(("::1", 2))
    assert len(six) == 18 and krpc.decode_compact_addr(six) == ("::1", 2)
    with pytest.raises(KRPCError):
        krpc.decode_compact_addr(b"12345")
    with pytest.raises(KRPCError):
        krpc.decode_nodes(b"x" * 25)
    with pytest.raises(KRPCError):
        krpc.decode_nodes6(b"x" * 26)
    # port-0 entries are skipped, not fatal
    assert krpc.decode_nodes(ID + b"\x01\x02\x03\x04\x00\x00") == []


@pytest.mark.parametrize("code", [201, 202, 203, 204, 205, 206, 207, 301, 302])
def test_error_round_trip(code: int) -> None:
    e = Error(b"tt", code, "some text")
    raw = krpc.encode(e)
    assert raw == bencode({b"t": b"tt", b"y": b"e", b"e": [code, b"some text"]})
    assert krpc.decode(raw) == e


def test_bep5_example_bytes() -> None:
    # The ping query from BEP 5, byte for byte.
    raw = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
    q = krpc.decode(raw)
    assert q == Query(b"aa", b"ping", {b"id": b"abcdefghij0123456789"})
    assert krpc.encode(q) == raw


@pytest.mark.parametrize(
    ("args", "method", "code"),
    [
        ({b"id": b"short"}, b"ping", 203),
        ({b"id": ID}, b"find_node", 203),
        ({b"id": ID, b"info_hash": IH, b"port": 1}, b"announce_peer", 203),  # no token
        ({b"id": ID, b"info_hash": IH, b"token": b"t"}, b"announce_peer", 203),  # no port
        ({b"id": ID, b"info_hash": IH, b"token": b"t", b"port": 70000}, b"announce_peer", 203),
        ({b"id": ID, b"target": IH, b"want": b"n4"}, b"find_node", 203),
        ({b"id": ID, b"token": b"t", b"v": 1, b"k": b"short"}, b"put", 203),
        ({b"id": ID}, b"frobnicate", 204),
    ],
)
def test_bad_arguments_carry_code_and_t(args: dict[bytes, object], method: bytes, code: int) -> None:
    q = Query(b"xy", method, args)  # type: ignore[arg-type]
    with pytest.raises(KRPCError) as info:
        krpc.parse_query(krpc.decode(krpc.encode(q)))  # type: ignore[arg-type]
    assert info.value.code == code and info.value.t == b"xy"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"le",
        b"i1e",
        b"d1:y1:qe",  # no t
        b"d1:t2:aa1:y1:qe",  # no q / a
        b"d1:t2:aa1:y1:re",  # no r
        b"d1:t2:aa1:y1:ee",  # no e
        b"d1:eli201ee1:t2:aa1:y1:ee",  # e too short
        b"d1:t2:aa1:y1:ze",
        b"d1:t1:a1:y1:q1:q4:ping1:a3:xyze",  # unsorted keys (strict bencode)
        b"d1:t2:aa1:y1:qe trailing",
    ],
)
def test_malformed_envelopes(raw: bytes) -> None:
    with pytest.raises(KRPCError):
        krpc.decode(raw)


@given(st.binary(max_size=300))
@example(b"d1:ad2:id20:" + b"a" * 20 + b"1:ni" + b"7" * 5000 + b"ee1:q4:ping1:t2:aa1:y1:qe")  # issue 16
@example(b"d1:ad2:id20:" + b"a" * 20 + b"e1:q4:ping1:t2:aa1:y1:q1:zi" + b"9" * 21 + b"ee")
def test_arbitrary_bytes_raise_only_krpc_error(data: bytes) -> None:
    try:
        msg = krpc.decode(data)
    except KRPCError:
        return
    _parse_all(msg)


_bval = st.recursive(
    st.integers(-(2**40), 2**40) | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.binary(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_key = st.sampled_from(
    [
        b"id",
        b"target",
        b"info_hash",
        b"port",
        b"token",
        b"implied_port",
        b"want",
        b"v",
        b"k",
        b"sig",
        b"seq",
        b"salt",
        b"cas",
        b"nodes",
        b"nodes6",
        b"values",
        b"samples",
        b"interval",
        b"num",
    ]
)
_args = st.dictionaries(
    _key, _bval | st.binary(min_size=20, max_size=20) | st.just([b"n4", b"n6"]), max_size=8
)


@given(
    st.sampled_from([b"q", b"r", b"e", b"x"]),
    st.sampled_from(
        [b"ping", b"find_node", b"get_peers", b"announce_peer", b"get", b"put", b"sample_infohashes"]
    ),
    _args,
    _bval,
)
def test_structured_garbage_raises_only_krpc_error(
    y: bytes, q: bytes, args: dict[bytes, object], e: object
) -> None:
    raw = bencode({b"t": b"ab", b"y": y, b"q": q, b"a": args, b"r": args, b"e": e, b"ip": b"\x01\x02"})
    try:
        msg = krpc.decode(raw)
    except KRPCError:
        return
    _parse_all(msg)


def _parse_all(msg: krpc.Message) -> None:
    try:
        if isinstance(msg, Query):
            krpc.parse_query(msg)
        elif isinstance(msg, Response):
            krpc.parse_response(msg)
    except KRPCError:
        pass
