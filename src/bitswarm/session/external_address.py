"""Our external (public) address, decided by consensus of what others report; sans I/O.

Four kinds of source say where the internet sees us:

* ``mapping`` — the home router that mapped our port (UPnP ``GetExternalIPAddress``, a NAT-PMP
  address answer or a PCP ``MAP`` reply); it knows its own outside address, so one report decides;
* ``tracker`` — BEP 24 ``external ip`` in an HTTP tracker's announce reply;
* ``peer`` — BEP 10 ``yourip`` in a peer's extended handshake;
* ``dht`` — BEP 42 ``ip`` in a DHT node's KRPC response.

Each voter (a mapping method, a tracker host, a peer's or a node's IP) has one vote, its latest; the
last :attr:`ExternalAddressVote.max_voters` voters of each source are kept. An address's score is the
sum of its voters' :data:`WEIGHTS`; the best-scoring address of a family (IPv4, IPv6) becomes our
address once it scores :attr:`~ExternalAddressVote.threshold`, and a decided address is replaced only
by one scoring strictly more (no flapping on a tie). A decided address that voters leave stays while
no address scores more than it (even below the threshold); once another scores more it is replaced
by that one if it is past the threshold, else we are undecided again. With the defaults one mapping
or one tracker decides, peers and DHT nodes need three distinct voters.

Reports of addresses that cannot be anyone's external address are dropped: unspecified, loopback,
multicast, link-local, private (BEP 42's exempt blocks) and shared CGN space (``100.64.0.0/10``: a
router behind a carrier NAT reports it, and nobody outside can dial it).

Nothing here does I/O or reads a clock: :meth:`ExternalAddressVote.add` takes one report and says
whether the decided address of its family changed.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

from bitswarm.dht.bep42 import is_local_address

__all__ = ["SOURCES", "WEIGHTS", "ExternalAddressVote", "Report", "usable_external_address"]

#: the kinds of source, strongest first
SOURCES = ("mapping", "tracker", "peer", "dht")
#: what one voter of each source counts
WEIGHTS: dict[str, int] = {"mapping": 8, "tracker": 3, "peer": 1, "dht": 1}

_CGN = ipaddress.IPv4Network("100.64.0.0/10")


def usable_external_address(address: str) -> str | None:
    """``address`` in canonical text form if it can be a host's external address, else None."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local:
        return None
    if isinstance(ip, ipaddress.IPv4Address) and (ip in _CGN or ip.packed[0] == 0 or ip.is_reserved):
        return None
    text = str(ip)
    if is_local_address(text):
        return None
    return text


@dataclass(frozen=True)
class Report:
    """One voter's latest report."""

    source: str
    voter: str
    address: str


class ExternalAddressVote:
    """The consensus; see the module docstring."""

    def __init__(self, *, threshold: int = 3, max_voters: int = 50) -> None:
        if threshold < 1 or max_voters < 1:
            raise ValueError("threshold and max_voters must be positive")
        self.threshold = threshold
        self.max_voters = max_voters
        #: source -> voter -> address (insertion order: the oldest voter is evicted first)
        self._votes: dict[str, OrderedDict[str, str]] = {s: OrderedDict() for s in SOURCES}
        self._decided: dict[int, str] = {}

    def add(self, address: str, source: str, voter: str) -> bool:
        """Count ``voter``'s report (replacing its earlier one) that we are at ``address``. True when
        the decided address of that family changed. An unusable address is ignored (False); an
        unknown ``source`` is a ValueError."""
        if source not in self._votes:
            raise ValueError(f"unknown external-address source {source!r}")
        text = usable_external_address(address)
        if text is None:
            return False
        votes = self._votes[source]
        votes.pop(voter, None)
        votes[voter] = text
        while len(votes) > self.max_voters:
            votes.popitem(last=False)
        return self._decide(_family(text))

    def withdraw(self, source: str, voter: str) -> bool:
        """Forget ``voter``'s report (a mapping removed, a network change); True if the decided
        address of its family changed."""
        address = self._votes.get(source, OrderedDict()).pop(voter, None)
        return address is not None and self._decide(_family(address))

    def _decide(self, family: int) -> bool:
        scores = self.scores(family)
        current = self._decided.get(family)
        if not scores:
            changed = current is not None
            self._decided.pop(family, None)
            return changed
        best = max(scores, key=lambda a: scores[a])
        top = scores[best]
        if current is not None and current in scores and scores[current] >= top:
            return False  # a tie keeps what we have
        if top < self.threshold:
            if current is not None:  # no longer the best, and no address is confirmed yet
                del self._decided[family]
                return True
            return False
        self._decided[family] = best
        return best != current

    def scores(self, family: int | None = None) -> dict[str, int]:
        """Each reported address's score (of one family: 4 or 6)."""
        out: dict[str, int] = {}
        for source, votes in self._votes.items():
            for address in votes.values():
                if family is None or _family(address) == family:
                    out[address] = out.get(address, 0) + WEIGHTS[source]
        return out

    def address(self, family: int = 4) -> str | None:
        """The decided external address of ``family`` (4 or 6), None while undecided."""
        return self._decided.get(family)

    @property
    def addresses(self) -> list[str]:
        """Every decided address, IPv4 first."""
        return [self._decided[f] for f in (4, 6) if f in self._decided]

    def reports(self) -> list[Report]:
        return [Report(s, v, a) for s, votes in self._votes.items() for v, a in votes.items()]

    def status(self) -> dict[str, object]:
        """For status displays: the decided addresses and who voted for what (counts per source)."""
        by_address: dict[str, dict[str, int]] = {}
        for r in self.reports():
            counts = by_address.setdefault(r.address, {})
            counts[r.source] = counts.get(r.source, 0) + 1
        return {
            "ipv4": self.address(4),
            "ipv6": self.address(6),
            "votes": {a: {"score": self.scores().get(a, 0), **c} for a, c in by_address.items()},
        }


def _family(address: str) -> int:
    return 6 if ":" in address else 4
