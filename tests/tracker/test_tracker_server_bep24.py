"""Our tracker's HTTP announce replies carry BEP 24 ``external ip`` (the requester's address as the
tracker sees it, 4 or 16 bytes, compact and dictionary replies, in the Redis store's replies too),
and the tracker stores a client's BEP 7 ``ipv4=``/``ipv6=`` address of the other family (public
unicast ones only); a bitswarm session learns its external address from our tracker."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_tracker_server_redis import redis_url  # noqa: F401  (a fixture)
from tracker_server_testlib import base_url, has_ipv6, http_announce, req, running

from bitswarm.bencode import decode
from bitswarm.metainfo import parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.tracker import Event
from bitswarm.tracker.http_codec import announce_url
from bitswarm.tracker.server.http import _other_family, _templates
from testtools import until

pytestmark = pytest.mark.timeout(60)

H = hashlib.sha1(b"bep24").digest()


def _peers(resp: Any) -> set[tuple[str, int]]:
    return {(str(p.ip), p.port) for p in resp.peers}


async def _raw(client: httpx.AsyncClient, url: str, request: Any) -> dict[bytes, Any]:
    got = await client.get(announce_url(url, request))
    assert got.status_code == 200
    body = decode(got.content)  # a strict decoder: keys must be sorted
    assert isinstance(body, dict)
    return body


async def test_external_ip_in_compact_and_dictionary_replies() -> None:
    async with running() as server, httpx.AsyncClient() as c:
        url = base_url(server) + "/announce"
        resp = await http_announce(c, url, req(H, 1))
        assert resp.external_ip == "127.0.0.1"
        compact = await _raw(c, url, req(H, 2, compact=True))
        assert compact[b"external ip"] == b"\x7f\0\0\1"
        full = await _raw(c, url, req(H, 3, compact=False))
        assert full[b"external ip"] == b"\x7f\0\0\1" and isinstance(full[b"peers"], list)
        assert len(full[b"peers"]) == 2
        if has_ipv6():
            url6 = base_url(server, 1) + "/announce"
            six = await _raw(c, url6, req(H, 4, compact=True))
            assert six[b"external ip"] == b"\0" * 15 + b"\1" and b"peers6" in six
            assert (await http_announce(c, url6, req(H, 5))).external_ip == "::1"


async def test_external_ip_through_a_trusted_proxy_is_the_forwarded_address() -> None:
    """The forwarded address (here with a ``%`` byte: 37 = 0x25) is the one reported back."""
    async with running(trusted_proxies=frozenset({"127.0.0.1"})) as server, httpx.AsyncClient() as c:
        url = base_url(server) + "/announce"
        headers = {"X-Forwarded-For": "37.37.37.37"}
        for compact in (True, False):
            got = await c.get(announce_url(url, req(H, 1, compact=compact)), headers=headers)
            body = decode(got.content)
            assert isinstance(body, dict) and body[b"external ip"] == b"%%%%", body


def test_reply_templates_escape_percent_bytes() -> None:
    ann4, ann6, annd = _templates(b"%d%s")
    head = ann4 % (1, 2, 1800, 300, 0)
    assert b"11:external ip4:%d%s10:incompletei2e" in head
    assert b"11:external ip4:%d%s" in ann6 % (1, 2, 1800, 300, 0)
    assert b"11:external ip4:%d%s" in annd % (1, 2, 1800, 300)


@pytest.mark.parametrize(
    ("text", "v6", "expected"),
    [
        ("2001:db8::7", True, ("2001:db8::7", 6881)),
        ("[2001:db8::7]:7000", True, ("2001:db8::7", 7000)),
        ("[2001:db8::7]", True, ("2001:db8::7", 6881)),
        ("198.18.0.9", False, ("198.18.0.9", 6881)),
        ("198.18.0.9:7001", False, ("198.18.0.9", 7001)),
        ("8.8.4.4", True, None),  # the wrong family
        ("2001:db8::7", False, None),
        ("::1", True, None),  # loopback, link-local, unique-local, private, mapped, multicast ...
        ("fe80::1", True, None),
        ("fd00::1", True, None),
        ("::ffff:8.8.4.4", True, None),
        ("ff02::1", True, None),
        ("::", True, None),
        ("127.0.0.1", False, None),
        ("192.168.1.5", False, None),
        ("10.0.0.1", False, None),
        ("0.1.2.3", False, None),
        ("224.0.0.1", False, None),
        ("198.18.0.9:0", False, None),
        ("198.18.0.9:99999", False, None),
        ("[2001:db8::7]x", True, None),
        ("nonsense", True, None),
    ],
)
def test_bep7_other_family_address(text: str, v6: bool, expected: tuple[str, int] | None) -> None:
    import ipaddress

    got = _other_family(text, 6881, v6)
    if expected is None:
        assert got is None
    else:
        assert got == ipaddress.ip_address(expected[0]).packed + expected[1].to_bytes(2, "big")


async def test_bep7_other_family_address_is_served_to_that_family() -> None:
    if not has_ipv6():
        pytest.skip("no IPv6 loopback here")
    async with running() as server, httpx.AsyncClient() as c:
        url4, url6 = base_url(server) + "/announce", base_url(server, 1) + "/announce"
        # an IPv4 client gives its IPv6 address (encoded with %3A, as clients send it) ...
        first = await http_announce(c, url4, req(H, 1, port=7000, ipv6="2001:db8::7", ipv4="198.18.0.50"))
        assert first.complete == 0 and first.incomplete == 2  # one peer, an entry in each family
        # ... and an IPv6 client gives an IPv4 endpoint; a link-local one is not stored
        await http_announce(c, url6, req(H, 2, port=7001, ipv4="198.18.0.9:7002"))
        await http_announce(c, url6, req(H, 3, port=7003, ipv4="169.254.0.9"))
        v6_view = await http_announce(c, url6, req(H, 4, port=7004))
        assert _peers(v6_view) == {("2001:db8::7", 7000), ("::1", 7001), ("::1", 7003)}
        v4_view = await http_announce(c, url4, req(H, 5, port=7005, compact=False))
        assert _peers(v4_view) == {("127.0.0.1", 7000), ("198.18.0.9", 7002)}
        # stopped: the client's entry of the other family goes too when it says so again
        await http_announce(c, url4, req(H, 1, port=7000, ipv6="2001:db8::7", event=Event.STOPPED))
        assert ("2001:db8::7", 7000) not in _peers(await http_announce(c, url6, req(H, 4, port=7004)))


async def test_redis_store_replies_carry_external_ip_and_bep7(redis_url: str) -> None:  # noqa: F811
    async with running(redis=redis_url, udp=()) as server, httpx.AsyncClient() as c:
        url = base_url(server) + "/announce"
        h = hashlib.sha1(os.urandom(8)).digest()
        resp = await http_announce(c, url, req(h, 1, port=7000, ipv6="[2001:db8::8]:7010"))
        assert resp.external_ip == "127.0.0.1"
        assert resp.incomplete == 2
        full = await _raw(c, url, req(h, 2, compact=False))
        assert full[b"external ip"] == b"\x7f\0\0\1"
        if has_ipv6():
            six = await http_announce(c, base_url(server, 1) + "/announce", req(h, 3, port=7003))
            assert ("2001:db8::8", 7010) in _peers(six) and six.external_ip == "::1"


async def test_a_session_learns_its_external_address_from_our_tracker(tmp_path: Path) -> None:
    """bitswarm client + bitswarm tracker: the tracker (trusting the loopback proxy) sees the
    session at its ``announce_ip`` and says so in ``external ip``; one tracker's vote (weight 3)
    decides the session's external address."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(32768))
    torrent = parse_torrent(create_torrent(src / "f.bin", version="v1", piece_length=16384))
    async with running(trusted_proxies=frozenset({"127.0.0.1"})) as server:
        url = base_url(server) + "/announce"
        config = SessionConfig(
            listen_host="127.0.0.1", listen_port=0, enable_dht=False, announce_ip="198.18.0.77"
        )
        async with Session(config) as session:
            assert session.reachability.status().get("external_address") in (None, "")
            await session.add(torrent, src, trackers=[url])

            def learned() -> bool:
                return session.reachability.status().get("external_address") == "198.18.0.77"

            await until(learned, timeout=20, interval=0.05, what="the external address")
