"""Smart ban: who sent the bad data of a piece that failed its hash check (pure policy, no I/O).

libtorrent's ``smart_ban`` plugin is the model. The engine tells the policy, for every piece that
failed, which peer sent each block and a digest of the block as received; when the same piece later
passes, blocks whose good digest differs from the recorded one name their senders. The policy answers
with :class:`Ban` verdicts; the peer manager applies them.

Who is banned: a *peer* is one ``(IP, port, peer id)``, the endpoint that sent the data, never its
whole address at once (an honest seeder may share an IP with a bad one: a NAT, a seedbox, a test on
loopback). An IP as a whole is banned only once ``ban_ip_after`` distinct peers from it have been
banned. :meth:`SmartBan.is_banned` matches a connection by IP, by ``(IP, peer id)`` and by
``(IP, port)`` (the listen port of an address we dial).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: A peer that alone supplied a failing piece is banned at once. One that shared failing pieces with
#: others is banned when a later good copy shows that its block was a wrong one, or after it took part
#: in this many failed pieces.
SHARED_FAILURES_LIMIT = 6
#: Distinct peers banned from one IP before the IP itself is banned.
BAN_IP_AFTER = 3


@dataclass(frozen=True, slots=True)
class PeerKey:
    """One remote endpoint: IP, port and the peer id of its handshake."""

    ip: str
    port: int
    peer_id: bytes


@dataclass(frozen=True, slots=True)
class Ban:
    """A verdict: ban ``peer`` (and every connection from ``peer.ip`` if ``whole_ip``)."""

    peer: PeerKey
    reason: str
    whole_ip: bool = False


#: the one empty set every torrent's :class:`SmartBan` starts with (``frozenset()`` is a new object)
_NONE: frozenset[Any] = frozenset()


class SmartBan:
    """Block digests per source -> whom to ban. Deterministic; unit-tested without sockets."""

    def __init__(
        self, *, ban_ip_after: int = BAN_IP_AFTER, shared_failures_limit: int = SHARED_FAILURES_LIMIT
    ) -> None:
        self.ban_ip_after = max(1, ban_ip_after)
        self.shared_failures_limit = max(1, shared_failures_limit)
        # frozensets, replaced on a ban (rare): the empty one is shared, where four empty sets were
        # ~0.9 KiB in every torrent (issue 24)
        self.banned_peers: frozenset[PeerKey] = _NONE
        self.banned_ips: frozenset[str] = _NONE
        self._ids: frozenset[tuple[str, bytes]] = _NONE
        self._endpoints: frozenset[tuple[str, int]] = _NONE
        self._per_ip: dict[str, int] = {}
        self._failures: dict[PeerKey, int] = {}
        #: piece -> block offset -> (sender, digest of what it sent) for failed shared pieces
        self._suspects: dict[int, dict[int, tuple[PeerKey, bytes]]] = {}

    # -- queries -------------------------------------------------------------------------------

    def is_banned(self, ip: str, port: int = 0, peer_id: bytes | None = None) -> bool:
        if ip in self.banned_ips:
            return True
        if peer_id is not None and (ip, peer_id) in self._ids:
            return True
        return (ip, port) in self._endpoints

    def suspect_blocks(self, index: int) -> list[int]:
        """Offsets of piece ``index`` whose senders wait for the piece's good copy."""
        return list(self._suspects.get(index, ()))

    # -- events --------------------------------------------------------------------------------

    def piece_failed(self, index: int, blocks: Mapping[int, tuple[PeerKey, bytes]]) -> list[Ban]:
        """Piece ``index`` failed its hash check; ``blocks``: offset -> (sender, digest as received)."""
        senders = {peer for peer, _ in blocks.values()}
        if len(senders) == 1:
            return self._ban(next(iter(senders)), f"piece {index} failed its hash check")
        record = self._suspects.setdefault(index, {})
        record.update(blocks)
        out: list[Ban] = []
        for peer in senders:
            n = self._failures[peer] = self._failures.get(peer, 0) + 1
            if n >= self.shared_failures_limit:
                out += self._ban(peer, "too many failed pieces")
        return out

    def piece_passed(self, index: int, digest_of: Callable[[int], bytes]) -> list[Ban]:
        """Piece ``index`` passed; ``digest_of(offset)``: the good block's digest (same function)."""
        record = self._suspects.pop(index, None)
        out: list[Ban] = []
        for begin, (peer, digest) in (record or {}).items():
            if digest_of(begin) != digest:
                out += self._ban(peer, f"sent corrupt data for piece {index}")
        return out

    def bad_data(self, peer: PeerKey, reason: str) -> list[Ban]:
        """``peer`` sent something that is wrong on its own, with no other sender to share the blame
        (a BEP 52 hash set that does not lead to the file's pieces root): banned at once, like the
        sole sender of a piece that failed."""
        return self._ban(peer, reason)

    # -- helpers -------------------------------------------------------------------------------

    def _ban(self, peer: PeerKey, reason: str) -> list[Ban]:
        if peer in self.banned_peers or peer.ip in self.banned_ips:
            return []
        self.banned_peers |= {peer}
        self._ids |= {(peer.ip, peer.peer_id)}
        self._endpoints |= {(peer.ip, peer.port)}
        n = self._per_ip[peer.ip] = self._per_ip.get(peer.ip, 0) + 1
        if n >= self.ban_ip_after:
            self.banned_ips |= {peer.ip}
            return [Ban(peer, f"{reason} ({n} bad peers from this IP)", whole_ip=True)]
        return [Ban(peer, reason)]
