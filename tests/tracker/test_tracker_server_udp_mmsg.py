"""UDP tracker (BEP 15) batched path: recvmmsg/sendmmsg on Linux, and the recvfrom fallback."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tracker_server_testlib import has_ipv6, running

from bitswarm.tracker import udp_codec as udp
from bitswarm.tracker._common import Event
from bitswarm.tracker.server import MemoryStore, TrackerConfig, _mmsg
from bitswarm.tracker.server.core import TrackerCore
from bitswarm.tracker.server.udp import UdpTrackerProtocol, UdpWorker

pytestmark = pytest.mark.timeout(60)
LINUX = sys.platform.startswith("linux")
CLIENTS = 5
PER_CLIENT = 100  # 500 announces in one burst


def _announce(cid: int, tid: int, info_hash: bytes, port: int, *, left: int, numwant: int = 50) -> bytes:
    return udp.encode_request(
        udp.AnnounceRequest(
            connection_id=cid,
            transaction_id=tid,
            info_hash=info_hash,
            peer_id=b"-MM0001-" + port.to_bytes(12, "big"),
            downloaded=0,
            left=left,
            uploaded=0,
            event=Event.NONE,
            key=tid,
            port=port,
            num_want=numwant,
        )
    )


def _burst(server: Any, index: int, family: int, host: str) -> dict[str, Any]:
    """CLIENTS blocking sockets connect, then all send PER_CLIENT announces while core.lock is held
    (so the datagrams queue up and recvmmsg returns them in batches); every reply is read back."""
    addr = server.udp_addresses[index]
    hashes = [os.urandom(20) for _ in range(3)]
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(CLIENTS)]
    try:
        cids = []
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.settimeout(5)
            s.connect(addr)
            s.send(udp.encode_request(udp.ConnectRequest(7)))
            resp = udp.decode_response(s.recv(2048), expecting=udp.Action.CONNECT)
            assert isinstance(resp, udp.ConnectResponse) and resp.transaction_id == 7
            cids.append(resp.connection_id)
        sent: dict[tuple[int, int], tuple[bytes, int]] = {}
        with server.core.lock:
            for c, (s, cid) in enumerate(zip(socks, cids, strict=True)):
                for k in range(PER_CLIENT):
                    tid = c * 1000 + k
                    port = 20000 + c * PER_CLIENT + k
                    ih = hashes[k % len(hashes)]
                    s.send(_announce(cid, tid, ih, port, left=k % 2))
                    sent[c, tid] = (ih, port)
        replies: dict[tuple[int, int], udp.AnnounceResponse] = {}
        for c, s in enumerate(socks):
            for _ in range(PER_CLIENT):
                resp = udp.decode_response(s.recv(4096), ipv6=family == socket.AF_INET6)
                assert isinstance(resp, udp.AnnounceResponse), resp
                assert (c, resp.transaction_id) not in replies
                replies[c, resp.transaction_id] = resp
        return {"sent": sent, "replies": replies, "hashes": hashes, "host": host}
    finally:
        for s in socks:
            s.close()


def _check(result: dict[str, Any]) -> None:
    sent, replies = result["sent"], result["replies"]
    assert set(replies) == set(sent)  # every announce answered once, with its own transaction id
    ports_of: dict[bytes, set[int]] = {}
    for ih, port in sent.values():
        ports_of.setdefault(ih, set()).add(port)
    for key, resp in replies.items():
        ih, port = sent[key]
        assert resp.interval >= 1800
        assert 1 <= resp.seeders + resp.leechers <= len(ports_of[ih])
        assert len(resp.peers) <= 50
        for host, peer_port in resp.peers:
            assert host == result["host"]
            assert peer_port in ports_of[ih] and peer_port != port  # same swarm, never itself


@pytest.mark.parametrize("mmsg", [True, False], ids=["mmsg", "recvfrom"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
async def test_burst_of_announces_from_several_sockets(mmsg: bool, v6: bool) -> None:
    if v6 and not has_ipv6():
        pytest.skip("no IPv6 loopback")
    if mmsg and not LINUX:
        pytest.skip("recvmmsg is Linux only")
    async with running(http=(), extra={"udp_mmsg": mmsg}) as server:
        workers: list[UdpWorker] = server._workers
        assert [w.batched for w in workers] == [mmsg] * len(workers)
        index, family, host = (1, socket.AF_INET6, "::1") if v6 else (0, socket.AF_INET, "127.0.0.1")
        result = await asyncio.to_thread(_burst, server, index, family, host)
        _check(result)
        assert server.core.announces["udp"] == CLIENTS * PER_CLIENT
        if mmsg:
            assert workers[index].max_batch > 1  # the queued datagrams came in batches
        else:
            assert workers[index].max_batch == 0
        # the swarm totals agree with what was announced
        for ih in result["hashes"]:
            ports = {p for (h, p) in result["sent"].values() if h == ih}
            seeders, completed, leechers = server.store.scrape(ih)
            assert seeders + leechers == len(ports) and completed == 0


@pytest.mark.skipif(not LINUX, reason="recvmmsg is Linux only")
def test_batched_path_is_the_default_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _mmsg.available()
    config = TrackerConfig(db=None)
    core = TrackerCore(config, MemoryStore(config.ttl))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert UdpWorker(UdpTrackerProtocol(core, b"k" * 32), sock).batched
        monkeypatch.setenv("BITSWARM_UDP_MMSG", "0")
        assert not UdpWorker(UdpTrackerProtocol(core, b"k" * 32), sock).batched


# ------------------------------------------------------------------ serve_ring on crafted slots


def _ring_proto() -> tuple[UdpTrackerProtocol, _mmsg.MmsgRing]:
    """A protocol and a ring whose slots the test fills by hand (the socket is never read)."""
    config = TrackerConfig(db=None)
    proto = UdpTrackerProtocol(TrackerCore(config, MemoryStore(config.ttl)), os.urandom(32))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ring = _mmsg.MmsgRing(sock, 8)
    return proto, ring


def _put(ring: _mmsg.MmsgRing, i: int, data: bytes, host: str, port: int) -> None:
    o = i * _mmsg.RECV_SLOT
    name = struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton(host)
    ring.rbuf[o : o + 8] = name
    ring.rbuf[o + _mmsg.DATA_OFFSET : o + _mmsg.DATA_OFFSET + len(data)] = data
    ring.lens[i * 16 + 14] = len(data)


def _sent(ring: _mmsg.MmsgRing, m: int) -> list[tuple[bytes, int]]:
    """(reply, receive slot it is aimed at) of the first m prepared replies."""
    out = []
    for j in range(m):
        size = ring.send_iov[j * 2 + 1]
        slot = (ring.send_q[j * 8] - ring.rbase) // _mmsg.RECV_SLOT
        out.append((bytes(ring.sbuf[j * ring.send_slot : j * ring.send_slot + size]), slot))
    return out


if LINUX and _mmsg.available():
    _RP, _RING = _ring_proto()
    _RADDR = ("127.0.0.1", 4242)

    @given(
        batch=st.lists(
            st.one_of(
                st.binary(max_size=200),
                st.builds(
                    lambda action, body, valid: (
                        struct.pack(">QII", _RP.connection_id(_RADDR) if valid else 77, action, 1) + body
                    ),
                    st.integers(0, 5),
                    st.binary(max_size=1600),
                    st.booleans(),
                ),
                st.builds(
                    lambda cut, n, ev: _announce(_RP.connection_id(_RADDR), n, b"h" * 20, 1 + n, left=ev)[
                        :cut
                    ],
                    st.integers(0, 120),
                    st.integers(0, 1000),
                    st.integers(0, 1),
                ),
            ),
            min_size=1,
            max_size=8,
        )
    )
    def test_serve_ring_matches_rules_on_random_batches(batch: list[bytes]) -> None:
        for i, data in enumerate(batch):
            _put(_RING, i, data, *_RADDR)
        m = _RP.serve_ring(_RING, len(batch))
        replies = _sent(_RING, m)
        slots = [slot for _, slot in replies]
        assert slots == sorted(set(slots)) and all(0 <= s < len(batch) for s in slots)
        for reply, slot in replies:
            data = batch[slot]
            resp = udp.decode_response(reply)  # every reply is a well-formed BEP 15 response
            if isinstance(resp, udp.ErrorResponse) or len(data) < 98:
                assert len(reply) <= len(data)  # never amplify a possibly spoofed datagram
            if isinstance(resp, udp.AnnounceResponse):
                assert data[8:12] == b"\0\0\0\1" and len(data) >= 98
            if isinstance(resp, udp.ConnectResponse):
                assert resp.connection_id == _RP.connection_id(_RADDR)
        # a datagram gets a reply on the ring path exactly when it gets one on the tuple path
        for slot, data in enumerate(batch):
            assert (slot in slots) == (_RP.handle(data, _RADDR) is not None)


@pytest.mark.skipif(not LINUX, reason="recvmmsg is Linux only")
def test_raw_and_tuple_addresses_share_connection_ids() -> None:
    proto, ring = _ring_proto()
    _put(ring, 0, struct.pack(">QII", udp.PROTOCOL_ID, 0, 9), "10.1.2.3", 6881)
    assert proto.serve_ring(ring, 1) == 1
    ((reply, slot),) = _sent(ring, 1)
    resp = udp.decode_response(reply)
    assert isinstance(resp, udp.ConnectResponse) and resp.transaction_id == 9 and slot == 0
    assert resp.connection_id == proto.connection_id(("10.1.2.3", 6881))
    assert resp.connection_id != proto.connection_id(("10.1.2.3", 6882))
    # an announce with that id over the ring path lands in the store with the source IP
    _put(ring, 0, _announce(resp.connection_id, 5, b"i" * 20, 7000, left=0), "10.1.2.3", 6881)
    assert proto.serve_ring(ring, 1) == 1
    ann = udp.decode_response(_sent(ring, 1)[0][0])
    assert isinstance(ann, udp.AnnounceResponse) and (ann.transaction_id, ann.seeders) == (5, 1)
    assert proto.core.store.announce(b"i" * 20, b"\x7f\0\0\1\0\1", b"p" * 20, False, 0, 10)[2] == (
        socket.inet_aton("10.1.2.3") + (7000).to_bytes(2, "big")
    )
