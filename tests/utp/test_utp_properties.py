"""Hypothesis: random loss, duplication and reordering schedules never corrupt the stream, and a
connection fed garbage (or mangled real packets) raises only our typed error."""

from __future__ import annotations

import contextlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from utp_link import Link

from bitswarm.utp import DelayHistory, RttEstimator, State, UtpConfig, UtpConnection, UtpPacketError


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0.0, 0.3),
    dup=st.floats(0.0, 0.2),
    jitter=st.floats(0.0, 0.05),
    size=st.integers(0, 400_000),
    a_seq=st.integers(0, 0xFFFF),
    b_seq=st.integers(0, 0xFFFF),
    writes=st.integers(1, 8),
)
def test_random_schedules_deliver_bytes_intact_and_in_order(
    seed: int, loss: float, dup: float, jitter: float, size: int, a_seq: int, b_seq: int, writes: int
) -> None:
    cfg = UtpConfig(max_timeouts=30, syn_retries=30, fin_linger=1e6)  # no give-up at 30 % loss
    link = Link(seed=seed, a_seq=a_seq, b_seq=b_seq, config=cfg)
    rng = random.Random(seed)
    link.drop = lambda d, who: rng.random() < loss
    link.duplicate = lambda d, who: rng.random() < dup
    link.jitter = jitter
    data = rng.randbytes(size)
    b = link.connect()
    step = max(1, size // writes)
    for i in range(0, size, step):
        link.a.conn.send(data[i : i + step])
        b.conn.send(data[i : i + step][::-1])
    link.a.conn.close()
    link.run(lambda: b.eof and len(link.a.received) == size)
    assert bytes(b.received) == data
    assert bytes(link.a.received) == b"".join(data[i : i + step][::-1] for i in range(0, size, step))
    b.conn.close()
    link.run(lambda: link.a.conn.finished and b.conn.finished)
    assert link.a.conn.state is State.CLOSED or link.now > 10


def _live_pair() -> tuple[Link, list[bytes]]:
    link = Link(seed=1)
    seen: list[bytes] = []

    def keep(d: bytes, who: str) -> bool:
        seen.append(d)
        return False

    link.drop = keep
    b = link.connect()
    link.a.conn.send(b"x" * 5000)
    b.conn.send(b"y" * 3000)
    link.run(lambda: len(b.received) == 5000 and len(link.a.received) == 3000)
    return link, seen


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_garbage_datagrams_raise_only_typed_errors(raw: bytes, to_initiator: bool) -> None:
    link, _ = _live_pair()
    side = link.a if to_initiator else link.b
    assert side is not None
    with contextlib.suppress(UtpPacketError):
        side.conn.receive_datagram(raw, link.now)
    side.conn.datagrams_to_send(link.now)
    side.conn.on_timeout(link.now + 100)
    assert side.conn.bytes_in_flight >= 0


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mangled_real_packets_raise_only_typed_errors(data: st.DataObject) -> None:
    link, seen = _live_pair()
    raw = bytearray(data.draw(st.sampled_from(seen)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for conn in (link.a.conn, link.b.conn if link.b else None):
        assert conn is not None
        with contextlib.suppress(UtpPacketError):
            conn.receive_datagram(bytes(raw[:cut]), link.now)
        conn.datagrams_to_send(link.now)
        assert conn.bytes_in_flight >= 0


@given(st.binary(max_size=64))
def test_accept_of_garbage_raises_only_typed_errors(raw: bytes) -> None:
    with contextlib.suppress(UtpPacketError):
        UtpConnection.accept(raw, 0.0)


def test_base_delay_is_a_two_minute_sliding_minimum_with_wraparound() -> None:
    h = DelayHistory()
    assert h.add(0xFFFFFF00, 0.0) == 0
    assert h.add(0x00000100, 1.0) == 0  # our_delay is the minimum of the last three samples
    h.add(0x00000100, 1.5)
    assert h.add(0x00000100, 2.0) == 0x200  # past the 32-bit wrap: 512 us above base
    h.add(0x00000100, 61.0)  # a new minute: the old minimum is still in the window
    assert h.base == 0xFFFFFF00
    h.add(0x00000100, 122.0)  # two minutes on: the old minimum expired
    assert h.base == 0x00000100


def test_rtt_estimator_follows_bep29() -> None:
    r = RttEstimator()
    assert r.rto == 1.0  # initial timeout
    r.sample(0.1)
    assert (r.rtt, r.rtt_var, r.rto) == (0.1, 0.05, 0.5)  # never below 500 ms
    r.sample(0.9)
    assert r.rtt == 0.1 + (0.9 - 0.1) / 8
    assert r.rtt_var == 0.05 + (0.8 - 0.05) / 4
    assert r.rto == r.rtt + 4 * r.rtt_var
    assert r.backed_off(2) == 4 * r.rto
