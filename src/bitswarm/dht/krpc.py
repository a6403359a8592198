"""KRPC, the DHT's bencoded-dict-over-UDP RPC (BEP 5), as a sans-I/O codec.

One datagram is one message: :class:`Query` (``y=q``), :class:`Response` (``y=r``) or :class:`Error`
(``y=e``). The transaction id ``t`` is opaque and echoed byte for byte. Top-level extras: ``v``
(client version), ``ip`` (BEP 42: the compact address the responder saw us at) and ``ro`` (BEP 43:
read-only sender).

:func:`decode` raises only :class:`KRPCError` (a :class:`~bitswarm.errors.RemoteProtocolError`) for
any malformed input; the node drops such datagrams without a reply (no amplification). Typed helpers
build and parse the arguments and results of ``ping``, ``find_node``, ``get_peers``,
``announce_peer`` (BEP 5), ``want``/``nodes6`` (BEP 32), ``get``/``put`` (BEP 44) and
``sample_infohashes`` (BEP 51).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from bitswarm.bencode import BencodeError
from bitswarm.bencode import decode as bdecode
from bitswarm.bencode import encode as bencode
from bitswarm.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ERROR_BAD_SIGNATURE",
    "ERROR_CAS_MISMATCH",
    "ERROR_GENERIC",
    "ERROR_METHOD_UNKNOWN",
    "ERROR_PROTOCOL",
    "ERROR_SALT_TOO_BIG",
    "ERROR_SEQ_TOO_LOW",
    "ERROR_SERVER",
    "ERROR_V_TOO_BIG",
    "Addr",
    "AnnouncePeerArgs",
    "Error",
    "FindNodeArgs",
    "GetArgs",
    "GetPeersArgs",
    "KRPCError",
    "Message",
    "NodeInfo",
    "PingArgs",
    "PutArgs",
    "Query",
    "QueryArgs",
    "Response",
    "ResponseBody",
    "SampleInfohashesArgs",
    "decode",
    "decode_compact_addr",
    "decode_nodes",
    "decode_nodes6",
    "encode",
    "encode_compact_addr",
    "encode_nodes",
    "encode_nodes6",
    "pack_ip",
    "parse_query",
    "parse_response",
]

#: ``(host, port)``: host is a dotted IPv4 or a compressed IPv6 string.
Addr = tuple[str, int]

# BEP 5 error codes.
ERROR_GENERIC: Final = 201
ERROR_SERVER: Final = 202
ERROR_PROTOCOL: Final = 203  # malformed packet, invalid arguments or bad token
ERROR_METHOD_UNKNOWN: Final = 204
# BEP 44 error codes.
ERROR_V_TOO_BIG: Final = 205
ERROR_BAD_SIGNATURE: Final = 206
ERROR_SALT_TOO_BIG: Final = 207
ERROR_CAS_MISMATCH: Final = 301
ERROR_SEQ_TOO_LOW: Final = 302

ID_LEN: Final = 20
#: BEP 33: the size of a scrape bloom filter (``BFsd``/``BFpe``)
BLOOM_BYTES: Final = 256
MAX_SALT: Final = 64  # BEP 44
MAX_T_LEN: Final = 64  # opaque, but bound what we echo back


class KRPCError(RemoteProtocolError):
    """A datagram is not valid KRPC. ``hint`` is the BEP 5 error code a reply would carry (203)."""

    def __init__(self, message: str, *, code: int = ERROR_PROTOCOL, t: bytes | None = None) -> None:
        super().__init__(message, hint=code)
        self.code = code
        self.t = t


# --------------------------------------------------------------------------- compact forms (BEP 5/32)


def encode_compact_addr(addr: Addr) -> bytes:
    """6 bytes (IPv4) or 18 bytes (IPv6): big-endian address then port (BEP 5, BEP 32, BEP 42 ``ip``)."""
    host, port = addr
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"port out of range: {port}")
    return pack_ip(host) + port.to_bytes(2, "big")


@lru_cache(maxsize=1 << 16)
def pack_ip(host: str) -> bytes:
    """4 or 16 network-order bytes of an IP address string (cached: the same hosts recur)."""
    try:
        return ipaddress.ip_address(host).packed
    except ValueError as exc:
        raise LocalProtocolError(f"not an IP address: {host!r}") from exc


def decode_compact_addr(data: bytes) -> Addr:
    """Inverse of :func:`encode_compact_addr`; any other length raises :class:`KRPCError`."""
    if len(data) == 6:
        return f"{data[0]}.{data[1]}.{data[2]}.{data[3]}", (data[4] << 8) | data[5]
    if len(data) == 18:
        return str(ipaddress.IPv6Address(data[:16])), (data[16] << 8) | data[17]
    raise KRPCError(f"compact address of length {len(data)}")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A contact: 20-byte node id and its UDP address (one entry of ``nodes``/``nodes6``)."""

    id: bytes
    addr: Addr


