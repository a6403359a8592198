"""The sans-I/O uTP connection through a fake link with injected time: handshake, data, loss,
reordering, duplication, windows, retransmission back-off, SACK, FIN/RESET, sequence wraparound."""

from __future__ import annotations

import itertools
import os

import pytest
from utp_link import BottleneckLink, Link

from bitswarm.errors import LocalProtocolError
from bitswarm.utp import (
    HEADER_SIZE,
    Closed,
    Connected,
    Data,
    EndOfStream,
    Packet,
    PacketType,
    Reset,
    State,
    UtpConfig,
    UtpConnection,
    UtpPacketError,
    WritableAgain,
    decode,
    encode,
    seq_diff,
)


def kind(dgram: bytes) -> PacketType:
    return decode(dgram).type


def transfer(link: Link, data: bytes, chunk: int = 1 << 16) -> None:
    """Send ``data`` from a to b through the link, as the send buffer allows."""
    b = link.connect()
    rest = memoryview(data)

    def done() -> bool:
        nonlocal rest
        while rest and link.a.conn.send_buffered < 4 * chunk:
            link.a.conn.send(rest[:chunk])
            rest = rest[chunk:]
        return len(b.received) >= len(data)

    link.run(done)
    assert bytes(b.received) == data


def test_handshake_connection_ids_and_sequence_numbers() -> None:
    link = Link(conn_id=1000, a_seq=77, b_seq=5000)
    a = link.a.conn
    assert a.state is State.SYN_SENT
    syn = decode(a.datagrams_to_send(0.0)[0])
    assert (syn.type, syn.connection_id, syn.seq_nr, syn.timestamp_diff_us) == (PacketType.SYN, 1000, 77, 0)
    assert a.recv_id == 1000 and a.send_id == 1001
    b = UtpConnection.accept(encode(syn), 0.01, initial_seq=5000)
    assert b.state is State.SYN_RECV and b.recv_id == 1001 and b.send_id == 1000
    ack = decode(b.datagrams_to_send(0.01)[0])
    # the SYN-ACK: an ST_STATE on the initiator's id, acking the SYN, carrying our first seq
    assert (ack.type, ack.connection_id, ack.ack_nr, ack.seq_nr) == (PacketType.STATE, 1000, 77, 5000)
    assert ack.timestamp_diff_us == 10_000  # our clock minus the SYN's timestamp
    a.receive_datagram(encode(ack), 0.02)
    assert a.state.value == "connected" and a.pop_events() == [Connected()]  # (mypy narrowed a.state)
    a.send(b"hi")
    data = decode(a.datagrams_to_send(0.02)[0])
    assert (data.type, data.connection_id, data.seq_nr, data.ack_nr) == (PacketType.DATA, 1001, 78, 4999)
    assert b.pop_events() == [Connected()]
    b.receive_datagram(encode(data), 0.03)
    assert b.state.value == "connected"
    assert b.pop_events() == [Data(b"hi")]
    b.send(b"yo")
    reply = decode(b.datagrams_to_send(0.03)[0])
    assert (reply.type, reply.seq_nr, reply.ack_nr) == (PacketType.DATA, 5000, 78)


def test_simple_transfer_both_ways_and_clean_close() -> None:
    link = Link(seed=3)
    b = link.connect()
    link.a.conn.send(b"hello")
    b.conn.send(b"world")
    link.run(lambda: bytes(b.received) == b"hello" and bytes(link.a.received) == b"world")
    link.a.conn.close()
    assert link.a.conn.state is State.FIN_SENT
    link.run(lambda: b.eof)
    b.conn.send(b"after your FIN")  # half-closed: the other direction still works
    link.run(lambda: bytes(link.a.received) == b"worldafter your FIN")
    b.conn.close()
    link.run(lambda: link.a.conn.state is State.CLOSED and b.conn.state is State.CLOSED)
    assert link.a.events[-2:] == [EndOfStream(), Closed()]
    assert b.events[-1] == Closed()
    assert link.a.conn.next_timeout() is None and b.conn.next_timeout() is None


