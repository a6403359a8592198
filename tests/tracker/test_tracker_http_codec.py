"""HTTP tracker codec (BEP 3/7/23/48): query building and parsing, bodies both ways, garbage."""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.bencode import encode
from bitswarm.tracker._common import Event, TrackerEncodeError, TrackerProtocolError
from bitswarm.tracker.http_codec import (
    AnnounceRequest,
    AnnounceResponse,
    FailureResponse,
    Peer,
    ScrapeResponse,
    ScrapeStats,
    announce_url,
    decode_announce_response,
    decode_scrape_response,
    encode_announce_query,
    encode_announce_response,
    encode_scrape_response,
    parse_announce_query,
    parse_scrape_query,
    scrape_url,
    scrape_url_from_announce,
)

h20 = st.binary(min_size=20, max_size=20)
i63 = st.integers(0, 2**63 - 1)
text = st.text(st.characters(codec="utf-8"), max_size=40)

announce_requests = st.builds(
    AnnounceRequest,
    info_hash=h20,
    peer_id=h20,
    port=st.integers(0, 65535),
    uploaded=i63,
    downloaded=i63,
    left=i63,
    event=st.sampled_from(Event),
    compact=st.booleans(),
    no_peer_id=st.booleans(),
    numwant=st.none() | st.integers(0, 2**31 - 1),
    key=st.none() | text,
    trackerid=st.none() | st.binary(max_size=40),
    ip=st.none() | text,
)


def test_announce_query_percent_encodes_raw_bytes() -> None:
    req = AnnounceRequest(
        info_hash=bytes(range(20)),
        peer_id=b"-BS0001-abcdefgh~._-",
        port=6881,
        uploaded=1,
        downloaded=2,
        left=3,
        event=Event.STARTED,
        numwant=50,
        key="k1",
        trackerid=b"t/d",
    )
    q = encode_announce_query(req)
    assert q.startswith("info_hash=%00%01%02%03%04%05%06%07%08%09%0A%0B")
    assert "peer_id=-BS0001-abcdefgh~._-&port=6881&uploaded=1&downloaded=2&left=3&compact=1" in q
    assert "event=started" in q and "numwant=50" in q and "key=k1" in q and "trackerid=t%2Fd" in q
    assert "ip=" not in q and "no_peer_id" not in q
    assert parse_announce_query(q) == req
    url = announce_url("http://t.example:80/announce?passkey=abc", req)
    assert urlsplit(url).query == "passkey=abc&" + q
    assert announce_url("http://t/announce", req) == "http://t/announce?" + q


@given(announce_requests)
def test_announce_query_round_trip(req: AnnounceRequest) -> None:
    assert parse_announce_query(encode_announce_query(req)) == req


def test_parse_announce_query_rejects() -> None:
    good = encode_announce_query(AnnounceRequest(b"i" * 20, b"p" * 20, 1, 0, 0, 0))
    for bad in (
        good.replace("info_hash=iiiiiiiiiiiiiiiiiiii", "info_hash=iii"),
        good.replace("peer_id=pppppppppppppppppppp&", ""),
        good.replace("port=1", "port=70000"),
        good.replace("left=0", "left=-1"),
        good.replace("uploaded=0", "uploaded=9999999999999999999999"),
        good + "&event=paused",
        good + "&port=2",
        good + "&numwant=x",
        "x" * 9000,
        b"info_hash=\xff",
    ):
        with pytest.raises(TrackerProtocolError) as info:
            parse_announce_query(bad)
        assert info.value.hint == 400
    assert parse_announce_query(good + "&event=empty&supportcrypto=1").event is Event.NONE


def test_scrape_query_and_url_rule() -> None:
    hashes = (b"a" * 20, bytes(range(20)))
    url = scrape_url("http://t/scrape", hashes)
    assert parse_scrape_query(urlsplit(url).query) == hashes
    assert parse_scrape_query("") == ()
    with pytest.raises(TrackerProtocolError):
        parse_scrape_query("info_hash=short")
    # BEP 48 derivation: only when the last path segment starts with "announce"
    assert scrape_url_from_announce("http://t:6969/announce") == "http://t:6969/scrape"
    assert (
        scrape_url_from_announce("http://t/x/announce.php?pk=1/announce")
        == "http://t/x/scrape.php?pk=1/announce"
    )
    assert scrape_url_from_announce("http://t/announce?x=1") == "http://t/scrape?x=1"
    assert scrape_url_from_announce("http://t/a") is None
    assert scrape_url_from_announce("http://t/announce/") is None
    assert scrape_url_from_announce("http://t/x%064announce") is None


