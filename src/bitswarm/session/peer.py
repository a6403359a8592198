"""One peer connection: the sans-I/O wire codec driven over a byte stream (:mod:`bitswarm.transport`).

Receive path (the download hot path): the stream (for TCP: the event loop) asks
:meth:`PeerProtocol.get_buffer` where to ``recv_into``; the codec answers with its scratch buffer,
or — when the bytes in flight are the body of a ``piece`` message we asked for — with the slot of
that block inside the torrent's piece buffer (its *block sink*), so the kernel writes the block
straight where it belongs. Events are handled
synchronously in :meth:`_drain`; nothing on this path awaits.

Send path: small messages are written as they are produced; uploads are served by one task per peer
(:meth:`_serve_uploads`) that takes requests in order, reads whole pieces through the torrent's
read cache, charges the rate limiters and respects the stream's write flow control.

Uploads are written late: a batch of blocks goes to the stream only once the previous one has
left our buffer, and the kernel keeps at most ``TCP_NOTSENT_LOWAT`` bytes unsent. A request stays
in :attr:`PeerProtocol.uploads` until then, so a ``cancel`` (an end-game duplicate the requester no
longer needs) or our ``choke`` still takes it back (BEP 6: answered with ``reject``) instead of
sending it anyway from a deep socket buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bitswarm.errors import BitswarmError
from bitswarm.mse import EncryptionPolicy
from bitswarm.session.hash_exchange import handshake_reply_hash, upgrade_hash
from bitswarm.session.ratelimit import RateMeter, WindowMeter
from bitswarm.storage.bitfield import Bitfield as PieceSet
from bitswarm.wire import (
    BLOCK_SIZE,
    NEED_DATA,
    PAUSED,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    ConnectionClosed,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    HandshakeHeader,
    Hashes,
    HashReject,
    HashRequest,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    NotInterested,
    PeerConnection,
    Piece,
    PieceLayout,
    Port,
    RejectRequest,
    Request,
    Reserved,
    Unchoke,
    WireProtocolError,
)
from bitswarm.wire.lt_donthave import UPLOAD_ONLY_KEY, decode_donthave, upload_only_of
from bitswarm.wire.ut_metadata import (
    MetadataRequest,
    decode_metadata_message,
    encode_metadata_message,
)
from bitswarm.wire.ut_pex import decode_pex_message

if TYPE_CHECKING:
    from bitswarm.session.clock import Timer
    from bitswarm.session.session import Session
    from bitswarm.session.torrent import TorrentRuntime
    from bitswarm.transport import PeerStream

log = logging.getLogger("bitswarm.peer")

OUR_RESERVED = Reserved.make(fast=True, extension_protocol=True)
#: ... and with the BEP 5 DHT bit, when the session runs a DHT node.
OUR_RESERVED_DHT = Reserved.make(fast=True, extension_protocol=True, dht=True)
#: The extended ids we receive BEP 11 ``ut_pex`` and BEP 9 ``ut_metadata`` on (our ``m`` dictionary).
UT_PEX_ID = 1
UT_METADATA_ID = 2
UT_HOLEPUNCH_ID = 3  #: BEP 55 (bitswarm.session.holepunch)
LT_DONTHAVE_ID = 8  #: BEP 54 (RequestScheduler.on_dont_have)
#: The extended handshake's ``e`` key: 1 = we prefer MSE/PE encryption (``prefer`` and ``require``;
#: libtorrent sends it only when it requires encryption, Transmission when it prefers it).
_E_KEY: dict[bytes, Any] = {b"e": 1}
#: While a block is being received in place and at least this many of its bytes are still to come,
#: the stream is told so (TCP: ``SO_RCVLOWAT`` of exactly that many): the kernel wakes us once for
#: the rest of the block instead of once per TCP segment (a 16 KiB block at 10 Mbit/s arrives in
#: ~11 segments).
RCVLOWAT_MIN = 2048
#: Bytes of cached blocks handed to the stream in one ``writelines``: about
#: ``UPLOAD_BATCH_SECONDS`` of this connection's upload rate, within these bounds. Enough that a
#: busy machine (a loop turn late by a scheduling slice) does not idle the link, little enough that
#: the requests behind stay cancellable.
UPLOAD_BATCH_MIN = 32 * 1024
UPLOAD_BATCH_MAX = 256 * 1024
UPLOAD_BATCH_SECONDS = 0.25


class PeerProtocol:
    """A connection to one peer, incoming or outgoing, for one torrent.

    It runs on any :class:`~bitswarm.transport.PeerStream` (TCP, uTP, encrypted or not) and is
    that stream's :class:`~bitswarm.transport.StreamReceiver`."""

    def __init__(
        self,
        session: Session,
        torrent: TorrentRuntime | None,
        *,
        outgoing: bool,
        address: tuple[str, int] | None = None,
    ) -> None:
        self.session = session
        self.torrent: TorrentRuntime | None = torrent
        self.outgoing = outgoing
        self.address: tuple[str, int] = address or ("?", 0)
        self.codec = PeerConnection()
        # The receive hot path: the stream calls ``get_buffer`` once per read; bound straight to the
        # codec's, a read costs no extra call through this protocol (the TCP stream binds ours).
        self.get_buffer = self.codec.get_buffer  # type: ignore[method-assign]
        self.stream: PeerStream | None = None
        self.peer_id: bytes | None = None
        self.client: str | None = None
        #: BEP 10: the peer's ``m`` dictionary (extension name -> the id it receives it on) and its
        #: listen port ``p``.
        self.ext_ids: dict[str, int] = {}
        self.listen_port: int | None = None
        #: the peer's extended-handshake ``e`` (1: it prefers MSE/PE encryption), None if not sent
        self.prefers_encryption: bool | None = None
        self.closed = False
        self.established = False
        # choke/interest state (BEP 3): we start choked and not interested, both ways
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.snubbed = False
        self.has: PieceSet | None = None
        self.is_seed = False
        #: BEP 21: the peer's extended handshake said ``upload_only`` (it downloads nothing)
        self.upload_only = False
        self.allowed_fast: set[int] = set()
        self.reqq = 250
        #: blocks (index, begin) requested from this peer and neither received, rejected, cancelled
        #: nor given up (choke without the fast extension, snub)
        self.requested: set[tuple[int, int]] = set()
        #: the torrent tops up requests only once ``outstanding`` falls to this (set when it picks)
        self.refill_at = 1 << 30
        now = session.clock.now
        self.download = RateMeter(clock=now)
        self.recent = WindowMeter(2.0, clock=now)  # sizes the request queue (exact from the first block)
        self.upload = RateMeter(clock=now)
        self._now = session.clock.now
        self.connected_at = self._now()
        self.last_recv = self.connected_at
        self.last_send = self.connected_at
        self.last_block = self.connected_at
        self.choked_at = self.connected_at  #: when the peer last choked us
        self.unchoked_at = self.connected_at  #: when we last unchoked the peer
        self.last_request = 0.0  #: when the peer last asked us for a block we queued
        self.idle_choked_at = 0.0  #: when we last took its slot for not asking (see TorrentRuntime)
        #: our pieces this peer already had when we got them: announced once we complete
        self.withheld_haves: list[int] = []
        #: HAVEs for a peer we choke (it cannot ask us for them yet), sent together a moment later
        self.queued_haves: list[int] = []
        self.uploads: deque[tuple[int, int, int]] = deque()
        self._upload_set: set[tuple[int, int, int]] = set()  # the same requests, for lookups
        self._upload_task: asyncio.Task[None] | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._timer: Timer | None = None
        self._rcvlowat = 1  # the stream's receive hint (see RCVLOWAT_MIN)
        self._out: list[bytes] = []
        self._flush_scheduled = False

    # -- asyncio protocol ----------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Blocks requested from this peer and not yet in (see :attr:`requested`)."""
        return len(self.requested)

    def connection_made(self, stream: PeerStream) -> None:
        self.stream = stream
        peer = stream.peer_address
        if peer:
            self.address = peer
        self.session.connection_opened(self)
        if self.outgoing:
            assert self.torrent is not None
            self._attach_layout()
            self.codec.upgrade_info_hash = upgrade_hash(self.torrent.torrent)  # BEP 52 (hybrid)
            self._send(Handshake(self.torrent.swarm_hash, self.session.peer_id, self._reserved()))
        timeout = self.session.config.handshake_timeout
        self._timer = self.session.clock.call_later(timeout, self._handshake_timeout)

    def get_buffer(self, sizehint: int) -> memoryview:  # replaced per instance (see __init__)
        # The codec's whole scratch buffer (256 KiB: many blocks per read, parsed in place and each
        # copied once into its piece buffer), or the rest of a block whose beginning came with the
        # last read (received in place). Reading only up to each next message header, so that
        # every block landed in place, took two reads and two trips through here per block: 20 %
        # more CPU for the whole leecher process (issue 24, docs/benchmarks.md "Whole process").
        return self.codec.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        codec = self.codec
        codec.buffer_updated(nbytes)
        self.last_recv = self._now()
        rest = codec.direct_remaining
        lowat = rest if rest >= RCVLOWAT_MIN else 1
        if lowat != self._rcvlowat and self.stream is not None:
            # never above what is certain to come (the rest of this block)
            self._rcvlowat = lowat
            self.stream.set_receive_hint(lowat)
        self._drain()

    def eof_received(self) -> bool:
        with contextlib.suppress(BitswarmError):
            self.codec.receive_data(b"")
        self._drain()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed and not self.established:  # --debug: why a peer never got going
            why = f": {exc}" if exc is not None else ""
            log.debug("%s:%d closed the connection during the handshake%s", *self.address, why)
        self._teardown()

    def pause_reading(self) -> None:
        """Stop taking bytes from the peer (back-pressure: the disk or the rate limit is behind)."""
        if self.stream is not None and not self.closed:
            self.stream.pause_reading()

    def resume_reading(self) -> None:
        if self.stream is not None and not self.closed:
            self.stream.resume_reading()

    @property
    def transport_kind(self) -> str:
        """``"tcp"`` or ``"utp"``, with ``"+enc"`` when encrypted (status)."""
        stream = self.stream
        if stream is None:
            return "?"
        return stream.kind + ("+enc" if stream.encrypted else "")

    @property
    def encrypted(self) -> bool:
        """True when the payload runs RC4-encrypted (MSE/PE)."""
        return self.stream is not None and self.stream.encrypted

    @property
    def supports_encryption(self) -> bool:
        """The peer speaks MSE/PE: it said ``e`` = 1, or this connection opened with MSE (even
        when it then selected the plaintext method): the BEP 11 PEX flag 0x01."""
        obfuscated = bool(getattr(self.stream, "obfuscated", False))  # an MSEStream's
        return bool(self.prefers_encryption) or self.encrypted or obfuscated

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- helpers -------------------------------------------------------------------------------

    def _attach_layout(self) -> None:
        assert self.torrent is not None
        info = self.torrent.info
        self.codec.set_layout(PieceLayout.from_info(info))
        self.codec.set_block_sink(self.torrent.scheduler.block_sink_for(self))
        self.has = PieceSet(info.num_pieces)

    def _reserved(self) -> Reserved:
        """Our handshake's reserved bytes: the session's, plus the BEP 52 v2 bit for a torrent with
        a v2 info-hash (libtorrent then takes hash requests from us on a hybrid torrent)."""
        bits = self.session.reserved
        if self.torrent is not None and self.torrent.torrent.info_hash_v2 is not None:
            return Reserved(bits.raw[:7] + bytes([bits.raw[7] | 0x10]))
        return bits

    def send_message(self, event: Event) -> None:
        """Send a message from another part of the engine (BEP 52 hash exchange) on this connection."""
        if self.established and not self.closed:
            self._send(event)

    def _send(self, event: Event) -> None:
        """Queue a message; queued messages go out in one write at the end of this loop turn."""
        self._queue(self.codec.send(event))

    def _queue(self, data: bytes) -> None:
        """Queue encoded messages (see :meth:`_send`)."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.stream is not None and not self.closed:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self.stream.write(data)
            self.last_send = self._now()
        self._out.clear()

    def close(self, reason: str = "") -> None:
        if self.closed:
            return
        if reason:
            log.debug("closing %s:%d: %s", *self.address, reason)
        self._flush()
        self.closed = True
        if self.stream is not None:
            self.stream.close()
        self._teardown()

    def abort(self, reason: str) -> None:
        log.info("dropping peer %s:%d: %s", *self.address, reason)
        self.closed = True
        if self.stream is not None:
            self.stream.abort()
        self._teardown()

    def _teardown(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._upload_task is not None:
            self._upload_task.cancel()
            self._upload_task = None
        self._can_write.set()
        self.session.connection_closed(self)
        if self.torrent is not None:
            self.torrent.peer_gone(self)

    def _handshake_timeout(self) -> None:
        self._timer = None
        if not self.established:
            self.close("handshake timeout")

    # -- receiving -----------------------------------------------------------------------------

    def _drain(self) -> None:
        codec = self.codec
        try:
            while not self.closed:
                ev = codec.next_event()
                if ev is NEED_DATA:
                    return
                if ev is PAUSED:
                    return  # waiting for our handshake: sent from the HandshakeHeader handler
                handler = _HANDLERS.get(type(ev))
                if handler is not None:  # KeepAlive, SuggestPiece, UnknownMessage: nothing to do
                    handler(self, ev)
        except WireProtocolError as exc:
            self.abort(f"protocol error: {exc}")
        except BitswarmError as exc:
            self.abort(f"error: {exc}")

    # One handler per event class (:data:`_HANDLERS`): a dict lookup instead of a chain of type
    # tests. Every message but the handshake comes after it, so ``self.torrent`` is set by then.

    def _on_piece(self, ev: Piece) -> None:
        torrent = self.torrent
        assert torrent is not None
        self.last_block = self.last_recv
        self.snubbed = False
        torrent.scheduler.on_block(self, ev.index, ev.begin, ev.data)

    def _on_have(self, ev: Have) -> None:
        assert self.torrent is not None
        self.torrent.scheduler.on_have(self, ev.index)

    def _on_unchoke(self, ev: Unchoke) -> None:
        self.peer_choking = False
        if self.torrent is not None:
            self.torrent.scheduler.fill_requests(self)

    def _on_choke(self, ev: Choke) -> None:
        self.peer_choking = True
        if self.torrent is not None:
            self.torrent.scheduler.on_choked(self)

    def _on_interest(self, ev: Interested | NotInterested) -> None:
        self.peer_interested = type(ev) is Interested
        if self.torrent is not None:
            self.torrent.choking.on_interest_changed(self)
            if not self.peer_interested:
                self.torrent.scheduler.on_not_interested(self)  # BEP 16: the next pieces

    def _on_bitfield(self, ev: Bitfield) -> None:
        assert self.torrent is not None
        self.torrent.scheduler.on_bitfield(self, ev.bits)

    def _on_have_all(self, ev: HaveAll) -> None:
        assert self.torrent is not None
        self.torrent.scheduler.on_have_all(self)

    def _on_have_none(self, ev: HaveNone) -> None:
        assert self.torrent is not None
        self.torrent.scheduler.on_have_none(self)

    def _on_cancel(self, ev: Cancel) -> None:
        key = (ev.index, ev.begin, ev.length)
        if key in self._upload_set:
            self._upload_set.discard(key)
            with contextlib.suppress(ValueError):
                self.uploads.remove(key)
            if self.codec.fast:  # BEP 6: every request gets exactly one answer, piece or reject
                self._send(RejectRequest(*key))

    def _on_reject(self, ev: RejectRequest) -> None:
        assert self.torrent is not None
        self.torrent.scheduler.on_reject(self, ev.index, ev.begin)

    def _on_allowed_fast(self, ev: AllowedFast) -> None:
        self.allowed_fast.add(ev.index)
        if self.torrent is not None and self.peer_choking:
            self.torrent.scheduler.fill_requests(self)

    def _on_extended_handshake(self, ev: ExtendedHandshake) -> None:
        if ev.reqq:
            self.reqq = max(1, min(ev.reqq, 5000))
        self.client = ev.client
        if ev.yourip is not None:  # BEP 10: where this peer sees us (one vote per peer IP)
            self.session.reachability.note(str(ev.yourip), "peer", self.address[0])
        # BEP 10: a later handshake's ``m`` lists changes only (id 0: disabled)
        self.ext_ids.update({k: v for k, v in ev.m.items() if isinstance(v, int) and 0 <= v < 256})
        self.ext_ids = {k: v for k, v in self.ext_ids.items() if v}
        upload_only = upload_only_of(ev.extra)
        if upload_only is not None and self.torrent is not None:
            self.upload_only = upload_only
            self.torrent.scheduler.on_upload_only(self)
        if ev.port is not None and 0 < ev.port < 65536:
            self.listen_port = ev.port
        e = ev.extra.get(b"e")
        if isinstance(e, int):
            self.prefers_encryption = e == 1
            addr = self.pex_address
            if e == 1 and addr is not None and self.torrent is not None:
                self.torrent.peer_manager.note_mse(addr, True)  # a redial goes MSE first again

    def _on_hash_message(self, ev: HashRequest | Hashes | HashReject) -> None:
        if self.torrent is not None:
            self.torrent.hashes.on_message(self, ev)  # BEP 52: bitswarm.session.hash_exchange

    def _on_port(self, ev: Port) -> None:
        if self.torrent is not None and not self.torrent.info.private:
            self.session.on_dht_port(self.address[0], ev.port)  # BEP 5: ping it into the table

    def _on_closed(self, ev: ConnectionClosed) -> None:
        self.close()

    def _on_handshake_header(self, ev: HandshakeHeader) -> None:
        if self.outgoing:
            assert self.torrent is not None
            if ev.info_hash not in (self.torrent.swarm_hash, self.codec.upgrade_info_hash):
                self.abort("peer answered with another info-hash")
            return
        torrent = self.session.lookup(ev.info_hash)
        if torrent is None or not torrent.accepting:
            self.abort("unknown info-hash")
            return
        skey = getattr(self.stream, "skey", None)  # an MSEStream's: the torrent MSE named
        if skey is not None and self.session.lookup(skey) is not torrent:
            self.abort("the handshake names another torrent than its MSE stream key")
            return
        self.torrent = torrent
        self._attach_layout()
        reply = handshake_reply_hash(torrent.torrent, ev.info_hash, ev.reserved.v2)  # BEP 52 upgrade
        self.codec.upgrade_info_hash = reply if reply != ev.info_hash else None
        self._send(Handshake(reply, self.session.peer_id, self._reserved()))

    def _on_handshake(self, ev: Handshake) -> None:
        torrent = self.torrent
        assert torrent is not None
        if ev.peer_id == self.session.peer_id:
            self.abort("connected to ourselves")
            return
        self.peer_id = ev.peer_id
        if not torrent.peer_joined(self):
            return
        self.established = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.codec.extension_protocol:
            cfg = self.session.config
            m = {"ut_metadata": UT_METADATA_ID}
            if torrent.pex is not None:
                m["ut_pex"] = UT_PEX_ID
            if torrent.peer_manager.holepunch is not None:
                m["ut_holepunch"] = UT_HOLEPUNCH_ID
            m["lt_donthave"] = LT_DONTHAVE_ID
            extra = dict(_E_KEY) if cfg.encryption is not EncryptionPolicy.OFF else {}
            if torrent.scheduler.partial_seed:
                extra[UPLOAD_ONLY_KEY] = 1
            self._send(
                ExtendedHandshake(
                    m=m,
                    client=cfg.user_agent,
                    port=self.session.port,
                    reqq=1000,
                    yourip=_yourip(self.address[0]),
                    metadata_size=torrent.metadata_server.metadata_size,
                    extra=extra,
                )
            )
        have = torrent.have
        if torrent.scheduler.superseed is not None:  # BEP 16: no bitfield, pieces one by one
            if self.codec.fast:
                self._send(HaveNone())
            torrent.scheduler.start_super_seeding(self)
        elif self.codec.fast and have.all():
            self._send(HaveAll())
        elif self.codec.fast and not have.any():
            self._send(HaveNone())
        elif have.any():
            self._send(Bitfield(have.to_bytes()))
        dht_port = self.session.dht_port
        if ev.reserved.dht and dht_port and not torrent.info.private:
            self._send(Port(dht_port))  # BEP 5, after the bitfield (which must come first)

    def _on_extended(self, ev: Extended) -> None:
        """BEP 10 messages on the ids we assigned: BEP 9 metadata requests, BEP 11 peer exchange."""
        torrent = self.torrent
        if torrent is None:
            return
        if ev.ext_id == UT_METADATA_ID:
            msg = decode_metadata_message(ev.payload)
            reply_id = self.ext_ids.get("ut_metadata")
            if isinstance(msg, MetadataRequest) and reply_id:
                answer = torrent.metadata_server.respond(msg, self)
                self._send(Extended(reply_id, encode_metadata_message(answer)))
            elif isinstance(msg, MetadataRequest):
                log.debug("%s:%d asked for metadata without offering ut_metadata", *self.address)
            # data / reject / unknown: we have the metadata already, nothing to do (BEP 9: ignore)
        elif ev.ext_id == LT_DONTHAVE_ID:
            torrent.scheduler.on_dont_have(self, decode_donthave(ev.payload, torrent.info.num_pieces))
        elif ev.ext_id == UT_PEX_ID and torrent.pex is not None:
            torrent.peer_manager.on_pex(self, decode_pex_message(ev.payload))
        elif ev.ext_id == UT_HOLEPUNCH_ID and (punch := torrent.peer_manager.holepunch) is not None:
            punch.on_payload(self, ev.payload)

    def send_extended(self, name: str, payload: bytes) -> bool:
        """Send a BEP 10 message for extension ``name`` if the peer offered it (True if sent)."""
        ext_id = self.ext_ids.get(name)
        if not ext_id or not self.established or self.closed:
            return False
        self._send(Extended(ext_id, payload))
        return True

    def send_upload_only(self, value: bool) -> None:
        """BEP 21: an extended handshake again, saying whether we download nothing any more (the
        ``m`` of a later handshake lists changes only: none here)."""
        if self.established and not self.closed and self.codec.extension_protocol:
            self._send(ExtendedHandshake(m={}, extra={UPLOAD_ONLY_KEY: int(value)}))

    @property
    def pex_address(self) -> tuple[str, int] | None:
        """The address other peers can dial this one at (BEP 11): the address we dialed, or an
        incoming peer's IP with the listen port of its extended handshake (unknown: None)."""
        if self.outgoing:
            return self.address
        if self.listen_port is not None:
            return (self.address[0], self.listen_port)
        return None

    def _on_request(self, ev: Request) -> None:
        torrent = self.torrent
        assert torrent is not None
        ok = (
            ev.length <= BLOCK_SIZE
            and torrent.have.get(ev.index)
            and (not self.am_choking or ev.index in torrent.choking.allowed_fast_for(self))
            and len(self.uploads) < 2000
        )
        if not ok:
            if self.codec.fast:
                self._send(RejectRequest(ev.index, ev.begin, ev.length))
            return
        key = (ev.index, ev.begin, ev.length)
        if key in self._upload_set:
            return  # a duplicate request: served once
        self.last_request = self.last_recv
        self.uploads.append(key)
        self._upload_set.add(key)
        if self._upload_task is None:
            self._upload_task = asyncio.get_running_loop().create_task(self._serve_uploads())

    # -- sending -------------------------------------------------------------------------------

    def send_have(self, index: int) -> None:
        if self.established and not self.closed:
            self._queue(self.codec.send_have(index))

    def flush_haves(self) -> None:
        """Send the queued HAVEs (one write: they leave in one segment)."""
        for index in self.queued_haves:
            self.send_have(index)
        self.queued_haves.clear()

    def set_interested(self, value: bool) -> None:
        if value != self.am_interested and self.established and not self.closed:
            self.am_interested = value
            self._send(Interested() if value else NotInterested())

    def set_choking(self, value: bool) -> None:
        if value == self.am_choking or not self.established or self.closed:
            return
        if not value and self.queued_haves:
            self.flush_haves()  # what we have, before it may ask
        self.am_choking = value
        self._send(Choke() if value else Unchoke())
        if not value:
            self.unchoked_at = self._now()
        else:
            if self.codec.fast:
                for index, begin, length in self.uploads:
                    self._send(RejectRequest(index, begin, length))
            self.uploads.clear()
            self._upload_set.clear()

    def send_requests(self, blocks: Sequence[tuple[int, int, int]]) -> None:
        if not blocks:
            return
        self._queue(self.codec.send_requests(blocks))  # one encoding for the batch, no event per block
        self.requested.update([(index, begin) for index, begin, _ in blocks])

    def send_cancel(self, index: int, begin: int, length: int) -> None:
        """Withdraw a request (it no longer counts as outstanding; a late block is redundant)."""
        self.requested.discard((index, begin))
        if self.established and not self.closed:
            self._send(Cancel(index, begin, length))

    def send_keepalive(self) -> None:
        if self.established and not self.closed:
            self._send(KeepAlive())

    async def _serve_uploads(self) -> None:
        """Send requested blocks in order. Blocks of cached pieces go out in batches (one
        ``writelines`` per batch, no await per block); a missing piece is read (once, whole).

        No read-ahead of the following pieces: it made uploads so bursty that aria2 completes
        several pieces per cycle and then announces them with a mid-stream ``bitfield``, which the
        wire codec rejects (aria2 then reconnects for a minute). Measured: no gain on loopback."""
        torrent = self.torrent
        stream = self.stream
        assert torrent is not None and stream is not None
        uploads, pending = self.uploads, self._upload_set
        header_for = self.codec.send_piece_header
        cached = torrent.read_cache.cached_piece
        got_index, got = -1, b""  # the piece last awaited (used even if the cache is off)
        try:
            while uploads and not self.closed:
                if not self._can_write.is_set():
                    await self._can_write.wait()
                    continue
                parts: list[bytes | memoryview] = []
                sent = 0
                limiter = torrent.upload_limiter
                limited = limiter.rate or (limiter.parent is not None and limiter.parent.rate)
                if limited:
                    cap = 1  # rate-limited: one block at a time
                else:
                    cap = int(self.upload.rate * UPLOAD_BATCH_SECONDS)
                    cap = UPLOAD_BATCH_MIN if cap < UPLOAD_BATCH_MIN else min(cap, UPLOAD_BATCH_MAX)
                piece_index, piece = -1, None  # the piece of the block before (one cache lookup per piece)
                while uploads and sent < cap:
                    index, begin, length = uploads[0]
                    if index != piece_index:
                        piece = got if index == got_index else cached(index)
                        piece_index = index
                    if piece is None:
                        break
                    pending.discard(uploads.popleft())
                    parts.append(header_for(index, begin, length))
                    parts.append(memoryview(piece)[begin : begin + length])
                    sent += length
                if not parts:
                    index = uploads[0][0]
                    got = await torrent.read_cache.read_piece(index)
                    got_index = index
                    continue
                self._flush()
                stream.writelines(parts)
                self.last_send = self._now()
                self.upload.add(sent)
                torrent.on_uploaded(sent)
                wait = limiter.take(sent + 13 * (len(parts) // 2))
                if wait > 0:
                    await self.session.clock.sleep(wait)
        except BitswarmError as exc:
            self.abort(f"upload failed: {exc}")
            torrent.scheduler.pieces_dropped()  # a seed-mode piece that failed its check: BEP 54
        finally:
            self._upload_task = None


#: event class -> its handler (:meth:`PeerProtocol._drain`); events not listed are ignored
_HANDLERS: dict[type, Callable[[PeerProtocol, Any], None]] = {
    Piece: PeerProtocol._on_piece,
    Have: PeerProtocol._on_have,
    Request: PeerProtocol._on_request,
    Unchoke: PeerProtocol._on_unchoke,
    Choke: PeerProtocol._on_choke,
    Interested: PeerProtocol._on_interest,
    NotInterested: PeerProtocol._on_interest,
    Bitfield: PeerProtocol._on_bitfield,
    HaveAll: PeerProtocol._on_have_all,
    HaveNone: PeerProtocol._on_have_none,
    Cancel: PeerProtocol._on_cancel,
    RejectRequest: PeerProtocol._on_reject,
    AllowedFast: PeerProtocol._on_allowed_fast,
    ExtendedHandshake: PeerProtocol._on_extended_handshake,
    Extended: PeerProtocol._on_extended,
    Port: PeerProtocol._on_port,
    HashRequest: PeerProtocol._on_hash_message,
    Hashes: PeerProtocol._on_hash_message,
    HashReject: PeerProtocol._on_hash_message,
    HandshakeHeader: PeerProtocol._on_handshake_header,
    Handshake: PeerProtocol._on_handshake,
    ConnectionClosed: PeerProtocol._on_closed,
}


def _yourip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """BEP 10 ``yourip`` for a peer at ``host`` (an IPv4-mapped IPv6 address as IPv4)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