def test_bulk_transfer_and_packet_sizes() -> None:
    link = Link(seed=1)
    sizes: list[int] = []

    def record(d: bytes, who: str) -> bool:
        sizes.append(len(d))
        return False

    link.drop = record
    data = os.urandom(2_000_000)
    transfer(link, data)
    assert max(sizes) <= 1452  # the IPv6 UDP payload of a 1500-byte path
    assert max(sizes) == 1400 + HEADER_SIZE  # full-size packets near the path MTU
    assert link.a.conn.stats.retransmits == 0
    assert link.a.conn.cwnd > 100_000  # LEDBAT grew the window on an uncongested link


@pytest.mark.parametrize(("a_seq", "b_seq"), [(0xFFF0, 0xFFFA), (0xFFFF, 0), (0x7FFF, 0x8000)])
def test_sequence_numbers_wrap_around(a_seq: int, b_seq: int) -> None:
    link = Link(a_seq=a_seq, b_seq=b_seq, seed=2)
    link.jitter = 0.02  # reordering across the wrap too
    data = os.urandom(300 * 1400)
    transfer(link, data)
    assert seq_diff(link.a.conn.seq_nr, a_seq) == 300 + 1  # SYN + 300 data packets
    b = link.b
    assert b is not None
    b.conn.send(os.urandom(100 * 1400))
    link.run(lambda: len(link.a.received) == 100 * 1400)


def test_loss_is_repaired_by_sack_fast_retransmit_before_any_timeout() -> None:
    link = Link(seed=4)
    b = link.connect()
    dropped: list[int] = []

    def drop_one(d: bytes, who: str) -> bool:
        p = decode(d)
        if who == "a" and p.type is PacketType.DATA and not dropped:
            dropped.append(p.seq_nr)
            return True
        return False

    link.drop = drop_one
    sacks: list[bytes] = []
    inner = link.drop

    def watch(d: bytes, who: str) -> bool:
        p = decode(d)
        if who == "b" and p.sack is not None:
            sacks.append(p.sack)
        return inner(d, who)

    link.drop = watch
    data = os.urandom(20 * 1400)
    link.a.conn.send(data)
    link.run(lambda: len(b.received) == len(data))
    assert bytes(b.received) == data
    assert sacks, "the receiver never sent a selective ACK"
    assert link.a.conn.stats.fast_retransmits >= 1
    assert link.a.conn.stats.timeouts == 0
    assert link.now < 0.5  # well before the minimum RTO


def test_three_duplicate_acks_trigger_fast_retransmit() -> None:
    link = Link(seed=5)
    link.connect()
    a = link.a.conn
    link.flush()
    a.send(os.urandom(5 * 1400))
    sent = a.datagrams_to_send(link.now)
    assert [kind(d) for d in sent] == [PacketType.DATA] * 2  # the initial window: two packets
    first = decode(sent[0])
    dup = Packet(PacketType.STATE, a.recv_id, 0, 0, 1 << 20, 1, (first.seq_nr - 1) & 0xFFFF)
    for i in range(3):
        assert a.datagrams_to_send(link.now) == [] or i > 0
        a.receive_datagram(encode(dup), link.now + 0.001 * i)
    assert a.stats.fast_retransmits == 1
    again = [decode(d) for d in a.datagrams_to_send(link.now + 0.01)]
    assert again[0].seq_nr == first.seq_nr and again[0].type is PacketType.DATA
    assert a.stats.retransmits == 1


def test_reordering_and_duplication_deliver_bytes_once_in_order() -> None:
    link = Link(seed=6)
    link.jitter = 0.05
    link.duplicate = lambda d, who: True
    data = os.urandom(200_000)
    transfer(link, data)
    assert link.b is not None and link.b.conn.stats.duplicates > 0


def test_retransmission_backs_off_and_gives_up() -> None:
    cfg = UtpConfig(max_timeouts=4)
    link = Link(seed=7, config=cfg)
    link.connect()
    link.drop = lambda d, who: True  # the path dies
    a = link.a.conn
    a.send(b"x" * 5000)
    link.flush()
    fired: list[float] = []
    while a.state is not State.RESET:
        t = a.next_timeout()
        assert t is not None
        link.now = t
        fired.append(t)
        a.on_timeout(t)
        link.flush()
    gaps = [round(y - x, 6) for x, y in itertools.pairwise(fired)]
    assert gaps == [1.0, 2.0, 4.0, 8.0]  # min RTO 0.5 s, doubled per consecutive timeout
    assert link.a.events[-1] == Reset("timed out")
    assert (a.stats.timeouts, a.stats.retransmits) == (5, 4) and a.next_timeout() is None


