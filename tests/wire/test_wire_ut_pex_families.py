"""BEP 11 over both families: IPv6 contacts travel in ``added6``/``dropped6``, and an IPv4-mapped
address (how a dual-stack socket sees an IPv4 peer) is sent as the IPv4 contact it is."""

from __future__ import annotations

from bitswarm.bencode import decode
from bitswarm.wire.ut_pex import PexMessage, PexPeer, PexTracker, decode_pex_message, encode_pex_message


def test_mapped_goes_in_added_and_ipv6_in_added6() -> None:
    msg = PexMessage(
        added=(PexPeer("::ffff:198.51.100.7", 6881, 0x10), PexPeer("2001:db8::7", 6882, 0x04)),
        dropped=(("::ffff:198.51.100.8", 1),),
    )
    raw = decode(encode_pex_message(msg))
    assert raw[b"added"] == bytes([198, 51, 100, 7]) + (6881).to_bytes(2, "big")
    assert raw[b"added.f"] == b"\x10"
    assert raw[b"added6"] == bytes.fromhex("20010db8000000000000000000000007") + (6882).to_bytes(2, "big")
    assert raw[b"added6.f"] == b"\x04"
    assert raw[b"dropped"] == bytes([198, 51, 100, 8]) + (1).to_bytes(2, "big")
    back = decode_pex_message(encode_pex_message(msg))
    assert set(back.added) == {PexPeer("198.51.100.7", 6881, 0x10), PexPeer("2001:db8::7", 6882, 0x04)}


def test_tracker_treats_a_mapped_address_as_its_ipv4_one() -> None:
    pex = PexTracker(interval=0)
    first = pex.next_message("r", [PexPeer("::ffff:10.0.0.1", 1, 0)], 0.0)
    assert first is not None and first.added == (PexPeer("10.0.0.1", 1, 0),)
    # the same peer, now seen as plain IPv4: no change to report
    assert pex.next_message("r", [PexPeer("10.0.0.1", 1, 0)], 1.0) is None
