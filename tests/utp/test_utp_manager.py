"""The asyncio driver over loopback UDP: two socket managers, real datagrams, bytes verified.

Every wait is on an event or future with a timeout; nothing sleeps."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import pytest

from bitswarm.transport import PeerStream, TcpStream
from bitswarm.utp import Packet, PacketType, UtpConfig, UtpSocketManager, UtpStream, decode, encode

TIMEOUT = 60.0


class Watch:
    """Wakes the test whenever a protocol callback ran (waits on events, not sleeps)."""

    event: asyncio.Event | None = None

    @classmethod
    def poke(cls) -> None:
        if cls.event is not None:
            cls.event.set()

    @classmethod
    async def until(cls, cond: Callable[[], bool]) -> None:
        cls.event = event = asyncio.Event()
        while not cond():
            event.clear()
            await asyncio.wait_for(event.wait(), TIMEOUT)


class Sink(asyncio.BufferedProtocol):
    """Receives into its own 64 KiB buffer (the engine's get_buffer/buffer_updated path)."""

    def __init__(self, expect: int = -1) -> None:
        loop = asyncio.get_running_loop()
        self.buf = bytearray(1 << 16)
        self.data = bytearray()
        self.expect = expect
        self.done: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[Exception | None] = loop.create_future()
        self.eof = asyncio.Event()
        self.transport: UtpStream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, UtpStream)
        self.transport = transport
        Watch.poke()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buf[:nbytes]
        Watch.poke()
        if len(self.data) == self.expect and not self.done.done():
            self.done.set_result(None)

    def eof_received(self) -> bool:
        self.eof.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        Watch.poke()


class Source(Sink):
    def __init__(self, expect: int = -1) -> None:
        super().__init__(expect)
        self.writable = asyncio.Event()
        self.writable.set()
        self.paused = 0

    def pause_writing(self) -> None:
        self.paused += 1
        self.writable.clear()
        Watch.poke()

    def resume_writing(self) -> None:
        self.writable.set()


async def write_all(stream: UtpStream, proto: Source, data: bytes, chunk: int = 1 << 16) -> None:
    for i in range(0, len(data), chunk):
        await asyncio.wait_for(proto.writable.wait(), TIMEOUT)
        stream.write(data[i : i + chunk])


async def pair(**kw: object) -> tuple[UtpSocketManager, UtpSocketManager, list[Sink]]:
    accepted: list[Sink] = []
    expect = kw.pop("expect", -1)

    def accept() -> Sink:
        s = Sink(expect)  # type: ignore[arg-type]
        accepted.append(s)
        return s

    server = await UtpSocketManager.open("127.0.0.1", 0, accept=accept, **kw)
    client = await UtpSocketManager.open("127.0.0.1", 0, **kw)
    return server, client, accepted


async def test_16_mib_each_way_at_once_over_loopback() -> None:
    size = 16 << 20
    server, client, accepted = await pair(expect=size)
    try:
        stream, src = await client.connect(server.address, lambda: Source(size), timeout=TIMEOUT)
        up, down = os.urandom(size), os.urandom(size)
        tasks_before = len(asyncio.all_tasks())
        writer = asyncio.ensure_future(write_all(stream, src, up))
        await Watch.until(lambda: bool(accepted))
        sink = accepted[0]
        assert sink.transport is not None
        back = asyncio.ensure_future(write_all(sink.transport, _as_source(sink), down))
        assert len(asyncio.all_tasks()) == tasks_before + 2  # our two writers: no task per connection
        await asyncio.wait_for(asyncio.gather(sink.done, src.done, writer, back), TIMEOUT)
        assert hashlib.sha256(sink.data).digest() == hashlib.sha256(up).digest()
        assert hashlib.sha256(src.data).digest() == hashlib.sha256(down).digest()
        assert stream.get_extra_info("peername") == server.address
        assert sink.transport.get_extra_info("peername") == client.address
        stream.close()
        await asyncio.wait_for(sink.eof.wait(), TIMEOUT)  # the FIN, after every byte
        assert await asyncio.wait_for(sink.lost, TIMEOUT) is None
        assert await asyncio.wait_for(src.lost, TIMEOUT) is None
    finally:
        server.close()
        client.close()


