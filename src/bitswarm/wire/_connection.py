"""`PeerConnection`: the sans-I/O peer wire codec (BEP 3, 5, 6, 10, 52).

Bytes in (:meth:`PeerConnection.receive_data`), events out (:meth:`PeerConnection.next_event`), and
:meth:`PeerConnection.send` turns events into bytes. No sockets, no asyncio.

Receive path, built for throughput: chunks handed to ``receive_data`` are kept as they are (a
``memoryview`` of a ``bytes`` object, no copy) with a read offset; messages that lie wholly inside
one chunk are parsed in place and a :class:`Piece` carries a zero-copy view of its block. Only a
message that straddles two chunks is joined into a fresh buffer, copying exactly that message.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

from bitswarm.wire._errors import LocalWireError, WireProtocolError
from bitswarm.wire._events import (
    BLOCK_SIZE,
    HANDSHAKE_PREFIX,
    MSG_ALLOWED_FAST,
    MSG_BITFIELD,
    MSG_CANCEL,
    MSG_CHOKE,
    MSG_EXTENDED,
    MSG_HASH_REJECT,
    MSG_HASH_REQUEST,
    MSG_HASHES,
    MSG_HAVE,
    MSG_HAVE_ALL,
    MSG_HAVE_NONE,
    MSG_INTERESTED,
    MSG_NOT_INTERESTED,
    MSG_PIECE,
    MSG_PORT,
    MSG_REJECT_REQUEST,
    MSG_REQUEST,
    MSG_SUGGEST_PIECE,
    MSG_UNCHOKE,
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
    Piece,
    Port,
    RejectRequest,
    Request,
    Reserved,
    SuggestPiece,
    Unchoke,
    UnknownMessage,
    _Sentinel,
    uncle_count,
)
from bitswarm.wire._layout import PieceLayout
from bitswarm.wire._state import (
    AWAIT_FIRST_MESSAGE,
    AWAIT_HANDSHAKE,
    AWAIT_PEER_ID,
    CLOSED,
    ERROR,
    ESTABLISHED,
    REQUIRES_EXTENSION_PROTOCOL,
    REQUIRES_FAST,
    TRANSITIONS,
    State,
)

# ---- limits (documented in docs/protocols/wire.md) -------------------------------------------------
#: Largest block accepted in ``piece`` and largest length in ``request``/``cancel``/``reject``.
MAX_BLOCK: Final = 128 * 1024
#: Largest BEP 10 extended message (length field, i.e. id + extended id + payload).
MAX_EXTENDED_MESSAGE: Final = 1024 * 1024
#: Largest message with an id bitswarm does not know (passed through as ``UnknownMessage``).
MAX_UNKNOWN_MESSAGE: Final = 1024 * 1024
#: Largest bitfield payload accepted while the torrent's size is unknown (8 Mi pieces).
MAX_BITFIELD_UNKNOWN_LAYOUT: Final = 1024 * 1024
#: Largest ``length`` of a BEP 52 hash request / hashes / hash reject (libtorrent's limit: 8192
#: hashes, a 128 MiB piece's blocks); BEP 52 advises at most 512.
MAX_HASH_COUNT: Final = 8192
#: Largest ``proof layers`` (a tree of 2**63 leaves is far beyond any file).
MAX_PROOF_LAYERS: Final = 63

_U32 = struct.Struct(">I")
_HEAD = struct.Struct(">IB")
_U32U32 = struct.Struct(">II")
_TRIPLE = struct.Struct(">III")
_IDX_MSG = struct.Struct(">IBI")
_TRIPLE_MSG = struct.Struct(">IBIII")
_PIECE_HEAD = struct.Struct(">IBII")
_PORT_MSG = struct.Struct(">IBH")
#: BEP 52: pieces root, base layer, index, length, proof layers (after the id byte)
_HASH_FIELDS = struct.Struct(">32sIIII")
_HASH_HEAD = struct.Struct(">IB32sIIII")
_HASH_FIELDS_LENGTH: Final = 1 + _HASH_FIELDS.size  # the length field of a request or reject

#: Exact length field of the messages with a fixed layout.
_FIXED_LENGTH: Final = {
    MSG_CHOKE: 1,
    MSG_UNCHOKE: 1,
    MSG_INTERESTED: 1,
    MSG_NOT_INTERESTED: 1,
    MSG_HAVE: 5,
    MSG_REQUEST: 13,
    MSG_CANCEL: 13,
    MSG_PORT: 3,
    MSG_SUGGEST_PIECE: 5,
    MSG_HAVE_ALL: 1,
    MSG_HAVE_NONE: 1,
    MSG_REJECT_REQUEST: 13,
    MSG_ALLOWED_FAST: 5,
    MSG_HASH_REQUEST: _HASH_FIELDS_LENGTH,
    MSG_HASH_REJECT: _HASH_FIELDS_LENGTH,
}
_BARE: Final = {
    MSG_CHOKE: Choke(),
    MSG_UNCHOKE: Unchoke(),
    MSG_INTERESTED: Interested(),
    MSG_NOT_INTERESTED: NotInterested(),
    MSG_HAVE_ALL: HaveAll(),
    MSG_HAVE_NONE: HaveNone(),
}
_INDEX_CLASSES: Final = {MSG_HAVE: Have, MSG_SUGGEST_PIECE: SuggestPiece, MSG_ALLOWED_FAST: AllowedFast}
_TRIPLE_CLASSES: Final = {MSG_REQUEST: Request, MSG_CANCEL: Cancel, MSG_REJECT_REQUEST: RejectRequest}
_KEEPALIVE: Final = KeepAlive()
_REQUEST: Final = Request(0, 0, 1)  # its type is what a state check looks at
_CLOSED: Final = ConnectionClosed()
_EMPTY: Final = memoryview(b"")

#: Called with ``(index, begin, length)`` of an incoming block; returns a writable buffer of exactly
#: ``length`` bytes where the block should land, or ``None`` to receive it the ordinary way.
BlockSink = Callable[[int, int, int], memoryview | bytearray | None]


class PeerConnection:
    """One peer wire connection, both directions (BEP 3 with BEP 5, 6 and 10).

    ``layout`` (or :meth:`set_layout` once the info-hash or the metadata is known) enables the range
    checks on piece indices, block ranges and the bitfield length. Without it only the size limits
    apply.
    """

    __slots__ = (
        "_buf",
        "_direct",
        "_direct_filled",
        "_direct_piece",
        "_eof",
        "_error",
        "_last",
        "_more",
        "_more_len",
        "_n",
        "_plen",
        "_pos",
        "_ready",
        "_scratch",
        "_scratch_live",
        "_sink",
        "_size_fn",
        "extension_protocol",
        "fast",
        "layout",
        "our_handshake",
        "our_state",
        "their_handshake",
        "their_header",
        "their_state",
        "upgrade_info_hash",
    )

    def __init__(self, layout: PieceLayout | None = None) -> None:
        self.our_state: State = AWAIT_HANDSHAKE
        self.their_state: State = AWAIT_HANDSHAKE
        self.our_handshake: Handshake | None = None
        self.their_header: HandshakeHeader | None = None
        self.their_handshake: Handshake | None = None
        #: True once both handshakes set the BEP 6 bit.
        self.fast = False
        #: True once both handshakes set the BEP 10 bit.
        self.extension_protocol = False
        self.layout: PieceLayout | None = None
        #: BEP 52 upgrade of a hybrid torrent's connection: the truncated v2 info-hash, which the
        #: responder may answer a v1 handshake with (set it on either side; None: no upgrade)
        self.upgrade_info_hash: bytes | None = None
        self._n = -1
        self._plen = 0
        self._last = 0
        self._size_fn: Callable[[int], int] | None = None
        self._buf: memoryview = _EMPTY
        self._pos = 0
        self._more: deque[memoryview] = deque()
        self._more_len = 0
        self._eof = False
        self._error: WireProtocolError | None = None
        self._sink: BlockSink | None = None
        self._scratch: bytearray | None = None
        #: buffered data may still be views of ``_scratch`` (copied out before it is reused)
        self._scratch_live = False
        self._direct: memoryview | None = None
        self._direct_filled = 0
        self._direct_piece: Piece | None = None
        self._ready: Piece | None = None
        if layout is not None:
            self.set_layout(layout)

    def __repr__(self) -> str:
        return (
            f"<PeerConnection ours={self.our_state.value} theirs={self.their_state.value} "
            f"fast={self.fast} ext={self.extension_protocol} buffered={self.buffered}>"
        )

    # ------------------------------------------------------------------------------------------
    # configuration

    def set_layout(self, layout: PieceLayout | None) -> None:
        """Give (or replace) the torrent geometry used to validate indices and block ranges."""
        self.layout = layout
        if layout is None:
            self._n = -1
            self._size_fn = None
            return
        self._n = layout.num_pieces
        self._plen = layout.piece_length
        self._last = layout.last_piece_size
        self._size_fn = layout.size_of

    def set_block_sink(self, sink: BlockSink | None) -> None:
        """Route incoming blocks into buffers the caller owns (see :meth:`get_buffer`).

        From now on every valid incoming ``piece`` is offered to ``sink(index, begin, length)``; when
        it returns a writable buffer of ``length`` bytes, the block is written there (by
        ``recv_into`` through :meth:`get_buffer`, or copied from buffered data) and the
        :class:`Piece` event's ``data`` is a view of that buffer.
        """
        self._sink = sink

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buf) - self._pos + self._more_len

    @property
    def direct_remaining(self) -> int:
        """Bytes of the block being received in place (see :meth:`get_buffer`) still to come; 0
        when no block is. The driver may wait for that many before reading again."""
        direct = self._direct
        return 0 if direct is None else len(direct) - self._direct_filled

    # ------------------------------------------------------------------------------------------
    # receiving

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the socket; ``b""`` means the peer closed its side (EOF).

        ``bytes`` (and views of ``bytes``) are kept without copying; other buffers are copied once,
        since the caller may reuse them.
        """
        if self._eof:
            raise LocalWireError("receive_data() after EOF")
        if self._direct is not None and data:
            raise LocalWireError("receive_data() while a block is being received through get_buffer()")
        if not data:
            self._eof = True
            return
        if type(data) is bytes:
            mv = memoryview(data)
        elif (
            type(data) is memoryview
            and type(data.obj) is bytes
            and data.format == "B"
            and data.ndim == 1
            and data.c_contiguous
        ):
            mv = data
        else:
            mv = memoryview(bytes(data))
        if self._pos == len(self._buf) and not self._more:
            self._buf = mv
            self._pos = 0
        else:
            self._more.append(mv)
            self._more_len += len(mv)

    def _ensure(self, n: int) -> bool:
        """Make ``_buf[_pos:]`` hold at least ``n`` bytes, joining queued chunks if needed."""
        buf = self._buf
        avail = len(buf) - self._pos
        if avail >= n:
            return True
        if avail + self._more_len < n:
            return False
        more = self._more
        if avail == 0:
            buf = more.popleft()
            self._more_len -= len(buf)
            self._buf = buf
            self._pos = 0
            if len(buf) >= n:
                return True
            avail = len(buf)
        parts: list[memoryview] = [buf[self._pos :]]
        have = avail
        while have < n:
            chunk = more.popleft()
            self._more_len -= len(chunk)
            take = n - have
            if len(chunk) > take:
                parts.append(chunk[:take])
                rest = chunk[take:]
                more.appendleft(rest)
                self._more_len += len(rest)
                have = n
            else:
                parts.append(chunk)
                have += len(chunk)
        self._buf = memoryview(b"".join(parts))
        self._pos = 0
        return True

    def next_event(self) -> Event | _Sentinel:
        """The next event from the peer, or :data:`NEED_DATA`, or :data:`PAUSED`.

        :data:`PAUSED` means the peer's handshake is in and further bytes are buffered, but we have
        not sent our handshake yet: which messages are legal depends on both reserved fields.
        Raises :class:`WireProtocolError` (and the connection enters ``ERROR``) on a violation.
        """
        state = self.their_state
        if self._ready is not None:
            piece = self._ready
            self._ready = None
            if state is not ESTABLISHED:  # ESTABLISHED: a piece leaves it there (one table lookup less)
                self.their_state = self._check_their(state, Piece)
            return piece
        if self._direct is not None:
            if self._eof:
                self.their_state = ERROR
                self._error = WireProtocolError("connection closed in the middle of a piece")
                raise self._error
            return NEED_DATA
        try:
            if state is ESTABLISHED or state is AWAIT_FIRST_MESSAGE:
                if self._pos == len(self._buf) and not self._more_len and not self._eof:
                    return NEED_DATA  # all parsed (once per read): what _next_message would say
                if self.our_handshake is None and self.buffered:
                    return PAUSED
                return self._next_message(state)
            if state is AWAIT_HANDSHAKE or state is AWAIT_PEER_ID:
                return self._next_handshake(state)
            if state is CLOSED:
                return _CLOSED
            raise WireProtocolError(f"connection is in ERROR state: {self._error}")
        except WireProtocolError as exc:
            if self.their_state is not ERROR:
                self.their_state = ERROR
                self._error = exc
            raise

    def _starved(self) -> _Sentinel | ConnectionClosed:
        if not self._eof:
            return NEED_DATA
        if self.buffered:
            raise WireProtocolError(f"connection closed in the middle of a message ({self.buffered} bytes)")
        self.their_state = TRANSITIONS[self.their_state, ConnectionClosed]
        return _CLOSED

    def _next_handshake(self, state: State) -> Event | _Sentinel:
        if state is AWAIT_HANDSHAKE:
            # Check the protocol string as soon as any of it is here, so garbage fails fast.
            k = min(20, self.buffered)
            if k:
                self._ensure(k)
                if self._buf[self._pos : self._pos + k] != HANDSHAKE_PREFIX[:k]:
                    raise WireProtocolError("not a BitTorrent handshake (bad protocol string)")
            if not self._ensure(48):
                return self._starved()
            buf, pos = self._buf, self._pos
            header = HandshakeHeader(
                Reserved(bytes(buf[pos + 20 : pos + 28])), bytes(buf[pos + 28 : pos + 48])
            )
            self._pos = pos + 48
            ours = self.our_handshake
            if (
                ours is not None
                and ours.info_hash != header.info_hash
                and header.info_hash != self.upgrade_info_hash
            ):
                raise WireProtocolError("peer answered with a different info_hash")
            self.their_header = header
            self.their_state = TRANSITIONS[state, HandshakeHeader]
            return header
        if not self._ensure(20):
            return self._starved()
        got = self.their_header
        assert got is not None
        hs = Handshake(got.info_hash, bytes(self._buf[self._pos : self._pos + 20]), got.reserved)
        self._pos += 20
        self.their_handshake = hs
        self.their_state = TRANSITIONS[state, Handshake]
        self._negotiate()
        return hs

    def _negotiate(self) -> None:
        ours, theirs = self.our_handshake, self.their_handshake
        if ours is not None and theirs is not None:
            self.fast = ours.reserved.fast and theirs.reserved.fast
            self.extension_protocol = ours.reserved.extension_protocol and theirs.reserved.extension_protocol

    def _bad_length(self, mid: int, length: int) -> str | None:
        """Why a message with id ``mid`` may not have length field ``length`` (None if it may)."""
        fixed = _FIXED_LENGTH.get(mid)
        if fixed is not None:
            return None if length == fixed else f"message {mid} has length {length}, expected {fixed}"
        if mid == MSG_PIECE:
            if 9 < length <= 9 + MAX_BLOCK:
                return None
            return f"piece block of {length - 9} bytes (allowed 1..{MAX_BLOCK})"
        if mid == MSG_BITFIELD:
            if self._n >= 0:
                want = 1 + ((self._n + 7) >> 3)
                return None if length == want else f"bitfield of {length - 1} bytes, expected {want - 1}"
            return None if length <= 1 + MAX_BITFIELD_UNKNOWN_LAYOUT else "bitfield too long"
        if mid == MSG_EXTENDED:
            if 2 <= length <= MAX_EXTENDED_MESSAGE:
                return None
            return f"extended message of length {length} (allowed 2..{MAX_EXTENDED_MESSAGE})"
        if mid == MSG_HASHES:
            most = _HASH_FIELDS_LENGTH + 32 * (MAX_HASH_COUNT + MAX_PROOF_LAYERS + 1)
            if _HASH_FIELDS_LENGTH < length <= most and (length - _HASH_FIELDS_LENGTH) % 32 == 0:
                return None
            return f"hashes message of length {length} (a 49-byte header and 32-byte hashes)"
        return None if length <= MAX_UNKNOWN_MESSAGE else f"message {mid} of length {length} is too long"

    def _next_message(self, state: State) -> Event | _Sentinel:
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if end - pos < 5:
            if not self._ensure(4):
                return self._starved()
            buf, pos = self._buf, self._pos
            if _U32.unpack_from(buf, pos)[0] == 0:
                self._pos = pos + 4
                return self._their(state, _KEEPALIVE)
            if not self._ensure(5):
                return self._starved()
            buf, pos = self._buf, self._pos
            end = len(buf)
        length, mid = _HEAD.unpack_from(buf, pos)
        if length == 0:
            self._pos = pos + 4
            return self._their(state, _KEEPALIVE)
        total = 4 + length
        if end - pos < total:
            # a piece's header with part of its block (once per block on a slow link): a valid
            # length needs no _bad_length call
            why = None if mid == MSG_PIECE and 9 < length <= 9 + MAX_BLOCK else self._bad_length(mid, length)
            if why is not None:
                raise WireProtocolError(why)
            if not self._ensure(total):
                return self._starved()
            buf, pos = self._buf, self._pos
        # The whole message is in buf[pos : pos + total].
        if mid == MSG_PIECE:
            if not 9 < length <= 9 + MAX_BLOCK:
                raise WireProtocolError(f"piece block of {length - 9} bytes (allowed 1..{MAX_BLOCK})")
            index, begin = _U32U32.unpack_from(buf, pos + 5)
            blen = length - 9
            if self._n >= 0:
                self._check_block(index, begin, blen, WireProtocolError)
            self._pos = pos + total
            data: memoryview = buf[pos + 13 : pos + total]
            sink = self._sink
            if sink is not None:
                dest = sink(index, begin, blen)
                if dest is not None:
                    dest = memoryview(dest)
                    if len(dest) != blen:
                        raise LocalWireError("block sink returned a buffer of the wrong size")
                    dest[:] = data
                    data = dest
                elif data.obj is self._scratch:  # declined: its own copy (the scratch is reused)
                    data = memoryview(bytes(data))
            if state is not ESTABLISHED:  # ESTABLISHED: a piece leaves it there, nothing to check
                self.their_state = self._check_their(state, Piece)
            return Piece(index, begin, data)
        self._pos = pos + total
        fixed = _FIXED_LENGTH.get(mid)
        if fixed is not None:
            if length != fixed:
                raise WireProtocolError(f"message {mid} has length {length}, expected {fixed}")
            if length == 1:
                return self._their(state, _BARE[mid])
            if length == 5:
                index = _U32.unpack_from(buf, pos + 5)[0]
                if index >= self._n >= 0:
                    raise WireProtocolError(f"piece index {index} out of range (0..{self._n - 1})")
                if mid == MSG_HAVE and state is ESTABLISHED:  # the common one: nothing to check
                    return Have(index)
                return self._their(state, _INDEX_CLASSES[mid](index))
            if length == _HASH_FIELDS_LENGTH:
                fields = _hash_fields(buf, pos + 5)
                cls = HashRequest if mid == MSG_HASH_REQUEST else HashReject
                return self._their(state, cls(*fields))
            if length == 13:
                index, begin, blen = _TRIPLE.unpack_from(buf, pos + 5)
                if not 0 < blen <= MAX_BLOCK:
                    raise WireProtocolError(f"block length {blen} (allowed 1..{MAX_BLOCK})")
                if self._n >= 0:
                    self._check_block(index, begin, blen, WireProtocolError)
                return self._their(state, _TRIPLE_CLASSES[mid](index, begin, blen))
            return self._their(state, Port(struct.unpack_from(">H", buf, pos + 5)[0]))
        return self._variable_message(state, mid, length, buf[pos + 5 : pos + total])

    def _variable_message(self, state: State, mid: int, length: int, body: memoryview) -> Event:
        """A bitfield, extended or unknown message (rare: kept out of :meth:`_next_message`, whose
        ``piece`` and fixed-length paths run once per message)."""
        why = self._bad_length(mid, length)
        if why is not None:
            raise WireProtocolError(why)
        if mid == MSG_BITFIELD:
            bits = bytes(body)
            spare = (-self._n) & 7 if self._n >= 0 else 0
            if spare and bits[-1] & ((1 << spare) - 1):
                raise WireProtocolError("bitfield has spare bits set")
            return self._their(state, Bitfield(bits))
        if mid == MSG_EXTENDED:
            ext_id = body[0]
            payload = bytes(body[1:])
            if ext_id == 0:
                # Check the state first: the payload decode is the expensive part.
                self._check_their(state, ExtendedHandshake)
                return self._their(state, ExtendedHandshake.decode_payload(payload))
            return self._their(state, Extended(ext_id, payload))
        if mid == MSG_HASHES:
            root, base, index, count, proofs = _hash_fields(body, 0)
            want = count + uncle_count(count, proofs)
            got = (len(body) - _HASH_FIELDS.size) // 32
            if got != want:
                raise WireProtocolError(
                    f"hashes message carries {got} hashes, its header says {count} + {want - count} uncles"
                )
            hashes = bytes(body[_HASH_FIELDS.size :])
            return self._their(state, Hashes(root, base, index, count, proofs, hashes))
        return self._their(state, UnknownMessage(mid, bytes(body)))

    def _check_their(self, state: State, cls: type[Event]) -> State:
        nxt = TRANSITIONS.get((state, cls))
        if nxt is None:
            raise WireProtocolError(f"{cls.__name__} not allowed in state {state.value}")
        if cls in REQUIRES_FAST and not self.fast:
            raise WireProtocolError(f"{cls.__name__} without the fast extension (BEP 6) on both sides")
        if cls in REQUIRES_EXTENSION_PROTOCOL and not self.extension_protocol:
            raise WireProtocolError(f"{cls.__name__} without the extension protocol (BEP 10) on both sides")
        return nxt

    def _their(self, state: State, ev: Event) -> Event:
        if state is ESTABLISHED and type(ev) in _STAY_ESTABLISHED:
            return ev  # what the table and the extension checks would say
        self.their_state = self._check_their(state, type(ev))
        return ev

    def _check_block(
        self, index: int, begin: int, length: int, error: type[WireProtocolError] | type[LocalWireError]
    ) -> None:
        n = self._n
        if index >= n:
            raise error(f"piece index {index} out of range (0..{n - 1})")
        fn = self._size_fn
        size = fn(index) if fn is not None else (self._last if index == n - 1 else self._plen)
        if begin + length > size:
            raise error(f"block {begin}+{length} runs past the end of piece {index} ({size} bytes)")

    # ------------------------------------------------------------------------------------------
    # BufferedProtocol-style receiving (recv_into)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A writable buffer for the next ``recv_into`` (asyncio ``BufferedProtocol.get_buffer``).

        Normally a reusable scratch buffer whose bytes :meth:`buffer_updated` copies once into an
        immutable chunk. With a block sink set, when everything buffered is the start of one
        ``piece`` message (header complete, block not), the sink is asked where the block goes and
        the rest of that buffer is returned, so the kernel writes the block in place: no copy at all.
        Never raises for what the peer sent; a bad header is reported later by :meth:`next_event`.
        """
        direct = self._direct
        if direct is not None:
            return direct[self._direct_filled :]
        buffered = len(self._buf) - self._pos + self._more_len
        if self._sink is not None and buffered >= 13:
            dest = self._try_direct()
            if dest is not None:
                return dest
        if self._scratch_live:
            if buffered:
                self._detach_scratch()
            else:  # all parsed (the usual case): nothing to copy out
                self._scratch_live = False
                self._buf, self._pos = _EMPTY, 0
        scratch = self._scratch
        size = max(sizehint, 256 * 1024)
        if scratch is None or len(scratch) < size:
            scratch = self._scratch = bytearray(size)
        return memoryview(scratch)

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written into the buffer :meth:`get_buffer` returned (0 is not EOF here)."""
        if nbytes <= 0:
            return
        direct = self._direct
        if direct is not None:
            self._direct_filled += nbytes
            if self._direct_filled >= len(direct):
                self._ready = self._direct_piece
                self._direct = self._direct_piece = None
            return
        scratch = self._scratch
        assert scratch is not None
        if self._sink is None:  # events' blocks are views of what is buffered: kept as bytes
            self.receive_data(bytes(memoryview(scratch)[:nbytes]))
            return
        if self._eof:
            raise LocalWireError("buffer_updated() after EOF")
        # With a block sink, parsed where it landed: blocks are copied into the sink's buffers, and
        # the next get_buffer() copies out only what is still unparsed then (a message's
        # beginning), not the whole read (issue 24: one copy per byte less).
        view = memoryview(scratch)[:nbytes]
        if self._pos == len(self._buf) and not self._more:
            self._buf = view
            self._pos = 0
        else:
            self._more.append(view)
            self._more_len += nbytes
        self._scratch_live = True

    def _detach_scratch(self) -> None:
        """Copy what is buffered in the scratch buffer into ``bytes`` of its own (it is about to be
        written again). Events handed out before keep no view of it: every message but ``piece`` is
        copied when parsed, and a block into its sink's buffer (or its own bytes when declined)."""
        scratch = self._scratch
        self._scratch_live = False
        buf = self._buf
        if buf.obj is scratch:
            self._buf = memoryview(bytes(buf[self._pos :])) if self._pos < len(buf) else _EMPTY
            self._pos = 0
        more = self._more
        for i, chunk in enumerate(more):
            if chunk.obj is scratch:
                more[i] = memoryview(bytes(chunk))

    def _try_direct(self) -> memoryview | None:
        state = self.their_state
        if (state is not ESTABLISHED and state is not AWAIT_FIRST_MESSAGE) or self.our_handshake is None:
            return None
        if self._ready is not None or self._eof:
            return None
        self._ensure(13)
        buf, pos = self._buf, self._pos
        length, mid, index, begin = _PIECE_HEAD.unpack_from(buf, pos)
        if mid != MSG_PIECE or self.buffered >= 4 + length or not 9 < length <= 9 + MAX_BLOCK:
            return None
        blen = length - 9
        try:
            if self._n >= 0:
                self._check_block(index, begin, blen, WireProtocolError)
            if state is not ESTABLISHED:
                self._check_their(state, Piece)
        except WireProtocolError:
            return None  # next_event reports it once the message is complete
        assert self._sink is not None
        dest = self._sink(index, begin, blen)
        if dest is None:
            return None
        if type(dest) is not memoryview:
            dest = memoryview(dest)
        if len(dest) != blen or dest.readonly:
            raise LocalWireError("block sink must return a writable buffer of exactly the block length")
        # Everything buffered is the beginning of this block: move it into place.
        first = buf[pos + 13 :]
        filled = len(first)
        dest[:filled] = first
        for chunk in self._more:
            dest[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        self._more.clear()
        self._more_len = 0
        self._buf, self._pos = _EMPTY, 0
        self._direct = dest
        self._direct_filled = filled
        self._direct_piece = Piece(index, begin, dest)
        return dest[filled:]

    # ------------------------------------------------------------------------------------------
    # sending

    def _ours(self, ev: Event) -> None:
        cls = type(ev)
        state = self.our_state
        nxt = TRANSITIONS.get((state, cls))
        if nxt is None:
            self._local_error(f"cannot send {cls.__name__} in state {state.value}")
        if cls in REQUIRES_FAST and not self.fast:
            self._local_error(f"cannot send {cls.__name__}: fast extension (BEP 6) not on both sides")
        if cls in REQUIRES_EXTENSION_PROTOCOL and not self.extension_protocol:
            self._local_error(f"cannot send {cls.__name__}: extension protocol (BEP 10) not on both sides")
        assert nxt is not None
        self.our_state = nxt

    def _local_error(self, message: str) -> None:
        self.our_state = ERROR
        raise LocalWireError(message)

    def _local_check_block(self, index: int, begin: int, length: int) -> None:
        if not 0 < length <= MAX_BLOCK:
            self._local_error(f"block length {length} (allowed 1..{MAX_BLOCK})")
        if index < 0 or begin < 0:
            self._local_error("negative index or offset")
        if self._n >= 0:
            try:
                self._check_block(index, begin, length, LocalWireError)
            except LocalWireError as exc:
                self._local_error(str(exc))

    def _local_check_index(self, index: int) -> None:
        if index < 0 or index >= self._n >= 0 or index > 0xFFFFFFFF:
            self._local_error(f"piece index {index} out of range")

    def send(self, event: Event) -> bytes:
        """The bytes to write for ``event``; raises :class:`LocalWireError` if it is not allowed now.

        One encoder per event class (:data:`_ENCODERS`): a dict lookup instead of a chain of type
        tests (``bench/bench_wire.py``: ``send Request`` as fast as the chain that tested it first)."""
        if self.our_state is ERROR:
            raise LocalWireError("connection is in ERROR state")
        encode = _ENCODERS.get(type(event))
        if encode is None:
            raise LocalWireError(f"cannot send {type(event).__name__}")
        return encode(self, event)

    def _encode_block(self, event: Request | Cancel | RejectRequest) -> bytes:
        self._local_check_block(event.index, event.begin, event.length)
        self._ours(event)
        return _TRIPLE_MSG.pack(13, event.MESSAGE_ID, event.index, event.begin, event.length)

    def _encode_piece(self, event: Piece) -> bytes:
        return self.send_piece_header(event.index, event.begin, len(event.data)) + event.data

    def _encode_index(self, event: Have | SuggestPiece | AllowedFast) -> bytes:
        self._local_check_index(event.index)
        self._ours(event)
        return _IDX_MSG.pack(5, event.MESSAGE_ID, event.index)

    def _encode_keepalive(self, event: KeepAlive) -> bytes:
        self._ours(event)
        return b"\0\0\0\0"

    def _encode_bare(self, event: Choke | Unchoke | Interested | NotInterested | HaveAll | HaveNone) -> bytes:
        self._ours(event)
        return _HEAD.pack(1, event.MESSAGE_ID)

    def _encode_bitfield(self, event: Bitfield) -> bytes:
        bits = bytes(event.bits)
        if self._n >= 0:
            if len(bits) != (self._n + 7) >> 3:
                self._local_error(f"bitfield of {len(bits)} bytes for {self._n} pieces")
            spare = (-self._n) & 7
            if spare and bits[-1] & ((1 << spare) - 1):
                self._local_error("bitfield has spare bits set")
        elif len(bits) > MAX_BITFIELD_UNKNOWN_LAYOUT:
            self._local_error("bitfield too long")
        self._ours(event)
        return _HEAD.pack(1 + len(bits), MSG_BITFIELD) + bits

    def _encode_extended(self, event: Extended) -> bytes:
        if not 1 <= event.ext_id <= 255:
            self._local_error("extended id must be 1..255 (0 is ExtendedHandshake)")
        if 2 + len(event.payload) > MAX_EXTENDED_MESSAGE:
            self._local_error("extended message too long")
        self._ours(event)
        return _HEAD.pack(2 + len(event.payload), MSG_EXTENDED) + bytes([event.ext_id]) + event.payload

    def _encode_extended_handshake(self, event: ExtendedHandshake) -> bytes:
        payload = event.encode_payload()
        if 2 + len(payload) > MAX_EXTENDED_MESSAGE:
            self._local_error("extended handshake too long")
        self._ours(event)
        return _HEAD.pack(2 + len(payload), MSG_EXTENDED) + b"\0" + payload

    def _encode_port(self, event: Port) -> bytes:
        if not 0 <= event.port <= 0xFFFF:
            self._local_error(f"port {event.port} out of range")
        self._ours(event)
        return _PORT_MSG.pack(3, MSG_PORT, event.port)

    def _encode_unknown(self, event: UnknownMessage) -> bytes:
        if not 0 <= event.message_id <= 255 or event.message_id in _KNOWN_IDS:
            self._local_error(f"UnknownMessage cannot use id {event.message_id}")
        if 1 + len(event.payload) > MAX_UNKNOWN_MESSAGE:
            self._local_error("message too long")
        self._ours(event)
        return _HEAD.pack(1 + len(event.payload), event.message_id) + event.payload

    def _check_hash_fields(self, event: HashRequest | Hashes | HashReject) -> None:
        if len(event.pieces_root) != 32:
            self._local_error("pieces root must be 32 bytes")
        if not 0 <= event.base_layer <= 0xFFFFFFFF or not 0 <= event.index <= 0xFFFFFFFF:
            self._local_error("base layer and index must be 0..2**32-1")
        if not 1 <= event.length <= MAX_HASH_COUNT:
            self._local_error(f"hash count {event.length} (allowed 1..{MAX_HASH_COUNT})")
        if not 0 <= event.proof_layers <= MAX_PROOF_LAYERS:
            self._local_error(f"proof layers {event.proof_layers} (allowed 0..{MAX_PROOF_LAYERS})")

    def _encode_hash_fields(self, event: HashRequest | HashReject) -> bytes:
        self._check_hash_fields(event)
        self._ours(event)
        return _HASH_HEAD.pack(
            _HASH_FIELDS_LENGTH,
            event.MESSAGE_ID,
            event.pieces_root,
            event.base_layer,
            event.index,
            event.length,
            event.proof_layers,
        )

    def _encode_hashes(self, event: Hashes) -> bytes:
        self._check_hash_fields(event)
        want = event.length + uncle_count(event.length, event.proof_layers)
        if len(event.hashes) != 32 * want:
            self._local_error(f"hashes message needs {want} hashes, got {len(event.hashes) / 32:g}")
        self._ours(event)
        head = _HASH_HEAD.pack(
            _HASH_FIELDS_LENGTH + len(event.hashes),
            MSG_HASHES,
            event.pieces_root,
            event.base_layer,
            event.index,
            event.length,
            event.proof_layers,
        )
        return head + bytes(event.hashes)

    def _encode_handshake(self, event: Handshake) -> bytes:
        theirs = self.their_header
        if theirs is not None and event.info_hash not in (theirs.info_hash, self.upgrade_info_hash):
            self._local_error("our handshake must carry the info_hash the peer sent (or its BEP 52 upgrade)")
        self._ours(event)
        self.our_handshake = event
        self._negotiate()
        return HANDSHAKE_PREFIX + event.reserved.raw + event.info_hash + event.peer_id

    def _encode_closed(self, event: ConnectionClosed) -> bytes:
        self._ours(event)
        return b""

    def send_piece_header(self, index: int, begin: int, length: int) -> bytes:
        """The 13-byte header of a ``piece`` message; the caller writes ``length`` block bytes after it.

        Lets an uploader hand header and file data to ``writelines``/``sendmsg`` without joining them.
        """
        state = self.our_state
        if state is ERROR:
            raise LocalWireError("connection is in ERROR state")
        if not self._block_fits(index, begin, length):
            self._local_check_block(index, begin, length)  # raises, with the reason
        if state is not ESTABLISHED:  # ESTABLISHED: a piece leaves it there, nothing to check
            self._ours(Piece(index, begin, b""))
        return _PIECE_HEAD.pack(9 + length, MSG_PIECE, index, begin)

    def _block_fits(self, index: int, begin: int, length: int) -> bool:
        """The block is valid for this torrent (what :meth:`_local_check_block` lets pass), in one
        call: the per-block test of the send fast paths."""
        if not (0 < length <= MAX_BLOCK and index >= 0 and begin >= 0):
            return False
        n = self._n
        if n < 0:
            return True
        if index >= n:
            return False
        fn = self._size_fn
        size = fn(index) if fn is not None else (self._last if index == n - 1 else self._plen)
        return begin + length <= size

    def send_requests(self, blocks: Iterable[tuple[int, int, int]]) -> bytes:
        """The bytes of one ``request`` per ``(index, begin, length)``, joined: what
        ``send(Request(...))`` for each would give, without an event per block (a leecher sends one
        request per block it receives). Raises :class:`LocalWireError` (and nothing is sent) if one
        of them is not allowed."""
        state = self.our_state
        if state is ERROR:
            raise LocalWireError("connection is in ERROR state")
        fits, pack = self._block_fits, _TRIPLE_MSG.pack
        out = []
        for index, begin, length in blocks:
            if not fits(index, begin, length):
                self._local_check_block(index, begin, length)  # raises, with the reason
            out.append(pack(13, MSG_REQUEST, index, begin, length))
        if out and state is not ESTABLISHED:
            self._ours(_REQUEST)  # the first request moves the state (AWAIT_FIRST_MESSAGE)
        return b"".join(out)

    def send_have(self, index: int) -> bytes:
        """The bytes of ``send(Have(index))``, without the event (a piece we complete is announced
        to every peer)."""
        if self.our_state is ESTABLISHED and 0 <= index < self._n:
            return _IDX_MSG.pack(5, MSG_HAVE, index)
        return self.send(Have(index))


_KNOWN_IDS: Final = frozenset({*_FIXED_LENGTH, MSG_BITFIELD, MSG_PIECE, MSG_EXTENDED, MSG_HASHES})
#: Messages that leave a peer's ESTABLISHED direction there with nothing else to check (no BEP 6 or
#: BEP 10 condition): :meth:`PeerConnection._their` skips the table for them.
_STAY_ESTABLISHED: Final = frozenset(
    cls
    for (state, cls), nxt in TRANSITIONS.items()
    if state is ESTABLISHED
    and nxt is ESTABLISHED
    and cls not in REQUIRES_FAST
    and cls not in REQUIRES_EXTENSION_PROTOCOL
)


def _hash_fields(buf: memoryview, at: int) -> tuple[bytes, int, int, int, int]:
    """The five BEP 52 fields at ``buf[at:]``; :class:`WireProtocolError` if a count is absurd
    (the session judges the rest against the file's tree)."""
    root, base, index, count, proofs = _HASH_FIELDS.unpack_from(buf, at)
    if not 1 <= count <= MAX_HASH_COUNT:
        raise WireProtocolError(f"hash count {count} (allowed 1..{MAX_HASH_COUNT})")
    if proofs > MAX_PROOF_LAYERS:
        raise WireProtocolError(f"proof layers {proofs} (allowed 0..{MAX_PROOF_LAYERS})")
    return bytes(root), base, index, count, proofs


#: event class -> its encoder (:meth:`PeerConnection.send`)
_ENCODERS: Final[dict[type, Callable[[PeerConnection, Any], bytes]]] = {
    Request: PeerConnection._encode_block,
    Cancel: PeerConnection._encode_block,
    RejectRequest: PeerConnection._encode_block,
    Piece: PeerConnection._encode_piece,
    Have: PeerConnection._encode_index,
    SuggestPiece: PeerConnection._encode_index,
    AllowedFast: PeerConnection._encode_index,
    KeepAlive: PeerConnection._encode_keepalive,
    Choke: PeerConnection._encode_bare,
    Unchoke: PeerConnection._encode_bare,
    Interested: PeerConnection._encode_bare,
    NotInterested: PeerConnection._encode_bare,
    HaveAll: PeerConnection._encode_bare,
    HaveNone: PeerConnection._encode_bare,
    Bitfield: PeerConnection._encode_bitfield,
    Extended: PeerConnection._encode_extended,
    ExtendedHandshake: PeerConnection._encode_extended_handshake,
    Port: PeerConnection._encode_port,
    UnknownMessage: PeerConnection._encode_unknown,
    Handshake: PeerConnection._encode_handshake,
    HashRequest: PeerConnection._encode_hash_fields,
    HashReject: PeerConnection._encode_hash_fields,
    Hashes: PeerConnection._encode_hashes,
    ConnectionClosed: PeerConnection._encode_closed,
}

__all__ = ["BLOCK_SIZE", "BlockSink", "PeerConnection"]