def test_timeout_shrinks_window_and_resends_then_recovers() -> None:
    link = Link(seed=8)
    b = link.connect()
    a = link.a.conn
    blackout = [True]
    link.drop = lambda d, who: blackout[0] and who == "a" and kind(d) is PacketType.DATA
    a.send(os.urandom(10 * 1400))
    link.flush()
    t = a.next_timeout()
    assert t is not None
    link.now = t
    a.on_timeout(t)
    # one full packet, as libutp and libtorrent (BEP 29 says its smallest packet, 150 bytes)
    assert a.cwnd == UtpConfig().payload_size + HEADER_SIZE
    assert a.bytes_in_flight == 0
    blackout[0] = False
    link.run(lambda: len(b.received) == 10 * 1400)
    assert a.stats.timeouts == 1 and a.stats.retransmits >= 1


def test_syn_retries_then_timed_out() -> None:
    link = Link(seed=9)
    link.drop = lambda d, who: True
    a = link.a.conn
    syns = 0
    while a.state is State.SYN_SENT:
        syns += sum(1 for d in a.datagrams_to_send(link.now) if kind(d) is PacketType.SYN)
        t = a.next_timeout()
        assert t is not None
        link.now = t
        a.on_timeout(t)
    assert syns == 1 + UtpConfig().syn_retries
    assert a.pop_events() == [Reset("timed out")]
    assert link.now == pytest.approx(1 + 2 + 4 + 8)


def test_lost_syn_ack_is_resent_on_duplicate_syn() -> None:
    link = Link(seed=10)
    first = [True]

    def drop_first_state(d: bytes, who: str) -> bool:
        if who == "b" and first[0]:
            first[0] = False
            return True
        return False

    link.drop = drop_first_state
    link.connect()
    assert link.a.conn.stats.timeouts == 1


def test_syn_ack_lost_but_data_from_acceptor_connects() -> None:
    a = UtpConnection.connect(0.0, conn_id=5, initial_seq=10)
    b = UtpConnection.accept(a.datagrams_to_send(0.0)[0], 0.01, initial_seq=300)
    assert b.pop_events() == [Connected()]  # the acceptor may write at once
    assert [kind(d) for d in b.datagrams_to_send(0.01)] == [PacketType.STATE]  # the SYN-ACK: lost
    b.send(b"early")
    (data,) = b.datagrams_to_send(0.02)
    a.receive_datagram(data, 0.03)
    assert a.state is State.CONNECTED
    events = a.pop_events()
    assert events[0] == Connected() and events[1].data == b"early"  # type: ignore[union-attr]
    assert decode(a.datagrams_to_send(0.03)[0]).ack_nr == 300


def test_receive_window_limits_the_sender_and_reopens() -> None:
    cfg = UtpConfig(recv_window=30_000)
    link = Link(seed=12, config=cfg)
    b = link.connect()
    b.consume = False  # the application stopped reading
    data = os.urandom(300_000)
    link.a.conn.send(data)
    link.run(lambda: link.now > 3.0)
    assert len(b.received) <= 30_000 + 0x10000 + 1400
    assert link.a.conn.send_buffered > 100_000  # the sender is held back
    b.consume = True
    b.conn.consumed(len(b.received))
    link.run(lambda: len(b.received) == len(data))
    assert bytes(b.received) == data


def test_send_buffer_high_water_and_writable_again() -> None:
    cfg = UtpConfig(send_high_water=50_000, send_low_water=10_000)
    link = Link(seed=13, config=cfg)
    b = link.connect()
    assert link.a.conn.send(b"x" * 40_000)
    assert not link.a.conn.send(b"x" * 20_000)
    link.run(lambda: WritableAgain() in link.a.events)
    link.run(lambda: len(b.received) == 60_000)


def test_nagle_coalesces_small_writes() -> None:
    link = Link(seed=14)
    b = link.connect()
    a = link.a.conn
    link.flush()
    for _ in range(100):
        a.send(b"x")
    out = a.datagrams_to_send(link.now)
    assert [len(decode(d).payload) for d in out] == [100]  # one turn's writes share a packet
    a.send(b"y" * 10)
    assert a.datagrams_to_send(link.now) == []  # held: a short packet while data is in flight
    a.send(b"z" * 10)
    link.wire.extend((link.now + link.delay, "b", d) for d in out)
    link.run(lambda: len(b.received) == 120)
    assert bytes(b.received) == b"x" * 100 + b"y" * 10 + b"z" * 10
    assert a.stats.packets_sent == 1 + 2  # SYN, the 100 bytes, the 20 bytes


