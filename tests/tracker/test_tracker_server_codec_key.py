"""``parse_announce_query`` keeps a non-UTF-8 ``key`` as opaque bytes (aria2c sends raw bytes)."""

from __future__ import annotations

from urllib.parse import quote_from_bytes

import pytest

from bitswarm.tracker._common import TrackerProtocolError
from bitswarm.tracker.http_codec import AnnounceRequest, encode_announce_query, parse_announce_query

IH = bytes(range(20))
PID = b"-AR1370-" + bytes(12)


def _query(key: str) -> str:
    return (
        f"info_hash={quote_from_bytes(IH, safe='')}&peer_id={quote_from_bytes(PID, safe='')}"
        f"&port=6881&uploaded=0&downloaded=0&left=5&compact=1&key={key}"
    )


def test_binary_key_is_kept_as_bytes_and_round_trips() -> None:
    req = parse_announce_query(_query("%91%7D%90%03"))
    assert req.key == b"\x91\x7d\x90\x03"
    assert (req.info_hash, req.peer_id, req.port, req.left) == (IH, PID, 6881, 5)
    again = parse_announce_query(encode_announce_query(req))
    assert again == req


def test_text_key_stays_text() -> None:
    assert parse_announce_query(_query("k1%2F")).key == "k1/"
    req = AnnounceRequest(IH, PID, 1, 0, 0, 0, key="abc")
    assert parse_announce_query(encode_announce_query(req)).key == "abc"


def test_overlong_key_is_still_refused() -> None:
    with pytest.raises(TrackerProtocolError, match="key"):
        parse_announce_query(_query("%FF" * 300))
