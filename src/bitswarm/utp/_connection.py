"""One uTP connection (BEP 29) as a sans-I/O state machine.

Datagrams go in with :meth:`UtpConnection.receive_datagram`, application bytes with
:meth:`~UtpConnection.send`; :meth:`~UtpConnection.datagrams_to_send` returns what to put on the
wire, :meth:`~UtpConnection.pop_events` what happened (:class:`Connected`, :class:`Data`,
:class:`EndOfStream`, :class:`WritableAgain`, :class:`Closed`, :class:`Reset`). Time is always the
caller's ``now`` in seconds; :meth:`~UtpConnection.next_timeout` says when to call
:meth:`~UtpConnection.on_timeout`. The states and what moves them are in :mod:`._state`.

See ``docs/protocols/utp.md`` for packet handling, LEDBAT and the timers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bitswarm.errors import LocalProtocolError
from bitswarm.utp._congestion import MASK32, DelayHistory, RttEstimator
from bitswarm.utp._packet import (
    HEADER,
    HEADER_SIZE,
    SEQ_MASK,
    VERSION,
    PacketType,
    UtpPacketError,
    parse,
    sack_bitmask,
    sack_seqs,
    seq_diff,
)
from bitswarm.utp._state import FINAL_STATES, TRANSITIONS, Input, State

__all__ = [
    "Closed",
    "Connected",
    "Data",
    "EndOfStream",
    "Event",
    "Reset",
    "UtpConfig",
    "UtpConnection",
    "UtpStats",
    "WritableAgain",
]

_ST_DATA, _ST_FIN, _ST_STATE, _ST_RESET, _ST_SYN = 0, 1, 2, 3, 4
_TYPE_VER = [(t << 4) | VERSION for t in range(5)]
_PACKET_INPUT = (Input.DATA, Input.FIN, Input.STATE, Input.RESET, Input.SYN)
_MAX_REORDER = 8192  # packets ahead of ack_nr we buffer (a 1 MiB window of 150-byte packets is ~7000)


@dataclass(frozen=True, slots=True)
class Connected:
    """The connection is usable (initiator: our SYN was acknowledged; acceptor: at once, from the
    SYN, as libtorrent does; the state stays SYN_RECV until the initiator's next packet)."""


@dataclass(frozen=True, slots=True)
class Data:
    """In-order bytes from the peer. Call :meth:`UtpConnection.consumed` once they left your buffer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The peer's FIN arrived and every byte before it was delivered."""


@dataclass(frozen=True, slots=True)
class WritableAgain:
    """The send buffer drained below the low-water mark after :meth:`UtpConnection.send` said stop."""


@dataclass(frozen=True, slots=True)
class Closed:
    """Both FINs are acknowledged (or ours is and the peer then stayed silent for ``fin_linger``)."""


@dataclass(frozen=True, slots=True)
class Reset:
    """The connection is gone: ``reason`` is ``"reset by peer"``, ``"timed out"`` (retransmissions
    unanswered, or a silent peer) or ``"unreachable"`` (repeated ICMP port/host unreachable)."""

    reason: str


Event = Connected | Data | EndOfStream | WritableAgain | Closed | Reset


@dataclass(slots=True)
class UtpConfig:
    """Tunables; sizes in bytes, times in seconds."""

    payload_size: int = 1400  # 20 + 1400 (+ a 30-byte SACK) fits the 1452-byte IPv6 UDP payload
    min_packet_size: int = 150  # BEP 29: the smallest packet, the window after a timeout
    recv_window: int = 1 << 20
    target_delay: float = 0.100  # LEDBAT CCONTROL_TARGET
    max_cwnd_increase: int = 3000  # bytes per RTT when the delay is zero (libtorrent's gain)
    initial_cwnd: int = 2 * 1420
    max_cwnd: int = 16 << 20
    initial_rto: float = 1.0
    min_rto: float = 0.5
    max_rto: float = 60.0
    syn_retries: int = 3  # SYN_SENT gives up after this many timeouts (1 + 2 + 4 + 8 s)
    # retransmission timeouts in a row without progress that are still retried; the next one gives
    # up ("timed out"). libtorrent's utp_num_resends is 3 too: 0.5 + 1 + 2 + 4 = 7.5 s at the minimum RTO
    max_timeouts: int = 3
    # nothing at all from the peer for this long: dead, even with nothing in flight. A live peer
    # sends more often: libutp (Transmission, uTorrent) and we a uTP keepalive every 29 s, libtorrent
    # a BitTorrent keep-alive every 60 s, BEP 3 says about two minutes (the session's own
    # inactivity limit is 180 s)
    idle_timeout: float = 150.0
    # an ICMP host/net unreachable for an established connection sends a probe this long after it;
    # a second one at least this long after the first, with no packet from the peer in between: dead
    unreachable_confirm: float = 1.0
    # the same for ICMP port unreachable (the host is up, nothing listens: a killed process), after
    # max(this, 2 RTT) -- long enough that a burst of reports is one and a live peer's ACK comes first
    refused_confirm: float = 0.1
    fin_linger: float = 30.0  # our FIN acknowledged: closed after this long without a peer packet
    keepalive: float = 29.0  # an idle connection ACKs at this interval (keeps NAT mappings)
    nagle: bool = True  # hold a short packet while data is in flight
    send_high_water: int = 1 << 20
    send_low_water: int = 256 << 10
    sack_bytes: int = 32  # largest selective ACK body we send (256 packets)


@dataclass(slots=True)
class UtpStats:
    packets_sent: int = 0
    packets_received: int = 0
    retransmits: int = 0
    fast_retransmits: int = 0
    timeouts: int = 0
    duplicates: int = 0
    dropped: int = 0  # packets not allowed in the state, bogus acks, beyond the window


class _Out:
    """A packet we sent (or will send) and the peer has not acknowledged."""

    __slots__ = ("in_flight", "kind", "need_resend", "payload", "sent_at", "seq", "size", "transmissions")

    def __init__(self, seq: int, kind: int, payload: bytes) -> None:
        self.seq = seq
        self.kind = kind
        self.payload = payload
        self.size = len(payload) + HEADER_SIZE
        self.sent_at = 0.0
        self.transmissions = 0
        self.in_flight = False
        self.need_resend = True


@dataclass(slots=True)
class _Recv:
    payload: bytes
    fin: bool


class UtpConnection:
    """One side of a uTP connection. Build it with :meth:`connect` or :meth:`accept`."""

    def __init__(
        self,
        recv_id: int,
        send_id: int,
        initial_seq: int,
        *,
        config: UtpConfig | None = None,
    ) -> None:
        self.config = cfg = config or UtpConfig()
        self.state = State.IDLE
        self.recv_id = recv_id & SEQ_MASK
        self.send_id = send_id & SEQ_MASK
        self.initiator = False
        self.stats = UtpStats()
        self._events: list[Event] = []
        # sending
        self.seq_nr = initial_seq & SEQ_MASK  # the next sequence number we use
        self.acked_upto = (initial_seq - 1) & SEQ_MASK  # the peer's cumulative ack
        self._outbuf: dict[int, _Out] = {}
        self.bytes_in_flight = 0
        self._resend_count = 0
        self._tx = bytearray()
        self._tx_blocked = False
        self._fin_wanted = False
        self._fin_seq: int | None = None
        self._fin_acked = False
        self._reset_pending = False
        self._sacked: dict[int, float] = {}  # selectively acked seq -> its last send time
        self._dup_acks = 0
        # receiving
        self.ack_nr = 0  # the last in-order sequence number received
        self._syn_seq = 0  # acceptor: the peer's SYN; initiator: ours
        self._inbuf: dict[int, _Recv] = {}
        self._ooo_bytes = 0
        self.unconsumed = 0
        self._eof_seq: int | None = None
        self.eof = False
        self._ack_needed = False
        self._last_adv_wnd = cfg.recv_window
        self._reply_micro = 0
        # congestion control
        self.cwnd = float(cfg.initial_cwnd)
        self.ssthresh = float(cfg.max_cwnd)
        self.slow_start = True
        self._cwnd_full = False
        self._loss_seq = self.acked_upto
        self.peer_wnd = cfg.recv_window
        self.our_delay = 0  # microseconds above the base delay
        self.delay = DelayHistory()
        self.rtt = RttEstimator(cfg.initial_rto, cfg.min_rto, cfg.max_rto)
        # timers
        self.timeouts = 0  # consecutive; reset by an ack of something new or a closed peer window
        self._timeout_at: float | None = None
        self._give_up_at: float | None = None
        self._last_send = 0.0
        self.last_recv = 0.0  # when the peer's last packet came (idle_timeout)
        self._unreach_at: float | None = None  # first ICMP unreachable since the peer's last packet
        self._probe_at: float | None = None  # an ST_STATE to confirm that ICMP

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        now: float,
        *,
        conn_id: int | None = None,
        initial_seq: int | None = None,
        config: UtpConfig | None = None,
        rng: random.Random | None = None,
    ) -> UtpConnection:
        """An initiator in SYN_SENT: ``conn_id`` is our receive id, we send with ``conn_id + 1``."""
        rng = rng or random.Random()
        recv_id = rng.randrange(0x10000) if conn_id is None else conn_id
        seq = rng.randrange(0x10000) if initial_seq is None else initial_seq
        c = cls(recv_id, recv_id + 1, seq, config=config)
        c.initiator = True
        c._move(Input.CONNECT)
        c._syn_seq = c.seq_nr
        c._queue(_ST_SYN, b"")
        c._last_send = c.last_recv = now
        return c

    @classmethod
    def accept(
        cls,
        syn: bytes,
        now: float,
        *,
        initial_seq: int | None = None,
        config: UtpConfig | None = None,
        rng: random.Random | None = None,
    ) -> UtpConnection:
        """An acceptor in SYN_RECV from the peer's ST_SYN datagram (its id + 1 is our receive id)."""
        kind, conn_id, ts, _, wnd, seq, _, _, _ = parse(syn)
        if kind != _ST_SYN:
            raise UtpPacketError(f"a connection is accepted from an ST_SYN, not a {PacketType(kind).name}")
        rng = rng or random.Random()
        c = cls(
            conn_id + 1,
            conn_id,
            rng.randrange(0x10000) if initial_seq is None else initial_seq,
            config=config,
        )
        c._move(Input.ACCEPT)
        c.ack_nr = c._syn_seq = seq
        if wnd:  # libtorrent's SYN says 0: not a closed window, just no value yet
            c.peer_wnd = wnd
        c._reply_micro = (_micros(now) - ts) & MASK32
        c._ack_needed = True
        c._events.append(Connected())  # like libtorrent: usable at once (it may send first)
        c._last_send = c.last_recv = now
        c.stats.packets_received += 1
        return c

    # ---- the application side ----------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> bool:
        """Queue bytes. Returns False once the send buffer is above the high-water mark (then wait
        for :class:`WritableAgain`). Raises :class:`LocalProtocolError` after :meth:`close`."""
        self._check_local(Input.SEND)
        self._tx += data
        if len(self._tx) >= self.config.send_high_water:
            self._tx_blocked = True
        return not self._tx_blocked

    def close(self) -> None:
        """Finish sending: queued bytes go out, then a FIN. Idempotent."""
        before = self.state
        self._move(Input.CLOSE)
        if before is State.SYN_SENT:
            self._reset_pending = True  # the peer may have our SYN: tell it we are gone
            self._stop_timers()
        elif before in (State.SYN_RECV, State.CONNECTED):
            self._fin_wanted = True

    def abort(self) -> None:
        """Drop the connection now and send the peer an ST_RESET. Idempotent."""
        before = self.state
        self._move(Input.ABORT)
        if before not in FINAL_STATES:
            self._reset_pending = True
            self._stop_timers()

    def unreachable(self, now: float, *, refused: bool = False) -> None:
        """The network reports the peer unreachable (ICMP port -- ``refused`` -- or host/net
        unreachable for a datagram we sent it). A dial (SYN_SENT) gives up at once, without an event
        or an ST_RESET (nobody is there to read it; the caller fails the dial). One report does not
        end an established connection (a burst of them answers one burst of packets; routes flap):
        it sends a probe a moment later (``refused_confirm`` or two RTTs for a closed port,
        ``unreachable_confirm`` for a host), and a report at least that long after the first, with
        no packet from the peer in between, ends it with ``Reset("unreachable")`` -- a SIGKILLed
        peer's connection ends in a fraction of a second instead of the retransmission back-off."""
        state = self.state
        if state is State.SYN_SENT:
            self._move(Input.GIVE_UP)
            self._stop_timers()
            return
        if state in FINAL_STATES or state is State.IDLE:
            return
        cfg = self.config
        confirm = cfg.unreachable_confirm
        if refused:
            rtt = self.rtt.rtt
            confirm = min(confirm, max(cfg.refused_confirm, 2 * rtt if rtt is not None else 0.0))
        first = self._unreach_at
        if first is None:
            self._unreach_at = now
            self._probe_at = now + confirm
        elif now - first >= confirm:
            self._move(Input.GIVE_UP)
            self._stop_timers()
            self._events.append(Reset("unreachable"))

    def consumed(self, n: int) -> None:
        """``n`` bytes of :class:`Data` left our hands: they no longer shrink the receive window."""
        self.unconsumed = max(0, self.unconsumed - n)
        half = self.config.recv_window // 2
        if self._last_adv_wnd < half <= self._adv_window():
            self._ack_needed = True  # the window re-opened: tell the peer (a window update)

    def pop_events(self) -> list[Event]:
        events = self._events
        if events:
            self._events = []
        return events

    @property
    def send_buffered(self) -> int:
        """Bytes queued by :meth:`send` and not yet packetized."""
        return len(self._tx)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    # ---- receiving -------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Process one datagram addressed to this connection. Raises :class:`UtpPacketError` on
        garbage or a packet for another connection id; packets the state does not allow (stale,
        duplicated, bogus acks) are dropped and counted in :attr:`stats`."""
        kind, conn_id, ts, ts_diff, wnd, seq, ack, sack, off = parse(data)
        if conn_id != (self.recv_id if kind != _ST_SYN else (self.recv_id - 1) & SEQ_MASK) and not (
            kind == _ST_RESET and conn_id == self.send_id
        ):
            raise UtpPacketError(f"uTP packet for connection id {conn_id}, this one is {self.recv_id}")
        stats = self.stats
        stats.packets_received += 1
        self.last_recv = now
        if self._unreach_at is not None:
            self._unreach_at = self._probe_at = None  # the peer is there after all
        state = self.state
        nxt = TRANSITIONS.get((state, _PACKET_INPUT[kind]))
        if nxt is None:
            stats.dropped += 1
            return
        if kind == _ST_RESET:
            self.state = nxt
            self._stop_timers()
            self._events.append(Reset("reset by peer"))
            return
        if state is State.CLOSED:  # (CLOSED, FIN)
            d = seq_diff(seq, self.ack_nr)
            if d <= 0:
                self._ack_needed = True  # the peer did not get the ACK of its FIN: again
            elif d == 1 and not self.eof:
                self.ack_nr = seq  # we stopped lingering just before it came: take it, ACK it
                self.eof = True
                self._ack_needed = True
            else:
                self._reset_pending = True  # its data before the FIN is lost to us: stop it
            return
        if kind == _ST_SYN:
            if self.initiator or seq != self._syn_seq:
                stats.dropped += 1
            else:
                self._ack_needed = True  # our SYN-ACK was lost: the next flush sends it again
            return
        if state is State.SYN_SENT:
            if ack != self._syn_seq:
                stats.dropped += 1
                return
            self.ack_nr = (seq - 1) & SEQ_MASK
        if seq_diff(ack, (self.seq_nr - 1) & SEQ_MASK) > 0:
            stats.dropped += 1  # acknowledges a packet we never sent
            return
        self._reply_micro = (_micros(now) - ts) & MASK32
        self.peer_wnd = wnd
        if nxt is not state:
            self.state = nxt
            if state is State.SYN_SENT:
                self._events.append(Connected())
        if self._on_ack(ack, sack, ts_diff, kind == _ST_STATE, now) or wnd < self.config.payload_size:
            # progress, or a peer that is alive but has no room: not a dead path. (Any packet would
            # do for "alive", but a peer that answers without ever acknowledging would keep us
            # retransmitting forever.)
            self.timeouts = 0
        if kind <= _ST_FIN:
            self._on_data(kind, seq, data, off)
        if self._fin_acked and self.state is State.FIN_SENT:
            if self.eof:
                self._finish()
            elif kind == _ST_DATA or self._give_up_at is None:
                # linger while the peer still sends data: re-armed by each of its data packets
                # (not by keepalives)
                self._give_up_at = now + self.config.fin_linger

    def _on_ack(self, ack: int, sack: bytes | None, ts_diff: int, pure_ack: bool, now: float) -> int:
        """Process the cumulative and selective acks; returns the bytes newly acknowledged."""
        outbuf = self._outbuf
        d = seq_diff(ack, self.acked_upto)
        acked_bytes = 0
        if d > 0:
            s = self.acked_upto
            for _ in range(d):
                s = (s + 1) & SEQ_MASK
                p = outbuf.pop(s, None)
                if p is not None:
                    acked_bytes += self._acked(p, now)
            if self._sacked:
                s = self.acked_upto
                for _ in range(d):
                    s = (s + 1) & SEQ_MASK
                    self._sacked.pop(s, None)
            self.acked_upto = ack
            self._dup_acks = 0
        elif d == 0 and pure_ack and outbuf and sack is None:
            self._dup_acks += 1
            if self._dup_acks == 3:
                first = outbuf.get((ack + 1) & SEQ_MASK)
                if first is not None and first.in_flight:
                    self._lost(first)
        if sack is not None and outbuf:
            acked_bytes += self._on_sack(ack, sack, now)
        if acked_bytes:
            self._congestion(acked_bytes, ts_diff, now)
            self._timeout_at = now + self.rtt.rto if outbuf else None
        elif not outbuf and not self._tx:
            self._timeout_at = None
        return acked_bytes

    def _acked(self, p: _Out, now: float) -> int:
        if p.in_flight:
            self.bytes_in_flight -= p.size
        if p.need_resend:
            self._resend_count -= 1
        if p.transmissions == 1:
            self.rtt.sample(now - p.sent_at)  # Karn: never from a retransmitted packet
        if p.kind == _ST_FIN:
            self._fin_acked = True
        return p.size

    def _on_sack(self, ack: int, mask: bytes, now: float) -> int:
        outbuf = self._outbuf
        sacked = self._sacked
        received = [s for s in sack_seqs(ack, mask) if seq_diff(s, self.seq_nr) < 0]
        acked = 0
        for s in received:
            p = outbuf.pop(s, None)
            if p is not None:
                sacked[s] = p.sent_at
                acked += self._acked(p, now)
        if len(received) < 3:
            return acked
        # a packet with 3 or more packets received after it is lost (BEP 29 "packet loss"); for a
        # packet already retransmitted, only packets sent after that retransmission count (so a
        # lost retransmission is caught by the same rule instead of waiting for the RTO)
        after = len(received)
        i = 0
        s = (ack + 1) & SEQ_MASK
        last = received[-3]
        while seq_diff(s, last) < 0:
            if i < len(received) and received[i] == s:
                i += 1
                after -= 1
            else:
                p = outbuf.get(s)
                if p is not None and p.in_flight and after >= 3:
                    if p.transmissions == 1:
                        self._lost(p)
                    else:
                        sent = p.sent_at
                        if sum(1 for r in received[i:] if sacked.get(r, 0.0) > sent) >= 3:
                            self._lost(p)
            s = (s + 1) & SEQ_MASK
        return acked

    def _lost(self, p: _Out) -> None:
        self.stats.fast_retransmits += 1
        if p.in_flight:
            p.in_flight = False
            self.bytes_in_flight -= p.size
        if not p.need_resend:
            p.need_resend = True
            self._resend_count += 1
        if seq_diff(p.seq, self._loss_seq) > 0:  # one cut per window of data, like TCP
            self.cwnd = max(self.cwnd * 0.5, float(self.config.min_packet_size))
            self.ssthresh = self.cwnd
            self.slow_start = False
            self._loss_seq = (self.seq_nr - 1) & SEQ_MASK

    def _congestion(self, acked_bytes: int, ts_diff: int, now: float) -> None:
        """LEDBAT (BEP 29): grow or shrink the window by how far the queueing delay is off target."""
        cfg = self.config
        if ts_diff and ts_diff != 0x7FFFFFFF:  # uTorrent sends INT_MAX when it has no sample
            self.our_delay = self.delay.add(ts_diff, now)
        target = cfg.target_delay * 1e6
        off_target = (target - self.our_delay) / target
        cwnd = self.cwnd
        if off_target >= 0:
            gain = cfg.max_cwnd_increase * off_target * acked_bytes / cwnd
        else:
            # above target: shrink in proportion to the window, at most half of it per RTT (as
            # a loss would); BEP 29's fixed 3000 bytes per RTT takes minutes to drain a big window
            gain = max(off_target, -1.0) * acked_bytes / 2
        if self.slow_start:
            if self.our_delay > target / 2 or cwnd + acked_bytes > self.ssthresh:
                self.slow_start = False
            elif self._cwnd_full:
                gain = max(gain, float(acked_bytes))
        if gain > 0 and not self._cwnd_full:
            return  # not using the window we have: do not grow it
        self.cwnd = min(max(cwnd + gain, float(cfg.min_packet_size)), float(cfg.max_cwnd))

    def _on_data(self, kind: int, seq: int, data: bytes, off: int) -> None:
        eof_seq = self._eof_seq
        if eof_seq is not None and seq_diff(seq, eof_seq) > 0:
            self.stats.dropped += 1  # nothing comes after the FIN
            return
        self._ack_needed = True
        d = seq_diff(seq, self.ack_nr)
        if d <= 0:
            self.stats.duplicates += 1
            return
        payload = data[off:] if off < len(data) else b""
        if self.unconsumed + self._ooo_bytes + len(payload) > self.config.recv_window + 0x10000:
            self.stats.dropped += 1  # far beyond the window we advertised
            return
        fin = kind == _ST_FIN
        if fin and eof_seq is None:
            self._eof_seq = seq
        if d > 1:
            if d > _MAX_REORDER:
                self.stats.dropped += 1  # too far ahead for the reorder buffer (libtorrent drops too)
                return
            inbuf = self._inbuf
            if seq not in inbuf:
                inbuf[seq] = _Recv(payload, fin)
                self._ooo_bytes += len(payload)
            else:
                self.stats.duplicates += 1
            return
        self._deliver(seq, payload, fin)
        inbuf = self._inbuf
        if inbuf:
            nxt = (seq + 1) & SEQ_MASK
            while nxt in inbuf:
                r = inbuf.pop(nxt)
                self._ooo_bytes -= len(r.payload)
                self._deliver(nxt, r.payload, r.fin)
                nxt = (nxt + 1) & SEQ_MASK

    def _deliver(self, seq: int, payload: bytes, fin: bool) -> None:
        self.ack_nr = seq
        if payload:
            self.unconsumed += len(payload)
            self._events.append(Data(payload))
        if fin or seq == self._eof_seq:
            self.eof = True
            self._inbuf.clear()
            self._ooo_bytes = 0
            self._events.append(EndOfStream())

    # ---- sending ---------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Everything the connection may put on the wire now: retransmissions, new data packets
        (as the congestion and peer windows allow), a FIN, an ACK."""
        out: list[bytes] = []
        state = self.state
        if state in FINAL_STATES:
            if self._reset_pending:
                self._reset_pending = False
                out.append(self._header(_ST_RESET, self.send_id, self.seq_nr, now, 0))
            elif self._ack_needed and state is State.CLOSED:
                out.append(self._header(_ST_STATE, self.send_id, self.seq_nr, now, self._adv_window()))
            self._ack_needed = False
            return out
        cfg = self.config
        wnd = self._adv_window()
        self._last_adv_wnd = wnd
        if self._resend_count:
            first = True  # a fast retransmit goes out even when the halved window is full (TCP too)
            for p in self._outbuf.values():
                if p.need_resend:
                    if first and p.transmissions:
                        if self.bytes_in_flight + p.size > max(self.peer_wnd, p.size):
                            break
                    elif not self._window_allows(p.size):
                        break
                    first = False
                    if p.transmissions:
                        self.stats.retransmits += 1
                    self._transmit(p, out, now, wnd)
        tx = self._tx
        if tx and not self._resend_count and state is not State.SYN_SENT:
            self._cwnd_full = False
            size = min(cfg.payload_size, max(cfg.min_packet_size, int(self.cwnd)) - HEADER_SIZE)
            while tx:
                n = len(tx)
                if n < size:
                    if cfg.nagle and self.bytes_in_flight and not self._fin_wanted:
                        break  # Nagle: wait for an ACK (or more bytes) before a short packet
                else:
                    n = size
                if not self._window_allows(n + HEADER_SIZE):
                    break
                payload = bytes(tx[:n])
                del tx[:n]
                self._transmit(self._queue(_ST_DATA, payload), out, now, wnd)
            if self._tx_blocked and len(tx) <= cfg.send_low_water:
                self._tx_blocked = False
                self._events.append(WritableAgain())
        if self._fin_wanted and self._fin_seq is None and not tx:
            self._fin_seq = self.seq_nr
            self._transmit(self._queue(_ST_FIN, b""), out, now, wnd)
        if self._ack_needed:
            self._ack_needed = False
            if not out or self._inbuf:
                sack = None
                if self._inbuf:
                    sack = sack_bitmask(self.ack_nr, self._inbuf, cfg.sack_bytes)
                out.append(self._header(_ST_STATE, self.send_id, self.seq_nr, now, wnd, sack))
        if out:
            self._last_send = now
            self.stats.packets_sent += len(out)
        return out

    def _window_allows(self, size: int) -> bool:
        in_flight = self.bytes_in_flight
        if in_flight + size > self.peer_wnd:
            if not in_flight and self._timeout_at is None:
                self._timeout_at = self._last_send + self.rtt.rto  # probe a closed window later
            return False
        if in_flight and in_flight + size > self.cwnd:
            self._cwnd_full = True
            return False
        return True

    def _queue(self, kind: int, payload: bytes) -> _Out:
        p = _Out(self.seq_nr, kind, payload)
        self._outbuf[p.seq] = p
        self._resend_count += 1
        self.seq_nr = (self.seq_nr + 1) & SEQ_MASK
        return p

    def _transmit(self, p: _Out, out: list[bytes], now: float, wnd: int) -> None:
        conn_id = self.recv_id if p.kind == _ST_SYN else self.send_id
        out.append(self._header(p.kind, conn_id, p.seq, now, wnd) + p.payload)
        p.transmissions += 1
        p.sent_at = now
        if not p.in_flight:
            p.in_flight = True
            self.bytes_in_flight += p.size
        if p.need_resend:
            p.need_resend = False
            self._resend_count -= 1
        if self._timeout_at is None:
            self._timeout_at = now + self.rtt.backed_off(self.timeouts)

    def _header(
        self, kind: int, conn_id: int, seq: int, now: float, wnd: int, sack: bytes | None = None
    ) -> bytes:
        head = HEADER.pack(
            _TYPE_VER[kind], 1 if sack else 0, conn_id, _micros(now), self._reply_micro, wnd, seq, self.ack_nr
        )
        if sack:
            return head + bytes((0, len(sack))) + sack
        return head

    def _adv_window(self) -> int:
        return max(0, self.config.recv_window - self.unconsumed - self._ooo_bytes)

    # ---- timers ----------------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        """When :meth:`on_timeout` wants to run next (None: no timer)."""
        state = self.state
        if state in FINAL_STATES:
            return None
        t = self._timeout_at
        g = self._give_up_at
        if g is not None and (t is None or g < t):
            t = g
        if state is not State.SYN_SENT:
            cfg = self.config
            k = min(self._last_send + cfg.keepalive, self.last_recv + cfg.idle_timeout)
            if t is None or k < t:
                t = k
            probe = self._probe_at
            if probe is not None and probe < t:
                t = probe
        return t

    def on_timeout(self, now: float) -> None:
        """Run the expired timers: retransmission (with back-off), give-up, keepalive, a silent
        peer (``idle_timeout``), the probe after an ICMP unreachable."""
        if self.state in FINAL_STATES:
            return
        if self.state is not State.SYN_SENT and now >= self.last_recv + self.config.idle_timeout:
            self._move(Input.GIVE_UP)
            self._stop_timers()
            self._events.append(Reset("timed out"))
            return
        probe = self._probe_at
        if probe is not None and now >= probe:
            self._probe_at = None
            self._ack_needed = True
        g = self._give_up_at
        if g is not None and now >= g:
            if self.state is State.FIN_SENT:
                self._finish()
            else:
                self._move(Input.GIVE_UP)
                self._stop_timers()
                self._events.append(Reset("timed out"))
            return
        if self.state is not State.SYN_SENT and now >= self._last_send + self.config.keepalive:
            self._ack_needed = True
        t = self._timeout_at
        if t is None or now < t:
            return
        cfg = self.config
        if not self._outbuf:  # a closed peer window: let one packet through as a probe
            self._timeout_at = None
            self.peer_wnd = max(self.peer_wnd, cfg.payload_size + HEADER_SIZE)
            return
        self.timeouts += 1
        self.stats.timeouts += 1
        limit = cfg.syn_retries if self.state is State.SYN_SENT else cfg.max_timeouts
        if self.timeouts > limit:
            self._move(Input.GIVE_UP)
            self._stop_timers()
            self._events.append(Reset("timed out"))
            return
        # back to one full packet, as libutp (max_window = get_packet_size()) and libtorrent (one
        # MTU) do: BEP 29's "smallest packet" (150 bytes) also cut new packets to 130-byte payloads
        # for the ~4 RTTs of slow start back to one packet; every packet in flight is presumed lost
        self.ssthresh = max(self.cwnd / 2, float(2 * cfg.min_packet_size))
        self.cwnd = float(cfg.payload_size + HEADER_SIZE)
        self.slow_start = True
        for p in self._outbuf.values():
            p.in_flight = False
            if not p.need_resend:
                p.need_resend = True
                self._resend_count += 1
        self.bytes_in_flight = 0
        self._loss_seq = (self.seq_nr - 1) & SEQ_MASK
        self.peer_wnd = max(self.peer_wnd, cfg.payload_size + HEADER_SIZE)
        self._timeout_at = now + self.rtt.backed_off(self.timeouts)

    # ---- state -----------------------------------------------------------------------------

    def _check_local(self, inp: Input) -> State:
        nxt = TRANSITIONS.get((self.state, inp))
        if nxt is None:
            raise LocalProtocolError(f"uTP: cannot {inp.value} in state {self.state.value}")
        return nxt

    def _move(self, inp: Input) -> None:
        self.state = self._check_local(inp)

    def _finish(self) -> None:
        self.state = TRANSITIONS[(self.state, Input.DONE)]
        self._stop_timers()
        self._events.append(Closed())

    def _stop_timers(self) -> None:
        self._timeout_at = None
        self._give_up_at = None
        self._probe_at = None


def _micros(now: float) -> int:
    return int(now * 1_000_000) & MASK32
