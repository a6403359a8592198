"""The integer bound (issue 16, item 8): an integer longer than MAX_INT_DIGITS digits is a BencodeError
on every decode path (the bencode2 fast path, the reference decoder, decode_full's span path) and the
typed error of every protocol built on bencode (KRPC, the DHT node, wire extension messages, tracker
responses, .torrent files, resume data). Before the fix, a 5,000-digit integer raised ValueError
(Python's int-string limit) out of the fast path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bitswarm.bencode import BencodeError, decode, decode_full, decode_prefix, encode

MAX_INT_DIGITS = 20  #: the documented bound (docs/security.md): every 64-bit integer fits
HUGE = b"i" + b"7" * 5000 + b"e"  # past Python's 4,300-digit int-string limit
LONG = b"i" + b"9" * (MAX_INT_DIGITS + 1) + b"e"  # one digit too many
LONG_NEG = b"i-" + b"9" * (MAX_INT_DIGITS + 1) + b"e"

#: the long integers alone, inside a list, inside a dict (fast-path shapes), after a valid prefix
BAD_INPUTS = [
    HUGE,
    LONG,
    LONG_NEG,
    b"l" + HUGE + b"e",
    b"d1:a" + HUGE + b"e",
    b"d1:a" + LONG + b"e",
    b"d4:infod6:lengthi1ee1:z" + LONG_NEG + b"e",
    b"d1:ai1e1:b" + HUGE + b"e",
]


@pytest.mark.parametrize("data", BAD_INPUTS)
def test_long_integers_are_bencode_errors_on_every_path(data: bytes) -> None:
    for decoder in (decode, decode_full, lambda d: decode_full(d, strict=False), decode_prefix):
        with pytest.raises(BencodeError) as ei:
            decoder(data)
        assert "integer" in ei.value.reason or "unterminated" in ei.value.reason


def test_the_bound_admits_every_64_bit_integer() -> None:
    from bitswarm.bencode._codec import MAX_INT_DIGITS as bound

    assert bound == MAX_INT_DIGITS
    for n in (2**64 - 1, -(2**63), 10**MAX_INT_DIGITS - 1, -(10**MAX_INT_DIGITS - 1)):
        data = b"d1:ai%de1:bli%deee" % (n, n)
        assert decode(data) == {b"a": n, b"b": [n]}
        assert decode_full(data).value == {b"a": n, b"b": [n]}


def test_digits_inside_a_string_are_not_an_integer() -> None:
    """A byte string that merely looks like a long integer decodes (the pre-scan only routes it to the
    reference decoder), and its spans are still right."""
    s = LONG + HUGE
    data = encode({b"a": s, b"info": {b"x": s}})
    assert decode(data) == {b"a": s, b"info": {b"x": s}}
    full = decode_full(data)
    start, end = full.spans[b"info"]
    assert data[start:end] == encode({b"x": s})


@given(st.integers(MAX_INT_DIGITS + 1, 6000), st.booleans(), st.binary(max_size=8))
@example(5000, False, b"")
@example(4301, True, b"")
def test_any_long_integer_is_rejected(digits: int, negative: bool, prefix: bytes) -> None:
    value = b"i" + (b"-" if negative else b"") + b"1" * digits + b"e"
    for data in (value, b"l" + value + b"e", encode({b"k": prefix})[:-1] + b"1:z" + value + b"e"):
        with pytest.raises(BencodeError):
            decode(data)
        with pytest.raises(BencodeError):
            decode_full(data)


# -- the protocols on top: each turns it into its own typed error ------------------------------------


def _krpc_ping(extra: bytes) -> bytes:
    return b"d1:ad2:id20:" + b"a" * 20 + b"1:n" + extra + b"e1:q4:ping1:t2:aa1:y1:qe"


def test_krpc_and_the_dht_node() -> None:
    from bitswarm.dht import krpc
    from bitswarm.dht.node import DHTNode

    for extra in (HUGE, LONG):
        with pytest.raises(krpc.KRPCError):
            krpc.decode(_krpc_ping(extra))
    sent: list[tuple[bytes, Any]] = []
    node = DHTNode(b"n" * 20, send=lambda data, addr: sent.append((data, addr)), clock=lambda: 0.0)
    node.datagram_received(_krpc_ping(HUGE), ("7.7.7.7", 4000))  # must not raise
    for data, _ in sent:
        assert isinstance(krpc.decode(data), krpc.Error)


def test_wire_extension_messages() -> None:
    from bitswarm.wire import ExtendedHandshake, WireProtocolError
    from bitswarm.wire.ut_metadata import ExtensionProtocolError, decode_metadata_message
    from bitswarm.wire.ut_pex import decode_pex_message

    with pytest.raises(WireProtocolError):
        ExtendedHandshake.decode_payload(b"d1:pi6881e4:reqq" + HUGE + b"e")
    with pytest.raises(ExtensionProtocolError):
        decode_metadata_message(b"d8:msg_type" + LONG + b"5:piecei0ee")
    for extra in (HUGE, LONG):
        with pytest.raises(WireProtocolError):
            decode_pex_message(b"d5:added0:1:z" + extra + b"e")


def test_tracker_responses() -> None:
    from bitswarm.tracker import TrackerProtocolError
    from bitswarm.tracker.http_codec import decode_announce_response, decode_scrape_response

    for extra in (HUGE, LONG):
        with pytest.raises(TrackerProtocolError):
            decode_announce_response(b"d8:interval" + extra + b"5:peers0:e")
        with pytest.raises(TrackerProtocolError):
            decode_scrape_response(b"d5:filesd20:" + b"h" * 20 + b"d8:complete" + extra + b"eee")


def test_torrent_files_and_resume_data() -> None:
    from bitswarm.metainfo import MetainfoError, parse_torrent
    from bitswarm.storage.resume import ResumeData

    info = b"d6:length" + LONG + b"4:name1:x12:piece lengthi16384e6:pieces20:" + b"p" * 20 + b"e"
    with pytest.raises(MetainfoError) as ei:
        parse_torrent(b"d4:info" + info + b"e")
    assert ei.value.field == "bencode"
    assert ResumeData.decode(b"d15:bitswarm-resume" + HUGE + b"e") is None
