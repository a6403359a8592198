"""The NAT-PMP (RFC 6886) / PCP (RFC 6887) codec: request layouts, response parsing, garbage."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.errors import RemoteProtocolError
from bitswarm.portmap import natpmp
from bitswarm.portmap.errors import MalformedResponse

NONCE = bytes(range(12))
V4_MAPPED = b"\0" * 10 + b"\xff\xff"


def test_natpmp_requests_layout() -> None:
    assert natpmp.encode_natpmp_address_request() == b"\x00\x00"
    assert natpmp.encode_natpmp_map_request("tcp", 6881, 6882, 7200) == bytes.fromhex(
        "0002 0000 1ae1 1ae2 00001c20".replace(" ", "")
    )
    assert natpmp.encode_natpmp_map_request("udp", 1, 0, 0)[1] == 1


def test_pcp_map_request_layout() -> None:
    raw = natpmp.encode_pcp_map_request(
        nonce=NONCE,
        protocol="udp",
        internal_port=6881,
        external_port=6881,
        lifetime=3600,
        client_ip=ipaddress.IPv4Address("192.168.1.10"),
    )
    assert len(raw) == natpmp.PCP_MAP_REQUEST_SIZE == 60
    assert raw[:4] == b"\x02\x01\x00\x00"  # version 2, request, opcode MAP
    assert struct.unpack_from("!I", raw, 4)[0] == 3600
    assert raw[8:24] == V4_MAPPED + bytes([192, 168, 1, 10])
    assert raw[24:36] == NONCE
    assert raw[36] == 17  # UDP
    assert struct.unpack_from("!HH", raw, 40) == (6881, 6881)
    assert raw[44:60] == V4_MAPPED + b"\0\0\0\0"  # no suggested external address


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nonce": b"short"},
        {"internal_port": 70000},
        {"external_port": -1},
        {"lifetime": 2**32},
    ],
)
def test_pcp_request_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "nonce": NONCE,
        "protocol": "tcp",
        "internal_port": 1,
        "external_port": 1,
        "lifetime": 1,
        "client_ip": ipaddress.IPv4Address("10.0.0.2"),
        **kwargs,
    }
    with pytest.raises(ValueError):
        natpmp.encode_pcp_map_request(**args)  # type: ignore[arg-type]


def pcp_map_response(
    result: int = 0, lifetime: int = 120, proto: int = 6, ext: bytes = b"\xcb\x00\x72\x01"
) -> bytes:
    header = struct.pack("!BBBBII12x", 2, 0x81, 0, result, lifetime, 77)
    return header + struct.pack("!12sB3xHH16s", NONCE, proto, 6881, 6881, V4_MAPPED + ext)


def test_decode_pcp_map_response() -> None:
    r = natpmp.decode_response(pcp_map_response())
    assert r == natpmp.PcpMapResponse(120, 77, NONCE, "tcp", 6881, 6881, ipaddress.IPv4Address("203.0.114.1"))
    # options after the MAP data are ignored
    assert natpmp.decode_response(pcp_map_response() + b"\x80\x00\x00\x00") == r


def test_decode_pcp_error_responses() -> None:
    short_error = struct.pack("!BBBBII12x", 2, 0x81, 0, 2, 30, 5)
    assert natpmp.decode_response(short_error) == natpmp.PcpErrorResponse(1, 2, 30, 5)
    assert natpmp.result_name(2, 2) == "NOT_AUTHORIZED"
    assert natpmp.result_name(2, 99) == "result 99"
    assert natpmp.decode_response(pcp_map_response(result=8)) == natpmp.PcpErrorResponse(1, 8, 120, 77)


def test_decode_natpmp_responses() -> None:
    addr = struct.pack("!BBHI4s", 0, 128, 0, 9, bytes([198, 18, 0, 101]))
    assert natpmp.decode_response(addr) == natpmp.NatPmpAddressResponse(
        9, ipaddress.IPv4Address("198.18.0.101")
    )
    mapping = struct.pack("!BBHIHHI", 0, 130, 0, 9, 6881, 40000, 3600)
    assert natpmp.decode_response(mapping) == natpmp.NatPmpMapResponse("tcp", 9, 6881, 40000, 3600)
    # what a NAT-PMP-only gateway answers to a PCP request
    unsupported = struct.pack("!BBHI", 0, 129, 1, 9)
    assert natpmp.decode_response(unsupported) == natpmp.NatPmpErrorResponse(1, 1, 9)
    assert natpmp.result_name(0, 1) == "UNSUPPORTED_VERSION"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x01\x80",  # unknown version
        b"\x00\x00",  # a NAT-PMP request, not a response
        struct.pack("!BBHI", 0, 128, 0, 0),  # address response cut short
        struct.pack("!BBHIHHI", 0, 131, 0, 0, 1, 1, 1),  # unknown opcode
        struct.pack("!BBHIHHI", 0, 129, 0, 0, 1, 1, 1) + b"x",  # trailing byte
        pcp_map_response()[:40],  # truncated MAP data
        pcp_map_response() + b"\0",  # not a multiple of 4
        pcp_map_response(proto=1),  # ICMP
        struct.pack("!BBBBII12x", 2, 0x01, 0, 0, 0, 0),  # a PCP request
        struct.pack("!BBBBII12x", 2, 0x82, 0, 0, 0, 0),  # PEER response: not asked for
        pcp_map_response() + b"\0" * 1100,  # over 1100 bytes
    ],
)
def test_garbage_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(MalformedResponse) as info:
        natpmp.decode_response(data)
    assert isinstance(info.value, RemoteProtocolError)


@given(st.binary(max_size=1200))
def test_fuzz_any_bytes(data: bytes) -> None:
    with contextlib.suppress(MalformedResponse):
        natpmp.decode_response(data)


@given(st.binary(min_size=2, max_size=80), st.integers(0, 79), st.integers(0, 255))
def test_fuzz_mutated_valid_responses(prefix: bytes, pos: int, byte: int) -> None:
    for valid in (pcp_map_response(), struct.pack("!BBHIHHI", 0, 129, 0, 9, 1, 2, 3)):
        mutated = bytearray(valid)
        mutated[pos % len(valid)] = byte
        for data in (bytes(mutated), bytes(mutated[: len(prefix) % (len(valid) + 1)])):
            with contextlib.suppress(MalformedResponse):
                natpmp.decode_response(data)


@given(
    st.sampled_from(["tcp", "udp"]),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.ip_addresses(),
)
def test_pcp_map_response_fields_round_trip(
    proto: natpmp.Protocol,
    internal: int,
    external: int,
    lifetime: int,
    epoch: int,
    ext: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    """A response built from the request's own MAP data comes back field for field."""
    request = natpmp.encode_pcp_map_request(
        nonce=NONCE, protocol=proto, internal_port=internal, external_port=external, lifetime=lifetime,
        client_ip=ipaddress.IPv4Address("10.0.0.2"), external_ip=ext,
    )  # fmt: skip
    response = struct.pack("!BBBBII12x", 2, 0x81, 0, 0, lifetime, epoch) + request[24:]
    r = natpmp.decode_response(response)
    assert isinstance(r, natpmp.PcpMapResponse)
    assert (r.protocol, r.internal_port, r.external_port, r.lifetime, r.epoch, r.nonce) == (
        proto, internal, external, lifetime, epoch, NONCE
    )  # fmt: skip
    assert r.external_ip == (ext.ipv4_mapped or ext if isinstance(ext, ipaddress.IPv6Address) else ext)