def _as_source(sink: Sink) -> Source:
    """The accepted side writes without flow-control callbacks of its own: wrap a ready event."""
    s = Source.__new__(Source)
    s.writable = asyncio.Event()
    s.writable.set()
    return s


async def _yield_until(cond: Callable[[], bool]) -> None:
    """For the manager's own bookkeeping (no protocol callback to wait on): a connection leaves
    the table in the flush right after its last event; yield loop turns until it has."""
    while not cond():
        await asyncio.sleep(0)


async def test_many_connections_share_one_socket() -> None:
    server, client, accepted = await pair(expect=100_000)
    try:
        payloads = [os.urandom(100_000) for _ in range(20)]
        conns = await asyncio.gather(
            *(client.connect(server.address, Source, timeout=TIMEOUT) for _ in payloads)
        )
        assert client.connections == 20
        for (stream, _), data in zip(conns, payloads, strict=True):
            stream.write(data)
        await Watch.until(lambda: len(accepted) == 20)
        await asyncio.wait_for(asyncio.gather(*(s.done for s in accepted)), TIMEOUT)
        assert sorted(bytes(s.data) for s in accepted) == sorted(payloads)
    finally:
        server.close()
        client.close()


async def test_krpc_datagrams_go_to_the_dht_hook_and_share_the_socket() -> None:
    got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
    mgr = await UtpSocketManager.open("127.0.0.1", 0, on_other_datagram=lambda d, a: got.put_nowait((d, a)))
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.bind(("127.0.0.1", 0))
    plain.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        ping = b"d1:ad2:id20:" + b"A" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe"
        plain.sendto(ping, mgr.address)
        data, addr = await asyncio.wait_for(got.get(), TIMEOUT)
        assert data == ping and addr == plain.getsockname()
        mgr.sendto(b"d1:rd2:id20:" + b"B" * 20 + b"e1:t2:aa1:y1:re", addr)  # the DHT's reply, same port
        reply, src = await asyncio.wait_for(loop.sock_recvfrom(plain, 2048), TIMEOUT)
        assert reply.startswith(b"d1:r") and src == mgr.address
        assert mgr.stats.other_in == 1 and mgr.stats.datagrams_in == 0
    finally:
        plain.close()
        mgr.close()


async def test_packet_for_unknown_connection_gets_a_reset() -> None:
    mgr = await UtpSocketManager.open("127.0.0.1", 0)
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.bind(("127.0.0.1", 0))
    plain.setblocking(False)
    try:
        stray = encode(Packet(PacketType.DATA, 4242, 1, 0, 1000, 77, 5, b"hello"))
        plain.sendto(stray, mgr.address)
        raw, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_recvfrom(plain, 2048), TIMEOUT)
        reset = decode(raw)
        assert (reset.type, reset.connection_id, reset.ack_nr) == (PacketType.RESET, 4242, 77)
        plain.sendto(b"\x01\x00short", mgr.address)  # version 1, but shorter than a header: not uTP
        plain.sendto(encode(Packet(PacketType.RESET, 9, 0, 0, 0, 0, 0)), mgr.address)  # no reply
        plain.sendto(stray, mgr.address)
        await asyncio.wait_for(asyncio.get_running_loop().sock_recvfrom(plain, 2048), TIMEOUT)
        assert mgr.stats.resets_sent == 2
    finally:
        plain.close()
        mgr.close()


async def test_connect_to_a_silent_port_times_out_and_leaves_nothing() -> None:
    cfg = UtpConfig(initial_rto=0.05, syn_retries=1)
    silent = await UtpSocketManager.open("127.0.0.1", 0)  # no accept factory: SYNs are ignored
    client = await UtpSocketManager.open("127.0.0.1", 0, config=cfg)
    try:
        with pytest.raises(TimeoutError):
            await client.connect(silent.address, Source, timeout=TIMEOUT)  # the SYN retries run out
        with pytest.raises(TimeoutError):
            await client.connect(silent.address, Source, timeout=0.01)  # the caller's timeout
        await asyncio.wait_for(_yield_until(lambda: client.connections == 0), TIMEOUT)
        assert silent.stats.refused >= 2
    finally:
        silent.close()
        client.close()