def test_nagle_off_sends_each_write() -> None:
    link = Link(seed=15, config=UtpConfig(nagle=False))
    link.connect()
    link.flush()
    a = link.a.conn
    a.send(b"x")
    a.datagrams_to_send(link.now)
    a.send(b"y")
    assert len(a.datagrams_to_send(link.now)) == 1


def test_reset_from_peer_and_abort() -> None:
    link = Link(seed=16)
    b = link.connect()
    link.a.conn.abort()
    assert link.a.conn.state is State.RESET
    out = link.a.conn.datagrams_to_send(link.now)
    assert [kind(d) for d in out] == [PacketType.RESET]
    assert decode(out[0]).connection_id == link.a.conn.send_id
    b.conn.receive_datagram(out[0], link.now)
    assert b.conn.state is State.RESET and b.conn.pop_events() == [Reset("reset by peer")]
    with pytest.raises(LocalProtocolError):
        b.conn.send(b"late")
    b.conn.close()  # idempotent in a final state
    b.conn.abort()


def test_close_while_connecting_sends_reset() -> None:
    link = Link(seed=17)
    a = link.a.conn
    a.datagrams_to_send(0.0)
    a.close()
    assert a.state is State.CLOSED
    assert [kind(d) for d in a.datagrams_to_send(0.0)] == [PacketType.RESET]
    with pytest.raises(LocalProtocolError):
        a.send(b"x")


def test_fin_linger_closes_when_peer_never_fins() -> None:
    link = Link(seed=18)
    b = link.connect()
    link.a.conn.close()
    link.run(lambda: b.eof)
    link.run(lambda: link.a.conn.state is State.CLOSED)
    assert link.now >= UtpConfig().fin_linger
    assert b.conn.state is State.CONNECTED


def test_fin_arriving_before_data_waits_for_the_gap() -> None:
    link = Link(seed=19)
    b = link.connect()
    link.flush()
    a = link.a.conn
    a.send(b"data")
    a.close()
    data, fin = a.datagrams_to_send(link.now)
    assert (kind(data), kind(fin)) == (PacketType.DATA, PacketType.FIN)
    b.conn.receive_datagram(fin, link.now)
    b.drain()
    assert not b.eof and not b.received
    assert decode(b.conn.datagrams_to_send(link.now)[0]).sack is not None
    b.conn.receive_datagram(data, link.now)
    b.drain()
    assert bytes(b.received) == b"data" and b.eof


def test_packet_for_another_connection_and_garbage_raise_typed_errors() -> None:
    link = Link(seed=20)
    b = link.connect()
    with pytest.raises(UtpPacketError):
        b.conn.receive_datagram(b"\x01\x02", link.now)
    other = Packet(PacketType.STATE, (b.conn.recv_id + 7) & 0xFFFF, 0, 0, 0, 0, 0)
    with pytest.raises(UtpPacketError, match="connection id"):
        b.conn.receive_datagram(encode(other), link.now)


def test_bogus_ack_is_dropped() -> None:
    link = Link(seed=21)
    b = link.connect()
    a = link.a.conn
    future = Packet(PacketType.STATE, a.recv_id, 0, 0, 1 << 20, b.conn.seq_nr, (a.seq_nr + 100) & 0xFFFF)
    a.receive_datagram(encode(future), link.now)
    assert a.stats.dropped == 1 and a.acked_upto == (a.seq_nr - 1) & 0xFFFF


def test_rtt_estimate_follows_bep29_and_sets_the_rto() -> None:
    link = Link(seed=22, delay=0.3)
    transfer(link, os.urandom(50_000))
    rtt = link.a.conn.rtt
    assert rtt.rtt == pytest.approx(0.6, abs=0.05)
    assert rtt.rto == pytest.approx((rtt.rtt or 0.0) + 4 * rtt.rtt_var)
    assert rtt.rto >= 0.6