def encode_nodes(nodes: list[NodeInfo]) -> bytes:
    """26-byte compact node info per IPv4 node (BEP 5); non-IPv4 nodes are skipped."""
    out = []
    for n in nodes:
        packed = encode_compact_addr(n.addr)
        if len(packed) == 6:
            out.append(n.id + packed)
    return b"".join(out)


def encode_nodes6(nodes: list[NodeInfo]) -> bytes:
    """38-byte compact node info per IPv6 node (BEP 32); IPv4 nodes are skipped."""
    out = []
    for n in nodes:
        packed = encode_compact_addr(n.addr)
        if len(packed) == 18:
            out.append(n.id + packed)
    return b"".join(out)


def _decode_node_list(data: bytes, size: int, key: str) -> list[NodeInfo]:
    if len(data) % size:
        raise KRPCError(f"{key} length {len(data)} is not a multiple of {size}")
    out = []
    for i in range(0, len(data), size):
        addr = decode_compact_addr(data[i + ID_LEN : i + size])
        if addr[1] == 0:
            continue  # port 0 cannot be contacted; skip rather than reject the whole reply
        out.append(NodeInfo(data[i : i + ID_LEN], addr))
    return out


def decode_nodes(data: bytes) -> list[NodeInfo]:
    """Parse a ``nodes`` string (26 bytes per node). Entries with port 0 are dropped."""
    return _decode_node_list(data, 26, "nodes")


def decode_nodes6(data: bytes) -> list[NodeInfo]:
    """Parse a ``nodes6`` string (38 bytes per node, BEP 32). Entries with port 0 are dropped."""
    return _decode_node_list(data, 38, "nodes6")


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True, slots=True)
class Query:
    """``y=q``. ``method`` is the ``q`` value, ``args`` the raw ``a`` dict (see :func:`parse_query`)."""

    t: bytes
    method: bytes
    args: dict[bytes, Any]
    v: bytes | None = None
    ro: bool = False  # BEP 43: the sender is read-only, do not add it to a routing table
    ip: Addr | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """``y=r``. ``values`` is the raw ``r`` dict (see :func:`parse_response`); ``ip`` is BEP 42."""

    t: bytes
    values: dict[bytes, Any]
    v: bytes | None = None
    ip: Addr | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """``y=e``: ``e = [code, message]`` (BEP 5 codes 201-204, BEP 44 codes 205-207, 301, 302)."""

    t: bytes
    code: int
    message: str
    v: bytes | None = None
    ip: Addr | None = None


Message = Query | Response | Error


def _top(msg: Message) -> dict[bytes, Any]:
    d: dict[bytes, Any] = {b"t": msg.t}
    if msg.v is not None:
        d[b"v"] = msg.v
    if msg.ip is not None:
        d[b"ip"] = encode_compact_addr(msg.ip)
    return d


def encode(msg: Message) -> bytes:
    """Bencode one KRPC message."""
    d = _top(msg)
    if isinstance(msg, Query):
        d[b"y"] = b"q"
        d[b"q"] = msg.method
        d[b"a"] = msg.args
        if msg.ro:
            d[b"ro"] = 1
    elif isinstance(msg, Response):
        d[b"y"] = b"r"
        d[b"r"] = msg.values
    else:
        d[b"y"] = b"e"
        d[b"e"] = [msg.code, msg.message.encode("utf-8", "replace")]
    try:
        return bencode(d)
    except LocalProtocolError:
        raise
    except Exception as exc:  # pragma: no cover - bencode raises only its own error
        raise LocalProtocolError(f"cannot encode KRPC message: {exc}") from exc


