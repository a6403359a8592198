"""What to request from whom, and what becomes of the blocks: the download side of one torrent.

libtorrent's ``request_blocks`` and ``piece_picker`` glue is the model. :class:`RequestScheduler`
keeps each peer's request queue about ``request_queue_seconds`` of its rate deep, asks the
:class:`~bitswarm.session.picker.PiecePicker` for blocks (rarest first, end-game duplicates to idle
peers), owns the piece buffers and the *block sink* through which the wire codec receives a block
straight into its piece buffer, and finishes pieces: hash and write off the event loop (with
back-pressure on every peer while the disk is behind), then the smart-ban policy and the torrent's
``on_verified`` callback. It also follows each peer's pieces (bitfield, HAVEs, BEP 54 ``lt_donthave``),
our interest, BEP 21 partial seeds (``upload_only``, both ways) and BEP 16 super-seeding
(:mod:`bitswarm.session.superseed`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import TYPE_CHECKING, Any

from bitswarm.errors import BitswarmError
from bitswarm.session.peer_manager import peer_key
from bitswarm.session.picker import BLOCK_SIZE, BlockRequest
from bitswarm.session.ratelimit import ReadPause
from bitswarm.session.superseed import SuperSeeder
from bitswarm.storage.bitfield import Bitfield as PieceSet
from bitswarm.wire.lt_donthave import LT_DONTHAVE, encode_donthave

if TYPE_CHECKING:
    from bitswarm.metainfo import InfoDict
    from bitswarm.session.clock import Clock
    from bitswarm.session.config import SessionConfig
    from bitswarm.session.peer import PeerProtocol
    from bitswarm.session.peer_manager import PeerManager
    from bitswarm.session.picker import PiecePicker
    from bitswarm.session.ratelimit import RateLimiter, RateMeter
    from bitswarm.storage import Storage

log = logging.getLogger("bitswarm.torrent")

#: End-game duplicates go only to a peer with fewer blocks than this outstanding (an idle peer).
ENDGAME_IDLE_BLOCKS = 4
#: Seconds a peer that choked us (fast extension) may leave our requests unanswered before they are
#: given to other peers.
CHOKED_REQUESTS_TIMEOUT = 10.0


class RequestScheduler:
    """Requests, piece buffers, block receipt and piece completion of one torrent."""

    def __init__(
        self,
        *,
        info: InfoDict,
        piece_size: Callable[[int], int],
        picker: PiecePicker,
        storage: Storage,
        peers: PeerManager,
        config: SessionConfig,
        clock: Clock,
        download_limiter: RateLimiter,
        down: RateMeter,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        on_verified: Callable[[int, bytearray], None],
        on_hash_failed: Callable[[int], None],
        on_disk_error: Callable[[str], None],
        on_pieces_dropped: Callable[[], None] | None = None,
    ) -> None:
        self.info = info
        self.piece_size = piece_size
        self.picker = picker
        self.storage = storage
        self.peers = peers
        self.config = config
        self.clock = clock
        self.download_limiter = download_limiter
        self.down = down
        self._spawn = spawn
        self._on_verified = on_verified
        self._on_hash_failed = on_hash_failed
        self._on_disk_error = on_disk_error
        self._on_pieces_dropped = on_pieces_dropped
        #: set by the torrent: requests go out only while downloading; a seed drops seeds
        self.downloading = False
        self._seeding = False
        #: BEP 16: while seeding every piece with super-seeding on (see :attr:`seeding`,
        #: :meth:`set_super_seed`)
        self.superseed: SuperSeeder | None = None
        #: this torrent's super-seeding switch (None: ``config.super_seed``, the session's default)
        self._super_seed: bool | None = None
        self.buffers: dict[int, bytearray] = {}
        #: finished piece buffers for reuse: a fresh 512 KiB ``bytearray`` costs a zero-fill and a
        #: page fault per 4 KiB (~15 % of the leecher's time before the pool)
        self._buffer_pool: list[bytearray] = []
        self._buffer_pool_max = max(4, config.piece_buffer_pool_bytes // max(1, info.piece_length))
        self._block_src: dict[int, dict[int, PeerProtocol]] = {}
        #: piece -> the web seed fetching it (one web seed per piece; see :meth:`pick_web_piece`)
        self._web_pieces: dict[int, Hashable] = {}
        self.finishing = 0  #: complete pieces waiting for their hash + write
        #: of those, the pieces submitted to the storage with a done-callback (no task each); while
        #: any is out, one kept job waits for ``_writes_idle`` so that a stop waits for them too
        self._writing = 0
        self._writes_idle: asyncio.Future[None] | None = None
        #: a piece's write failed (the torrent is in error): pieces whose hash + write end after it
        #: count for nothing — no ``piece_verified`` after ``torrent_error``; resuming an errored
        #: torrent rechecks the disk and finds them there
        self.disk_failed = False
        self._disk_paused = False  # peers' reading paused until the disk catches up
        self._read_pauses: dict[PeerProtocol, ReadPause] = {}  # by peer: why its reading is paused
        self.hash_failures = 0
        self.redundant = 0  #: see TorrentStatus.redundant

    # -- seeding, partial seeds (BEP 21), super-seeding (BEP 16) ---------------------------------

    @property
    def seeding(self) -> bool:
        """Set by the torrent: every wanted piece is here (a seed, or a partial seed)."""
        return self._seeding

    @seeding.setter
    def seeding(self, value: bool) -> None:
        was_partial = self.partial_seed
        self._seeding = value
        self._update_super_seeding()
        if self.partial_seed != was_partial:
            for peer in list(self.peers):  # BEP 21: a handshake again, with the new upload_only
                if peer.established and not peer.closed:
                    peer.send_upload_only(self.partial_seed)

    @property
    def super_seed(self) -> bool:
        """BEP 16 is switched on for this torrent (it super-seeds while it has every piece)."""
        return self.config.super_seed if self._super_seed is None else self._super_seed

    def set_super_seed(self, value: bool | None) -> None:
        """Switch BEP 16 for this torrent at run time (None: back to the session's default).

        On: peers that connect from now on get no bitfield but a piece or two at a time; peers
        already connected have our bitfield and stay as they are. Off: every super-seeded peer is
        sent a ``have`` for each of our pieces it lacks (what its bitfield would have said), and new
        peers get the bitfield again."""
        self._super_seed = value
        self._update_super_seeding()

    def _update_super_seeding(self) -> None:
        if self._seeding and self.super_seed and self.storage.have.all():
            if self.superseed is None:
                self.superseed = SuperSeeder(self.info.num_pieces, lambda i: self.picker.availability[i])
            return
        ss, self.superseed = self.superseed, None
        if ss is None:
            return
        have = self.storage.have
        for peer in list(self.peers):
            if peer not in ss.offered or peer.closed or peer.has is None:
                continue
            told = peer.has
            for index in have.iter_set():
                if not told.get(index):
                    peer.send_have(index)

    @property
    def partial_seed(self) -> bool:
        """BEP 21: every wanted piece is here, but not every piece (files were skipped)."""
        return self._seeding and not self.storage.have.all()

    def start_super_seeding(self, peer: PeerProtocol) -> bool:
        """A peer just connected: when super-seeding, offer it its first pieces (the caller sent no
        bitfield) and return True; otherwise False (the caller sends our pieces as usual)."""
        ss = self.superseed
        if ss is None or peer.has is None:
            return False
        for index in ss.peer_joined(peer, peer.has.get):
            peer.send_have(index)
        return True

    def on_not_interested(self, peer: PeerProtocol) -> None:
        """The peer sent ``not interested``: when super-seeding, it has its offered pieces."""
        if self.superseed is not None:
            for index in self.superseed.not_interested(peer):
                peer.send_have(index)

    def on_upload_only(self, peer: PeerProtocol) -> None:
        """The peer's extended handshake set BEP 21 ``upload_only`` (``peer.upload_only``). It is
        not a seed for that (its pieces say what it has). When we want nothing either (a seed or a
        partial seed), nobody can get anything on this connection: it is closed."""
        if not peer.upload_only:
            return
        if self._seeding:
            peer.close("both upload-only")
            return
        if peer.has is not None and peer.outstanding == 0 and not self.picker.wants_mask(peer.has.as_int()):
            peer.set_interested(False)

    def on_dont_have(self, peer: PeerProtocol, index: int) -> None:
        """BEP 54: the peer no longer has piece ``index``: its availability drops, requests for the
        piece to it are given back, and our interest is checked again."""
        has = peer.has
        if has is None or not 0 <= index < len(has) or not has.get(index):
            return
        if peer.is_seed:  # a seed no more: its pieces are counted one by one from now on
            peer.is_seed = False
            self.picker.peer_has_all(-1)
            has.clear(index)
            self.picker.peer_bitfield(_bits(has))
        else:
            has.clear(index)
            self.picker.peer_has_not(index)
        for i, begin in [r for r in peer.requested if r[0] == index]:
            peer.requested.discard((i, begin))
            self.picker.cancel(peer, i, begin)
        if peer.am_interested and not self.picker.wants_mask(has.as_int()) and peer.outstanding == 0:
            peer.set_interested(False)

    def pieces_dropped(self) -> list[int]:
        """Pieces we had (and announced) that storage no longer has (e.g. a seed-mode piece that
        failed its check before its first upload): the picker wants them again and every peer that
        offered ``lt_donthave`` is told (BEP 54). Returns them."""
        have = self.storage.have
        dropped = [i for i in range(self.info.num_pieces) if self.picker.have[i] and not have.get(i)]
        if not dropped:
            return dropped
        for i in dropped:
            self.picker.unset_have(i)
        for peer in list(self.peers):
            for i in dropped:
                peer.send_extended(LT_DONTHAVE, encode_donthave(i))
        if self._on_pieces_dropped is not None:
            self._on_pieces_dropped()  # the torrent downloads them again
        return dropped

    # -- what peers have -----------------------------------------------------------------------

    def on_bitfield(self, peer: PeerProtocol, bits: bytes) -> None:
        assert peer.has is not None
        if peer.is_seed:  # a repeated bitfield (aria2 batches its haves so) replaces the first
            peer.is_seed = False
            self.picker.peer_has_all(-1)
        elif peer.has.any():
            self.picker.peer_bitfield(_bits(peer.has), -1)
        has = PieceSet.from_bytes(bits, self.info.num_pieces)
        peer.has = has
        if has.all():
            peer.is_seed = True
            self.picker.peer_has_all()
        else:
            self.picker.peer_bitfield(_bits(has))
        self._after_pieces_known(peer)

    def on_have_all(self, peer: PeerProtocol) -> None:
        assert peer.has is not None
        peer.has.set_all()
        peer.is_seed = True
        self.picker.peer_has_all()
        self._after_pieces_known(peer)

    def on_have_none(self, peer: PeerProtocol) -> None:
        self._after_pieces_known(peer)

    def on_have(self, peer: PeerProtocol, index: int) -> None:
        has = peer.has
        assert has is not None
        if has.get(index):
            return
        has.set(index)
        if self.superseed is not None:
            for other, pieces in self.superseed.on_have(peer, index).items():
                assert isinstance(other, type(peer))
                for i in pieces:
                    other.send_have(i)
        if peer.is_seed:
            return
        self.picker.peer_has(index)
        if has.all():
            # a seed from now on; its per-piece counts already equal the all-pieces form that
            # leaving takes back (``peer_has_all(-1)``), so availability needs no rewrite (swapping
            # one for the other walked every piece twice, ~10 ms per peer at 2,048 pieces)
            peer.is_seed = True
        if peer.is_seed and self.seeding:
            peer.close("both seeds")
            return
        if not self.downloading:
            return
        if self.storage.have.get(index) or not self.picker.priority[index]:
            return  # nothing new for us: no scan (a busy swarm sends thousands of these)
        if not peer.am_interested:
            peer.set_interested(True)
        if peer.peer_choking or peer.outstanding > peer.refill_at or peer.closed:
            return
        if self.picker.weighted:
            # file priorities differ: the announced piece is weighed against the others
            self.fill_requests(peer)
            return
        # request from the piece just announced only (O(1)); the regular refill scans the rest
        blocks = self.picker.pick_piece(peer, index, self.queue_target(peer) - peer.outstanding)
        if blocks:
            if index not in self.buffers:
                self.buffers[index] = self._new_buffer(self.piece_size(index))
            peer.send_requests(blocks)

    def _after_pieces_known(self, peer: PeerProtocol) -> None:
        if self._seeding:
            if peer.is_seed:
                peer.close("both seeds")
            elif peer.upload_only:
                peer.close("both upload-only")
            return
        assert peer.has is not None
        if self.picker.wants_mask(peer.has.as_int()):
            peer.set_interested(True)
            self.fill_requests(peer)

    def peer_lost(self, peer: PeerProtocol) -> None:
        """A peer left: its requests go back to the picker, its pieces leave the availability."""
        self.picker.peer_lost(peer)
        pause = self._read_pauses.pop(peer, None)
        if pause is not None:
            pause.close()
        if self.superseed is not None:
            self.superseed.peer_left(peer)
        if peer.has is not None:
            if peer.is_seed:
                self.picker.peer_has_all(-1)
            elif peer.has.any():
                self.picker.peer_bitfield(_bits(peer.has), -1)

    # -- choke, reject, snub -------------------------------------------------------------------

    def on_choked(self, peer: PeerProtocol) -> None:
        peer.choked_at = self.clock.now()
        if peer.codec.fast:
            # BEP 6: a choke no longer cancels requests: each one is still answered, by its block
            # (already on its way) or a reject, and frees its block then. Freeing them all now
            # would hand blocks in flight to other peers: duplicate transfers.
            if peer.allowed_fast:
                self.fill_requests(peer)
            return
        self.give_back(peer)  # without it every request is gone

    def on_reject(self, peer: PeerProtocol, index: int, begin: int) -> None:
        key = (index, begin)
        if key in peer.requested:  # not one we cancelled already
            peer.requested.discard(key)
            self.picker.cancel(peer, index, begin)
            if not peer.peer_choking:
                self.fill_requests(peer)

    def check_snubs(self, now: float) -> None:
        """Snub a peer silent on our requests for ``request_timeout``, or one that choked us and
        neither sent nor rejected them (BEP 6 asks for one or the other): its blocks go to others."""
        timeout = self.config.request_timeout
        for peer in list(self.peers):
            if not peer.outstanding or peer.snubbed:
                continue
            if now - peer.last_block > timeout or (
                peer.peer_choking and now - peer.choked_at > CHOKED_REQUESTS_TIMEOUT
            ):
                peer.snubbed = True
                self.give_back(peer)

    def give_back(self, peer: PeerProtocol) -> None:
        """Hand every block requested from ``peer`` to others (choked without BEP 6, snubbed)."""
        self.picker.peer_lost(peer)
        peer.requested.clear()

    # -- requesting ----------------------------------------------------------------------------

    def queue_target(self, peer: PeerProtocol) -> int:
        cfg = self.config
        # about ``request_queue_seconds`` of this peer's current rate in flight: deep enough to keep a
        # fast link busy, shallow enough that end-game starts late (deep queues request everything
        # early and turn the last part of a swarm download into duplicate transfers)
        by_rate = int(peer.recent.rate * cfg.request_queue_seconds / BLOCK_SIZE)
        return max(cfg.min_queue, min(cfg.max_queue, peer.reqq, by_rate))

    def fill_all(self) -> None:
        for peer in list(self.peers):
            self.fill_requests(peer)

    def fill_requests(self, peer: PeerProtocol) -> None:
        """Top up the requests to ``peer`` (after unchoke, a block, a have ...)."""
        if peer.outstanding > peer.refill_at:
            return  # the common case, once per block: top up in batches of a quarter queue
        if peer.closed or not peer.established or not self.downloading:
            return
        if peer.peer_choking and not peer.allowed_fast:
            return
        target = self.queue_target(peer)
        want = target - peer.outstanding
        peer.refill_at = target - target // 4
        if want <= 0 or (peer.outstanding and want < target // 4):
            return  # top up in batches: one pick per several blocks, not per block
        has = peer.has
        if has is None:
            return
        peer_has: Callable[[int], bool] = has.get
        mask: int | None = has.as_int()
        if peer.peer_choking:
            fast = peer.allowed_fast
            mask = None

            def peer_has(i: int) -> bool:
                return i in fast and has.get(i)

        blocks = self.picker.pick(
            peer,
            peer_has,
            want,
            memo=not peer.peer_choking,
            endgame_max=ENDGAME_IDLE_BLOCKS - peer.outstanding,
            peer_mask=mask,
        )
        if not blocks:
            if peer.outstanding == 0 and not self.picker.wants_mask(has.as_int()):
                peer.set_interested(False)
            return
        if not peer.am_interested:
            peer.set_interested(True)
        buffers = self.buffers
        for b in blocks:
            if b.index not in buffers:
                buffers[b.index] = self._new_buffer(self.piece_size(b.index))
        peer.send_requests(blocks)

    # -- piece buffers -------------------------------------------------------------------------

    def _new_buffer(self, size: int) -> bytearray:
        """A piece buffer. Recycled ones hold stale bytes: every block is received before a piece is
        hashed, so each byte is overwritten first (padding blocks too: they are requested like any)."""
        pool = self._buffer_pool
        if pool and size == self.info.piece_length:
            return pool.pop()
        return bytearray(size)

    def _recycle_buffer(self, buf: bytearray) -> None:
        if len(buf) != self.info.piece_length or len(self._buffer_pool) >= self._buffer_pool_max:
            return
        try:
            # BufferError while a view is alive (an end-game duplicate still arriving). Shrinking by
            # one byte and growing back stays inside the allocation; ``append`` first reallocated the
            # whole buffer (an ``mremap`` per piece: issue 24)
            buf.append(buf.pop())
        except BufferError:
            return
        self._buffer_pool.append(buf)

    def drop_buffer_pool(self) -> None:
        self._buffer_pool.clear()

    def reset(self, picker: PiecePicker) -> None:
        """Start over with a new picker (after a recheck; no peer is connected): the partly
        received pieces are dropped."""
        for buf in self.buffers.values():
            self._recycle_buffer(buf)
        self.buffers.clear()
        self._block_src.clear()
        self._web_pieces.clear()
        self.picker = picker
        self.disk_failed = False

    def refresh_interest(self) -> None:
        """What we want changed (file priorities): tell each peer whether it has something for us
        and request from those that do."""
        for peer in list(self.peers):
            if peer.has is None or not peer.established:
                continue
            if self.downloading and self.picker.wants_mask(peer.has.as_int()):
                peer.set_interested(True)
                self.fill_requests(peer)
            elif peer.outstanding == 0:
                peer.set_interested(False)

    def block_sink_for(self, peer: PeerProtocol) -> Callable[[int, int, int], memoryview | None]:
        """Where an incoming block of ``peer`` may be received in place (the wire codec's sink)."""
        picker, buffers = self.picker, self.buffers

        def sink(index: int, begin: int, length: int) -> memoryview | None:
            buf = buffers.get(index)
            if buf is None or not picker.block_wanted(index, begin) or begin + length > len(buf):
                return None
            return memoryview(buf)[begin : begin + length]

        return sink

    # -- receiving -----------------------------------------------------------------------------

    def on_block(self, peer: PeerProtocol, index: int, begin: int, data: bytes | memoryview) -> None:
        n = len(data)
        peer.requested.discard((index, begin))
        peer.download.add(n)
        peer.recent.add(n)
        self.down.add(n)
        buf = self.buffers.get(index)
        result = self.picker.received(peer, index, begin) if buf is not None else None
        if result is None or buf is None or (n != BLOCK_SIZE and begin + n != len(buf)):
            if result is None:
                self.redundant += n
            if result is not None and buf is not None:
                # wrong length for this block: give it back to the picker
                self.picker.piece_failed(index)
                self.buffers[index] = bytearray(len(buf))
            self.fill_requests(peer)
            return
        if not (isinstance(data, memoryview) and data.obj is buf):
            buf[begin : begin + n] = data
        src = self._block_src.get(index)
        if src is None:
            src = self._block_src[index] = {}
        src[begin] = peer
        done, others = result
        if others:  # end-game duplicates still in flight elsewhere
            for other in others:
                if isinstance(other, type(peer)):  # not a web seed (its request is already under way)
                    other.send_cancel(index, begin, n)
        if done:
            self.finishing += 1
            self._start_finish(index)
            if (
                not self._disk_paused
                and self.finishing * self.info.piece_length > self.config.max_inflight_write_bytes
            ):
                # back-pressure: the network is faster than hashing + writing; stop reading
                self._disk_paused = True
                for p in self.peers:
                    if not p.closed:
                        self._read_pause(p).set_disk(True)
        if len(peer.requested) <= peer.refill_at:  # fill_requests' own first test, without the call
            self.fill_requests(peer)
        wait = self.download_limiter.take(n)
        if wait > 0.01 and not peer.closed:
            self._read_pause(peer).rate_wait(wait)

    def _download_debt(self) -> float:
        return self.download_limiter.delay(0)

    def _read_pause(self, peer: PeerProtocol) -> ReadPause:
        """``peer``'s one pause state (rate and disk reasons, one deadline); made when first paused."""
        pause = self._read_pauses.get(peer)
        if pause is None:
            pause = ReadPause(self.clock, peer.pause_reading, peer.resume_reading, self._download_debt)
            self._read_pauses[peer] = pause
        return pause

    # -- finishing pieces ----------------------------------------------------------------------

    def _start_finish(self, index: int) -> None:
        """Hash and write the complete piece ``index`` (counted in :attr:`finishing`): submitted to
        the storage with a done-callback when it takes the piece at once (no task per piece), else
        by a kept job awaiting :meth:`Storage.write_piece` (it waits for the byte budget or raises).
        Either way the outcome is applied by :meth:`_piece_written` in the order the storage
        finishes the pieces."""
        buf = self.buffers.get(index)
        fut = self.storage.submit_piece(index, buf) if buf is not None else None
        if fut is None or buf is None:
            self._spawn(self._finish_piece(index))
            return
        del self.buffers[index]
        src = self._block_src.pop(index, {})
        self._writing += 1
        fut.add_done_callback(functools.partial(self._piece_write_done, index, buf, src))
        if self._writes_idle is None or self._writes_idle.done():  # done: its job was cancelled
            idle = self._writes_idle = fut.get_loop().create_future()
            self._spawn(_until(idle))

    def _piece_write_done(
        self, index: int, buf: bytearray, src: dict[int, PeerProtocol], fut: asyncio.Future[bool]
    ) -> None:
        try:
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None and not isinstance(exc, BitswarmError):
                raise exc  # as a task's exception: the loop reports it
            self._piece_written(index, buf, src, fut.result() if exc is None else exc)
        finally:
            self._finished()
            self._writing -= 1
            idle = self._writes_idle
            if not self._writing and idle is not None:
                self._writes_idle = None
                if not idle.done():
                    idle.set_result(None)

    async def _finish_piece(self, index: int) -> bool | None:
        """Hash and write a complete piece: True if it passed, False if it failed, None if no more."""
        buf = self.buffers.pop(index, None)
        src = self._block_src.pop(index, {})
        try:
            if buf is None:
                return None
            try:
                ok = await self.storage.write_piece(index, buf)
            except BitswarmError as exc:
                return self._piece_written(index, buf, src, exc)
            return self._piece_written(index, buf, src, ok)
        finally:
            self._finished()

    def _piece_written(
        self, index: int, buf: bytearray, src: dict[int, PeerProtocol], ok: bool | BitswarmError
    ) -> bool | None:
        """Apply the outcome of a piece's hash + write (``ok``, or the storage's error)."""
        if isinstance(ok, BitswarmError):
            self.disk_failed = True
            self._on_disk_error(f"disk error: {ok}")
            return None
        if self.disk_failed:
            return None
        if ok:
            self._piece_passed(index, buf)
        else:
            self._piece_failed(index, buf, src)
        if self.downloading:
            self._recycle_buffer(buf)
        return ok

    def _finished(self) -> None:
        """A piece left :attr:`finishing`: resume the peers' reading once the disk caught up."""
        self.finishing -= 1
        behind = self.finishing * self.info.piece_length
        if self._disk_paused and behind <= self.config.max_inflight_write_bytes // 2:
            self._disk_paused = False
            for pause in self._read_pauses.values():
                pause.set_disk(False)  # a peer the download limit paused stays paused

    # -- web seeds (webseed.py): whole pieces, keyed in the picker by the seed ---------------------

    def pick_web_piece(self, source: Hashable) -> list[BlockRequest]:
        """Every block of one piece for the web seed ``source``: a piece nobody has started, or —
        once none is left (the web seed's end-game) — a piece in flight to peers, the one with the
        fewest blocks in (see :meth:`_web_endgame_piece`). A web seed fetches whole pieces, never
        single duplicate blocks; one web seed per piece."""
        if not self.downloading:
            return []
        picker, buffers = self.picker, self.buffers
        blocks = picker.pick(
            source, lambda i: i not in buffers, picker.num_blocks(0), memo=False, endgame_max=0
        )
        index = blocks[0].index if blocks else -1
        mine = [b for b in blocks if b.index == index]
        whole = bool(mine) and len(mine) == picker.num_blocks(index)
        for b in blocks if not whole else blocks[len(mine) :]:
            picker.cancel(source, b.index, b.begin)  # a part of a piece: back to the peers
        if not whole:
            return self._web_endgame_piece(source)
        buffers[index] = self._new_buffer(self.piece_size(index))
        self._web_pieces[index] = source
        return mine

    def _web_endgame_piece(self, source: Hashable) -> list[BlockRequest]:
        """No fresh piece is left: the web seed duplicates the piece in flight to peers with the
        fewest blocks received (the slowest to finish; ties: the lowest index), unless another web
        seed already fetches it. Without this a slow peer whose queue holds every remaining piece
        leaves the web seeds idle and the download ends at that peer's rate. When the web seed's
        copy lands first, the peers' requests for it are cancelled (:meth:`finish_web_piece`);
        a peer's block that lands first makes the web seed's copy of that block redundant."""
        picker, buffers, held = self.picker, self.buffers, self._web_pieces
        best: tuple[int, int] | None = None
        for index, received, _n in picker.started():
            if index in held or index not in buffers:
                continue  # another web seed's, or complete and being hashed
            key = (received, index)
            if best is None or key < best:
                best = key
        if best is None:
            return []
        index = best[1]
        blocks = picker.duplicate_piece(source, index)
        if not blocks:
            return []
        held[index] = source
        # the web seed fetches the whole piece: blocks already in are written again from its copy
        # only where the picker still wants them (finish_web_piece skips the others)
        return [
            BlockRequest(index, b * picker.block_size, picker.block_length(index, b))
            for b in range(picker.num_blocks(index))
        ]

    def release_web_piece(self, source: Hashable, index: int) -> None:
        """The web seed could not fetch piece ``index``: its blocks go back to the picker."""
        if self._web_pieces.get(index) is source:
            del self._web_pieces[index]
        picker = self.picker
        for b in range(picker.num_blocks(index)):
            picker.cancel(source, index, b * picker.block_size)
        bs = picker.block_size
        if not any(picker.block_wanted(index, b * bs) for b in range(picker.num_blocks(index))):
            buf = self.buffers.pop(index, None)  # nobody else started it: a fresh piece again
            if buf is not None:
                self._recycle_buffer(buf)

    async def finish_web_piece(self, source: Hashable, index: int, data: bytes | bytearray) -> bool | None:
        """The web seed ``source`` fetched piece ``index`` (from :meth:`pick_web_piece`): its blocks
        go in like a peer's, then the piece is hashed and written on the usual path. True: it passed;
        False: it failed its hash check (drop the seed); None: the piece was not ours any more."""
        if self._web_pieces.get(index) is source:
            del self._web_pieces[index]
        buf = self.buffers.get(index)
        picker, bs = self.picker, self.picker.block_size
        if buf is None or len(buf) != len(data):
            self.redundant += len(data)
            self.release_web_piece(source, index)
            return None
        done = False
        cancelled: set[PeerProtocol] = set()
        for begin in range(0, len(data), bs):
            result = picker.received(source, index, begin)
            if result is None:  # a peer's block (end-game, or the piece was a peer's) came first
                self.redundant += min(bs, len(data) - begin)
                continue
            buf[begin : begin + bs] = data[begin : begin + bs]
            done = done or result[0]
            if result[1]:  # peers that still have this block requested: cancel their requests
                for peer in self.peers:
                    if peer in result[1]:
                        peer.send_cancel(index, begin, min(bs, len(data) - begin))
                        cancelled.add(peer)
        for peer in cancelled:  # their queues have room again
            self.fill_requests(peer)
        if not done:
            return None
        self.finishing += 1
        # the hash + write runs as a kept job like a peer's piece: a stop (pause) that cancels the web
        # seed waits for it instead of cutting it off with every block marked received
        outcome: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()

        async def finish() -> None:
            ok = None
            try:
                ok = await self._finish_piece(index)
            finally:
                if not outcome.done():
                    outcome.set_result(ok)

        self._spawn(finish())
        return await outcome

    def _piece_passed(self, index: int, buf: bytearray) -> None:
        self.picker.piece_passed(index)
        smart_ban = self.peers.smart_ban
        if smart_ban.suspect_blocks(index):
            mv = memoryview(buf)

            def digest(begin: int) -> bytes:
                return hashlib.sha1(mv[begin : begin + BLOCK_SIZE]).digest()

            self.peers.apply(smart_ban.piece_passed(index, digest))
        self._on_verified(index, buf)
        self._drop_idle_interest()

    def _drop_idle_interest(self) -> None:
        """After a piece passed: a peer with nothing in flight that has no other piece we want is
        told ``not interested`` now, not at the next request top-up (which an idle peer never gets;
        a BEP 16 super-seed waits for exactly this to offer the next pieces)."""
        wants = self.picker.wants_mask
        for peer in self.peers:
            has = peer.has
            if peer.am_interested and not peer.requested and has is not None and not wants(has.as_int()):
                peer.set_interested(False)

    def _piece_failed(self, index: int, buf: bytearray, src: dict[int, PeerProtocol]) -> None:
        self.hash_failures += 1
        self.picker.piece_failed(index)
        log.info("piece %d failed its hash check (%d peers contributed)", index, len(set(src.values())))
        self._on_hash_failed(index)
        mv = memoryview(buf)
        blocks = {
            begin: (peer_key(peer), hashlib.sha1(mv[begin : begin + BLOCK_SIZE]).digest())
            for begin, peer in src.items()
        }
        self.peers.apply(self.peers.smart_ban.piece_failed(index, blocks))


async def _until(done: asyncio.Future[None]) -> None:
    """A kept job (awaited by a stop) that lasts while submitted piece writes are out."""
    await done


def _bits(has: PieceSet) -> bytearray:
    out = bytearray(len(has))
    for i in has.iter_set():
        out[i] = 1
    return out