def test_ledbat_backs_off_when_queueing_delay_exceeds_target() -> None:
    link = Link(seed=23, delay=0.005)
    b = link.connect()
    a = link.a.conn
    a.send(os.urandom(12_000_000))
    link.run(lambda: len(b.received) > 1_000_000)
    grown = a.cwnd
    assert a.our_delay < 100_000
    link.delay = 0.2  # a queue builds up: 195 ms above the base delay (RTT still below the RTO)
    link.run(lambda: link.now > 3.0)
    assert a.send_buffered > 0
    assert a.our_delay > 150_000
    assert a.cwnd < grown / 2
    assert a.stats.retransmits == a.stats.timeouts == 0  # delay, not loss, made it slow down


def test_keepalive_on_idle_connection() -> None:
    link = Link(seed=24)
    b = link.connect()
    link.run(lambda: link.now > 60)
    assert link.a.conn.state is State.CONNECTED and b.conn.state is State.CONNECTED
    assert link.sent["a"] >= 3 and link.sent["b"] >= 3  # STATE packets every 29 s


def test_packets_too_far_ahead_are_not_buffered() -> None:
    link = Link(seed=25)
    b = link.connect()
    c = b.conn
    far = Packet(PacketType.DATA, c.recv_id, 0, 0, 1 << 20, (c.ack_nr + 9000) & 0xFFFF, c.acked_upto, b"x")
    near = Packet(PacketType.DATA, c.recv_id, 0, 0, 1 << 20, (c.ack_nr + 50) & 0xFFFF, c.acked_upto, b"y")
    c.receive_datagram(encode(far), link.now)
    assert c.stats.dropped == 1
    c.receive_datagram(encode(near), link.now)
    assert c.stats.dropped == 1
    sack = decode(c.datagrams_to_send(link.now)[-1]).sack
    assert sack is not None and len(sack) == 8  # only the near packet is reported


def test_acceptor_may_send_at_once_after_a_syn_with_zero_window() -> None:
    # libtorrent's ST_SYN carries wnd_size 0; the acceptor must still be able to speak first
    syn = Packet(PacketType.SYN, 700, 0, 0, 0, 42, 0)
    b = UtpConnection.accept(encode(syn), 0.0, initial_seq=9)
    b.send(b"hello first")
    kinds = [(decode(d).type, decode(d).payload) for d in b.datagrams_to_send(0.0)]
    assert (PacketType.DATA, b"hello first") in kinds


def test_lost_retransmission_is_detected_by_later_sacks_without_a_timeout() -> None:
    link = Link(seed=26)
    b = link.connect()
    a = link.a.conn
    victim: list[int] = []
    drops = [0]

    def drop_twice(d: bytes, who: str) -> bool:
        p = decode(d)
        if who != "a" or p.type is not PacketType.DATA:
            return False
        if not victim:
            victim.append(p.seq_nr)
        if p.seq_nr == victim[0] and drops[0] < 2:
            drops[0] += 1  # the packet and its first retransmission
            return True
        return False

    link.drop = drop_twice
    data = os.urandom(60 * 1400)
    a.send(data)  # a long stream: later packets keep the SACKs coming
    link.run(lambda: len(b.received) == len(data))
    assert bytes(b.received) == data
    assert drops[0] == 2
    assert a.stats.timeouts == 0 and a.stats.retransmits == 2


def test_fin_linger_lasts_while_the_peer_still_sends() -> None:
    link = Link(seed=27)
    b = link.connect()
    link.a.conn.close()
    link.run(lambda: b.eof and link.a.conn.stats.packets_received >= 2)
    for i in range(5):  # one write every 20 s: each gap below the linger, all of them above it
        start = link.now
        link.run(lambda start=start: link.now >= start + 20)  # type: ignore[misc]
        b.conn.send(bytes([i]) * 100)
    link.run(lambda: len(link.a.received) == 500)
    assert link.a.conn.state is State.FIN_SENT
    b.conn.close()
    link.run(lambda: link.a.conn.state is State.CLOSED and b.conn.state is State.CLOSED)


def test_a_fin_after_the_linger_is_still_acknowledged() -> None:
    link = Link(seed=28)
    b = link.connect()
    link.a.conn.close()
    link.run(lambda: link.a.conn.state is State.CLOSED)  # the peer stayed silent: linger over
    b.conn.close()  # its FIN, in order, after everything: a CLOSED connection still takes it
    link.run(lambda: b.conn.state is State.CLOSED)
    assert b.events[-1] == Closed()