def decode(data: bytes) -> Message:
    """Parse one datagram. Raises only :class:`KRPCError` (carrying ``t`` when it was readable)."""
    try:
        d = bdecode(bytes(data))
    except BencodeError as exc:
        raise KRPCError(f"not bencoded: {exc.reason}") from None
    if not isinstance(d, dict):
        raise KRPCError("message is not a dict")
    t = d.get(b"t")
    if not isinstance(t, bytes) or len(t) > MAX_T_LEN:
        raise KRPCError("missing or invalid transaction id 't'")
    v = d.get(b"v")
    if v is not None and not isinstance(v, bytes):
        v = None  # informational only; tolerate odd values
    ip: Addr | None = None
    raw_ip = d.get(b"ip")
    if isinstance(raw_ip, bytes) and len(raw_ip) in (6, 18):
        ip = decode_compact_addr(raw_ip)
    y = d.get(b"y")
    if y == b"q":
        method = d.get(b"q")
        args = d.get(b"a")
        if not isinstance(method, bytes) or not method:
            raise KRPCError("query without method 'q'", t=t)
        if not isinstance(args, dict):
            raise KRPCError("query without arguments 'a'", t=t)
        return Query(t, method, args, v, d.get(b"ro") == 1, ip)
    if y == b"r":
        values = d.get(b"r")
        if not isinstance(values, dict):
            raise KRPCError("response without 'r' dict", t=t)
        return Response(t, values, v, ip)
    if y == b"e":
        e = d.get(b"e")
        if not isinstance(e, list) or len(e) < 2 or not isinstance(e[0], int):
            raise KRPCError("error without [code, message]", t=t)
        text = e[1] if isinstance(e[1], bytes) else b""
        return Error(t, e[0], text.decode("utf-8", "replace"), v, ip)
    raise KRPCError("unknown message type 'y'", t=t)


# --------------------------------------------------------------------------- typed query arguments


def _id(a: dict[bytes, Any], key: bytes = b"id") -> bytes:
    value = a.get(key)
    if not isinstance(value, bytes) or len(value) != ID_LEN:
        raise KRPCError(f"argument {key.decode()!r} must be a 20-byte string")
    return value


def _want(a: dict[bytes, Any]) -> frozenset[bytes]:
    """BEP 32 ``want``: a list of ``n4``/``n6``; unknown items are ignored, non-lists rejected."""
    raw = a.get(b"want")
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise KRPCError("'want' must be a list")
    return frozenset(w for w in raw if w in (b"n4", b"n6"))


@dataclass(frozen=True, slots=True)
class PingArgs:
    """``ping`` arguments (BEP 5)."""

    id: bytes

    def to_args(self) -> dict[bytes, Any]:
        return {b"id": self.id}


@dataclass(frozen=True, slots=True)
class FindNodeArgs:
    """``find_node`` arguments (BEP 5; ``want``: BEP 32)."""

    id: bytes
    target: bytes
    want: frozenset[bytes] = frozenset()  # BEP 32

    def to_args(self) -> dict[bytes, Any]:
        d: dict[bytes, Any] = {b"id": self.id, b"target": self.target}
        if self.want:
            d[b"want"] = sorted(self.want)
        return d


@dataclass(frozen=True, slots=True)
class GetPeersArgs:
    """``get_peers`` arguments (BEP 5; ``want``: BEP 32; ``scrape``, ``noseed``: BEP 33)."""

    id: bytes
    info_hash: bytes
    want: frozenset[bytes] = frozenset()  # BEP 32
    scrape: bool = False  # BEP 33: answer with the BFsd/BFpe bloom filters
    noseed: bool = False  # BEP 33: values without seeds (best effort)

    def to_args(self) -> dict[bytes, Any]:
        d: dict[bytes, Any] = {b"id": self.id, b"info_hash": self.info_hash}
        if self.want:
            d[b"want"] = sorted(self.want)
        if self.scrape:
            d[b"scrape"] = 1
        if self.noseed:
            d[b"noseed"] = 1
        return d


@dataclass(frozen=True, slots=True)
class AnnouncePeerArgs:
    """``announce_peer`` arguments (BEP 5; ``seed``: BEP 33)."""

    id: bytes
    info_hash: bytes
    port: int
    token: bytes
    implied_port: bool = False  # BEP 5: use the UDP source port instead of ``port``
    seed: bool = False  # BEP 33 hint, informational

    def to_args(self) -> dict[bytes, Any]:
        d: dict[bytes, Any] = {
            b"id": self.id,
            b"info_hash": self.info_hash,
            b"port": self.port,
            b"token": self.token,
        }
        if self.implied_port:
            d[b"implied_port"] = 1
        if self.seed:
            d[b"seed"] = 1
        return d


@dataclass(frozen=True, slots=True)
class GetArgs:
    """BEP 44 ``get``: ``seq`` asks for the value only if newer than ``seq``."""

    id: bytes
    target: bytes
    seq: int | None = None
    want: frozenset[bytes] = frozenset()

    def to_args(self) -> dict[bytes, Any]:
        d: dict[bytes, Any] = {b"id": self.id, b"target": self.target}
        if self.seq is not None:
            d[b"seq"] = self.seq
        if self.want:
            d[b"want"] = sorted(self.want)
        return d


