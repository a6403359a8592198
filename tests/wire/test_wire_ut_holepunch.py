"""BEP 55 ut_holepunch: the binary codec (layout from the BEP), round trips, garbage, local errors."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.wire import LocalWireError
from bitswarm.wire.ut_holepunch import (
    EXTENSION_NAME,
    ExtensionProtocolError,
    HolepunchErrorCode,
    HolepunchMessage,
    HolepunchType,
    decode_holepunch_message,
    encode_holepunch_message,
)

V4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
V6 = st.builds(lambda n: ipaddress.IPv6Address(n).compressed, st.integers(0, 2**128 - 1))
PORT = st.integers(0, 65535)


def test_layout_per_bep55() -> None:
    assert EXTENSION_NAME == "ut_holepunch"
    rv = encode_holepunch_message(HolepunchMessage.rendezvous(("198.18.0.102", 6881)))
    assert rv == bytes([0x00, 0x00, 198, 18, 0, 102, 0x1A, 0xE1, 0, 0, 0, 0])
    conn = encode_holepunch_message(HolepunchMessage.connect(("2001:db8::1", 1)))
    assert conn == b"\x01\x01" + ipaddress.IPv6Address("2001:db8::1").packed + b"\x00\x01" + bytes(4)
    assert len(conn) == 24
    err = encode_holepunch_message(HolepunchMessage.failure(("10.0.0.1", 2), HolepunchErrorCode.NO_SELF))
    assert err == bytes([0x02, 0x00, 10, 0, 0, 1, 0, 2, 0, 0, 0, 4])


def test_error_codes_and_types_are_the_bep_values() -> None:
    assert [int(t) for t in HolepunchType] == [0, 1, 2]
    assert {c.name: int(c) for c in HolepunchErrorCode} == {
        "NO_SUCH_PEER": 1,
        "NOT_CONNECTED": 2,
        "NO_SUPPORT": 3,
        "NO_SELF": 4,
    }


def test_decode_known_and_unknown_error_codes() -> None:
    msg = decode_holepunch_message(bytes([2, 0, 1, 2, 3, 4, 0, 80, 0, 0, 0, 3]))
    assert msg == HolepunchMessage(HolepunchType.ERROR, "1.2.3.4", 80, HolepunchErrorCode.NO_SUPPORT)
    assert isinstance(msg.error, HolepunchErrorCode)
    odd = decode_holepunch_message(bytes([2, 0, 1, 2, 3, 4, 0, 80, 0, 0, 1, 0]))
    assert odd.error == 256 and not isinstance(odd.error, HolepunchErrorCode)


@given(st.sampled_from(list(HolepunchType)), st.one_of(V4, V6), PORT, st.integers(0, 2**32 - 1))
def test_round_trip(kind: HolepunchType, ip: str, port: int, code: int) -> None:
    msg = HolepunchMessage(kind, ip, port, code if kind is HolepunchType.ERROR else 0)
    payload = encode_holepunch_message(msg)
    assert len(payload) == (12 if "." in ip else 24)
    assert decode_holepunch_message(payload) == msg


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00",
        b"\x03\x00" + bytes(10),  # unknown message type
        b"\xff\x00" + bytes(10),
        b"\x00\x02" + bytes(10),  # unknown address type
        b"\x00\x00" + bytes(9),  # IPv4, one byte short
        b"\x00\x00" + bytes(5),  # IPv4 without err_code, one byte short
        bytes([2, 0, 1, 2, 3, 4, 0, 80]),  # an error without its code
        b"\x00\x00" + bytes(11),  # IPv4, one byte long
        b"\x01\x01" + bytes(10),  # IPv6 type with an IPv4-sized body
        b"\x01\x01" + bytes(23),
        bytes([0, 0, 1, 2, 3, 4, 0, 80, 0, 0, 0, 1]),  # rendezvous with an error code
        bytes([1, 0, 1, 2, 3, 4, 0, 80, 0, 0, 0, 1]),  # connect with an error code
    ],
)
def test_garbage_raises_typed_error(payload: bytes) -> None:
    with pytest.raises(ExtensionProtocolError):
        decode_holepunch_message(payload)


def test_libtorrent_form_without_err_code() -> None:
    """libtorrent 2.1 writes rendezvous and connect without the 4-byte err_code."""
    v4 = bytes([1, 0, 198, 18, 0, 104, 0x1A, 0xE1])
    assert decode_holepunch_message(v4) == HolepunchMessage.connect(("198.18.0.104", 6881))
    v6 = b"\x00\x01" + ipaddress.IPv6Address("2001:db8::2").packed + b"\x00\x50"
    assert decode_holepunch_message(v6) == HolepunchMessage.rendezvous(("2001:db8::2", 80))


@given(st.binary(max_size=40))
def test_fuzz_only_typed_error(payload: bytes) -> None:
    try:
        msg = decode_holepunch_message(payload)
    except ExtensionProtocolError:
        return
    assert len(payload) in (8, 12, 20, 24)
    assert encode_holepunch_message(msg)[: len(payload)] == payload


@pytest.mark.parametrize(
    "msg",
    [
        HolepunchMessage(HolepunchType.CONNECT, "not-an-ip", 1),
        HolepunchMessage(HolepunchType.CONNECT, "1.2.3.4", 65536),
        HolepunchMessage(HolepunchType.CONNECT, "1.2.3.4", -1),
        HolepunchMessage(HolepunchType.ERROR, "1.2.3.4", 1, 2**32),
        HolepunchMessage(HolepunchType.RENDEZVOUS, "1.2.3.4", 1, 1),  # code outside an error
        HolepunchMessage(7, "1.2.3.4", 1),  # type: ignore[arg-type]
    ],
)
def test_local_errors(msg: HolepunchMessage) -> None:
    with pytest.raises(LocalWireError):
        encode_holepunch_message(msg)