def test_answers_that_never_acknowledge_do_not_keep_a_dead_connection_alive() -> None:
    cfg = UtpConfig(max_timeouts=3, nagle=False)  # the peer's one-byte writes go out at once
    link = Link(seed=29, config=cfg)
    b = link.connect()
    a = link.a.conn
    # our data never arrives; our ACKs and the peer's packets do
    link.drop = lambda d, who: who == "a" and kind(d) is PacketType.DATA
    a.send(b"x" * 3000)
    link.flush()
    for _ in range(10):
        if a.finished:
            break
        t = a.next_timeout()
        assert t is not None
        link.now = t
        a.on_timeout(t)
        link.flush()
        b.conn.send(b"y")  # the peer keeps talking, acknowledging nothing new
        before = len(link.a.received)
        link.run(lambda before=before: len(link.a.received) > before or a.finished)  # type: ignore[misc]
    assert a.state is State.RESET and link.a.events[-1] == Reset("timed out")


def test_ledbat_fills_a_bottleneck_near_its_target_delay_and_yields_to_greedy_traffic() -> None:
    rate = 250_000.0  # 2 Mbit/s uplink, 20 ms each way
    link = BottleneckLink(rate=rate, seed=30, delay=0.02)
    b = link.connect()
    link.a.conn.send(os.urandom(20_000_000))

    def phase(seconds: float) -> tuple[float, float]:
        """Run ``seconds``; return (uTP's share of the link, worst queueing delay seen)."""
        start, got, worst = link.now, len(b.received), 0.0

        def until() -> bool:
            nonlocal worst
            worst = max(worst, link.queue_delay())
            return link.now >= start + seconds

        link.run(until)
        return (len(b.received) - got) / (rate * seconds), worst

    phase(10.0)  # slow start, then LEDBAT settles
    share, worst = phase(10.0)
    assert share > 0.85  # the link is full ...
    assert worst < 0.2  # ... at a queueing delay near the 100 ms target, not the modem's buffer
    link.cross = True  # a greedy flow keeps 300 ms queued: above target, LEDBAT backs off
    phase(5.0)
    share, _ = phase(10.0)
    assert share < 0.1
    link.cross = False
    phase(10.0)
    share, worst = phase(10.0)
    assert share > 0.85 and worst < 0.2  # and takes the link back once it is free
    assert link.a.conn.stats.retransmits == 0  # delay alone steered it: no loss on this link


# ---- dead peers: a SIGKILLed peer's connection ends in seconds, not minutes --------------------


def _kill_b(link: Link) -> None:
    """The peer vanishes without a word (SIGKILL, a pulled cable): nothing reaches it, nothing comes."""
    link.drop = lambda d, who: True
    link.wire.clear()


def _run_timers(link: Link, until: float) -> None:
    a = link.a.conn
    while not a.finished:
        t = a.next_timeout()
        assert t is not None and t <= until, f"no end by t={until} (next timer {t})"
        link.now = max(link.now, t)
        a.on_timeout(link.now)
        link.flush()


def test_dead_peer_with_data_in_flight_is_declared_dead_within_ten_seconds() -> None:
    link = Link(seed=40)
    link.connect()
    a = link.a.conn
    a.send(os.urandom(1 << 20))
    link.run(lambda: a.bytes_in_flight > 100_000)  # in mid-transfer (an RTT sample taken: RTO 0.5 s)
    killed = link.now
    last_heard = a.last_recv
    _kill_b(link)
    _run_timers(link, killed + 10.0)
    assert a.state is State.RESET and link.a.events[-1] == Reset("timed out")
    # 1 + max_timeouts expiries, doubled from the 0.5 s minimum RTO: 0.5 + 1 + 2 + 4 = 7.5 s
    assert a.stats.timeouts == UtpConfig().max_timeouts + 1
    assert 5.0 <= link.now - last_heard <= 10.0
    assert a.next_timeout() is None and a.datagrams_to_send(link.now) == []


def test_silent_idle_peer_is_dropped_after_idle_timeout_but_live_idle_peers_stay() -> None:
    link = Link(seed=41)
    b = link.connect()
    link.run(lambda: link.now > 400)  # both idle: keepalives every 29 s keep each other alive
    assert link.a.conn.state is State.CONNECTED and b.conn.state is State.CONNECTED
    assert link.a.conn.stats.timeouts == 0
    killed = link.now
    last_heard = link.a.conn.last_recv
    _kill_b(link)
    _run_timers(link, killed + 200)
    assert link.a.events[-1] == Reset("timed out")
    assert link.now == pytest.approx(last_heard + UtpConfig().idle_timeout)


