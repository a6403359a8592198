"""BEP 52 hash exchange for one torrent: serve ``hash request`` from the piece layers we hold, fetch
the piece layers we lack (a v2 or hybrid torrent whose metadata came from a magnet link: the info
dictionary has no ``piece layers``), verify every answer against the file's ``pieces root``.

:class:`HashExchange` is the policy, without I/O, on an injected clock; :class:`HashDriver` runs it
over a torrent's peer connections and storage. Fetching: each file longer than one piece needs its
piece layer; it is asked for in ranges of at most 512 hashes (BEP 52's advice), each range with a
proof up to the pieces root, so every answer is checked on its own
(:func:`bitswarm.metainfo.merkle.verify_hashes`). A peer whose answer does not prove out is reported
(``on_bad_peer``: the torrent bans it like a peer that sent bad data); a reject or a silent peer only
moves the range to another peer.

Serving: ranges of the piece layer and the layers above it, for any file whose layer we hold, and
ranges of the 16 KiB leaf layer inside one piece we have (its blocks are read and hashed), with the
uncle hashes up to the ``proof layers`` asked for; everything else (an unknown root, a range BEP 52
does not allow, a layer or piece we lack, a peer over its rate) gets ``hash reject``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from bitswarm.bencode import BencodeError, decode, encode
from bitswarm.errors import BitswarmError
from bitswarm.metainfo import Torrent
from bitswarm.metainfo.merkle import (
    HASH_SIZE,
    MerkleLayers,
    ProofError,
    block_hashes,
    file_tree_height,
    full_proof_layers,
    piece_height,
    verify_hashes,
)
from bitswarm.session.peer_manager import peer_key
from bitswarm.storage.resume import read_resume_file, write_resume_file
from bitswarm.wire import Hashes, HashReject, HashRequest, uncle_count

if TYPE_CHECKING:
    from bitswarm.session.peer import PeerProtocol
    from bitswarm.session.torrent import TorrentRuntime

log = logging.getLogger("bitswarm.hashes")

#: Piece-layer hashes asked for in one request (BEP 52: SHOULD NOT be more than 512).
RANGE = 512
#: Requests in flight to one peer at a time.
PER_PEER = 4
#: A request unanswered this long is given to another peer; the silent one is left alone for
#: :data:`SILENT_PAUSE`.
REQUEST_TIMEOUT = 20.0
SILENT_PAUSE = 60.0
#: A peer that rejected a range is asked for it again only after this long (it may get the layer).
REJECT_RETRY = 10.0
#: Hash requests served per peer per window (more are rejected: a per-client limit).
SERVE_LIMIT = 256
SERVE_WINDOW = 10.0
#: Leaf-layer answers (each reads and hashes a piece) being prepared for one peer at a time.
LEAF_READS_PER_PEER = 2


@dataclass(frozen=True, slots=True)
class LeafRead:
    """A leaf-layer request we can answer once piece ``piece`` (torrent numbering) is read: its first
    ``length`` bytes are the file's (the rest is the gap before the next file)."""

    piece: int
    length: int


@dataclass(slots=True)
class _File:
    """One file whose piece layer we fetch."""

    root: bytes
    num_pieces: int
    height: int  #: tree height above the 16 KiB leaves
    ranges: list[list[bytes] | None]  #: per range of RANGE pieces: its verified hashes, once in

    def request(self, i: int, ph: int) -> HashRequest:
        start = i * RANGE
        rest = self.num_pieces - start
        length = min(RANGE, max(2, 1 << (rest - 1).bit_length()))
        return HashRequest(self.root, ph, start, length, full_proof_layers(self.height, ph))


@dataclass(slots=True)
class _PeerState:
    inflight: dict[tuple[bytes, int], float] = field(default_factory=dict)  #: (root, range) -> sent at
    rejected: dict[tuple[bytes, int], float] = field(default_factory=dict)  #: (root, range) -> when
    silent_until: float = 0.0  #: let a request time out: not asked before this time
    served: int = 0
    window_start: float = 0.0
    leaf_reads: int = 0  #: leaf-layer answers being prepared