async def test_abort_resets_the_peer() -> None:
    server, client, accepted = await pair()
    try:
        stream, src = await client.connect(server.address, Source, timeout=TIMEOUT)
        stream.write(b"hi")
        await Watch.until(lambda: bool(accepted) and bytes(accepted[0].data) == b"hi")
        stream.abort()
        exc = await asyncio.wait_for(accepted[0].lost, TIMEOUT)
        assert isinstance(exc, ConnectionResetError)
        assert await asyncio.wait_for(src.lost, TIMEOUT) is None
        await asyncio.wait_for(
            _yield_until(lambda: server.connections == 0 and client.connections == 0), TIMEOUT
        )
    finally:
        server.close()
        client.close()


async def test_pause_reading_pushes_back_on_the_writer() -> None:
    size = 6 << 20
    cfg = UtpConfig(recv_window=256 << 10, send_high_water=512 << 10, send_low_water=128 << 10)
    server, client, accepted = await pair(expect=size, config=cfg)
    try:
        stream, src = await client.connect(server.address, Source, timeout=TIMEOUT)
        stream.write(b"x")
        await Watch.until(lambda: bool(accepted) and len(accepted[0].data) == 1)
        sink = accepted[0]
        assert sink.transport is not None
        sink.transport.pause_reading()
        data = os.urandom(size - 1)
        writer = asyncio.ensure_future(write_all(stream, src, data))
        await Watch.until(lambda: src.paused > 0 and not src.writable.is_set())
        held = len(sink.data)
        assert held < 1 << 20  # the reader is paused: nothing more reaches the protocol
        sink.transport.resume_reading()
        await asyncio.wait_for(asyncio.gather(sink.done, writer), TIMEOUT)
        assert bytes(sink.data) == b"x" + data
    finally:
        server.close()
        client.close()


async def _gso_transfer(gso: bool) -> int:
    size = 3 << 20
    server, client, accepted = await pair(expect=size, use_gso=gso)
    try:
        stream, src = await client.connect(server.address, Source, timeout=TIMEOUT)
        data = os.urandom(size)
        await write_all(stream, src, data)
        await Watch.until(lambda: bool(accepted))
        await asyncio.wait_for(accepted[0].done, TIMEOUT)
        assert bytes(accepted[0].data) == data
        return client.stats.gso_sends
    finally:
        server.close()
        client.close()


async def test_plain_sends_when_gso_is_off() -> None:
    assert await _gso_transfer(False) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="UDP GSO is Linux-only")
def test_gso_batches_runs_of_datagrams_under_uvloop() -> None:
    import uvloop  # a dependency on Linux, and the loop bitswarm runs on: it reads datagrams in bursts

    assert uvloop.run(_gso_transfer(True)) > 0


class Receiver:
    """The engine's StreamReceiver shape, no asyncio base class (like the session's peer connection)."""

    def __init__(self) -> None:
        self.buf = bytearray(1000)  # smaller than a datagram: delivery takes several rounds
        self.data = bytearray()
        self.stream: Any = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, stream: Any) -> None:
        self.stream = stream
        Watch.poke()

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buf[:nbytes]
        Watch.poke()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