@dataclass(frozen=True, slots=True)
class PutArgs:
    """BEP 44 ``put``. Immutable when ``k`` is None. ``v`` is the raw bencoded value bytes."""

    id: bytes
    token: bytes
    v: bytes  # bencoded form, exactly as sent (signatures and targets are over these bytes)
    k: bytes | None = None
    sig: bytes | None = None
    seq: int | None = None
    salt: bytes = b""
    cas: int | None = None

    def to_args(self) -> dict[bytes, Any]:
        d: dict[bytes, Any] = {b"id": self.id, b"token": self.token, b"v": bdecode(self.v)}
        if self.k is not None:
            d[b"k"] = self.k
            d[b"sig"] = self.sig
            d[b"seq"] = self.seq
            if self.salt:
                d[b"salt"] = self.salt
            if self.cas is not None:
                d[b"cas"] = self.cas
        return d


@dataclass(frozen=True, slots=True)
class SampleInfohashesArgs:
    """BEP 51 ``sample_infohashes``."""

    id: bytes
    target: bytes
    want: frozenset[bytes] = frozenset()

    def to_args(self) -> dict[bytes, Any]:
        d: dict[bytes, Any] = {b"id": self.id, b"target": self.target}
        if self.want:
            d[b"want"] = sorted(self.want)
        return d


QueryArgs = (
    PingArgs | FindNodeArgs | GetPeersArgs | AnnouncePeerArgs | GetArgs | PutArgs | SampleInfohashesArgs
)


def _int(a: dict[bytes, Any], key: bytes) -> int | None:
    value = a.get(key)
    if value is None:
        return None
    if not isinstance(value, int):
        raise KRPCError(f"argument {key.decode()!r} must be an integer")
    return value


def parse_query(q: Query) -> QueryArgs:
    """Typed arguments of a known method. Bad arguments raise :class:`KRPCError` (code 203, ``t`` set);
    an unknown method raises code 204 (the node still answers those with ``id`` fields, see BEP 5
    forward compatibility: ones carrying ``target``/``info_hash`` are treated as ``find_node``)."""
    a = q.args
    try:
        m = q.method
        if m == b"ping":
            return PingArgs(_id(a))
        if m == b"find_node":
            return FindNodeArgs(_id(a), _id(a, b"target"), _want(a))
        if m == b"get_peers":
            return GetPeersArgs(
                _id(a), _id(a, b"info_hash"), _want(a), _int(a, b"scrape") == 1, _int(a, b"noseed") == 1
            )
        if m == b"announce_peer":
            port = _int(a, b"port")
            implied = _int(a, b"implied_port") == 1
            token = a.get(b"token")
            if not isinstance(token, bytes):
                raise KRPCError("announce_peer without 'token'")
            if port is None and not implied:
                raise KRPCError("announce_peer without 'port'")
            if port is not None and not 0 <= port <= 0xFFFF:
                raise KRPCError("announce_peer port out of range")
            return AnnouncePeerArgs(
                _id(a), _id(a, b"info_hash"), port or 0, token, implied, _int(a, b"seed") == 1
            )
        if m == b"get":
            return GetArgs(_id(a), _id(a, b"target"), _int(a, b"seq"), _want(a))
        if m == b"put":
            return _parse_put(a)
        if m == b"sample_infohashes":
            return SampleInfohashesArgs(_id(a), _id(a, b"target"), _want(a))
    except KRPCError as exc:
        raise KRPCError(str(exc), code=exc.code, t=q.t) from None
    raise KRPCError(f"unknown method {q.method[:32]!r}", code=ERROR_METHOD_UNKNOWN, t=q.t)


def _parse_put(a: dict[bytes, Any]) -> PutArgs:
    token = a.get(b"token")
    if not isinstance(token, bytes):
        raise KRPCError("put without 'token'")
    if b"v" not in a:
        raise KRPCError("put without 'v'")
    v = bencode(a[b"v"])  # our decoder is strict, so this is exactly the bytes that were sent
    k = a.get(b"k")
    if k is None:
        return PutArgs(_id(a), token, v)
    if not isinstance(k, bytes) or len(k) != 32:
        raise KRPCError("'k' must be a 32-byte ed25519 public key")
    sig = a.get(b"sig")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise KRPCError("'sig' must be a 64-byte ed25519 signature")
    seq = _int(a, b"seq")
    if seq is None:
        raise KRPCError("mutable put without 'seq'")
    salt = a.get(b"salt", b"")
    if not isinstance(salt, bytes):
        raise KRPCError("'salt' must be a string")
    return PutArgs(_id(a), token, v, k, sig, seq, salt, _int(a, b"cas"))


