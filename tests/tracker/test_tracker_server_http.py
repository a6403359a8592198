"""HTTP tracker server conformance (BEP 3/7/23/48) and abuse tests, on IPv4 and IPv6 loopback."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from tracker_server_testlib import base_url, has_ipv6, http_announce, http_scrape, req, running

from bitswarm.bencode import decode
from bitswarm.tracker.http_codec import AnnounceResponse, FailureResponse, Peer, ScrapeResponse, ScrapeStats
from bitswarm.tracker.server import Mode

pytestmark = pytest.mark.timeout(30)
IH = os.urandom(20)
IH2 = os.urandom(20)


async def test_announce_compact_dictionary_and_scrape_ipv4() -> None:
    async with running() as server, httpx.AsyncClient() as client:
        url = base_url(server) + "/announce"
        first = await http_announce(client, url, req(IH, 1, left=0, compact=True))
        assert isinstance(first, AnnounceResponse)
        assert first.peers == () and first.complete == 1 and first.incomplete == 0
        assert 1800 <= first.interval < 1800 + 180 and first.min_interval == 300
        second = await http_announce(client, url, req(IH, 2, compact=True))
        assert second.peers == (Peer("127.0.0.1", 10001),)
        assert (second.complete, second.incomplete) == (1, 1)
        third = await http_announce(client, url, req(IH, 3, compact=False))
        assert set(third.peers) == {
            Peer("127.0.0.1", 10001, b"-BS0001-" + (1).to_bytes(12, "big")),
            Peer("127.0.0.1", 10002, b"-BS0001-" + (2).to_bytes(12, "big")),
        }
        fourth = await http_announce(client, url, req(IH, 4, compact=False, no_peer_id=True))
        assert all(p.peer_id is None for p in fourth.peers) and len(fourth.peers) == 3
        # a seeder gets leechers only
        seed = await http_announce(client, url, req(IH, 1, left=0, compact=True))
        assert {p.port for p in seed.peers} == {10002, 10003, 10004}
        # numwant caps the reply
        capped = await http_announce(client, url, req(IH, 5, numwant=2))
        assert len(capped.peers) == 2
        # event=stopped removes, event=completed counts
        from bitswarm.tracker._common import Event

        await http_announce(client, url, req(IH, 2, event=Event.STOPPED))
        await http_announce(client, url, req(IH, 3, left=0, event=Event.COMPLETED))
        scrape = await http_scrape(client, base_url(server) + "/scrape", [IH, IH2])
        assert scrape == ScrapeResponse({IH: ScrapeStats(2, 1, 2), IH2: ScrapeStats(0, 0, 0)})


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
async def test_ipv6_requester_gets_peers6() -> None:
    async with running() as server, httpx.AsyncClient() as client:
        url6 = base_url(server, 1) + "/announce"
        url4 = base_url(server, 0) + "/announce"
        await http_announce(client, url6, req(IH, 1))
        await http_announce(client, url4, req(IH, 2))
        resp = await client.get(url6.replace("/announce", "") + "/announce?" + _q(req(IH, 3)))
        body = decode(resp.content)
        assert body[b"peers"] == b"" and len(body[b"peers6"]) == 18
        assert body[b"peers6"][:16] == b"\0" * 15 + b"\1"
        v4 = await http_announce(client, url4, req(IH, 4))
        assert {p.ip for p in v4.peers} == {"127.0.0.1"}


def _q(request: object) -> str:
    from bitswarm.tracker.http_codec import encode_announce_query

    return encode_announce_query(request)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "missing"),
        ("info_hash=abc&peer_id=01234567890123456789&port=1&uploaded=0&downloaded=0&left=0", "info_hash"),
        ("info_hash=" + "a" * 20 + "&peer_id=short&port=1&uploaded=0&downloaded=0&left=0", "peer_id"),
        (
            "info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20 + "&port=70000&uploaded=0&downloaded=0&left=0",
            "port",
        ),
        ("info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20 + "&port=0&uploaded=0&downloaded=0&left=0", "port"),
        (
            "info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20 + "&port=1&uploaded=-1&downloaded=0&left=0",
            "uploaded",
        ),
        (
            "info_hash="
            + "a" * 20
            + "&peer_id="
            + "b" * 20
            + "&port=1&uploaded=0&downloaded=0&left=0&numwant="
            + "9" * 30,
            "numwant",
        ),
        ("info_hash=" + "a" * 20 + "&info_hash=" + "a" * 20 + "&peer_id=" + "b" * 20, "repeated"),
        ("info_hash=%zz%zz&peer_id=x", ""),
        ("%%%&&&===", ""),
    ],
)
async def test_bad_announces_get_failure_reason(query: str, reason: str) -> None:
    async with running(udp=()) as server, httpx.AsyncClient() as client:
        resp = await client.get(base_url(server) + "/announce?" + query)
        assert resp.status_code == 200
        body = decode(resp.content)
        assert reason.encode() in body[b"failure reason"]
        assert sum(server.core.errors.values()) == 1  # type: ignore[union-attr]


async def test_absurd_numwant_is_capped() -> None:
    async with running(udp=()) as server, httpx.AsyncClient() as client:
        url = base_url(server) + "/announce"
        for n in range(250):
            server.store.announce(IH, bytes([10, 1, n, 1, 0, 80]), b"x" * 20, False, 2, 0)
        resp = await http_announce(client, url, req(IH, 1, numwant=999_999))
        assert len(resp.peers) == 200


async def _raw(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if read_until_close:
            return await asyncio.wait_for(reader.read(), 5)
        return await asyncio.wait_for(reader.read(65536), 5)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def test_oversized_request_line_and_headers_then_still_serving() -> None:
    async with running(udp=()) as server, httpx.AsyncClient() as client:
        port = server.http_addresses[0][1]
        huge = b"GET /announce?" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        reply = await _raw(port, huge)
        assert reply.startswith(b"HTTP/1.1 414 ") or reply == b""
        big_headers = b"GET /stats HTTP/1.1\r\n" + b"X-Junk: " + b"j" * 9000 + b"\r\n\r\n"
        assert (await _raw(port, big_headers)).startswith(b"HTTP/1.1 431 ")
        assert (await _raw(port, b"NONSENSE\x00\x01\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        ok = await http_announce(client, base_url(server) + "/announce", req(IH, 1))
        assert isinstance(ok, AnnounceResponse)


async def test_keep_alive_and_pipelining() -> None:
    async with running(udp=()) as server:
        port = server.http_addresses[0][1]
        one = f"GET /announce?{_q(req(IH, 1))} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        stats = b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n"
        last = f"GET /scrape?info_hash={'%41' * 20} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        reply = await _raw(port, one + stats + one + last)
        assert reply.count(b"HTTP/1.1 200 OK") == 4
        first, second = reply.index(b"d8:complete"), reply.index(b'{"uptime"')
        assert first < second < reply.index(b"d5:filesd20:AAAA")


async def test_whitelist_mode_and_admin_api() -> None:
    async with running(mode=Mode.WHITELIST, udp=()) as server, httpx.AsyncClient() as client:
        base = base_url(server)
        url = base + "/announce"
        refused = await http_announce(client, url, req(IH, 1))
        assert refused == FailureResponse("info_hash not whitelisted")
        assert (await client.put(f"{base}/admin/whitelist/{IH.hex()}")).status_code == 401
        auth = {"Authorization": "Bearer sekrit"}
        assert (await client.put(f"{base}/admin/whitelist/{IH.hex()}", headers=auth)).status_code == 200
        listed = (await client.get(f"{base}/admin/whitelist", headers=auth)).json()
        assert listed == {"info_hashes": [IH.hex()]}
        assert isinstance(await http_announce(client, url, req(IH, 1)), AnnounceResponse)
        assert (await client.delete(f"{base}/admin/whitelist/{IH.hex()}", headers=auth)).status_code == 200
        assert isinstance(await http_announce(client, url, req(IH, 1)), FailureResponse)


async def test_private_mode_passkeys() -> None:
    async with running(mode=Mode.PRIVATE, udp=()) as server, httpx.AsyncClient() as client:
        base = base_url(server)
        auth = {"Authorization": "Bearer sekrit"}
        assert isinstance(await http_announce(client, base + "/announce", req(IH, 1)), FailureResponse)
        bad = await http_announce(client, base + "/announce/" + "0" * 32, req(IH, 1))
        assert bad == FailureResponse("unknown passkey")
        issued = (await client.post(f"{base}/admin/passkeys", json={"user": "alice"}, headers=auth)).json()
        key = issued["passkey"]
        assert isinstance(await http_announce(client, f"{base}/announce/{key}", req(IH, 1)), AnnounceResponse)
        scraped = await http_scrape(client, f"{base}/scrape/{key}", [IH])
        assert scraped == ScrapeResponse({IH: ScrapeStats(0, 0, 1)})
        assert (await client.delete(f"{base}/admin/passkeys/{key}", headers=auth)).status_code == 200
        assert isinstance(await http_announce(client, f"{base}/announce/{key}", req(IH, 1)), FailureResponse)


async def test_ip_param_and_forwarded_for_only_from_trusted_proxy() -> None:
    async with running(udp=()) as server, httpx.AsyncClient() as client:
        url = base_url(server) + "/announce"
        await client.get(url + "?" + _q(req(IH, 1, ip="1.2.3.4")), headers={"X-Forwarded-For": "5.6.7.8"})
        resp = await http_announce(client, url, req(IH, 2))
        assert resp.peers == (Peer("127.0.0.1", 10001),)
    async with (
        running(udp=(), trusted_proxies=frozenset({"127.0.0.1"})) as server,
        httpx.AsyncClient() as client,
    ):
        url = base_url(server) + "/announce"
        await client.get(url + "?" + _q(req(IH, 1)), headers={"X-Forwarded-For": "5.6.7.8, 127.0.0.1"})
        await client.get(url + "?" + _q(req(IH, 2, ip="1.2.3.4")))
        resp = await http_announce(client, url, req(IH, 3))
        assert set(resp.peers) == {Peer("5.6.7.8", 10001), Peer("1.2.3.4", 10002)}


async def test_stats_and_metrics() -> None:
    async with running(udp=()) as server, httpx.AsyncClient() as client:
        base = base_url(server)
        await http_announce(client, base + "/announce", req(IH, 1, left=0))
        await client.get(base + "/announce?bogus")
        stats = (await client.get(base + "/stats")).json()
        assert stats["peers"] == 1 and stats["seeders"] == 1 and stats["announces"] == {"http": 1}
        assert stats["errors"] == {"malformed": 1}
        text = (await client.get(base + "/metrics")).text
        assert 'bitswarm_tracker_announces_total{transport="http"} 1' in text
        assert 'bitswarm_tracker_errors_total{kind="malformed"} 1' in text
        assert "bitswarm_tracker_seeders 1" in text


async def test_restart_on_same_db_keeps_whitelist_passkeys_counters_and_peers(tmp_path: object) -> None:
    from pathlib import Path

    db = Path(str(tmp_path)) / "tracker.sqlite"
    auth = {"Authorization": "Bearer sekrit"}
    async with running(mode=Mode.PRIVATE, udp=(), db=db) as server, httpx.AsyncClient() as client:
        base = base_url(server)
        await client.put(f"{base}/admin/whitelist/{IH.hex()}", headers=auth)
        key = (await client.post(f"{base}/admin/passkeys", json={"user": "bob"}, headers=auth)).json()[
            "passkey"
        ]
        from bitswarm.tracker._common import Event

        await http_announce(client, f"{base}/announce/{key}", req(IH, 1, left=0, event=Event.COMPLETED))
        await http_announce(client, f"{base}/announce/{key}", req(IH, 2))
    async with running(mode=Mode.PRIVATE, udp=(), db=db) as server, httpx.AsyncClient() as client:
        base = base_url(server)
        assert server.core.whitelist == {IH}  # type: ignore[union-attr]
        scraped = await http_scrape(client, f"{base}/scrape/{key}", [IH])
        assert scraped == ScrapeResponse({IH: ScrapeStats(1, 1, 1)})
        resp = await http_announce(client, f"{base}/announce/{key}", req(IH, 3))
        assert {p.port for p in resp.peers} == {10001, 10002}