def test_announce_response_forms() -> None:
    peers = (Peer("1.2.3.4", 6881), Peer("::1", 80))
    resp = AnnounceResponse(
        1800, peers, min_interval=900, tracker_id=b"tid", complete=2, incomplete=5, warning="slow down"
    )
    body = encode_announce_response(resp)
    assert b"5:peers6:\x01\x02\x03\x04\x1a\xe1" in body
    assert b"6:peers618:" in body
    assert decode_announce_response(body) == resp
    dict_form = encode_announce_response(
        AnnounceResponse(60, (Peer("host.example", 1, b"x" * 20),)), compact=False
    )
    assert decode_announce_response(dict_form) == AnnounceResponse(60, (Peer("host.example", 1, b"x" * 20),))
    no_id = encode_announce_response(
        AnnounceResponse(60, (Peer("h", 1, b"x" * 20),)), compact=False, no_peer_id=True
    )
    assert decode_announce_response(no_id) == AnnounceResponse(60, (Peer("h", 1),))
    with pytest.raises(TrackerEncodeError):
        encode_announce_response(AnnounceResponse(60, (Peer("host.example", 1),)))
    fail = encode_announce_response(FailureResponse("not authorised"))
    assert fail == b"d14:failure reason14:not authorisede"
    assert decode_announce_response(fail) == FailureResponse("not authorised")


def test_opentracker_shaped_bodies() -> None:
    body = (
        b"d8:completei0e10:downloadedi0e10:incompletei1e8:intervali1730e12:min intervali865e"
        b"5:peers6:\x7f\x00\x00\x01\x04\xd2e"
    )
    assert decode_announce_response(body) == AnnounceResponse(
        1730, (Peer("127.0.0.1", 1234),), min_interval=865, complete=0, incomplete=1
    )
    scrape = b"d5:filesd20:" + b"\xaa" * 20 + b"d8:completei0e10:downloadedi0e10:incompletei1eeee"
    assert decode_scrape_response(scrape) == ScrapeResponse({b"\xaa" * 20: ScrapeStats(0, 0, 1)})


def test_response_errors() -> None:
    for bad in (
        b"",
        b"i1e",
        b"d8:intervali-1ee",
        b"de",  # no interval
        b"d8:intervali1e5:peers5:abcdee",
        b"d8:intervali1e6:peers6i1ee",
        b"d8:intervali1e5:peersld2:ipi1e4:porti1eeee",
        b"d8:intervali1e5:peersld2:ip1:a4:porti70000eeee",
        b"<html>",
    ):
        with pytest.raises(TrackerProtocolError):
            decode_announce_response(bad)
    with pytest.raises(TrackerProtocolError):
        decode_scrape_response(b"d5:filesd3:abcdeee")


@given(st.dictionaries(h20, st.builds(ScrapeStats, i63, i63, i63), max_size=10))
def test_scrape_round_trip(files: dict[bytes, ScrapeStats]) -> None:
    resp = ScrapeResponse(files)
    assert decode_scrape_response(encode_scrape_response(resp)) == resp


peers_st = st.lists(st.builds(Peer, st.ip_addresses().map(str), st.integers(0, 65535)), max_size=20).map(
    tuple
)


@given(peers_st, st.integers(0, 2**31), st.none() | st.integers(0, 2**31), st.none() | text)
def test_announce_response_round_trip(
    peers: tuple[Peer, ...], interval: int, mi: int | None, w: str | None
) -> None:
    resp = AnnounceResponse(interval, peers, min_interval=mi, warning=w)
    back = decode_announce_response(encode_announce_response(resp))
    assert isinstance(back, AnnounceResponse)
    # compact puts IPv4 before IPv6; the set of peers is what must survive
    assert sorted(back.peers, key=repr) == sorted(peers, key=repr)
    assert (back.interval, back.min_interval, back.warning) == (interval, mi, w)


@given(st.binary(max_size=300))
def test_garbage_bodies_raise_only_typed_error(body: bytes) -> None:
    for fn in (decode_announce_response, decode_scrape_response):
        with contextlib.suppress(TrackerProtocolError):
            fn(body)


bencodable = st.recursive(
    st.integers(-5, 2**40) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    b"peers",
                    b"peers6",
                    b"interval",
                    b"ip",
                    b"port",
                    b"files",
                    b"failure reason",
                    b"complete",
                    b"peer id",
                ]
            )
            | st.binary(max_size=5),
            inner,
            max_size=5,
        )
    ),
    max_leaves=15,
)


@given(bencodable)
def test_structured_garbage_bodies(value: object) -> None:
    body = encode(value)
    for fn in (decode_announce_response, decode_scrape_response):
        with contextlib.suppress(TrackerProtocolError):
            fn(body)


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_garbage_queries_raise_only_typed_error(query: str | bytes) -> None:
    for fn in (parse_announce_query, parse_scrape_query):
        with contextlib.suppress(TrackerProtocolError):
            fn(query)


@given(
    st.lists(
        st.sampled_from(
            [
                "info_hash",
                "peer_id",
                "port",
                "left",
                "uploaded",
                "downloaded",
                "event",
                "numwant",
                "key",
                "ip",
                "compact",
            ]
        )
        | st.text(max_size=5),
        max_size=10,
    ),
    st.lists(st.text(max_size=25) | st.sampled_from(["%aa" * 20, "1", "-1", "%zz", "started"]), max_size=10),
)
def test_structured_garbage_queries(names: list[str], values: list[str]) -> None:
    query = "&".join(f"{n}={v}" for n, v in zip(names, values, strict=False))
    for fn in (parse_announce_query, parse_scrape_query):
        with contextlib.suppress(TrackerProtocolError):
            fn(query)
