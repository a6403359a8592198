"""HTTP tracker protocol (BEP 3 announce, BEP 23 compact peers, BEP 7 ``peers6``, BEP 48 scrape),
sans-I/O, in both directions.

Client side: :func:`announce_url` / :func:`encode_announce_query` build the GET URL (``info_hash``
and ``peer_id`` percent-encoded byte for byte), :func:`decode_announce_response` and
:func:`decode_scrape_response` read the bencoded bodies. Server side: :func:`parse_announce_query`
and :func:`parse_scrape_query` read a raw query string, :func:`encode_announce_response` and
:func:`encode_scrape_response` write bodies.

Every malformed input raises :class:`TrackerProtocolError` (``hint=400`` for query strings) and
nothing else. A tracker's ``failure reason`` is not an exception here: it decodes to a
:class:`FailureResponse` event, and the client turns it into ``TrackerError``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit, urlunsplit

from bitswarm.bencode import BencodeEncodeError, BencodeError, decode, encode
from bitswarm.tracker._common import Event, TrackerEncodeError, TrackerProtocolError

__all__ = [
    "MAX_QUERY_LENGTH",
    "MAX_SCRAPE_HASHES",
    "AnnounceRequest",
    "AnnounceResponse",
    "FailureResponse",
    "Peer",
    "ScrapeResponse",
    "ScrapeStats",
    "announce_url",
    "decode_announce_response",
    "decode_scrape_response",
    "encode_announce_query",
    "encode_announce_response",
    "encode_scrape_response",
    "parse_announce_query",
    "parse_scrape_query",
    "scrape_url",
    "scrape_url_from_announce",
]

#: Longest query string a server parses (libtorrent's announces are ~300 characters).
MAX_QUERY_LENGTH: Final = 8192
#: Most ``info_hash`` parameters accepted in one scrape query.
MAX_SCRAPE_HASHES: Final = 128
_MAX_I64: Final = 2**63 - 1
_MAX_I32: Final = 2**31 - 1
_MAX_TEXT: Final = 256


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    """A BEP 3 announce. ``key`` (BEP 3 optional) and ``trackerid`` are echoed opaque strings.

    ``key`` is opaque: parsed as text when it is UTF-8, else kept as the raw bytes (aria2c sends
    4 random bytes percent-encoded); either form encodes back to the same query value.
    """

    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int
    downloaded: int
    left: int
    event: Event = Event.NONE
    compact: bool = True  # BEP 23
    no_peer_id: bool = False
    numwant: int | None = None
    key: str | bytes | None = None
    trackerid: bytes | None = None
    ip: str | None = None
    #: BEP 7: our IPv4 / IPv6 address, so a tracker reached over one family learns the other
    ipv4: str | None = None
    ipv6: str | None = None


@dataclass(frozen=True, slots=True)
class Peer:
    """A peer from an announce reply; ``peer_id`` only in the dictionary form."""

    ip: str
    port: int
    peer_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    """A successful announce reply. ``peers`` merges BEP 23 ``peers``, BEP 7 ``peers6`` and the
    dictionary form."""

    interval: int
    peers: tuple[Peer, ...] = ()
    min_interval: int | None = None
    tracker_id: bytes | None = None
    complete: int | None = None
    incomplete: int | None = None
    warning: str | None = None
    #: BEP 24 ``external ip``: the address the tracker saw the announce come from
    external_ip: str | None = None


@dataclass(frozen=True, slots=True)
class FailureResponse:
    """BEP 3 ``failure reason``: the tracker refused; no other key is meaningful."""

    reason: str


@dataclass(frozen=True, slots=True)
class ScrapeStats:
    """BEP 48 per-torrent scrape counters."""

    complete: int
    downloaded: int
    incomplete: int


@dataclass(frozen=True)
class ScrapeResponse:
    """BEP 48 scrape reply: ``files`` maps 20-byte info-hash → counters."""

    files: Mapping[bytes, ScrapeStats] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- client side


def _q(value: bytes | str) -> str:
    return quote_from_bytes(value.encode() if isinstance(value, str) else value, safe="")


def encode_announce_query(req: AnnounceRequest) -> str:
    """The query string of a BEP 3 announce (without ``?``)."""
    if len(req.info_hash) != 20 or len(req.peer_id) != 20:
        raise TrackerEncodeError("info_hash and peer_id must be 20 bytes")
    for name in ("port", "uploaded", "downloaded", "left"):
        value = getattr(req, name)
        if not 0 <= value <= (0xFFFF if name == "port" else _MAX_I64):
            raise TrackerEncodeError(f"{name}={value} out of range")
    parts = [
        f"info_hash={_q(req.info_hash)}",
        f"peer_id={_q(req.peer_id)}",
        f"port={req.port}",
        f"uploaded={req.uploaded}",
        f"downloaded={req.downloaded}",
        f"left={req.left}",
    ]
    if req.compact:
        parts.append("compact=1")
    if req.no_peer_id:
        parts.append("no_peer_id=1")
    if req.event is not Event.NONE:
        parts.append(f"event={req.event.http_name}")
    if req.numwant is not None:
        if not 0 <= req.numwant <= _MAX_I32:
            raise TrackerEncodeError(f"numwant={req.numwant} out of range")
        parts.append(f"numwant={req.numwant}")
    if req.key is not None:
        parts.append(f"key={_q(req.key)}")
    if req.trackerid is not None:
        parts.append(f"trackerid={_q(req.trackerid)}")
    if req.ip is not None:
        parts.append(f"ip={_q(req.ip)}")
    if req.ipv4 is not None:
        parts.append(f"ipv4={_q(req.ipv4)}")
    if req.ipv6 is not None:
        parts.append(f"ipv6={_q(req.ipv6)}")
    return "&".join(parts)


def _append_query(url: str, query: str) -> str:
    base = url.partition("#")[0]  # a fragment is never sent
    if not query:
        return base
    sep = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        sep = ""
    return f"{base}{sep}{query}"


def announce_url(url: str, req: AnnounceRequest) -> str:
    """The full GET URL: ``url`` (which may already carry a query, e.g. a passkey) + the announce."""
    return _append_query(url, encode_announce_query(req))


def scrape_url_from_announce(url: str) -> str | None:
    """BEP 48: replace the last path segment's leading ``announce`` with ``scrape``; else None."""
    parts = urlsplit(url)
    head, slash, last = parts.path.rpartition("/")
    if not slash or not last.startswith("announce"):
        return None
    path = f"{head}/scrape{last[len('announce') :]}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def scrape_url(url: str, info_hashes: Iterable[bytes]) -> str:
    """The full GET URL of a BEP 48 scrape of ``info_hashes`` (none = full scrape)."""
    hashes = list(info_hashes)
    if any(len(h) != 20 for h in hashes):
        raise TrackerEncodeError("scrape info-hashes must be 20 bytes")
    return _append_query(url, "&".join(f"info_hash={_q(h)}" for h in hashes))