async def test_stream_is_a_peer_stream_for_the_engines_receivers() -> None:
    got: list[Receiver] = []

    def accept() -> Receiver:
        got.append(Receiver())
        return got[-1]

    server = await UtpSocketManager.open("127.0.0.1", 0, accept=accept)
    client = await UtpSocketManager.open("127.0.0.1", 0)
    try:
        stream, mine = await client.connect(server.address, Receiver, timeout=TIMEOUT)
        check: PeerStream = stream  # the seam's protocol, checked by mypy
        assert (check.kind, check.encrypted, check.peer_address) == ("utp", False, server.address)
        stream.set_receive_hint(16384)  # accepted, ignored
        data = os.urandom(300_000)
        stream.writelines([data[:100_000], memoryview(data)[100_000:]])
        await Watch.until(lambda: bool(got) and len(got[0].data) == len(data))
        assert bytes(got[0].data) == data
        got[0].stream.write(b"pong")
        await Watch.until(lambda: bytes(mine.data) == b"pong")
        # the TcpStream adapter of the seam drives a uTP stream too
        adapted = Receiver()
        await client.connect(server.address, lambda: TcpStream(adapted, kind="utp"), timeout=TIMEOUT)
        assert adapted.stream.kind == "utp" and adapted.stream.peer_address == server.address
        adapted.stream.write(b"via adapter")
        await Watch.until(lambda: len(got) == 2 and bytes(got[1].data) == b"via adapter")
        stream.close()
        assert await asyncio.wait_for(got[0].lost, TIMEOUT) is None
    finally:
        server.close()
        client.close()


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 on this host")
async def test_dual_stack_socket_serves_ipv4_peers() -> None:
    accepted: list[Sink] = []

    def accept() -> Sink:
        accepted.append(Sink(50_000))
        return accepted[-1]

    got: list[tuple[str, int]] = []
    server = await UtpSocketManager.open("::", 0, accept=accept, on_other_datagram=lambda d, a: got.append(a))
    client = await UtpSocketManager.open("127.0.0.1", 0)
    try:
        port = server.address[1]
        stream, src = await client.connect(("127.0.0.1", port), lambda: Source(4), timeout=TIMEOUT)
        data = os.urandom(50_000)
        stream.write(data)
        await Watch.until(lambda: bool(accepted))
        await asyncio.wait_for(accepted[0].done, TIMEOUT)
        assert bytes(accepted[0].data) == data
        assert accepted[0].transport is not None
        assert accepted[0].transport.get_extra_info("peername") == client.address  # plain IPv4 form
        accepted[0].transport.write(b"back")
        await asyncio.wait_for(src.done, TIMEOUT)
        server.sendto(b"d1:y1:qe", client.address)  # the DHT's replies reach IPv4 nodes too
        assert bytes(src.data) == b"back"
    finally:
        server.close()
        client.close()


async def test_time_wait_acks_a_retransmitted_fin_instead_of_resetting() -> None:
    server, client, accepted = await pair(expect=5)
    try:
        stream, src = await client.connect(server.address, Source, timeout=TIMEOUT)
        stream.write(b"hello")
        await Watch.until(lambda: bool(accepted))
        await asyncio.wait_for(accepted[0].done, TIMEOUT)
        conn = stream.get_extra_info("utp_connection")
        stream.close()  # our FIN; the server's protocol closes on EOF: its FIN; both CLOSED
        await asyncio.wait_for(asyncio.gather(accepted[0].lost, src.lost), TIMEOUT)
        await asyncio.wait_for(_yield_until(lambda: conn.finished and server.connections == 1), TIMEOUT)
        # our FIN again, as if the server's ACK of it had been lost: the server is in TIME_WAIT and
        # answers with an ACK, not with a RESET (which would fail our clean close)
        fin = Packet(PacketType.FIN, conn.send_id, 0, 0, 0, (conn.seq_nr - 1) & 0xFFFF, conn.ack_nr)
        before = server.stats.datagrams_out
        client.sendto(encode(fin), server.address)
        await asyncio.wait_for(
            _yield_until(lambda: server.stats.datagrams_out > before or server.stats.resets_sent > 0), TIMEOUT
        )
        assert server.stats.resets_sent == 0
    finally:
        server.close()
        client.close()


class _Relay(asyncio.DatagramProtocol):
    def __init__(self, forward: Callable[[bytes], None], drop: Callable[[], bool]) -> None:
        self.forward = forward
        self.drop = drop
        self.peer: tuple[str, int] | None = None
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer = addr
        if self.drop():
            self.dropped += 1
        else:
            self.forward(data)