def test_repeated_icmp_unreachable_ends_an_established_connection_a_probe_later() -> None:
    link = Link(seed=42)
    link.connect()
    a = link.a.conn
    _kill_b(link)
    t0 = link.now
    a.unreachable(t0)
    a.unreachable(t0 + 0.01)  # a burst of reports for packets sent together is one report
    assert a.state is State.CONNECTED and a.pop_events() == []
    # the first report schedules a probe, well before the keepalive
    assert a.next_timeout() == pytest.approx(t0 + UtpConfig().unreachable_confirm)
    link.now = t0 + UtpConfig().unreachable_confirm
    a.on_timeout(link.now)
    probe = a.datagrams_to_send(link.now)
    assert [kind(d) for d in probe] == [PacketType.STATE]
    a.unreachable(link.now + 0.001)  # the probe draws the second report
    assert a.state is State.RESET and a.pop_events() == [Reset("unreachable")]
    assert a.next_timeout() is None and a.datagrams_to_send(link.now) == []


def test_a_packet_from_the_peer_between_icmp_reports_keeps_the_connection() -> None:
    link = Link(seed=43)
    b = link.connect()
    a = link.a.conn
    a.unreachable(link.now)  # a route flapped, say
    b.conn.send(b"still here")
    link.run(lambda: bytes(link.a.received) == b"still here")
    a.unreachable(link.now + 2.0)  # a first report again, not a second one
    assert a.state is State.CONNECTED
    a.unreachable(link.now + 3.5)
    assert a.state is State.RESET


def test_a_closed_port_is_confirmed_sooner_than_an_unreachable_host() -> None:
    link = Link(seed=45, delay=0.01)
    link.connect()
    a = link.a.conn
    assert a.rtt.rtt is not None and a.rtt.rtt < 0.05
    _kill_b(link)
    t0 = link.now
    a.unreachable(t0, refused=True)  # port unreachable: the process is gone, the host is up
    confirm = UtpConfig().refused_confirm
    assert a.next_timeout() == pytest.approx(t0 + confirm)
    a.unreachable(t0 + confirm / 2, refused=True)  # the same burst
    assert a.state is State.CONNECTED
    link.now = t0 + confirm
    a.on_timeout(link.now)
    assert [kind(d) for d in a.datagrams_to_send(link.now)] == [PacketType.STATE]
    a.unreachable(link.now, refused=True)
    assert a.pop_events() == [Reset("unreachable")]
    # over a long path the wait is two RTTs, so a live peer's ACK can come between the reports
    slow = Link(seed=46, delay=0.2)
    slow.connect()
    c = slow.a.conn
    assert c.rtt.rtt is not None
    c.unreachable(slow.now, refused=True)
    assert c.next_timeout() == pytest.approx(slow.now + 2 * c.rtt.rtt)


def test_icmp_unreachable_still_fails_a_dial_at_once_without_an_event() -> None:
    link = Link(seed=44)
    a = link.a.conn
    a.datagrams_to_send(0.0)
    a.unreachable(0.001)
    assert a.state is State.RESET and a.pop_events() == [] and a.next_timeout() is None


def test_idle_connection_to_a_killed_peer_ends_at_the_next_keepalive_when_icmp_answers() -> None:
    """An idle connection carries nothing that could draw an ICMP report but its keepalive: the
    peer's closed port answers it, the probe confirms, and the connection ends within one
    keepalive interval (plus the probe) instead of idle_timeout."""
    link = Link(seed=47)
    link.connect()
    link.run(lambda: link.now > 5)
    a = link.a.conn
    killed = link.now
    _kill_b(link)
    while not a.finished:
        t = a.next_timeout()
        assert t is not None and t < killed + UtpConfig().keepalive + 2
        link.now = t
        a.on_timeout(t)
        for d in a.datagrams_to_send(t):
            assert kind(d) is PacketType.STATE  # the keepalive, then the probe
            a.unreachable(t + 0.0001, refused=True)  # the closed port answers each
    assert a.pop_events() == [Reset("unreachable")]
    assert link.now - killed < UtpConfig().keepalive + 1
