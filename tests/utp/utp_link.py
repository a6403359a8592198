"""A fake link between two sans-I/O uTP connections, with injected time, loss and reordering.

Tests drive it step by step: ``flush`` moves what each side wants to send onto the link, ``deliver``
hands datagrams over (optionally dropping, duplicating or reordering them), ``run`` loops until a
condition holds, advancing the fake clock to the next timer when nothing is in flight.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from bitswarm.utp import Data, EndOfStream, Event, UtpConfig, UtpConnection

DropFn = Callable[[bytes, str], bool]


@dataclass
class Side:
    conn: UtpConnection
    name: str
    received: bytearray = field(default_factory=bytearray)
    events: list[Event] = field(default_factory=list)
    eof: bool = False
    consume: bool = True

    def drain(self) -> None:
        for ev in self.conn.pop_events():
            self.events.append(ev)
            if isinstance(ev, Data):
                self.received += ev.data
                if self.consume:
                    self.conn.consumed(len(ev.data))
            elif isinstance(ev, EndOfStream):
                self.eof = True


class Link:
    def __init__(
        self,
        *,
        config: UtpConfig | None = None,
        seed: int = 0,
        a_seq: int | None = None,
        b_seq: int | None = None,
        conn_id: int | None = None,
        delay: float = 0.01,
    ) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self.delay = delay
        self.config = config
        a = UtpConnection.connect(self.now, conn_id=conn_id, initial_seq=a_seq, config=config, rng=self.rng)
        self.a = Side(a, "a")
        self.b_seq = b_seq
        self.b: Side | None = None
        self.wire: list[tuple[float, str, bytes]] = []  # (arrival time, to, datagram)
        self.drop: DropFn | None = None
        self.duplicate: DropFn | None = None
        self.jitter = 0.0
        self.sent: dict[str, int] = {"a": 0, "b": 0}

    def side(self, name: str) -> Side:
        if name == "a":
            return self.a
        assert self.b is not None
        return self.b

    def flush(self) -> None:
        for s in (self.a, self.b):
            if s is None:
                continue
            s.drain()
            to = "b" if s.name == "a" else "a"
            for dgram in s.conn.datagrams_to_send(self.now):
                self.sent[s.name] += 1
                if self.drop is not None and self.drop(dgram, s.name):
                    continue
                copies = 2 if self.duplicate is not None and self.duplicate(dgram, s.name) else 1
                for _ in range(copies):
                    t = self.now + self.delay + (self.rng.random() * self.jitter if self.jitter else 0.0)
                    self.wire.append((t, to, dgram))
            s.drain()

    def deliver_due(self) -> bool:
        due = [w for w in self.wire if w[0] <= self.now]
        if not due:
            return False
        self.wire = [w for w in self.wire if w[0] > self.now]
        due.sort(key=lambda w: w[0])
        for _, to, dgram in due:
            if to == "b" and self.b is None:
                b = UtpConnection.accept(
                    dgram, self.now, initial_seq=self.b_seq, config=self.config, rng=self.rng
                )
                self.b = Side(b, "b")
                continue
            self.side(to).conn.receive_datagram(dgram, self.now)
        return True

    def step(self) -> None:
        """Deliver what has arrived, fire due timers, flush; else jump the clock to the next event."""
        self.flush()
        if self.deliver_due():
            self.flush()
            return
        times = [w[0] for w in self.wire]
        for s in (self.a, self.b):
            if s is not None:
                t = s.conn.next_timeout()
                if t is not None:
                    times.append(t)
        if not times:
            raise AssertionError("link is idle: nothing in flight and no timer")
        self.now = max(self.now, min(times))
        for s in (self.a, self.b):
            if s is not None:
                t = s.conn.next_timeout()
                if t is not None and t <= self.now:
                    s.conn.on_timeout(self.now)
        self.deliver_due()
        self.flush()

    def run(self, until: Callable[[], bool], max_steps: int = 200_000) -> None:
        for _ in range(max_steps):
            if until():
                return
            self.step()
        raise AssertionError(f"condition not reached in {max_steps} steps (t={self.now:.3f})")

    def connect(self) -> Side:
        from bitswarm.utp import State

        self.run(lambda: self.b is not None and self.a.conn.state is State.CONNECTED)
        assert self.b is not None
        return self.b


class BottleneckLink(Link):
    """A link whose a->b direction is a FIFO queue drained at ``rate`` bytes/s (a modem uplink), with
    optional greedy cross traffic (a TCP-like flow that keeps the queue ``cross_queue`` seconds deep
    while ``cross`` is on). ``queue_delay()`` is the queueing delay a packet sent now would see."""

    def __init__(self, *, rate: float, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.rate = rate
        self.busy_until = 0.0
        self.cross = False
        self.cross_queue = 0.3
        self.cross_bytes = 0.0
        self.utp_bytes = 0

    def queue_delay(self) -> float:
        return max(0.0, self.busy_until - self.now)

    def _fill_cross(self) -> None:
        if self.cross and self.queue_delay() < self.cross_queue:
            extra = (self.cross_queue - self.queue_delay()) * self.rate
            self.cross_bytes += extra
            self.busy_until = max(self.busy_until, self.now) + extra / self.rate

    def flush(self) -> None:
        self._fill_cross()
        for s in (self.a, self.b):
            if s is None:
                continue
            s.drain()
            for dgram in s.conn.datagrams_to_send(self.now):
                self.sent[s.name] += 1
                if s.name == "a":
                    start = max(self.now, self.busy_until)
                    self.busy_until = start + len(dgram) / self.rate
                    self.utp_bytes += len(dgram)
                    self.wire.append((self.busy_until + self.delay, "b", dgram))
                else:
                    self.wire.append((self.now + self.delay, "a", dgram))
            s.drain()
