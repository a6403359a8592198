"""Fast path for BEP 3 announce query strings, exactly equivalent to the codec's parser.

:func:`parse_announce` handles the common, well-formed query in a few microseconds; anything
unusual (repeated or missing parameters, non-ASCII, over-long values, percent-encoded text fields,
numbers out of range...) falls back to :func:`bitswarm.tracker.http_codec.parse_announce_query`,
which either accepts it or raises the precise :class:`TrackerProtocolError`. ``key`` is opaque
and ignored (the codec accepts it as raw bytes, e.g. aria2c's binary key). A differential
property test (``tests/tracker/test_tracker_server_query.py``) checks both agree.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from bitswarm.tracker.http_codec import MAX_QUERY_LENGTH, parse_announce_query

_EVENTS = {b"": 0, b"empty": 0, b"completed": 1, b"started": 2, b"stopped": 3}
_CACHE_MAX = 65536
_hash_cache: dict[bytes, bytes] = {}


class Announce(NamedTuple):
    """The fields of a BEP 3 announce the server uses. ``event`` is the BEP 15 number."""

    info_hash: bytes
    peer_id: bytes
    port: int
    left: int
    event: int
    compact: bool
    no_peer_id: bool
    numwant: int | None
    ip: str | None
    #: BEP 7 ``ipv4=`` / ``ipv6=``: the client's address (or endpoint) of the other family
    ipv4: str | None = None
    ipv6: str | None = None


def _slow(query: bytes) -> Announce:
    req = parse_announce_query(query)
    return Announce(
        req.info_hash,
        req.peer_id,
        req.port,
        req.left,
        int(req.event),
        req.compact,
        req.no_peer_id,
        req.numwant,
        req.ip,
        req.ipv4,
        req.ipv6,
    )


def _text(value: bytes) -> str:
    """A short text parameter, percent-decoded as the codec does; ValueError: let the codec judge."""
    if len(value) > 256:
        raise ValueError(value)
    return (unquote_to_bytes(value) if b"%" in value else value).decode("utf-8")


def _digits(value: bytes | None, width: int) -> bool:
    return value is not None and value.isdigit() and len(value) <= width


def parse_announce(query: bytes) -> Announce:
    """Parse ``info_hash=..&peer_id=..&port=..`` (no leading ``?``). Raises TrackerProtocolError."""
    if len(query) > MAX_QUERY_LENGTH or not query.isascii():
        return _slow(query)
    try:
        params = dict([part.split(b"=", 1) for part in query.split(b"&")])
    except ValueError:
        return _slow(query)
    if len(params) != query.count(b"&") + 1:
        return _slow(query)  # repeated or empty parameter
    get = params.get
    raw = get(b"info_hash")
    if raw is None:
        return _slow(query)
    info_hash = _hash_cache.get(raw)
    if info_hash is None:
        info_hash = unquote_to_bytes(raw)
        if len(info_hash) != 20:
            return _slow(query)
        if len(_hash_cache) >= _CACHE_MAX:
            _hash_cache.clear()
        _hash_cache[raw] = info_hash
    peer_id = get(b"peer_id")
    if peer_id is None:
        return _slow(query)
    if b"%" in peer_id:
        peer_id = unquote_to_bytes(peer_id)
    if len(peer_id) != 20:
        return _slow(query)
    port = get(b"port")
    left = get(b"left")
    if not (
        _digits(port, 5)
        and _digits(left, 18)
        and _digits(get(b"uploaded"), 18)
        and _digits(get(b"downloaded"), 18)
    ):
        return _slow(query)
    port_n = int(port)  # type: ignore[arg-type]
    if port_n > 0xFFFF:
        return _slow(query)
    event = _EVENTS.get(get(b"event", b""))
    if event is None:
        return _slow(query)
    numwant = get(b"numwant")
    if numwant is not None:
        if not _digits(numwant, 9):
            return _slow(query)
        numwant_n: int | None = int(numwant)
    else:
        numwant_n = None
    for name in (b"ip", b"trackerid"):
        value = get(name)
        if value is not None and (len(value) > 256 or b"%" in value):
            return _slow(query)
    ip = get(b"ip")
    ipv4 = get(b"ipv4")
    ipv6 = get(b"ipv6")
    if ipv4 is not None or ipv6 is not None:  # BEP 7, rare: percent-encoded (an IPv6 address's colons)
        try:
            ipv4_s = None if ipv4 is None else _text(ipv4)
            ipv6_s = None if ipv6 is None else _text(ipv6)
        except ValueError:
            return _slow(query)
    else:
        ipv4_s = ipv6_s = None
    return Announce(
        info_hash,
        peer_id,
        port_n,
        int(left),  # type: ignore[arg-type]
        event,
        get(b"compact", b"0") == b"1",
        get(b"no_peer_id", b"0") == b"1",
        numwant_n,
        None if ip is None else ip.decode("ascii"),
        ipv4_s,
        ipv6_s,
    )
