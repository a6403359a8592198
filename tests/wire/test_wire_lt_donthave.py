"""BEP 54 ``lt_donthave`` payloads and the BEP 21 ``upload_only`` handshake key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.wire import ExtendedHandshake, WireProtocolError
from bitswarm.wire.lt_donthave import UPLOAD_ONLY_KEY, decode_donthave, encode_donthave, upload_only_of


@given(st.integers(0, 2**32 - 1))
def test_round_trip(index: int) -> None:
    assert decode_donthave(encode_donthave(index)) == index


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x01", b"\x00\x00\x00\x01\x00"])
def test_wrong_length_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(WireProtocolError):
        decode_donthave(payload)


def test_index_past_the_last_piece_is_a_protocol_error() -> None:
    assert decode_donthave(encode_donthave(9), num_pieces=10) == 9
    with pytest.raises(WireProtocolError):
        decode_donthave(encode_donthave(10), num_pieces=10)
    with pytest.raises(ValueError):
        encode_donthave(-1)


def test_upload_only_in_the_extended_handshake() -> None:
    sent = ExtendedHandshake(m={"lt_donthave": 8}, extra={UPLOAD_ONLY_KEY: 1}).encode_payload()
    got = ExtendedHandshake.decode_payload(sent)
    assert upload_only_of(got.extra) is True and got.m == {"lt_donthave": 8}
    assert upload_only_of({UPLOAD_ONLY_KEY: 0}) is False
    assert upload_only_of({}) is None  # absent: no change
    assert upload_only_of({UPLOAD_ONLY_KEY: b"1"}) is None  # not an integer: ignored
