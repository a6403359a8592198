"""Types shared by both tracker codecs and the client: the announce event and the error hierarchy.

Pure definitions, no I/O.
"""

from __future__ import annotations

from enum import IntEnum

from bitswarm.errors import BitswarmError, LocalProtocolError, RemoteProtocolError


class Event(IntEnum):
    """The announce ``event`` (BEP 3). The integer values are BEP 15's wire values."""

    NONE = 0
    COMPLETED = 1
    STARTED = 2
    STOPPED = 3

    @property
    def http_name(self) -> str:
        """The BEP 3 query value (``""`` for a regular announce, which omits the parameter)."""
        return "" if self is Event.NONE else self.name.lower()

    @classmethod
    def from_http_name(cls, name: str) -> Event:
        """Inverse of :attr:`http_name`; ``"empty"`` (used by some clients) and ``""`` mean NONE."""
        if name in ("", "empty"):
            return cls.NONE
        for event in (cls.COMPLETED, cls.STARTED, cls.STOPPED):
            if name == event.http_name:
                return event
        raise TrackerProtocolError(f"unknown announce event {name!r}", hint=400)


class TrackerProtocolError(RemoteProtocolError):
    """A tracker datagram, HTTP body or announce query string breaks BEP 3/15/23/48.

    ``hint`` carries an HTTP status (400) when a server should reply with one.
    """


class TrackerEncodeError(LocalProtocolError):
    """Our side tried to encode a tracker message with an out-of-range or malformed field."""


class TrackerError(BitswarmError):
    """The tracker answered with a failure: BEP 3 ``failure reason`` or a BEP 15 error datagram.

    ``reason`` is the tracker's text.
    """

    def __init__(self, reason: str, *, url: str = "") -> None:
        super().__init__(f"{url}: {reason}" if url else reason)
        self.reason = reason
        self.url = url


class TrackerUnreachable(BitswarmError):
    """No usable answer came back: connection refused, DNS failure, ICMP unreachable, HTTP status."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(f"{url}: {message}" if url else message)
        self.url = url


class TrackerTimeout(TrackerUnreachable, TimeoutError):
    """The tracker did not answer in time (after every BEP 15 retransmission for UDP)."""


class TrackerUrlError(BitswarmError, ValueError):
    """An announce URL we cannot use: unknown scheme (wss, dht), missing host or port."""


#: Everything a single tracker can fail with; the BEP 12 tier logic moves on after any of these.
TRACKER_FAILURES: tuple[type[Exception], ...] = (
    TrackerError,
    TrackerUnreachable,
    TrackerProtocolError,
    TrackerUrlError,
)
