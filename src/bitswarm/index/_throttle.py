"""Login throttling of the index: per account and per client address, exponential lockout.

Every password check (native ``POST /api/v1/sessions``, the web UI's ``/login`` and ``/register``,
and the binary REGISTER / REGISTER_UPDATE / LOGIN / LOGOUT) asks :meth:`LoginThrottle.check` first
and reports the outcome. After ``account_free`` failures in a row for one username, or ``ip_free``
from one address, each further failure locks that key for ``base_delay * 2**k`` seconds (k = 0, 1,
…; at most ``max_delay``). While locked, attempts are refused with :class:`Throttled` *without*
checking the password, so guessing costs the attacker time and the server no argon2 work. A success
clears the account's count (not the address's: one good account must not launder guesses against
others). Checks in flight count too: a key gets at most as many concurrent checks as it has
failures left before the lockout (at least one), so a burst of parallel guesses cannot slip past the
count. A key with no failure for ``forget_after`` seconds starts over. At most ``max_keys`` keys
are remembered (oldest dropped), so a flood of made-up usernames cannot exhaust memory.

Time comes from the injected ``clock`` (tests move it instead of sleeping). The state lives in the
process, in front of either storage backend, so SQLite and PostgreSQL behave the same.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bitswarm.index._errors import Throttled


@dataclass(slots=True)
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    account_free: int = 5
    ip_free: int = 20
    base_delay: float = 1.0
    max_delay: float = 900.0
    forget_after: float = 3600.0
    max_keys: int = 100_000


class LoginThrottle:
    """See the module docstring. Keys are ``("user", name)`` and ``("ip", address)``."""

    def __init__(self, clock: Callable[[], float], policy: ThrottlePolicy | None = None) -> None:
        self.clock = clock
        self.policy = policy or ThrottlePolicy()
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()

    def _keys(self, username: str, ip: str | None) -> list[tuple[tuple[str, str], int]]:
        keys = [(("user", username), self.policy.account_free)]
        if ip:
            keys.append((("ip", ip), self.policy.ip_free))
        return keys

    def _record(self, key: tuple[str, str], now: float) -> _Record:
        record = self._records.get(key)
        if record is None or (now - record.last_failure > self.policy.forget_after and not record.in_flight):
            record = _Record()
            self._records[key] = record
        self._records.move_to_end(key)
        return record

    def begin(self, username: str, ip: str | None = None) -> None:
        """Before checking a password: Throttled if the account or the address is locked now (or has
        as many checks in flight as failures left); else the check counts as in flight until
        :meth:`end`."""
        now = self.clock()
        keys = self._keys(username, ip)
        for key, free in keys:
            record = self._record(key, now)
            wait = math.ceil(record.locked_until - now)
            if wait <= 0 and record.in_flight >= max(1, free - record.failures):
                wait = 1
            if wait > 0:
                what = "this account" if key[0] == "user" else "this address"
                raise Throttled(f"too many failed logins for {what}: retry in {wait} s", retry_after=wait)
        for key, _ in keys:
            self._records[key].in_flight += 1
        while len(self._records) > self.policy.max_keys:
            self._records.popitem(last=False)

    def end(self, username: str, ip: str | None, *, ok: bool) -> None:
        """After the check :meth:`begin` allowed: count a failure, or clear the account on success."""
        now = self.clock()
        for key, free in self._keys(username, ip):
            record = self._record(key, now)
            record.in_flight = max(0, record.in_flight - 1)
            if ok:
                if key[0] == "user":
                    record.failures = 0
                    record.locked_until = 0.0
                continue
            record.failures += 1
            record.last_failure = now
            if record.failures >= free:
                exponent = min(record.failures - free, 30)
                record.locked_until = now + min(self.policy.max_delay, self.policy.base_delay * 2**exponent)


__all__ = ["LoginThrottle", "ThrottlePolicy"]