async def test_lossy_path_8_mib_with_2_percent_loss_each_way() -> None:
    """A UDP relay between the managers drops 2 % of the datagrams in each direction."""
    import random

    rng = random.Random(1234)
    size = 8 << 20
    server, client, accepted = await pair(expect=size)
    loop = asyncio.get_running_loop()
    back_t: Any = None
    front_t: Any = None

    def to_server(d: bytes) -> None:
        back_t.sendto(d, server.address)

    def to_client(d: bytes) -> None:
        if front.peer is not None:
            front_t.sendto(d, front.peer)

    front = _Relay(to_server, lambda: rng.random() < 0.02)
    back = _Relay(to_client, lambda: rng.random() < 0.02)
    front_t, _ = await loop.create_datagram_endpoint(lambda: front, local_addr=("127.0.0.1", 0))
    back_t, _ = await loop.create_datagram_endpoint(lambda: back, local_addr=("127.0.0.1", 0))
    try:
        stream, src = await client.connect(front_t.get_extra_info("sockname"), Source, timeout=TIMEOUT)
        data = os.urandom(size)
        await write_all(stream, src, data)
        await Watch.until(lambda: bool(accepted))
        await asyncio.wait_for(accepted[0].done, TIMEOUT)
        assert hashlib.sha256(accepted[0].data).digest() == hashlib.sha256(data).digest()
        conn = stream.get_extra_info("utp_connection")
        assert front.dropped > 0 and back.dropped > 0
        assert 0 < conn.stats.retransmits <= 2 * front.dropped + 10  # no go-back-N storms
    finally:
        server.close()
        client.close()
        front_t.close()
        back_t.close()


async def test_dht_node_and_utp_share_one_port() -> None:
    """The wiring the engine uses: the DHT node sends through the manager and gets its datagrams."""
    from bitswarm.dht import DHTConfig, DHTNode

    loop = asyncio.get_running_loop()
    server, client, accepted = await pair(expect=2 << 20)
    nodes = []
    for mgr in (server, client):
        node = DHTNode(None, mgr.sendto, loop.time, config=DHTConfig(lan=True))
        mgr.on_other_datagram = node.datagram_received
        nodes.append(node)
    try:
        stream, src = await client.connect(server.address, Source, timeout=TIMEOUT)
        data = os.urandom(2 << 20)
        writer = asyncio.ensure_future(write_all(stream, src, data))
        pong: asyncio.Future[object] = loop.create_future()

        def answered(r: object) -> None:
            if not pong.done():
                pong.set_result(r)

        nodes[1].ping(server.address, answered)  # mid-transfer
        reply = await asyncio.wait_for(pong, TIMEOUT)
        assert getattr(reply, "id", None) == nodes[0].node_id  # the server node answered
        await Watch.until(lambda: bool(accepted))
        await asyncio.wait_for(asyncio.gather(accepted[0].done, writer), TIMEOUT)
        assert bytes(accepted[0].data) == data
        assert server.stats.other_in >= 1 and client.stats.other_in >= 1  # the ping and its reply
    finally:
        server.close()
        client.close()


