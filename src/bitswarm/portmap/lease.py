"""The life of one port mapping, sans I/O: one state table and the renewal schedule.

A :class:`MappingLease` is one (method, protocol, port): it starts ``PENDING``; each attempt's outcome
(:class:`Outcome`) moves it through :data:`TRANSITIONS`; :meth:`MappingLease.due` says when the next
attempt should run: half the granted lifetime after a grant (capped by ``max_renew_interval``), an
exponential back-off after a failure (a longer one when no gateway answered at all), never after
``REMOVED``. Time is whatever the caller's clock says: nothing here sleeps or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bitswarm.errors import LocalProtocolError

__all__ = ["TRANSITIONS", "MappingLease", "Outcome", "Phase", "RenewalPolicy"]


class Phase(Enum):
    PENDING = "pending"  #: not asked yet
    MAPPED = "mapped"  #: the gateway granted it; renewed before the lease runs out
    FAILED = "failed"  #: the last attempt failed; retried after a back-off
    UNAVAILABLE = "unavailable"  #: no gateway answered for this method; asked again, rarely
    REMOVED = "removed"  #: unmapped on stop; final


class Outcome(Enum):
    GRANTED = "granted"
    REFUSED = "refused"  #: the gateway answered with an error, or the exchange failed midway
    NO_SERVICE = "no_service"  #: nothing answered
    REMOVED = "removed"


#: (phase, outcome) -> next phase; a missing pair is a LocalProtocolError
TRANSITIONS: dict[tuple[Phase, Outcome], Phase] = {
    **{
        (p, Outcome.GRANTED): Phase.MAPPED
        for p in (Phase.PENDING, Phase.MAPPED, Phase.FAILED, Phase.UNAVAILABLE)
    },
    **{
        (p, Outcome.REFUSED): Phase.FAILED
        for p in (Phase.PENDING, Phase.MAPPED, Phase.FAILED, Phase.UNAVAILABLE)
    },
    **{
        (p, Outcome.NO_SERVICE): Phase.UNAVAILABLE
        for p in (Phase.PENDING, Phase.MAPPED, Phase.FAILED, Phase.UNAVAILABLE)
    },
    **{(p, Outcome.REMOVED): Phase.REMOVED for p in Phase},
}


@dataclass(frozen=True)
class RenewalPolicy:
    """How long to ask for and when to ask again (seconds)."""

    lifetime: int = 3600  #: requested lease (libtorrent asks 3600 s too)
    max_renew_interval: float = 1800.0  #: renew at least this often, whatever the lease
    min_renew_interval: float = 1.0  #: never renew more often (a gateway granting 1 s leases)
    permanent_renew_interval: float = 1800.0  #: refresh of a permanent (lifetime 0) UPnP mapping
    retry_initial: float = 10.0  #: first back-off after a refusal, doubled per failure
    retry_max: float = 900.0
    unavailable_retry: float = 300.0  #: re-probe for a gateway (a network change may bring one)

    def __post_init__(self) -> None:
        if not 0 < self.lifetime <= 0xFFFFFFFF:
            raise ValueError(f"lease lifetime {self.lifetime} s is not in 1..2**32-1")
        waits = (self.max_renew_interval, self.min_renew_interval, self.permanent_renew_interval,
                 self.retry_initial, self.retry_max, self.unavailable_retry)  # fmt: skip
        if min(waits) <= 0:
            raise ValueError("every renewal and retry interval must be positive")


@dataclass
class MappingLease:
    """One mapping's state: phase, what the gateway granted, the last error, when to act next."""

    method: str
    protocol: str
    internal_port: int
    phase: Phase = Phase.PENDING
    external_ip: str | None = None
    external_port: int | None = None
    lifetime: int | None = None  #: seconds granted (0: permanent)
    granted_at: float | None = None
    error: str | None = None
    failures: int = 0
    attempts: int = 0
    renewals: int = 0  #: grants after the first one
    next_at: float = 0.0

    def _move(self, outcome: Outcome) -> None:
        try:
            self.phase = TRANSITIONS[(self.phase, outcome)]
        except KeyError:
            raise LocalProtocolError(f"mapping {self.phase.value} cannot take {outcome.value}") from None

    def granted(
        self, now: float, policy: RenewalPolicy, external_ip: str | None, external_port: int, lifetime: int
    ) -> None:
        was_mapped = self.phase is Phase.MAPPED
        self._move(Outcome.GRANTED)
        self.attempts += 1
        self.renewals += was_mapped
        self.external_ip = external_ip or self.external_ip
        self.external_port = external_port
        self.lifetime = lifetime
        self.granted_at = now
        self.error = None
        self.failures = 0
        if lifetime == 0:
            interval = policy.permanent_renew_interval
        else:
            interval = min(lifetime / 2, policy.max_renew_interval)
        self.next_at = now + max(policy.min_renew_interval, interval)

    def failed(self, now: float, policy: RenewalPolicy, error: str, *, no_service: bool = False,
               retry_after: float | None = None) -> None:  # fmt: skip
        self._move(Outcome.NO_SERVICE if no_service else Outcome.REFUSED)
        self.attempts += 1
        self.failures += 1
        self.error = error
        if no_service:
            delay = policy.unavailable_retry
        else:
            delay = min(policy.retry_initial * 2 ** min(self.failures - 1, 20), policy.retry_max)
            if retry_after:
                delay = max(delay, min(retry_after, policy.retry_max))
        # a mapping still inside its lease is kept until it runs out: retry before that if sooner
        if self.granted_at is not None and self.lifetime:
            expiry = self.granted_at + self.lifetime
            if now < expiry:
                delay = min(delay, max(policy.min_renew_interval, (expiry - now) / 2))
            else:
                self.external_port = None
        self.next_at = now + delay

    def removed(self) -> None:
        self._move(Outcome.REMOVED)
        self.external_port = None
        self.next_at = float("inf")

    def due(self, now: float) -> bool:
        return self.phase is not Phase.REMOVED and now >= self.next_at

    @property
    def active(self) -> bool:
        """The gateway holds a mapping we made (to remove on stop)."""
        return self.external_port is not None and self.phase is not Phase.REMOVED