# --------------------------------------------------------------------------- typed response values


@dataclass(frozen=True, slots=True)
class ResponseBody:
    """Typed view of a response's ``r`` dict; absent fields are None/empty.

    ``values`` are compact peers (BEP 5: 6 bytes IPv4, BEP 32: 18 bytes IPv6) decoded to addresses;
    ``v`` is the raw bencoded BEP 44 value.
    """

    id: bytes
    nodes: list[NodeInfo] = field(default_factory=list)
    nodes6: list[NodeInfo] = field(default_factory=list)
    token: bytes | None = None
    values: list[Addr] = field(default_factory=list)
    # BEP 44
    v: bytes | None = None
    k: bytes | None = None
    sig: bytes | None = None
    seq: int | None = None
    # BEP 51
    samples: list[bytes] | None = None
    interval: int | None = None
    num: int | None = None
    # BEP 33: bloom filters of the seeds' and the other peers' IPs (256 bytes each)
    bf_seeds: bytes | None = None
    bf_peers: bytes | None = None

    def to_values(self) -> dict[bytes, Any]:
        d: dict[bytes, Any] = {b"id": self.id}
        if self.nodes:
            d[b"nodes"] = encode_nodes(self.nodes)
        if self.nodes6:
            d[b"nodes6"] = encode_nodes6(self.nodes6)
        if self.token is not None:
            d[b"token"] = self.token
        if self.values:
            d[b"values"] = [encode_compact_addr(a) for a in self.values]
        if self.v is not None:
            d[b"v"] = bdecode(self.v)
        if self.k is not None:
            d[b"k"] = self.k
        if self.sig is not None:
            d[b"sig"] = self.sig
        if self.seq is not None:
            d[b"seq"] = self.seq
        if self.samples is not None:
            d[b"samples"] = b"".join(self.samples)
        if self.interval is not None:
            d[b"interval"] = self.interval
        if self.num is not None:
            d[b"num"] = self.num
        if self.bf_seeds is not None:
            d[b"BFsd"] = self.bf_seeds
        if self.bf_peers is not None:
            d[b"BFpe"] = self.bf_peers
        return d


def _opt_bytes(r: dict[bytes, Any], key: bytes) -> bytes | None:
    value = r.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise KRPCError(f"response field {key.decode()!r} must be a string")
    return value


def parse_response(resp: Response) -> ResponseBody:
    """Typed values of any response. Malformed fields raise :class:`KRPCError`."""
    r = resp.values
    try:
        node_id = _id(r)
        nodes_raw = _opt_bytes(r, b"nodes")
        nodes6_raw = _opt_bytes(r, b"nodes6")
        values: list[Addr] = []
        raw_values = r.get(b"values")
        if raw_values is not None:
            if not isinstance(raw_values, list):
                raise KRPCError("'values' must be a list")
            for item in raw_values:
                if isinstance(item, bytes) and len(item) in (6, 18):
                    addr = decode_compact_addr(item)
                    if addr[1]:
                        values.append(addr)
                else:
                    raise KRPCError("'values' item is not a compact peer")
        samples_raw = _opt_bytes(r, b"samples")
        samples = None
        if samples_raw is not None:
            if len(samples_raw) % ID_LEN:
                raise KRPCError("'samples' is not a multiple of 20 bytes")
            samples = [samples_raw[i : i + ID_LEN] for i in range(0, len(samples_raw), ID_LEN)]
        bf_seeds, bf_peers = _opt_bytes(r, b"BFsd"), _opt_bytes(r, b"BFpe")
        for key, bloom in ((b"BFsd", bf_seeds), (b"BFpe", bf_peers)):
            if bloom is not None and len(bloom) != BLOOM_BYTES:
                raise KRPCError(f"{key.decode()!r} is {len(bloom)} bytes, not {BLOOM_BYTES}")
        return ResponseBody(
            id=node_id,
            nodes=decode_nodes(nodes_raw) if nodes_raw else [],
            nodes6=decode_nodes6(nodes6_raw) if nodes6_raw else [],
            token=_opt_bytes(r, b"token"),
            values=values,
            v=bencode(r[b"v"]) if b"v" in r else None,
            k=_opt_bytes(r, b"k"),
            sig=_opt_bytes(r, b"sig"),
            seq=_int(r, b"seq"),
            samples=samples,
            interval=_int(r, b"interval"),
            num=_int(r, b"num"),
            bf_seeds=bf_seeds,
            bf_peers=bf_peers,
        )
    except KRPCError as exc:
        raise KRPCError(str(exc), code=exc.code, t=resp.t) from None
