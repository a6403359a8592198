"""UDP tracker server (BEP 15): conformance, connection-id spoofing, random datagrams."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracker_server_testlib import UdpClient, has_ipv6, running

from bitswarm.tracker import udp_codec as udp
from bitswarm.tracker._common import Event
from bitswarm.tracker.server import Mode
from bitswarm.tracker.server.udp import UdpTrackerProtocol

pytestmark = pytest.mark.timeout(30)
IH = os.urandom(20)


def announce(cid: int, n: int, *, left: int = 1, event: Event = Event.NONE, info_hash: bytes = IH) -> bytes:
    return udp.encode_request(
        udp.AnnounceRequest(
            connection_id=cid,
            transaction_id=100 + n,
            info_hash=info_hash,
            peer_id=b"-UD0001-" + n.to_bytes(12, "big"),
            downloaded=0,
            left=left,
            uploaded=0,
            event=event,
            key=n,
            port=20000 + n,
        )
    )


async def test_connect_announce_scrape_ipv4() -> None:
    async with running(http=()) as server:
        client = await UdpClient.open(server.udp_addresses[0])
        try:
            cid = await client.connect()
            assert cid != udp.PROTOCOL_ID
            client.send(announce(cid, 1, left=0))
            first = udp.decode_response(await client.recv(), expecting=udp.Action.ANNOUNCE)
            assert isinstance(first, udp.AnnounceResponse)
            assert (first.transaction_id, first.seeders, first.leechers, first.peers) == (101, 1, 0, ())
            assert first.interval >= 1800
            client.send(announce(cid, 2))
            second = udp.decode_response(await client.recv())
            assert isinstance(second, udp.AnnounceResponse)
            assert second.peers == (("127.0.0.1", 20001),)
            client.send(announce(cid, 2, left=0, event=Event.COMPLETED))
            await client.recv()
            client.send(udp.encode_request(udp.ScrapeRequest(cid, 9, (IH, b"\0" * 20))))
            scraped = udp.decode_response(await client.recv(), expecting=udp.Action.SCRAPE)
            assert scraped == udp.ScrapeResponse(9, (udp.ScrapeStats(2, 1, 0), udp.ScrapeStats(0, 0, 0)))
            assert server.core.announces["udp"] == 3  # type: ignore[union-attr]
        finally:
            client.close()


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
async def test_ipv6_announce_gets_18_byte_peers() -> None:
    async with running(http=()) as server:
        a = await UdpClient.open(server.udp_addresses[1])
        b = await UdpClient.open(server.udp_addresses[1])
        try:
            cid = await a.connect()
            a.send(announce(cid, 1))
            await a.recv()
            cid_b = await b.connect()
            b.send(announce(cid_b, 2))
            resp = udp.decode_response(await b.recv(), ipv6=True)
            assert isinstance(resp, udp.AnnounceResponse)
            assert resp.peers == (("::1", 20001),)
        finally:
            a.close()
            b.close()


async def test_connection_id_minted_for_another_address_is_refused() -> None:
    async with running(http=()) as server:
        victim = await UdpClient.open(server.udp_addresses[0])
        attacker = await UdpClient.open(server.udp_addresses[0])
        try:
            cid = await victim.connect()
            request = announce(cid, 1)
            attacker.send(request)
            reply = await attacker.recv()
            err = udp.decode_response(reply)
            assert isinstance(err, udp.ErrorResponse) and "connection id" in err.message
            assert len(reply) <= len(request)
            assert server.store.counts() == (0, 0, 0)
            # the protocol constant is never a connection id
            attacker.send(announce(udp.PROTOCOL_ID, 2))
            assert isinstance(udp.decode_response(await attacker.recv()), udp.ErrorResponse)
            assert server.store.counts() == (0, 0, 0)
        finally:
            victim.close()
            attacker.close()


def test_connection_ids_live_for_current_and_previous_slot() -> None:
    class Core:
        config = type("C", (), {"udp_slot": 60})()

    now = [6000.0]
    proto = UdpTrackerProtocol(Core(), b"k" * 32, clock=lambda: now[0])  # type: ignore[arg-type]
    addr = ("10.0.0.1", 5000)
    cid = proto.connection_id(addr)
    assert proto.valid(cid, addr) and not proto.valid(cid, ("10.0.0.1", 5001))
    now[0] += 60
    assert proto.valid(cid, addr)
    now[0] += 60
    assert not proto.valid(cid, addr)
    other = UdpTrackerProtocol(Core(), b"j" * 32, clock=lambda: now[0])  # type: ignore[arg-type]
    assert other.connection_id(addr) != proto.connection_id(addr)


async def test_bad_sizes_and_actions_never_amplify() -> None:
    async with running(http=()) as server:
        client = await UdpClient.open(server.udp_addresses[0])
        try:
            client.send(b"\0" * 15)
            assert await client.nothing()
            client.send(struct.pack(">QII", 1234, 0, 5))  # connect without the protocol id
            assert await client.nothing()
            cid = await client.connect()
            for data in (
                struct.pack(">QII", cid, 9, 1),  # unknown action
                struct.pack(">QII", cid, 1, 2) + b"x" * 10,  # short announce
                struct.pack(">QII", cid, 2, 3) + b"y" * 21,  # scrape not n*20
            ):
                client.send(data)
                reply = await client.recv()
                assert len(reply) <= len(data)
                assert isinstance(udp.decode_response(reply), udp.ErrorResponse)
        finally:
            client.close()


async def test_whitelist_and_private_modes_refuse_over_udp() -> None:
    async with running(http=(), mode=Mode.WHITELIST) as server:
        client = await UdpClient.open(server.udp_addresses[0])
        try:
            cid = await client.connect()
            client.send(announce(cid, 1))
            err = udp.decode_response(await client.recv())
            assert isinstance(err, udp.ErrorResponse) and "whitelist" in err.message
            server.core.whitelist.add(IH)  # type: ignore[union-attr]
            client.send(announce(cid, 1))
            assert isinstance(udp.decode_response(await client.recv()), udp.AnnounceResponse)
        finally:
            client.close()


class _Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, object]] = []

    def sendto(self, data: bytes, addr: object) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False


def _proto() -> tuple[UdpTrackerProtocol, _Sink]:
    from bitswarm.tracker.server import MemoryStore, TrackerConfig
    from bitswarm.tracker.server.core import TrackerCore

    config = TrackerConfig(db=None)
    proto = UdpTrackerProtocol(TrackerCore(config, MemoryStore(config.ttl)), os.urandom(32))
    sink = _Sink()
    proto.transport = sink  # type: ignore[assignment]
    return proto, sink


_PROTO, _SINK = _proto()
_ADDR = ("127.0.0.1", 4242)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda action, body, valid: (
                struct.pack(">QII", _PROTO.connection_id(_ADDR) if valid else 77, action, 1) + body
            ),
            st.integers(0, 5),
            st.binary(max_size=1600),
            st.booleans(),
        ),
        st.builds(
            lambda cut, fields: announce(_PROTO.connection_id(_ADDR), fields)[:cut],
            st.integers(0, 98),
            st.integers(0, 1000),
        ),
    )
)
def test_random_and_truncated_datagrams_no_crash_no_amplification(data: bytes) -> None:
    _SINK.sent.clear()
    _PROTO.datagram_received(data, _ADDR)
    for reply, _ in _SINK.sent:
        action = int.from_bytes(reply[:4], "big")
        if action == 3 or len(data) < 98:
            assert len(reply) <= len(data)
        # every reply is a well-formed BEP 15 response
        udp.decode_response(reply)


async def test_udp_still_serves_after_garbage() -> None:
    async with running(http=()) as server:
        client = await UdpClient.open(server.udp_addresses[0])
        try:
            for n in range(50):
                client.send(os.urandom(n * 7))
            cid = await asyncio.wait_for(_connect_ignoring_noise(client), 5)
            client.send(announce(cid, 5))
            while True:
                resp = udp.decode_response(await client.recv())
                if isinstance(resp, udp.AnnounceResponse):
                    break
        finally:
            client.close()


async def _connect_ignoring_noise(client: UdpClient) -> int:
    """A connect whose reply is told apart from the error replies to the garbage sent before it (they
    may still be arriving: no sleep waits for them)."""
    client.send(udp.encode_request(udp.ConnectRequest(7)))
    while True:  # bounded by the caller's wait_for
        resp = udp.decode_response(await client.recv())
        if isinstance(resp, udp.ConnectResponse) and resp.transaction_id == 7:
            return resp.connection_id
