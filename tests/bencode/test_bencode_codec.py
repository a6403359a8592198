"""bencode: strictness, raw spans, tolerant .torrent mode, encoder, and property tests."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.bencode import (
    BencodeEncodeError,
    BencodeError,
    _codec,
    decode,
    decode_full,
    decode_prefix,
    encode,
)
from bitswarm.errors import RemoteProtocolError


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"i0e", 0),
        (b"i-7e", -7),
        (b"i18446744073709551615e", 2**64 - 1),
        (b"i-9223372036854775808e", -(2**63)),
        (b"i99999999999999999999e", 10**20 - 1),
        (b"0:", b""),
        (b"4:spam", b"spam"),
        (b"le", []),
        (b"de", {}),
        (b"l4:spami42ee", [b"spam", 42]),
        (b"d3:bar4:spam3:fooi42ee", {b"bar": b"spam", b"foo": 42}),
        (b"d1:ald1:bleeee", {b"a": [{b"b": []}]}),
    ],
)
def test_decode_valid(data: bytes, value: Any) -> None:
    assert decode(data) == value
    assert encode(value) == data


@pytest.mark.parametrize(
    ("data", "reason", "offset"),
    [
        (b"", "unexpected end", 0),
        (b"i03e", "leading zero", 0),
        (b"i-0e", "negative zero", 0),
        (b"i-03e", "leading zero", 0),
        (b"ie", "bad integer", 0),
        (b"i1.5e", "bad integer", 0),
        (b"i 1e", "bad integer", 0),
        (b"i+1e", "bad integer", 0),
        (b"i1_0e", "bad integer", 0),
        (b"i12", "unterminated", 0),
        (b"-1:a", "invalid type", 0),
        (b"01:a", "bad string length", 0),
        (b"5:abc", "past the end", 0),
        (b"4:spamx", "trailing bytes", 6),
        (b"l4:spam", "unterminated list", 7),
        (b"d3:foo", "unexpected end", 6),
        (b"di1ei2ee", "not a byte string", 1),
        (b"d1:bi1e1:ai2ee", "unsorted", 7),
        (b"d1:ai1e1:ai2ee", "duplicate", 7),
        (b"x", "invalid type", 0),
    ],
)
def test_decode_rejects(data: bytes, reason: str, offset: int) -> None:
    with pytest.raises(BencodeError) as info:
        decode(data)
    assert reason in str(info.value)
    assert info.value.offset == offset
    assert isinstance(info.value, RemoteProtocolError)


def test_nesting_limit() -> None:
    deep = b"l" * 100 + b"e" * 100
    assert decode(deep, max_depth=100) is not None
    with pytest.raises(BencodeError, match="nesting"):
        decode(deep, max_depth=99)
    with pytest.raises(BencodeError, match="nesting"):
        decode(b"l" * 5000 + b"e" * 5000)


def test_huge_length_prefix_is_an_error_not_an_allocation() -> None:
    with pytest.raises(BencodeError):
        decode(b"99999999999999999999:a")


def test_spans_expose_original_bytes_of_each_top_level_value() -> None:
    info = b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces0:e"
    data = b"d8:announce3:url4:info" + info + b"e"
    result = decode_full(data)
    start, end = result.spans[b"info"]
    assert data[start:end] == info
    assert result.value[b"announce"] == b"url"


def test_tolerant_mode_reports_unsorted_and_duplicate_keys_keeps_first() -> None:
    data = b"d1:bi1e1:ai2e1:ai3ee"
    with pytest.raises(BencodeError):
        decode_full(data)
    result = decode_full(data, strict=False)
    assert result.value == {b"b": 1, b"a": 2}
    assert len(result.issues) == 2
    assert "unsorted" in result.issues[0] and "duplicate" in result.issues[1]


def test_tolerant_spans_are_raw_even_with_unsorted_inner_keys() -> None:
    info = b"d4:name1:x6:lengthi1ee"  # unsorted inside: the hash must use these exact bytes
    data = b"d4:info" + info + b"e"
    result = decode_full(data, strict=False)
    start, end = result.spans[b"info"]
    assert data[start:end] == info


def test_decode_prefix_returns_end_offset() -> None:
    value, end = decode_prefix(b"d8:msg_typei1e5:piecei0eeRAWDATA")
    assert value == {b"msg_type": 1, b"piece": 0}
    assert end == len(b"d8:msg_typei1e5:piecei0ee")


def test_bool_encodes_as_int() -> None:
    assert encode([True, False]) == b"li1ei0ee"


def test_encode_accepts_str_and_sorts_keys_as_bytes() -> None:
    assert encode({"b": 1, b"a": "x", "\xe9": []}) == b"d1:a1:x1:bi1e2:\xc3\xa9lee"
    assert encode((1, bytearray(b"ab"), memoryview(b"c"))) == b"li1e2:ab1:ce"


@pytest.mark.parametrize("value", [1.5, None, {1: 2}, object(), {"a": 1, b"a": 2}, [None]])
def test_encode_rejects(value: Any) -> None:
    with pytest.raises(BencodeEncodeError):
        encode(value)


#: every integer the decoder accepts: at most MAX_INT_DIGITS digits
_ints = st.integers(-(10**_codec.MAX_INT_DIGITS) + 1, 10**_codec.MAX_INT_DIGITS - 1)
_values = st.recursive(
    _ints | st.binary(max_size=40),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.binary(max_size=8), kids, max_size=5),
    max_leaves=30,
)


@given(_values)
def test_encode_decode_identity(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.binary(max_size=200))
def test_garbage_only_raises_typed_error(data: bytes) -> None:
    with contextlib.suppress(BencodeError):
        decode(data)
    with contextlib.suppress(BencodeError):
        decode_full(data, strict=False)


@given(_values, st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=3))
def test_mutations_only_raise_typed_error(value: Any, pos: int, junk: bytes) -> None:
    data = encode(value)
    pos = min(pos, len(data))
    for mutated in (data[:pos], data[:pos] + junk + data[pos:], data[:pos] + junk + data[pos + 1 :]):
        with contextlib.suppress(BencodeError):
            decode(mutated)


def _reference(data: bytes) -> Any:
    value, end = _codec._Decoder(data, True, _codec.DEFAULT_MAX_DEPTH).value(0, 0)
    if end != len(data):
        raise BencodeError("trailing bytes after the value", end)
    return value


@given(st.one_of(st.binary(max_size=120), _values.map(encode)), st.integers(0, 130), st.binary(max_size=3))
def test_fast_path_agrees_with_reference_decoder(base: bytes, pos: int, junk: bytes) -> None:
    """The compiled fast path (bencode2) must accept exactly what the strict reference accepts."""
    data = base[:pos] + junk + base[pos:]
    try:
        expected: Any = _reference(data)
    except (BencodeError, RecursionError):
        expected = BencodeError
    try:
        got: Any = decode(data)
    except BencodeError:
        got = BencodeError
    assert got == expected
    if expected is not BencodeError and data[:1] == b"d":
        full = decode_full(data)
        for key, (start, end) in full.spans.items():
            assert decode(data[start:end]) == full.value[key]


@given(st.dictionaries(st.binary(max_size=6), _values, max_size=6), _values)
def test_fast_spans_match_reference_around_info(extra: dict[bytes, Any], info: Any) -> None:
    """The fast path derives the ``info`` span from its neighbours; it must equal the reference's."""
    data = encode({**extra, b"info": info})
    spans: dict[bytes, tuple[int, int]] = {}
    _codec._Decoder(data, True, _codec.DEFAULT_MAX_DEPTH).dictionary(0, 0, spans)
    assert decode_full(data).spans == spans
    start, end = spans[b"info"]
    assert data[start:end] == encode(info)
