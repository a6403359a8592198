"""The shared UDP tracker endpoint (issue 24): many clients, one socket, one connect per tracker,
replies routed by transaction id and source address, connection ids on the injected clock."""

from __future__ import annotations

import asyncio
import contextlib

from tests.tracker.test_tracker_client import ScriptedUdpTracker

from bitswarm.tracker import udp_codec as u
from bitswarm.tracker.client import AnnounceParams, UdpTrackerClient
from bitswarm.tracker.udp_endpoint import CONNECTION_ID_LIFETIME, UdpTrackerEndpoint


class HoldingTracker(ScriptedUdpTracker):
    """A real UDP socket answering with our codec. Announce replies name the torrent (the peer's
    port is the info hash's first byte) and are held until ``hold`` of them are waiting, then sent
    in reverse order (interleaved with respect to the requests)."""

    def __init__(self, hold: int = 1, answer_connects: bool = True) -> None:
        super().__init__()
        self.hold = hold
        self.answer_connects = answer_connects
        self.held: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        req = u.decode_request(data)
        self.received.append(req)
        assert self.transport is not None
        if isinstance(req, u.ConnectRequest):
            if self.answer_connects:
                reply = u.ConnectResponse(req.transaction_id, next(self.conn_ids))
                self.transport.sendto(u.encode_response(reply), addr)
            return
        assert isinstance(req, u.AnnounceRequest)
        peers = (("10.0.0.1", 1000 + req.info_hash[0]),)
        resp = u.AnnounceResponse(req.transaction_id, 900, 0, 1, peers)
        self.held.append((u.encode_response(resp), addr))
        if len(self.held) >= self.hold:
            for data_out, to in reversed(self.held):
                self.transport.sendto(data_out, to)
            self.held.clear()

    def kinds(self) -> list[str]:
        return [type(r).__name__ for r in self.received]


async def _tracker(**kw: object) -> tuple[HoldingTracker, asyncio.DatagramTransport, str]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: HoldingTracker(**kw),  # type: ignore[arg-type]
        local_addr=("127.0.0.1", 0),
    )
    return proto, transport, f"udp://127.0.0.1:{transport.get_extra_info('sockname')[1]}"


def _params(i: int) -> AnnounceParams:
    return AnnounceParams(bytes([i]) * 20, b"-BS0001-" + bytes(12), 6881)


async def test_many_clients_one_socket_one_connect_replies_routed_by_tid() -> None:
    n = 40
    server, transport, url = await _tracker(hold=n)
    endpoint = UdpTrackerEndpoint()
    clients = [UdpTrackerClient(url, retry_base=5.0, max_retries=1, endpoint=endpoint) for _ in range(n)]
    try:
        async with asyncio.timeout(10):
            results = await asyncio.gather(*(c.announce(_params(i)) for i, c in enumerate(clients)))
        # every torrent got its own reply although they came back in reverse order
        assert [r.peers for r in results] == [(("10.0.0.1", 1000 + i),) for i in range(n)]
        assert endpoint.sockets_opened == 1 and endpoint.sockets == 1
        assert server.kinds().count("ConnectRequest") == 1  # the concurrent connects coalesced
        assert server.kinds().count("AnnounceRequest") == n
        assert {r.connection_id for r in server.received if isinstance(r, u.AnnounceRequest)} == {100}
        assert endpoint.in_flight == 0
    finally:
        for c in clients:
            await c.aclose()
        assert endpoint.sockets == 1  # a shared endpoint is its owner's to close
        endpoint.close()
        transport.close()
    assert endpoint.sockets == 0


async def test_stray_garbage_and_spoofed_datagrams_are_ignored() -> None:
    server, transport, url = await _tracker(hold=1)
    server.answer_connects = False
    endpoint = UdpTrackerEndpoint()
    client = UdpTrackerClient(url, retry_base=5.0, max_retries=1, endpoint=endpoint)
    loop = asyncio.get_running_loop()
    spoofer, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    try:
        task = asyncio.create_task(client.announce(_params(7)))
        async with asyncio.timeout(10):
            while not server.received:
                await asyncio.sleep(0.01)
        connect = server.received[0]
        assert isinstance(connect, u.ConnectRequest)
        our = endpoint._sockets[next(iter(endpoint._sockets))].transport
        assert our is not None
        ours = our.get_extra_info("sockname")[:2]
        # garbage, a reply to nobody, and the right transaction id from the wrong address
        transport.sendto(b"\x00garbage", ours)
        transport.sendto(u.encode_response(u.ConnectResponse(connect.transaction_id ^ 1, 5)), ours)
        spoofer.sendto(u.encode_response(u.ConnectResponse(connect.transaction_id, 666)), ours)
        await asyncio.sleep(0.05)
        assert not task.done()
        transport.sendto(u.encode_response(u.ConnectResponse(connect.transaction_id, 42)), ours)
        async with asyncio.timeout(10):
            result = await task
        assert result.peers == (("10.0.0.1", 1007),)
        ann = server.received[-1]
        assert isinstance(ann, u.AnnounceRequest) and ann.connection_id == 42
    finally:
        spoofer.close()
        endpoint.close()
        transport.close()


