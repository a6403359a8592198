"""An in-process simulated network of :class:`~bitswarm.dht.node.DHTNode` s (libtorrent's simulation).

One shared fake transport (a dict address → node and a FIFO of datagrams), one injected clock, one
seeded RNG: runs are deterministic. Datagrams are delivered in order with zero latency; when nothing
is in flight the clock advances by ``step`` seconds and every node's ``tick()`` runs, so timeouts,
token rotation and bucket refresh happen as they would in real time. ``drop_rate`` loses datagrams.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from bitswarm.dht.bep42 import generate_node_id
from bitswarm.dht.krpc import Addr
from bitswarm.dht.node import DHTConfig, DHTNode

__all__ = ["SimNetwork", "sim_address"]


def sim_address(i: int) -> Addr:
    """A distinct public-looking IPv4 address (its own /24) for simulated node ``i``."""
    return f"{20 + i // 62500}.{(i // 250) % 250}.{i % 250}.1", 6881


class SimNetwork:
    def __init__(self, seed: int = 0, *, drop_rate: float = 0.0, step: float = 0.5) -> None:
        self.now = 1000.0
        self.rng = random.Random(seed)
        self.nodes: dict[Addr, DHTNode] = {}
        self.queue: deque[tuple[bytes, Addr, Addr]] = deque()
        self.delivered = 0
        self.dropped = 0
        self.drop_rate = drop_rate
        self.step = step

    def clock(self) -> float:
        return self.now

    def add_node(self, addr: Addr, node_id: bytes | None = None, config: DHTConfig | None = None) -> DHTNode:
        rng = random.Random(self.rng.getrandbits(64))
        if node_id is None:
            node_id = generate_node_id(addr[0], rng)  # BEP 42 compliant

        def send(data: bytes, dst: Addr, src: Addr = addr) -> None:
            self.queue.append((data, src, dst))

        node = DHTNode(node_id, send, self.clock, rng, config or DHTConfig())
        self.nodes[addr] = node
        return node

    def deliver(self, limit: int = 10_000_000) -> int:
        """Deliver queued datagrams (including those sent in reaction) until the queue is empty."""
        n = 0
        q = self.queue
        while q and n < limit:
            data, src, dst = q.popleft()
            n += 1
            node = self.nodes.get(dst)
            if node is None or (self.drop_rate and self.rng.random() < self.drop_rate):
                self.dropped += 1
                continue
            node.datagram_received(data, src)
        self.delivered += n
        return n

    def advance(self, seconds: float) -> None:
        """Move the clock forward in ``step`` increments, ticking every node and delivering."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + self.step)
            for node in list(self.nodes.values()):
                node.tick()
            self.deliver()

    def run_until(self, done: Callable[[], bool], max_seconds: float = 120.0) -> bool:
        """Deliver and advance time until ``done()`` or ``max_seconds`` of simulated time pass."""
        end = self.now + max_seconds
        self.deliver()
        while not done():
            if self.now >= end:
                return False
            self.advance(self.step)
        return True
