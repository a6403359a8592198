"""BEP 7 on HTTP announces: ``ipv4=``/``ipv6=`` carry our addresses of each family (public ones only),
round-trip through the codec, and ``peers6`` in the reply is used beside ``peers``."""

from __future__ import annotations

import asyncio
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from bitswarm.bencode import encode
from bitswarm.tracker import AnnounceManager
from bitswarm.tracker.http_codec import AnnounceRequest, encode_announce_query, parse_announce_query

pytestmark = pytest.mark.timeout(20)

H = hashlib.sha1(b"bep7").digest()
PID = b"-SW0001-123456789012"


def test_codec_round_trip() -> None:
    req = AnnounceRequest(H, PID, 6881, 0, 0, 5, ipv4="198.51.100.7", ipv6="2001:db8::7")
    q = encode_announce_query(req)
    assert "ipv4=198.51.100.7" in q and "ipv6=2001%3Adb8%3A%3A7" in q
    back = parse_announce_query(q)
    assert (back.ipv4, back.ipv6) == ("198.51.100.7", "2001:db8::7")
    assert "ipv4" not in encode_announce_query(AnnounceRequest(H, PID, 6881, 0, 0, 5))


async def _tracker(queries: list[dict[str, list[str]]]) -> tuple[asyncio.Server, str]:
    body = encode(
        {
            b"interval": 1800,
            b"peers": bytes([198, 51, 100, 9]) + (6881).to_bytes(2, "big"),
            b"peers6": bytes.fromhex("20010db8000000000000000000000009") + (6882).to_bytes(2, "big"),
        }
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        queries.append(parse_qs(urlsplit(line.split()[1]).query))
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/announce"


@pytest.mark.parametrize(
    ("ours", "sent"),
    [
        ({4: "198.51.100.7", 6: "2001:db8::7"}, {"ipv4": ["198.51.100.7"], "ipv6": ["2001:db8::7"]}),
        ({4: "192.168.1.10", 6: "2001:db8::7"}, {"ipv6": ["2001:db8::7"]}),  # a private one stays home
        ({4: "127.0.0.1", 6: "fe80::1"}, {}),
        ({}, {}),
    ],
)
async def test_announce_sends_our_public_addresses(ours: dict[int, str], sent: dict[str, list[str]]) -> None:
    queries: list[dict[str, list[str]]] = []
    server, url = await _tracker(queries)
    mgr = AnnounceManager([[url]], info_hash=H, peer_id=PID, port=6881, addresses=lambda: ours)
    try:
        result = await mgr.start()
    finally:
        await mgr.aclose()
        server.close()
    got = {k: v for k, v in queries[0].items() if k in ("ipv4", "ipv6")}
    assert got == sent
    assert set(result.peers) == {("198.51.100.9", 6881), ("2001:db8::9", 6882)}  # peers and peers6
