"""The piece picker: which blocks to request from which peer (BEP 3 download strategy).

Policy, in order of precedence:

1. pieces with a deadline (streaming), earliest deadline first;
2. partial pieces already started, so pieces complete and can be verified and shared early;
3. in sequential mode, the lowest missing index;
4. otherwise rarest first — fewest peers have it — with random tie-breaks, so a swarm spreads
   pieces instead of everyone fetching the same ones, weighted by piece priority (1–7, the highest
   priority of the files a piece touches) as libtorrent weighs them (see :func:`pick_rank`);
5. end-game: once every missing block is requested, a block may be requested again from another
   peer (at most ``endgame_dups`` extra times); the session cancels the duplicates on arrival.

Pieces of priority 0 (from files the user skipped) are never picked. In sequential mode the
lowest index of the highest priority level goes first. The picker is pure logic: no
I/O, no clock of its own (deadlines are plain numbers the caller compares), an injected RNG.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import NamedTuple

BLOCK_SIZE = 16 * 1024
#: :meth:`PiecePicker.received`'s "no other peer has this block requested"
_NOBODY: frozenset[Hashable] = frozenset()
#: a peer with at most this many fresh pieces we want: list them from the bitmask and sort by
#: rarity, instead of walking the rarest-first order to find them
_ENUMERATE_MAX = 128
#: rarity steps of :func:`pick_rank`: each availability level spans this many ranks, so the three
#: priority offsets inside one level never reach the next level
_LEVEL_SPAN = 4
TOP_PRIORITY = 7


def pick_rank(availability: int, priority: int) -> int:
    """Where a fresh piece stands in the pick order: lower goes first (random tie-breaks follow).

    The weighting is libtorrent's (its piece picker's priority buckets), so a swarm of mixed
    clients treats file priorities alike:

    * priority 7 ignores rarity: such pieces go before every other piece;
    * priorities 4–6 count half the peers that have a piece (a piece of priority 4 held by 4 peers
      stands with a priority-1 piece held by 2), then act as priorities 1–3;
    * within one availability level, a higher priority goes first (priority 3 before 2 before 1),
      but a rarer piece of priority 1 still beats a commoner piece of priority 3.

    With a single source (every piece equally available) this is strictly by priority; in a swarm
    higher priorities get a proportional head start without starving rare low-priority pieces.
    Priority 0 is never picked and has no rank.
    """
    if priority >= TOP_PRIORITY:
        return 0
    if priority > 3:
        availability //= 2
        priority -= 3
    return availability * _LEVEL_SPAN + (_LEVEL_SPAN - priority)


@dataclass(slots=True)
class _Partial:
    """A piece with some blocks requested or received."""

    num_blocks: int
    requested: bytearray  # per block: how many requests are outstanding
    received: bytearray  # per block: 1 once the data is in
    received_count: int = 0
    owners: dict[int, set[Hashable]] = field(default_factory=dict)  # block -> peers it is requested from

    def next_unrequested(self) -> int:
        try:
            return self.requested.index(0)
        except ValueError:
            return -1


class BlockRequest(NamedTuple):
    """One block to request: ``length`` bytes at ``begin`` in piece ``index``.

    A named tuple (issue 24): made once per requested block, cheaper than a frozen dataclass, and it
    goes to :meth:`bitswarm.wire.PeerConnection.send_requests` as the ``(index, begin, length)`` it
    is."""

    index: int  # type: ignore[assignment]  # hides tuple.index, which nobody calls on a request
    begin: int
    length: int


class PiecePicker:
    """Tracks availability, our pieces and in-flight block requests for one torrent."""

    def __init__(
        self,
        num_pieces: int,
        piece_size: Callable[[int], int],
        *,
        block_size: int = BLOCK_SIZE,
        rng: random.Random | None = None,
        endgame_dups: int = 1,
    ) -> None:
        self.num_pieces = num_pieces
        self._piece_size = piece_size
        self.block_size = block_size
        self._rng = rng or random.Random()
        self.endgame_dups = endgame_dups
        self.have = bytearray(num_pieces)
        self.availability = [0] * num_pieces
        self.priority = bytearray([1]) * num_pieces
        self.deadlines: dict[int, float] = {}
        self.sequential = False
        self._partials: dict[int, _Partial] = {}
        #: started pieces that still have unrequested blocks, oldest first (picked before new ones)
        self._open: dict[int, None] = {}
        self._order: list[int] | None = None
        self._order_pos = 0  # entries before it are had or started
        self._stale = 0  # availability changes since the order was sorted
        self._missing = num_pieces
        self._weighted = 0  # pieces whose priority is above 1 (the default)
        self._wanted_missing = num_pieces  # pieces we lack with priority > 0
        self._tiebreak = list(range(num_pieces))
        #: end-game: bumped whenever a block may have become a candidate for duplication; a peer
        #: whose end-game scan found nothing is not scanned again until it changes (the scan walks
        #: every block of every started piece, and runs on every top-up)
        self._epoch = 0
        self._endgame_empty: dict[Hashable, int] = {}
        self._rng.shuffle(self._tiebreak)
        #: piece sets as big integers in the BEP 3 bitfield layout (piece 0 = the highest bit of
        #: ``_nbits``), so a peer's whole bitfield (``Bitfield.as_int()``) meets ours in one AND:
        #: ``_fresh``: wanted, missing and not started (what rarest-first picks from);
        #: ``_want``: wanted and missing (are we interested in a peer?)
        self._nbits = ((num_pieces + 7) >> 3) * 8
        self._fresh = ((1 << num_pieces) - 1) << (self._nbits - num_pieces)
        self._want = self._fresh
        self._rank: list[int] = []  # index -> position in ``_order`` (rebuilt with it)

    # -- state updates -------------------------------------------------------------------------

    def _bit(self, index: int) -> int:
        return 1 << (self._nbits - 1 - index)

    def _update_masks(self, index: int) -> None:
        """Recompute piece ``index``'s bits in ``_fresh`` and ``_want`` from its state."""
        bit = self._bit(index)
        wanted = not self.have[index] and self.priority[index]
        self._want = self._want | bit if wanted else self._want & ~bit
        fresh = wanted and index not in self._partials
        self._fresh = self._fresh | bit if fresh else self._fresh & ~bit

    def set_have(self, index: int) -> None:
        """Mark a piece verified (from resume data or after a hash check)."""
        if not self.have[index]:
            self.have[index] = 1
            self._missing -= 1
            if self.priority[index]:
                self._wanted_missing -= 1
        self._partials.pop(index, None)
        self._open.pop(index, None)
        self.deadlines.pop(index, None)
        bit = self._bit(index)
        self._want &= ~bit
        self._fresh &= ~bit

    def unset_have(self, index: int) -> None:
        """A piece we had is gone (dropped from storage): it is wanted again like any missing one."""
        if not self.have[index]:
            return
        self.have[index] = 0
        self._missing += 1
        if self.priority[index]:
            self._wanted_missing += 1
        self._order = None
        self._epoch += 1
        self._update_masks(index)

    def _availability_changed(self) -> None:
        # Re-sorting on every ``have`` would cost O(n log n) per message in a busy swarm: the order
        # is re-sorted lazily, after enough changes (rarest-first stays approximately right).
        self._stale += 1

    def peer_has(self, index: int) -> None:
        self.availability[index] += 1
        self._epoch += 1
        self._availability_changed()

    def peer_has_not(self, index: int) -> None:
        """A peer no longer has a piece it announced (BEP 54 ``lt_donthave``)."""
        if self.availability[index] > 0:
            self.availability[index] -= 1
            self._availability_changed()

    def peer_bitfield(self, bits: Sequence[int] | bytes | bytearray, delta: int = 1) -> None:
        """Add (``delta=1``) or remove (``delta=-1``) a peer's whole set of pieces (a list of 0/1)."""
        avail = self.availability
        for i, b in enumerate(bits):
            if b:
                avail[i] += delta
        self._order = None
        self._epoch += 1

    def peer_has_all(self, delta: int = 1) -> None:
        # Every piece's count moves together: the rarest-first order does not change.
        self.availability = [a + delta for a in self.availability]
        self._epoch += 1

    def set_priority(self, index: int, priority: int) -> None:
        new = max(0, min(7, priority))
        old = self.priority[index]
        if not self.have[index] and bool(old) != bool(new):
            self._wanted_missing += 1 if new else -1
        self._weighted += (new > 1) - (old > 1)
        self.priority[index] = new
        self._order = None
        self._epoch += 1
        self._update_masks(index)

    def set_deadline(self, index: int, deadline: float | None) -> None:
        if deadline is None:
            self.deadlines.pop(index, None)
        elif not self.have[index]:
            self.deadlines[index] = deadline

    # -- queries -------------------------------------------------------------------------------

    @property
    def missing(self) -> int:
        """Pieces we do not have yet (any priority)."""
        return self._missing

    @property
    def weighted(self) -> bool:
        """Do some pieces have a priority above the default 1? (Then a peer's ``have`` is not a
        reason to request that very piece: the regular pick weighs it against the others.)"""
        return self._weighted > 0

    def is_complete(self) -> bool:
        """True when every piece we want (priority > 0) is verified."""
        return self._wanted_missing == 0

    def wants_from(self, peer_has: Callable[[int], bool]) -> bool:
        """Are we interested in a peer: does it have a piece we want and lack?"""
        have, prio = self.have, self.priority
        return any(not have[i] and prio[i] and peer_has(i) for i in range(self.num_pieces))

    def wants_mask(self, peer_mask: int) -> bool:
        """:meth:`wants_from` for a peer's pieces as an integer (``Bitfield.as_int()``): one AND."""
        return bool(peer_mask & self._want)

    def num_blocks(self, index: int) -> int:
        return -(-self._piece_size(index) // self.block_size)

    def block_length(self, index: int, block: int) -> int:
        size = self._piece_size(index)
        return min(self.block_size, size - block * self.block_size)

    # -- picking -------------------------------------------------------------------------------

    def _rarest_order(self) -> list[int]:
        # re-sort after enough availability changes: a quarter of the pieces' worth (at least 64), so
        # a busy swarm's stream of ``have`` messages costs O(1) each, not a sort each
        if self._order is None or self._stale > max(64, self.num_pieces // 4):
            avail, tb, have, prio = self.availability, self._tiebreak, self.have, self.priority
            parts = self._partials
            cands = [i for i in range(self.num_pieces) if not have[i] and prio[i] and i not in parts]
            cands.sort(key=lambda i: (pick_rank(avail[i], prio[i]), tb[i]))
            self._order = cands
            self._order_pos = 0
            self._stale = 0
            rank = [len(cands)] * self.num_pieces
            for pos, i in enumerate(cands):
                rank[i] = pos
            self._rank = rank
        return self._order

    def _partial(self, index: int) -> _Partial:
        p = self._partials.get(index)
        if p is None:
            n = self.num_blocks(index)
            p = _Partial(n, bytearray(n), bytearray(n))
            self._partials[index] = p
            self._fresh &= ~self._bit(index)
        return p

    def _take_from(self, index: int, peer: Hashable, count: int, out: list[BlockRequest]) -> int:
        """Request up to ``count`` unrequested blocks of ``index``; returns how many were taken."""
        p = self._partial(index)
        taken = 0
        self._epoch += 1
        requested, owners, bs = p.requested, p.owners, self.block_size
        b = requested.find(0)  # the first unrequested block; those before it stay requested
        size = self._piece_size(index) if b >= 0 else 0
        while taken < count and b >= 0:
            requested[b] += 1
            owners[b] = {peer}
            begin = b * bs
            out.append(BlockRequest(index, begin, min(bs, size - begin)))
            taken += 1
            b = requested.find(0, b + 1)
        if b < 0:
            self._open.pop(index, None)
        else:
            self._open[index] = None
        return taken

    def pick(
        self,
        peer: Hashable,
        peer_has: Callable[[int], bool],
        count: int,
        *,
        memo: bool = True,
        endgame_max: int | None = None,
        peer_mask: int | None = None,
    ) -> list[BlockRequest]:
        """Choose up to ``count`` blocks to request from ``peer`` (identified by any hashable key).

        ``peer_has(index)`` tells whether the peer has a piece. Each returned block is recorded as
        requested from ``peer`` until :meth:`received`, :meth:`cancel` or :meth:`peer_lost`.
        ``memo``: remember a fruitless end-game scan for this peer until something changes (pass
        False when ``peer_has`` is a temporary restriction, e.g. allowed-fast pieces while choked).
        ``endgame_max``: at most this many end-game duplicates for this call (the session gives them
        only to peers that are nearly idle, so the end of a download does not become a duplicate
        transfer). ``peer_mask``: the same pieces as ``peer_has`` as an integer
        (``Bitfield.as_int()``); with it, rarest-first meets the peer's pieces in one AND instead of
        a ``peer_has`` call per piece of the order (a peer with few pieces we lack made every pick
        walk the whole order).
        """
        out: list[BlockRequest] = []
        if count <= 0:
            return out
        if self.deadlines:
            self._pick_deadlines(peer, peer_has, count, out)
        if self._open and len(out) < count:
            self._pick_started(peer, peer_has, count, out)
        if len(out) < count:
            if self.sequential:
                self._pick_sequential(peer, peer_has, count, out)
            else:
                self._pick_rarest(peer, peer_has, count, out, peer_mask)
        if endgame_max is not None:
            count = min(count, len(out) + max(0, endgame_max))
        if len(out) < count and self._endgame_empty.get(peer) != self._epoch and self._all_requested():
            self._pick_endgame(peer, peer_has, count, out, memo)
        return out

    # The phases of :meth:`pick`, in order. Each appends to ``out`` until it holds ``count`` blocks.

    def _pick_deadlines(
        self, peer: Hashable, peer_has: Callable[[int], bool], count: int, out: list[BlockRequest]
    ) -> None:
        """1. Pieces with a deadline (streaming), earliest first."""
        have = self.have
        for index in sorted(self.deadlines, key=self.deadlines.__getitem__):
            if len(out) >= count:
                return
            if not have[index] and peer_has(index):
                self._take_from(index, peer, count - len(out), out)

    def _pick_started(
        self, peer: Hashable, peer_has: Callable[[int], bool], count: int, out: list[BlockRequest]
    ) -> None:
        """2. Started pieces with blocks left, oldest first."""
        prio = self.priority
        for index in list(self._open):
            if len(out) >= count:
                return
            if prio[index] and peer_has(index):
                self._take_from(index, peer, count - len(out), out)

    def _pick_sequential(
        self, peer: Hashable, peer_has: Callable[[int], bool], count: int, out: list[BlockRequest]
    ) -> None:
        """3. New pieces in sequential mode: the lowest missing index of the highest priority level
        first (one pass per level present when priorities differ)."""
        have, prio, partials = self.have, self.priority, self._partials
        levels = sorted({p for p in prio if p}, reverse=True) if self._weighted else [0]
        for level in levels:
            for index in range(self.num_pieces):
                if len(out) >= count:
                    return
                p = prio[index]
                if not p or (level and p != level):
                    continue
                if not have[index] and index not in partials and peer_has(index):
                    self._take_from(index, peer, count - len(out), out)

    def _pick_rarest(
        self,
        peer: Hashable,
        peer_has: Callable[[int], bool],
        count: int,
        out: list[BlockRequest],
        peer_mask: int | None,
    ) -> None:
        """4. New pieces, rarest first (random tie-breaks)."""
        order = self._rarest_order()
        have, partials = self.have, self._partials
        pos, n = self._order_pos, len(order)
        while pos < n and (have[order[pos]] or order[pos] in partials):
            pos += 1  # skip the settled front of the order once
        self._order_pos = pos
        cand = -1 if peer_mask is None else peer_mask & self._fresh
        if cand == 0:
            return  # the peer has no fresh piece we want
        if cand > 0 and cand.bit_count() <= _ENUMERATE_MAX:
            self._take_listed(cand, peer, count, out)
        else:
            self._walk_order(order, pos, cand, peer, peer_has, count, out)

    def _take_listed(self, cand: int, peer: Hashable, count: int, out: list[BlockRequest]) -> None:
        """Few candidates (a mask of fresh pieces the peer has): list them, highest bit first, and
        take them in rarest-first order."""
        top = self._nbits - 1
        hits: list[int] = []
        while cand:
            b = cand.bit_length() - 1
            hits.append(top - b)
            cand ^= 1 << b
        hits.sort(key=self._rank.__getitem__)
        for index in hits:
            if len(out) >= count:
                return
            self._take_from(index, peer, count - len(out), out)

    def _walk_order(
        self,
        order: list[int],
        pos: int,
        cand: int,
        peer: Hashable,
        peer_has: Callable[[int], bool],
        count: int,
        out: list[BlockRequest],
    ) -> None:
        """Walk the rarest-first order from ``pos``; the peer's pieces are the mask ``cand``, or
        ``peer_has`` when ``cand`` is -1 (no mask)."""
        have, prio, partials = self.have, self.priority, self._partials
        top = self._nbits - 1
        for k in range(pos, len(order)):
            if len(out) >= count:
                return
            index = order[k]
            if have[index] or index in partials or not prio[index]:
                continue
            if not ((cand >> (top - index)) & 1 if cand > 0 else peer_has(index)):
                continue
            self._take_from(index, peer, count - len(out), out)

    def _pick_endgame(
        self,
        peer: Hashable,
        peer_has: Callable[[int], bool],
        count: int,
        out: list[BlockRequest],
        memo: bool,
    ) -> None:
        """5. End-game: every wanted block is requested; duplicate ones not requested from this
        peer (each at most ``endgame_dups`` extra times). A fruitless scan is remembered (``memo``)
        until the picker's epoch moves."""
        found = len(out)
        for index, p in self._partials.items():
            if len(out) >= count:
                break
            if peer_has(index):
                self._duplicate_blocks(index, p, peer, count, out)
        if len(out) == found and memo:
            self._endgame_empty[peer] = self._epoch

    def _duplicate_blocks(
        self, index: int, p: _Partial, peer: Hashable, count: int, out: list[BlockRequest]
    ) -> None:
        for b in range(p.num_blocks):
            if len(out) >= count:
                return
            if p.received[b] or p.requested[b] > self.endgame_dups:
                continue
            owners = p.owners.setdefault(b, set())
            if peer in owners:
                continue
            owners.add(peer)
            p.requested[b] += 1
            out.append(BlockRequest(index, b * self.block_size, self.block_length(index, b)))

    def pick_piece(self, peer: Hashable, index: int, count: int) -> list[BlockRequest]:
        """Up to ``count`` unrequested blocks of piece ``index`` only — for a peer that just
        announced it (``have``): O(1) instead of a scan of the rarest-first order. A piece that a peer
        just got is rare by definition, so this agrees with rarest-first where it matters."""
        out: list[BlockRequest] = []
        if count <= 0 or self.have[index] or not self.priority[index]:
            return out
        p = self._partials.get(index)
        if p is not None and p.next_unrequested() < 0:
            return out
        self._take_from(index, peer, count, out)
        return out

    def started(self) -> list[tuple[int, int, int]]:
        """``(index, blocks received, blocks)`` of every started piece we want and lack (requested
        from someone or partly in): the in-flight state a web seed's end-game looks at."""
        prio, have = self.priority, self.have
        return [
            (i, p.received_count, p.num_blocks)
            for i, p in self._partials.items()
            if prio[i] and not have[i] and p.received_count < p.num_blocks
        ]

    def duplicate_piece(self, peer: Hashable, index: int) -> list[BlockRequest]:
        """Every block of the started piece ``index`` not received yet, requested (also) from
        ``peer`` whatever ``endgame_dups`` says: a web seed fetches a whole piece in one request, so
        it duplicates a piece, not single blocks. The blocks' other owners keep theirs until
        :meth:`received` names them to cancel."""
        p = self._partials.get(index)
        out: list[BlockRequest] = []
        if p is None or self.have[index]:
            return out
        self._epoch += 1
        for b in range(p.num_blocks):
            if p.received[b]:
                continue
            owners = p.owners.setdefault(b, set())
            if peer in owners:
                continue
            owners.add(peer)
            p.requested[b] += 1
            out.append(BlockRequest(index, b * self.block_size, self.block_length(index, b)))
        if p.next_unrequested() < 0:
            self._open.pop(index, None)
        return out

    def _all_requested(self) -> bool:
        if self._open:
            return False
        prio = self.priority
        started = sum(1 for i in self._partials if prio[i])
        return started >= self._wanted_missing

    def in_endgame(self) -> bool:
        return self._all_requested() and self._missing > 0

    # -- request outcomes ----------------------------------------------------------------------

    def block_wanted(self, index: int, begin: int) -> bool:
        """Is this block part of a started piece and not received yet? (Where may it land?)"""
        p = self._partials.get(index)
        if p is None or begin % self.block_size:
            return False
        b = begin // self.block_size
        return b < p.num_blocks and not p.received[b]

    def received(self, peer: Hashable, index: int, begin: int) -> tuple[bool, AbstractSet[Hashable]] | None:
        """A block arrived from ``peer``.

        Returns ``(piece_done, others)``: ``piece_done`` is True when every block of the piece is
        now in (hash it next); ``others`` are peers that still have this block requested (end-game
        duplicates to cancel). A block that was not expected (or a duplicate) gives ``None`` and
        must be dropped by the caller.
        """
        p = self._partials.get(index)
        if p is None or begin % self.block_size:
            return None
        b = begin // self.block_size
        if b >= p.num_blocks or p.received[b]:
            return None
        p.received[b] = 1
        if not p.requested[b]:
            p.requested[b] = 1
        count = p.received_count = p.received_count + 1
        owners = p.owners.pop(b, None)
        if owners is None:  # no set allocated per block for nobody (issue 24)
            return count == p.num_blocks, _NOBODY
        owners.discard(peer)
        return count == p.num_blocks, owners

    def cancel(self, peer: Hashable, index: int, begin: int) -> None:
        """A request to ``peer`` is gone (rejected, choked, timed out, cancelled): free the block."""
        p = self._partials.get(index)
        if p is None:
            return
        b = begin // self.block_size
        if b >= p.num_blocks:
            return
        owners = p.owners.get(b)
        if owners and peer in owners:
            self._epoch += 1
            owners.discard(peer)
            if p.requested[b] and not p.received[b]:
                p.requested[b] -= 1
                if not p.requested[b]:
                    self._open[index] = None
        if p.received_count == 0 and not any(p.requested):
            del self._partials[index]
            self._open.pop(index, None)
            self._order = None  # it is a fresh piece again
            self._update_masks(index)

    def peer_lost(self, peer: Hashable) -> None:
        """Free every block requested from a peer that disconnected or choked us."""
        self._endgame_empty.pop(peer, None)
        self._epoch += 1
        for index in list(self._partials):
            p = self._partials.get(index)
            if p is None:
                continue
            for b, owners in list(p.owners.items()):
                if peer in owners:
                    self.cancel(peer, index, b * self.block_size)

    def piece_passed(self, index: int) -> None:
        self.set_have(index)

    def piece_failed(self, index: int) -> None:
        """The piece failed its hash check: every block must be downloaded again."""
        self._partials.pop(index, None)
        self._open.pop(index, None)
        self._order = None
        self._epoch += 1
        self._update_masks(index)

    def requested_from(self, peer: Hashable) -> list[tuple[int, int]]:
        """(index, begin) of the blocks currently requested from ``peer``."""
        out = []
        for index, p in self._partials.items():
            for b, owners in p.owners.items():
                if peer in owners:
                    out.append((index, b * self.block_size))
        return out