async def test_connection_id_is_shared_and_expires_on_the_injected_clock() -> None:
    server, transport, url = await _tracker(hold=1)
    now = [0.0]
    endpoint = UdpTrackerEndpoint(clock=lambda: now[0])
    a = UdpTrackerClient(url, retry_base=5.0, max_retries=1, endpoint=endpoint)
    b = UdpTrackerClient(url, retry_base=5.0, max_retries=1, endpoint=endpoint)
    try:
        async with asyncio.timeout(10):
            await a.announce(_params(1))
            now[0] = CONNECTION_ID_LIFETIME - 1
            await b.announce(_params(2))  # another torrent, the same tracker: no connect
            assert server.kinds() == ["ConnectRequest", "AnnounceRequest", "AnnounceRequest"]
            now[0] = CONNECTION_ID_LIFETIME + 1
            await b.announce(_params(3))
        assert server.kinds()[3:] == ["ConnectRequest", "AnnounceRequest"]
        last = server.received[-1]
        assert isinstance(last, u.AnnounceRequest) and last.connection_id == 101
    finally:
        endpoint.close()
        transport.close()


async def test_cancel_during_a_pending_request_leaves_no_waiter() -> None:
    server, transport, url = await _tracker(hold=2)  # the first announce is never answered alone
    endpoint = UdpTrackerEndpoint()
    client = UdpTrackerClient(url, retry_base=5.0, max_retries=1, endpoint=endpoint)
    try:
        task = asyncio.create_task(client.announce(_params(1)))
        async with asyncio.timeout(10):
            while "AnnounceRequest" not in server.kinds():
                await asyncio.sleep(0.01)
        assert endpoint.in_flight == 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert endpoint.in_flight == 0
        # a connect nobody waits for any more is dropped too (127.0.0.2: nobody answers there)
        silent = UdpTrackerClient(url.replace("127.0.0.1", "127.0.0.2"), retry_base=5.0, endpoint=endpoint)
        now_connect = asyncio.create_task(silent.announce(_params(2)))
        async with asyncio.timeout(10):
            while not endpoint._connecting:
                await asyncio.sleep(0.01)
        assert endpoint.in_flight == 2  # the connect and the announce's own transaction id
        now_connect.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await now_connect
        assert endpoint.in_flight == 0 and not endpoint._connecting
        # the client is still usable (the held reply of the cancelled one goes to nobody)
        server.hold = 1
        async with asyncio.timeout(10):
            result = await client.announce(_params(3))
        assert result.peers == (("10.0.0.1", 1003),)
        assert endpoint.in_flight == 0
    finally:
        endpoint.close()
        transport.close()


async def test_a_standalone_client_owns_its_socket_and_closes_it() -> None:
    server, transport, url = await _tracker(hold=1)
    client = UdpTrackerClient(url, retry_base=5.0, max_retries=1)
    try:
        async with asyncio.timeout(10):
            await client.announce(_params(4))
        first = client.endpoint
        assert first.sockets == 1
        await client.aclose()
        assert first.sockets == 0 and first.closed
        async with asyncio.timeout(10):
            await client.announce(_params(5))  # usable again: a new socket, a new connect
        assert server.kinds().count("ConnectRequest") == 2
    finally:
        await client.aclose()
        transport.close()


async def test_transactions_to_one_tracker_are_windowed() -> None:
    """A closing session's ``stopped`` announces all at once: at most ``per_tracker`` in flight to
    one tracker (5,000 replies together overflowed the socket's receive buffer: 256 were read)."""
    n, window = 20, 4
    server, transport, url = await _tracker(hold=10**6)  # holds every announce reply
    endpoint = UdpTrackerEndpoint(per_tracker=window)
    clients = [UdpTrackerClient(url, retry_base=5.0, max_retries=1, endpoint=endpoint) for _ in range(n)]
    try:
        tasks = [asyncio.create_task(c.announce(_params(i))) for i, c in enumerate(clients)]
        async with asyncio.timeout(10):
            while server.kinds().count("AnnounceRequest") < window:
                await asyncio.sleep(0.01)
        for _ in range(20):
            await asyncio.sleep(0)
        assert server.kinds().count("AnnounceRequest") == window
        server.hold = 1
        assert server.transport is not None
        for data_out, to in server.held:
            server.transport.sendto(data_out, to)
        server.held.clear()
        async with asyncio.timeout(10):
            results = await asyncio.gather(*tasks)
        assert [r.peers for r in results] == [(("10.0.0.1", 1000 + i),) for i in range(n)]
        assert server.kinds().count("AnnounceRequest") == n and endpoint.in_flight == 0
    finally:
        endpoint.close()
        transport.close()