def _bdecode_dict(body: bytes) -> dict[bytes, Any]:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TrackerProtocolError("tracker body must be bytes")
    try:
        value = decode(bytes(body), strict=False)
    except BencodeError as exc:
        raise TrackerProtocolError(f"tracker body is not bencoded: {exc}") from None
    except RecursionError:  # pragma: no cover - the decoder bounds depth itself
        raise TrackerProtocolError("tracker body nests too deep") from None
    if not isinstance(value, dict):
        raise TrackerProtocolError("tracker body is not a bencoded dictionary")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, bytes):
        raise TrackerProtocolError(f"{name!r} is not a string")
    return value.decode("utf-8", errors="replace")


def _count(d: Mapping[bytes, Any], key: bytes, *, required: bool = False, default: int | None = None) -> Any:
    value = d.get(key)
    if value is None:
        if required:
            raise TrackerProtocolError(f"tracker reply lacks {key.decode()!r}")
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_I64:
        raise TrackerProtocolError(f"{key.decode()!r} is not a non-negative integer")
    return value


def _compact(blob: object, ipv6: bool) -> list[Peer]:
    size = 18 if ipv6 else 6
    if not isinstance(blob, bytes) or len(blob) % size:
        raise TrackerProtocolError(f"compact {'peers6' if ipv6 else 'peers'} is not n*{size} bytes")
    if not ipv6:
        b = blob
        return [
            Peer(f"{b[i]}.{b[i + 1]}.{b[i + 2]}.{b[i + 3]}", (b[i + 4] << 8) | b[i + 5])
            for i in range(0, len(b), 6)
        ]
    out = []
    for i in range(0, len(blob), size):
        raw = blob[i : i + size - 2]
        addr = ipaddress.IPv6Address(raw) if ipv6 else ipaddress.IPv4Address(raw)
        out.append(Peer(str(addr), int.from_bytes(blob[i + size - 2 : i + size], "big")))
    return out