class HashExchange:
    """The BEP 52 hash exchange of one torrent (see the module docstring)."""

    def __init__(
        self,
        torrent: Torrent,
        *,
        clock: Callable[[], float],
        on_layer: Callable[[bytes, bytes], None],
        on_bad_peer: Callable[[Hashable, str], None],
    ) -> None:
        self.clock = clock
        self.on_layer = on_layer
        self.on_bad_peer = on_bad_peer
        info = torrent.info
        self.enabled = torrent.info_hash_v2 is not None and info.meta_version == 2
        self.v2_only = self.enabled and torrent.info_hash_v1 is None
        self.piece_height = piece_height(info.piece_length) if self.enabled else 0
        #: pieces root -> piece layer (concatenated hashes) for every file whose layer we hold
        self.layers: dict[bytes, bytes] = dict(torrent.piece_layers)
        self._trees: dict[bytes, MerkleLayers] = {}
        #: pieces root -> height of its tree, for every non-empty file (small ones too)
        self.heights: dict[bytes, int] = {}
        #: pieces root -> (first piece of the file in the torrent, file length)
        self._spans: dict[bytes, tuple[int, int]] = {}
        self.piece_length = info.piece_length
        self.missing: dict[bytes, _File] = {}
        self._peers: dict[Hashable, _PeerState] = {}
        self.fetched = 0  #: piece layers fetched and verified
        self.bad_answers = 0  #: answers that did not prove out
        self.served = 0  #: hash requests answered with hashes
        self.rejected = 0  #: hash requests answered with a reject
        if not self.enabled:
            return
        pl = info.piece_length
        for f in info.files:
            if f.pad or f.length == 0 or f.pieces_root is None:
                continue
            self.heights[f.pieces_root] = file_tree_height(f.length)
            self._spans[f.pieces_root] = (f.offset // info.piece_length, f.length)
            if f.length > pl and f.pieces_root not in self.layers:
                n = -(-f.length // pl)
                self.missing[f.pieces_root] = _File(
                    f.pieces_root, n, self.heights[f.pieces_root], [None] * -(-n // RANGE)
                )

    # -- state -------------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Every piece layer is known (always true for a v1 torrent)."""
        return not self.missing

    @property
    def blocking(self) -> bool:
        """Pieces cannot be verified yet: a v2-only torrent lacks piece layers (no download yet)."""
        return self.v2_only and bool(self.missing)

    def _peer(self, peer: Hashable) -> _PeerState:
        st = self._peers.get(peer)
        if st is None:
            st = self._peers[peer] = _PeerState(window_start=self.clock())
        return st

    def peer_gone(self, peer: Hashable) -> None:
        self._peers.pop(peer, None)

    # -- fetching ----------------------------------------------------------------------------

    def requests_for(self, peer: Hashable) -> list[HashRequest]:
        """New requests to send to ``peer`` (one that speaks v2): ranges nobody has in flight first,
        none it rejected lately, at most :data:`PER_PEER` in flight."""
        if not self.missing:
            return []
        st = self._peer(peer)
        now = self.clock()
        if now < st.silent_until or len(st.inflight) >= PER_PEER:
            return []
        busy = {key for other in self._peers.values() for key in other.inflight}
        out: list[HashRequest] = []
        for f in self.missing.values():
            for i, got in enumerate(f.ranges):
                key = (f.root, i)
                if got is not None or key in busy:
                    continue
                if now - st.rejected.get(key, -REJECT_RETRY) < REJECT_RETRY:
                    continue
                st.inflight[key] = now
                out.append(f.request(i, self.piece_height))
                if len(st.inflight) >= PER_PEER:
                    return out
        return out

    def expire(self) -> None:
        """Give up requests unanswered for :data:`REQUEST_TIMEOUT` (their ranges go to others)."""
        now = self.clock()
        for st in self._peers.values():
            late = [k for k, t in st.inflight.items() if now - t >= REQUEST_TIMEOUT]
            for k in late:
                del st.inflight[k]
                st.silent_until = now + SILENT_PAUSE

    def _match(self, peer: Hashable, req: HashRequest) -> tuple[_File, int] | None:
        """The file and range of a request we sent ``peer`` with exactly these fields."""
        f = self.missing.get(req.pieces_root)
        if f is None or req.index % RANGE or req.index // RANGE >= len(f.ranges):
            return None
        i = req.index // RANGE
        if f.request(i, self.piece_height) != req:
            return None
        st = self._peers.get(peer)
        if st is None or (f.root, i) not in st.inflight:
            return None
        return f, i

    def on_hashes(self, peer: Hashable, msg: Hashes) -> None:
        """An answer: verified against the pieces root; a bad one reports the peer. Answers we did
        not ask for (or no longer need: another peer was faster) are ignored."""
        hit = self._match(peer, msg.request)
        if hit is None:
            return
        f, i = hit
        del self._peers[peer].inflight[(f.root, i)]
        try:
            got = verify_hashes(
                f.root, f.height, msg.base_layer, msg.index, msg.length, msg.proof_layers, msg.hash_list()
            )
        except ProofError as exc:
            self.bad_answers += 1
            self.on_bad_peer(peer, f"bad BEP 52 hashes: {exc}")
            return
        f.ranges[i] = got
        if all(r is not None for r in f.ranges):
            layer = b"".join(h for r in f.ranges if r is not None for h in r)[: f.num_pieces * HASH_SIZE]
            del self.missing[f.root]
            self.layers[f.root] = layer
            self.fetched += 1
            self.on_layer(f.root, layer)

    def add_layer(self, root: bytes, layer: bytes) -> bool:
        """A whole piece layer from elsewhere (saved earlier): taken when it proves out against the
        pieces root of a file whose layer is missing."""
        f = self.missing.get(root)
        if f is None or len(layer) != f.num_pieces * HASH_SIZE:
            return False
        nodes = [layer[i : i + HASH_SIZE] for i in range(0, len(layer), HASH_SIZE)]
        if MerkleLayers(nodes, self.piece_height, f.height).root != root:
            return False
        del self.missing[root]
        self.layers[root] = bytes(layer)
        self.on_layer(root, self.layers[root])
        return True

    def on_reject(self, peer: Hashable, msg: HashReject) -> None:
        hit = self._match(
            peer, HashRequest(msg.pieces_root, msg.base_layer, msg.index, msg.length, msg.proof_layers)
        )
        if hit is None:
            return
        f, i = hit
        st = self._peers[peer]
        del st.inflight[(f.root, i)]
        st.rejected[(f.root, i)] = self.clock()

    # -- serving -----------------------------------------------------------------------------

    def _reject(self, req: HashRequest, why: str) -> HashReject:
        log.debug("hash reject %s: %s", req, why)
        self.rejected += 1
        return HashReject(req.pieces_root, req.base_layer, req.index, req.length, req.proof_layers)

    def _hashes(self, req: HashRequest, hashes: list[bytes]) -> Hashes:
        self.served += 1
        return Hashes(
            req.pieces_root, req.base_layer, req.index, req.length, req.proof_layers, b"".join(hashes)
        )

    def _over_rate(self, peer: Hashable) -> bool:
        st = self._peer(peer)
        now = self.clock()
        if now - st.window_start >= SERVE_WINDOW:
            st.window_start, st.served = now, 0
        st.served += 1
        return st.served > SERVE_LIMIT

    def answer(self, peer: Hashable, req: HashRequest) -> Hashes | HashReject | LeafRead:
        """Our answer to a peer's hash request, or, for a range of the 16 KiB leaf layer that we can
        answer, the piece to read first (then :meth:`leaf_answer`)."""
        if self._over_rate(peer):
            return self._reject(req, "over the per-peer rate")
        if req.base_layer < self.piece_height:
            return self._leaf_read(peer, req)
        tree = self._tree(req.pieces_root)
        if tree is None:
            return self._reject(req, "an unknown root, a file of one piece or a layer we lack")
        try:
            return self._hashes(req, tree.hashes(req.base_layer, req.index, req.length, req.proof_layers))
        except ProofError as exc:
            return self._reject(req, str(exc))

    def _leaf_read(self, peer: Hashable, req: HashRequest) -> HashReject | LeafRead:
        """Which piece a leaf-layer request needs (BEP 52 asks clients to serve the leaf layer too):
        the range must lie in one piece of the file, and its proof reach no higher than the root."""
        span, height = self._spans.get(req.pieces_root), self.heights.get(req.pieces_root)
        if req.base_layer != 0 or span is None or height is None:
            return self._reject(req, "only the leaf and piece layers are served")
        first, length = span
        per_piece = 1 << self.piece_height
        n, index = req.length, req.index
        if n < 1 or n & (n - 1) or index % n or n > per_piece:
            return self._reject(req, "a leaf range must be a power of two within one piece")
        k = index // per_piece  # the piece of the file
        if k * self.piece_length >= length:
            return self._reject(req, "the range is past the end of the file")
        top = n.bit_length() - 1
        uncles = uncle_count(n, req.proof_layers)
        if top + uncles > height:
            return self._reject(req, "proof layers reach above the root")
        if top + uncles > self.piece_height and self._tree(req.pieces_root) is None:
            return self._reject(req, "we lack the file's piece layer")
        st = self._peer(peer)
        if st.leaf_reads >= LEAF_READS_PER_PEER:
            return self._reject(req, "too many leaf answers in the making for this peer")
        st.leaf_reads += 1
        return LeafRead(first + k, min(self.piece_length, length - k * self.piece_length))

    def leaf_answer(
        self, peer: Hashable, req: HashRequest, leaves: list[bytes] | None
    ) -> Hashes | HashReject:
        """The answer to a leaf-layer request from the block hashes of its piece (None: the piece
        could not be read)."""
        st = self._peers.get(peer)
        if st is not None:
            st.leaf_reads = max(0, st.leaf_reads - 1)
        height = self.heights.get(req.pieces_root)
        if leaves is None or height is None:
            return self._reject(req, "the piece could not be read")
        per_piece = 1 << self.piece_height
        piece_top = min(height, self.piece_height)  # a file of one piece: its tree is the piece's
        local = req.index % per_piece
        piece_tree = MerkleLayers(leaves, 0, piece_top)
        top = req.length.bit_length() - 1
        out = piece_tree.layer(0)[local : local + req.length]
        for k in range(uncle_count(req.length, req.proof_layers)):
            h = top + k
            if h < piece_top:
                out.append(piece_tree.layer(h)[((local >> top) >> k) ^ 1])
            else:
                tree = self._tree(req.pieces_root)
                assert tree is not None  # checked by _leaf_read
                out.append(tree.layer(h)[((req.index >> top) >> k) ^ 1])
        return self._hashes(req, out)

    def _tree(self, root: bytes) -> MerkleLayers | None:
        tree = self._trees.get(root)
        if tree is not None:
            return tree
        layer = self.layers.get(root)
        height = self.heights.get(root)
        if layer is None or height is None:
            return None  # unknown root, a file of one piece (no piece layer) or a layer we lack
        nodes = [layer[i : i + HASH_SIZE] for i in range(0, len(layer), HASH_SIZE)]
        try:
            tree = MerkleLayers(nodes, self.piece_height, height)
        except ValueError:
            return None
        self._trees[root] = tree
        return tree


def speaks_v2(torrent: Torrent, *handshake_hashes: bytes | None) -> bool:
    """Whether we may send BEP 52 hash requests on a connection whose two handshakes carried
    ``handshake_hashes`` (libtorrent closes a connection that sends them to a peer it counts as v1).

    A v2-only torrent's peers all are. A hybrid torrent's connection is v2 when it was opened with,
    or upgraded to, the (truncated) v2 info-hash (:func:`upgrade_hash`)."""
    if torrent.info_hash_v2 is None:
        return False
    return torrent.info_hash_v1 is None or torrent.info_hash_v2_short in handshake_hashes


def upgrade_hash(torrent: Torrent) -> bytes | None:
    """BEP 52 upgrade path: the truncated v2 info-hash that a hybrid torrent's connection opened
    with the v1 hash (and the v2 reserved bit) may be answered with; None for v1 and v2-only."""
    if torrent.info_hash_v1 is None or torrent.info_hash_v2 is None:
        return None
    return torrent.info_hash_v2_short


def handshake_reply_hash(torrent: Torrent, their_hash: bytes, their_bits_v2: bool) -> bytes:
    """The info-hash our handshake answers an incoming one with: the v2 one when the peer opened a
    hybrid torrent's connection with the v1 hash and the v2 bit (the upgrade), else its own."""
    up = upgrade_hash(torrent)
    if up is not None and their_bits_v2 and their_hash == torrent.info_hash_v1:
        return up
    return their_hash


class HashDriver:
    """Runs a torrent's :class:`HashExchange` over its peer connections (small hooks in
    :mod:`bitswarm.session.torrent` and :mod:`bitswarm.session.peer`): requests go to v2 peers once
    they joined and on every housekeeping tick, answers and rejects come back through
    :meth:`on_message`, a fetched layer goes to storage (pieces of that file are verified with it
    from then on) and, when the last one of a v2-only torrent is in, the download starts."""

    def __init__(self, runtime: TorrentRuntime) -> None:
        self.runtime = runtime
        self._tasks: set[asyncio.Task[None]] = set()
        self.exchange = HashExchange(
            runtime.torrent,
            clock=runtime.clock.now,
            on_layer=self._on_layer,
            on_bad_peer=self._on_bad_peer,
        )

    @property
    def blocking(self) -> bool:
        """No piece may be requested yet (a v2-only torrent still lacks piece layers)."""
        return self.exchange.blocking

    @property
    def layers_path(self) -> str | None:
        """Where fetched piece layers are kept: next to the resume data (``<hash>.layers``)."""
        resume = self.runtime.storage.resume_path
        if resume is None or not resume.endswith(".resume"):
            return None
        return resume[: -len(".resume")] + ".layers"

    async def load(self) -> None:
        """Take the piece layers saved by an earlier run (each proved against its pieces root)."""
        path = self.layers_path
        if not self.exchange.missing or path is None:
            return
        try:
            raw = await asyncio.to_thread(read_resume_file, path)
        except BitswarmError:
            return
        try:
            saved = decode(raw) if raw is not None else None
        except BencodeError:
            saved = None
        if not isinstance(saved, dict):
            return
        taken = sum(
            self.exchange.add_layer(root, layer)
            for root, layer in saved.items()
            if isinstance(root, bytes) and isinstance(layer, bytes)
        )
        log.debug("%s: %d piece layers from %s", self.runtime.info.name, taken, path)

    async def _save(self) -> None:
        path = self.layers_path
        if path is None:
            return
        try:
            await asyncio.to_thread(write_resume_file, path, encode(dict(self.exchange.layers)))
        except (BitswarmError, OSError) as exc:
            log.warning("could not save the piece layers: %s", exc)

    def _speaks_v2(self, peer: PeerProtocol) -> bool:
        theirs, ours = peer.codec.their_handshake, peer.codec.our_handshake
        return speaks_v2(
            self.runtime.torrent,
            None if theirs is None else theirs.info_hash,
            None if ours is None else ours.info_hash,
        )

    def peer_joined(self, peer: PeerProtocol) -> None:
        """A peer completed its handshake: ask it for layers once our bitfield has gone out (a hash
        request before it would end the bitfield's window)."""
        if self.exchange.missing and self._speaks_v2(peer):
            asyncio.get_running_loop().call_soon(self._ask, peer)

    def peer_gone(self, peer: PeerProtocol) -> None:
        self.exchange.peer_gone(peer)

    def tick(self) -> None:
        """Housekeeping: give up silent requests, ask the v2 peers for what is still missing."""
        ex = self.exchange
        if not ex.missing:
            return
        ex.expire()
        for peer in list(self.runtime.peers.values()):
            if self._speaks_v2(peer):
                self._ask(peer)

    def _ask(self, peer: PeerProtocol) -> None:
        if peer.closed or not peer.established:
            return
        for req in self.exchange.requests_for(peer):
            peer.send_message(req)

    def on_message(self, peer: PeerProtocol, ev: HashRequest | Hashes | HashReject) -> None:
        """A BEP 52 message from ``peer``."""
        ex = self.exchange
        if isinstance(ev, HashRequest):
            answer = ex.answer(peer, ev)
            if isinstance(answer, LeafRead):
                task = asyncio.get_running_loop().create_task(self._answer_leaves(peer, ev, answer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                peer.send_message(answer)
        elif isinstance(ev, Hashes):
            ex.on_hashes(peer, ev)
            self._ask(peer)
        else:
            ex.on_reject(peer, ev)
            self._ask(peer)

    async def _answer_leaves(self, peer: PeerProtocol, req: HashRequest, read: LeafRead) -> None:
        """Read the piece (through the upload cache), hash its blocks off the loop, answer."""
        rt = self.runtime
        leaves: list[bytes] | None = None
        if rt.have.get(read.piece):
            try:
                data = await rt.read_cache.read_piece(read.piece)
                leaves = await asyncio.to_thread(block_hashes, memoryview(data)[: read.length])
            except BitswarmError as exc:
                log.debug("leaf hashes of piece %d: %s", read.piece, exc)
        peer.send_message(self.exchange.leaf_answer(peer, req, leaves))

    def _on_layer(self, root: bytes, layer: bytes) -> None:
        rt = self.runtime
        rt.storage.set_piece_layer(root, layer)
        log.info("%s: piece layer of %s fetched and verified", rt.info.name, root.hex()[:16])
        if not self.exchange.missing:
            rt.on_piece_layers_complete()
            if self.exchange.fetched:  # keep them for the next run (a magnet has no .torrent)
                task = asyncio.get_running_loop().create_task(self._save())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _on_bad_peer(self, who: Hashable, reason: str) -> None:
        """A peer sent hashes that do not prove out: banned like the sender of bad data."""
        peer = cast("PeerProtocol", who)
        pm = self.runtime.peer_manager
        pm.apply(pm.smart_ban.bad_data(peer_key(peer), reason))
        if not peer.closed:  # banned before (its IP): still drop this connection
            peer.abort(reason)