async def test_cancelled_connect_and_closed_manager_leave_nothing_behind() -> None:
    silent = await UtpSocketManager.open("127.0.0.1", 0)  # never answers a SYN
    server, client, accepted = await pair()
    try:
        task = asyncio.ensure_future(client.connect(silent.address, Source, timeout=TIMEOUT))
        await asyncio.wait_for(_yield_until(lambda: client.connections == 1), TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(_yield_until(lambda: client.connections == 0), TIMEOUT)
        stream, src = await client.connect(server.address, Source, timeout=TIMEOUT)  # still usable
        stream.write(b"x")
        await Watch.until(lambda: bool(accepted) and accepted[0].data == b"x")
        client.close()  # every stream hears of it
        exc = await asyncio.wait_for(src.lost, TIMEOUT)
        assert isinstance(exc, ConnectionAbortedError)
        assert isinstance(await asyncio.wait_for(accepted[0].lost, TIMEOUT), ConnectionResetError)
        assert client.connections == 0
        await asyncio.wait_for(client.closed.wait(), TIMEOUT)
    finally:
        silent.close()
        server.close()
        client.close()


# ---- ICMP errors (Linux: IP_RECVERR and the socket's error queue) ------------------------------

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the ICMP error queue is Linux-only")


def _closed_udp_port(host: str = "127.0.0.1") -> tuple[str, int]:
    """A loopback UDP port nothing listens on: the kernel answers datagrams with ICMP port unreachable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return host, int(s.getsockname()[1])


async def _dial_closed_port(host: str = "127.0.0.1", bind: str = "127.0.0.1") -> float:
    client = await UtpSocketManager.open(bind, 0)
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        with pytest.raises(ConnectionRefusedError):
            await client.connect(_closed_udp_port(host), Source, timeout=5.0)
        elapsed = loop.time() - start
        assert client.stats.unreachable == 1
        await asyncio.wait_for(_yield_until(lambda: client.connections == 0), TIMEOUT)
        return elapsed
    finally:
        client.close()


@linux_only
async def test_connect_to_a_closed_port_is_refused_at_once() -> None:
    """ICMP port unreachable for the SYN fails the dial now, not after the 5 s timeout."""
    assert await _dial_closed_port() < 0.5


@linux_only
def test_connect_to_a_closed_port_is_refused_at_once_under_uvloop() -> None:
    import uvloop

    assert uvloop.run(_dial_closed_port()) < 0.5


@linux_only
@pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 on this host")
async def test_dual_stack_socket_refuses_ipv4_and_ipv6_dials_at_once() -> None:
    assert await _dial_closed_port("127.0.0.1", bind="::") < 0.5
    assert await _dial_closed_port("::1", bind="::") < 0.5


@linux_only
async def test_icmp_fails_a_dial_at_once_and_an_established_connection_on_the_probes_report() -> None:
    """A scripted peer accepts our SYN, then its socket closes (a SIGKILLed peer): the burst of ICMP
    port unreachable that our data and a second dial to the same address draw fails the dial at
    once, but the established connection only when the probe a moment later draws another one.
    ICMP for a DHT query through the shared socket is dropped."""
    loop = asyncio.get_running_loop()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    addr = peer.getsockname()
    # the probe 0.5 s (not 0.1 s) after the first report: time for the checks in between on a busy box
    cfg = UtpConfig(refused_confirm=0.5)
    client = await UtpSocketManager.open("127.0.0.1", 0, on_other_datagram=lambda d, a: None, config=cfg)
    server = await UtpSocketManager.open("127.0.0.1", 0, accept=Sink)
    try:
        dial = asyncio.ensure_future(client.connect(addr, Source, timeout=TIMEOUT))
        raw, _ = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), TIMEOUT)
        syn = decode(raw)
        assert syn.type == PacketType.SYN
        syn_ack = Packet(PacketType.STATE, syn.connection_id, 0, 0, 1 << 20, 500, syn.seq_nr)
        peer.sendto(encode(syn_ack), client.address)
        stream, src = await asyncio.wait_for(dial, TIMEOUT)
        peer.close()  # from now on the kernel answers the address with ICMP port unreachable
        killed = loop.time()
        stream.write(b"are you there?")
        client.sendto(b"d1:ad2:id20:xxxxxxxxxxxxxxxxxxxxe1:q4:ping1:t2:aa1:y1:qe", addr)  # the DHT's
        with pytest.raises(ConnectionRefusedError):
            await client.connect(addr, Source, timeout=5.0)
        assert client.stats.unreachable == 1
        assert not src.lost.done() and not stream.is_closing()
        assert stream.get_extra_info("utp_connection").state.name == "CONNECTED"
        # the socket still works for everyone else
        other, _ = await client.connect(server.address, Source, timeout=TIMEOUT)
        other.close()
        # the probe after the first report (a closed port: refused_confirm) draws the second: the
        # connection ends, long before its retransmissions (0.5 + 1 + 2 + 4 s) would give up
        exc = await asyncio.wait_for(src.lost, TIMEOUT)
        assert isinstance(exc, ConnectionResetError) and "unreachable" in str(exc)
        assert 0.45 <= loop.time() - killed < 3.0
        assert client.stats.unreachable_closed == 1
    finally:
        peer.close()
        server.close()
        client.close()