def _dict_peers(items: object) -> list[Peer]:
    if not isinstance(items, list):
        raise TrackerProtocolError("'peers' is neither a compact string nor a list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise TrackerProtocolError("a dictionary-model peer is not a dictionary")
        ip = _text(item.get(b"ip"), "ip")
        port = item.get(b"port")
        if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            raise TrackerProtocolError("peer port is not 0..65535")
        pid = item.get(b"peer id")
        if pid is not None and not isinstance(pid, bytes):
            raise TrackerProtocolError("'peer id' is not a string")
        out.append(Peer(ip, port, pid))
    return out


def decode_announce_response(body: bytes) -> AnnounceResponse | FailureResponse:
    """Read a bencoded announce reply (BEP 3, 7, 23). Raises only :class:`TrackerProtocolError`."""
    d = _bdecode_dict(body)
    if b"failure reason" in d:
        return FailureResponse(_text(d[b"failure reason"], "failure reason"))
    peers: list[Peer] = []
    raw = d.get(b"peers")
    if raw is not None:
        peers += _compact(raw, False) if isinstance(raw, bytes) else _dict_peers(raw)
    if b"peers6" in d:
        peers += _compact(d[b"peers6"], True)
    tid = d.get(b"tracker id")
    if tid is not None and not isinstance(tid, bytes):
        raise TrackerProtocolError("'tracker id' is not a string")
    warning = d.get(b"warning message")
    ext = d.get(b"external ip")  # BEP 24: 4 or 16 bytes; anything else is ignored (it is advisory)
    external_ip = str(ipaddress.ip_address(ext)) if isinstance(ext, bytes) and len(ext) in (4, 16) else None
    return AnnounceResponse(
        interval=_count(d, b"interval", required=True),
        peers=tuple(peers),
        min_interval=_count(d, b"min interval"),
        tracker_id=tid,
        complete=_count(d, b"complete"),
        incomplete=_count(d, b"incomplete"),
        warning=None if warning is None else _text(warning, "warning message"),
        external_ip=external_ip,
    )


def decode_scrape_response(body: bytes) -> ScrapeResponse | FailureResponse:
    """Read a bencoded BEP 48 scrape reply. Missing counters read as 0."""
    d = _bdecode_dict(body)
    if b"failure reason" in d:
        return FailureResponse(_text(d[b"failure reason"], "failure reason"))
    files = d.get(b"files", {})
    if not isinstance(files, dict):
        raise TrackerProtocolError("'files' is not a dictionary")
    out: dict[bytes, ScrapeStats] = {}
    for info_hash, stats in files.items():
        if len(info_hash) != 20 or not isinstance(stats, dict):
            raise TrackerProtocolError("scrape 'files' entry is not 20-byte hash → dictionary")
        out[info_hash] = ScrapeStats(
            _count(stats, b"complete", default=0),
            _count(stats, b"downloaded", default=0),
            _count(stats, b"incomplete", default=0),
        )
    return ScrapeResponse(out)


# ------------------------------------------------------------------------------------- server side


def _pairs(query: str | bytes) -> list[tuple[str, bytes]]:
    if isinstance(query, bytes | bytearray | memoryview):
        try:
            query = bytes(query).decode("ascii")
        except UnicodeDecodeError:
            raise TrackerProtocolError("query string is not ASCII", hint=400) from None
    if not isinstance(query, str):
        raise TrackerProtocolError("query string must be str or bytes", hint=400)
    if len(query) > MAX_QUERY_LENGTH:
        raise TrackerProtocolError(f"query string longer than {MAX_QUERY_LENGTH}", hint=400)
    out = []
    for part in query.lstrip("?").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        try:
            out.append((name, unquote_to_bytes(value)))
        except (ValueError, TypeError):  # pragma: no cover - unquote_to_bytes is lenient
            raise TrackerProtocolError(f"bad percent-encoding in {name!r}", hint=400) from None
    return out


def _int(value: bytes, name: str, hi: int) -> int:
    if not value.isdigit() or len(value) > 20:
        raise TrackerProtocolError(f"{name} is not a non-negative integer", hint=400)
    number = int(value)
    if number > hi:
        raise TrackerProtocolError(f"{name}={number} exceeds {hi}", hint=400)
    return number


def _str(value: bytes, name: str) -> str:
    if len(value) > _MAX_TEXT:
        raise TrackerProtocolError(f"{name} longer than {_MAX_TEXT} bytes", hint=400)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise TrackerProtocolError(f"{name} is not UTF-8", hint=400) from None


def _opaque(value: bytes, name: str) -> str | bytes:
    """An opaque parameter (``key``): text when UTF-8, else the raw bytes; never an error but length."""
    if len(value) > _MAX_TEXT:
        raise TrackerProtocolError(f"{name} longer than {_MAX_TEXT} bytes", hint=400)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def parse_announce_query(query: str | bytes) -> AnnounceRequest:
    """Parse the raw query string of ``GET /announce?...`` (the server side of BEP 3).

    ``info_hash`` and ``peer_id`` must unquote to exactly 20 bytes; ``port``, ``uploaded``,
    ``downloaded`` and ``left`` are required non-negative integers; a repeated parameter and an
    unknown ``event`` are errors; unknown parameters are ignored.
    """
    seen: dict[str, bytes] = {}
    for name, value in _pairs(query):
        if name in seen:
            raise TrackerProtocolError(f"parameter {name!r} repeated", hint=400)
        seen[name] = value
    for name in ("info_hash", "peer_id", "port", "uploaded", "downloaded", "left"):
        if name not in seen:
            raise TrackerProtocolError(f"missing {name!r}", hint=400)
    if len(seen["info_hash"]) != 20:
        raise TrackerProtocolError("info_hash is not 20 bytes", hint=400)
    if len(seen["peer_id"]) != 20:
        raise TrackerProtocolError("peer_id is not 20 bytes", hint=400)
    event = Event.from_http_name(_str(seen.get("event", b""), "event"))
    trackerid = seen.get("trackerid")
    if trackerid is not None and len(trackerid) > _MAX_TEXT:
        raise TrackerProtocolError("trackerid too long", hint=400)
    return AnnounceRequest(
        info_hash=seen["info_hash"],
        peer_id=seen["peer_id"],
        port=_int(seen["port"], "port", 0xFFFF),
        uploaded=_int(seen["uploaded"], "uploaded", _MAX_I64),
        downloaded=_int(seen["downloaded"], "downloaded", _MAX_I64),
        left=_int(seen["left"], "left", _MAX_I64),
        event=event,
        compact=seen.get("compact", b"0") == b"1",
        no_peer_id=seen.get("no_peer_id", b"0") == b"1",
        numwant=_int(seen["numwant"], "numwant", _MAX_I32) if "numwant" in seen else None,
        key=_opaque(seen["key"], "key") if "key" in seen else None,
        trackerid=trackerid,
        ip=_str(seen["ip"], "ip") if "ip" in seen else None,
        ipv4=_str(seen["ipv4"], "ipv4") if "ipv4" in seen else None,
        ipv6=_str(seen["ipv6"], "ipv6") if "ipv6" in seen else None,
    )


def parse_scrape_query(query: str | bytes) -> tuple[bytes, ...]:
    """The info-hashes of ``GET /scrape?info_hash=..&info_hash=..`` (BEP 48); () = full scrape."""
    hashes = []
    for name, value in _pairs(query):
        if name != "info_hash":
            continue
        if len(value) != 20:
            raise TrackerProtocolError("info_hash is not 20 bytes", hint=400)
        hashes.append(value)
        if len(hashes) > MAX_SCRAPE_HASHES:
            raise TrackerProtocolError(f"more than {MAX_SCRAPE_HASHES} hashes in one scrape", hint=400)
    return tuple(hashes)


def _encode(value: dict[bytes, Any]) -> bytes:
    try:
        return encode(value)
    except BencodeEncodeError as exc:
        raise TrackerEncodeError(str(exc)) from None


def encode_announce_response(
    resp: AnnounceResponse | FailureResponse, *, compact: bool = True, no_peer_id: bool = False
) -> bytes:
    """Bencode a reply. ``compact``: IPv4 peers as BEP 23 ``peers``, IPv6 as BEP 7 ``peers6``
    (a peer whose ``ip`` is a host name cannot be compact); else the BEP 3 list of dictionaries."""
    if isinstance(resp, FailureResponse):
        return _encode({b"failure reason": resp.reason.encode()})
    d: dict[bytes, Any] = {b"interval": resp.interval}
    for key, value in (
        (b"min interval", resp.min_interval),
        (b"complete", resp.complete),
        (b"incomplete", resp.incomplete),
        (b"tracker id", resp.tracker_id),
        (b"warning message", None if resp.warning is None else resp.warning.encode()),
    ):
        if value is not None:
            d[key] = value
    if compact:
        v4, v6 = bytearray(), bytearray()
        for peer in resp.peers:
            try:
                addr = ipaddress.ip_address(peer.ip)
            except ValueError:
                raise TrackerEncodeError(f"peer {peer.ip!r} is not an IP address") from None
            if not 0 <= peer.port <= 0xFFFF:
                raise TrackerEncodeError(f"peer port {peer.port} out of range")
            (v6 if addr.version == 6 else v4).extend(addr.packed + peer.port.to_bytes(2, "big"))
        d[b"peers"] = bytes(v4)
        if v6:
            d[b"peers6"] = bytes(v6)
    else:
        peers = []
        for peer in resp.peers:
            entry: dict[bytes, Any] = {b"ip": peer.ip.encode(), b"port": peer.port}
            if peer.peer_id is not None and not no_peer_id:
                entry[b"peer id"] = peer.peer_id
            peers.append(entry)
        d[b"peers"] = peers
    return _encode(d)


def encode_scrape_response(resp: ScrapeResponse | FailureResponse) -> bytes:
    """Bencode a BEP 48 scrape reply."""
    if isinstance(resp, FailureResponse):
        return _encode({b"failure reason": resp.reason.encode()})
    return _encode(
        {
            b"files": {
                h: {b"complete": s.complete, b"downloaded": s.downloaded, b"incomplete": s.incomplete}
                for h, s in resp.files.items()
            }
        }
    )
