"""Magnet links: BEP 9 (``xt=urn:btih:``) and BEP 53 (``xt=urn:btmh:``, ``so=``, ``x.pe=``).

Parsed parameters: ``xt`` (several allowed: one v1 ``btih`` in 40 hex digits or 32 base32 characters,
one v2 ``btmh`` SHA-256 multihash ``1220`` + 64 hex digits), ``dn`` (name; ``+`` means a space, as in
libtorrent), ``tr`` (trackers, each its own tier), ``ws`` (BEP 19 web seeds), ``x.pe`` (peers as
``host:port`` or ``[v6]:port``) and ``so`` (BEP 53 select-only, e.g. ``0,2,4-6``). Numbered forms
(``xt.1``, ``tr.2``) are accepted; unknown parameters are ignored. Every malformed link raises
:class:`MagnetError` (a :class:`~bitswarm.metainfo.MetainfoError`) with a ``magnet.<param>`` field, and
nothing else.

Limits, so that a hostile link costs little: at most :data:`MAX_MAGNET_LENGTH` characters,
:data:`MAX_MAGNET_TRACKERS` distinct trackers, :data:`MAX_MAGNET_WEB_SEEDS` web seeds,
:data:`MAX_MAGNET_PEERS` peers and :data:`MAX_SELECT_ONLY` select-only indices; parsing is linear in
the link's length (duplicate trackers are dropped through a dict, not a list scan).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, unquote_plus

from bitswarm.metainfo._model import MetainfoError, Torrent


class MagnetError(MetainfoError):
    """A magnet link is malformed or exceeds a limit; ``field`` is ``magnet`` or ``magnet.<param>``."""


#: Most indices a ``so=`` parameter may expand to.
MAX_SELECT_ONLY = 1 << 20
#: Longest magnet link accepted, in characters.
MAX_MAGNET_LENGTH = 1 << 20
#: Most distinct ``tr`` trackers a magnet link may name (real links carry a few dozen at most).
MAX_MAGNET_TRACKERS = 200
#: Most ``ws`` web seeds a magnet link may name.
MAX_MAGNET_WEB_SEEDS = 200
#: Most ``x.pe`` peers a magnet link may name.
MAX_MAGNET_PEERS = 200

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_B32 = re.compile(r"[A-Za-z2-7]{32}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_NUMBERED = re.compile(r"^([a-z.]+?)(?:\.\d+)?$")
_RANGE = re.compile(r"^(\d{1,9})(?:-(\d{1,9}))?$")


@dataclass(frozen=True, slots=True)
class Magnet:
    """A parsed magnet link (BEP 9 / BEP 53)."""

    info_hash_v1: bytes | None = None  #: BEP 9 ``urn:btih`` (20 bytes)
    info_hash_v2: bytes | None = None  #: BEP 53 ``urn:btmh`` SHA-256 (32 bytes)
    name: str | None = None  #: ``dn``
    trackers: list[str] = field(default_factory=list)  #: ``tr``
    web_seeds: list[str] = field(default_factory=list)  #: ``ws`` (BEP 19)
    peers: list[tuple[str, int]] = field(default_factory=list)  #: ``x.pe``
    select_only: list[int] = field(default_factory=list)  #: BEP 53 ``so`` file indices, sorted

    @property
    def swarm_hash(self) -> bytes:
        """The 20-byte hash of the swarm (v1 if present, else the truncated v2 hash)."""
        h = self.info_hash_v1 or (self.info_hash_v2[:20] if self.info_hash_v2 else None)
        assert h is not None
        return h

    def to_uri(self) -> str:
        """The magnet link. Parameters in a fixed order; ``so`` collapsed into ranges."""
        parts: list[str] = []
        if self.info_hash_v1 is not None:
            parts.append("xt=urn:btih:" + self.info_hash_v1.hex())
        if self.info_hash_v2 is not None:
            parts.append("xt=urn:btmh:1220" + self.info_hash_v2.hex())
        if self.name is not None:
            parts.append("dn=" + quote(self.name, safe=""))
        parts.extend("tr=" + quote(t, safe="") for t in self.trackers)
        parts.extend("ws=" + quote(w, safe="") for w in self.web_seeds)
        for host, port in self.peers:
            h = f"[{host}]" if ":" in host else host
            parts.append("x.pe=" + quote(f"{h}:{port}", safe=":[]"))
        if self.select_only:
            parts.append("so=" + _ranges(self.select_only))
        return "magnet:?" + "&".join(parts)


def _ranges(indices: list[int]) -> str:
    out: list[str] = []
    xs = sorted(set(indices))
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(out)


def _xt(value: str) -> tuple[str, bytes]:
    low = value.lower()
    if low.startswith("urn:btih:"):
        h = value[9:]
        if _HEX40.fullmatch(h):
            return "v1", bytes.fromhex(h)
        if _B32.fullmatch(h):
            try:
                return "v1", base64.b32decode(h.upper())
            except binascii.Error:  # pragma: no cover - the regex admits only valid base32
                pass
        raise MagnetError(f"bad btih info-hash {h[:80]!r} (need 40 hex or 32 base32 digits)", "magnet.xt")
    if low.startswith("urn:btmh:"):
        mh = value[9:]
        if not mh.lower().startswith("1220"):
            raise MagnetError(f"unsupported multihash {mh[:8]!r} (only SHA-256, 1220)", "magnet.xt")
        if not _HEX64.fullmatch(mh[4:]):
            raise MagnetError("bad btmh info-hash (need 1220 + 64 hex digits)", "magnet.xt")
        return "v2", bytes.fromhex(mh[4:])
    return "other", b""


def _peer(value: str) -> tuple[str, int]:
    if value.startswith("["):
        close = value.find("]")
        if close < 0 or value[close + 1 : close + 2] != ":":
            raise MagnetError(f"bad peer {value[:80]!r}", "magnet.x.pe")
        host, port_s = value[1:close], value[close + 2 :]
        if not host or ":" not in host:
            raise MagnetError(f"bad IPv6 peer {value[:80]!r}", "magnet.x.pe")
    else:
        host, sep, port_s = value.rpartition(":")
        if not sep or not host or ":" in host:
            raise MagnetError(f"bad peer {value[:80]!r} (need host:port or [v6]:port)", "magnet.x.pe")
    if any(c in host for c in "[]/@ \t\r\n\0"):
        raise MagnetError(f"bad peer host {host[:80]!r}", "magnet.x.pe")
    if not (port_s.isascii() and port_s.isdigit() and len(port_s) <= 5 and 0 < int(port_s) < 65536):
        raise MagnetError(f"bad peer port {port_s[:20]!r}", "magnet.x.pe")
    return host, int(port_s)


def _select_only(value: str, out: set[int]) -> None:
    for part in value.split(","):
        m = _RANGE.match(part.strip()) if part.isascii() else None
        if m is None:
            raise MagnetError(f"bad select-only item {part[:40]!r}", "magnet.so")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise MagnetError(f"bad select-only range {part[:40]!r}", "magnet.so")
        if len(out) + hi - lo + 1 > MAX_SELECT_ONLY:
            raise MagnetError("select-only lists too many files", "magnet.so")
        out.update(range(lo, hi + 1))


def parse_magnet(uri: str) -> Magnet:
    """Parse a magnet link; at least one ``btih`` or ``btmh`` ``xt`` is required."""
    if not isinstance(uri, str):
        raise MagnetError("a magnet link must be text", "magnet")
    if len(uri) > MAX_MAGNET_LENGTH:
        raise MagnetError("magnet link is too long", "magnet")
    uri = uri.strip()
    if uri[:8].lower() != "magnet:?":
        raise MagnetError("not a magnet link (must start with 'magnet:?')", "magnet")
    v1: bytes | None = None
    v2: bytes | None = None
    name: str | None = None
    trackers: dict[str, None] = {}  # a dict: insertion order and O(1) duplicate checks
    web_seeds: list[str] = []
    peers: list[tuple[str, int]] = []
    so: set[int] = set()
    for param in uri[8:].split("&"):
        if not param:
            continue
        key, _, raw = param.partition("=")
        m = _NUMBERED.match(key.lower())
        if m is None:
            continue
        key = m.group(1)
        value = unquote(raw, errors="replace")
        if key == "xt":
            kind, h = _xt(value)
            if kind == "v1":
                if v1 is not None and v1 != h:
                    raise MagnetError("two different btih info-hashes", "magnet.xt")
                v1 = h
            elif kind == "v2":
                if v2 is not None and v2 != h:
                    raise MagnetError("two different btmh info-hashes", "magnet.xt")
                v2 = h
        elif key == "dn":
            name = unquote_plus(raw, errors="replace")
        elif key == "tr":
            if value and value not in trackers:
                if len(trackers) >= MAX_MAGNET_TRACKERS:
                    raise MagnetError(f"more than {MAX_MAGNET_TRACKERS} trackers", "magnet.tr")
                trackers[value] = None
        elif key == "ws":
            if value:
                if len(web_seeds) >= MAX_MAGNET_WEB_SEEDS:
                    raise MagnetError(f"more than {MAX_MAGNET_WEB_SEEDS} web seeds", "magnet.ws")
                web_seeds.append(value)
        elif key == "x.pe":
            if len(peers) >= MAX_MAGNET_PEERS:
                raise MagnetError(f"more than {MAX_MAGNET_PEERS} peers", "magnet.x.pe")
            peers.append(_peer(value))
        elif key == "so":
            _select_only(value, so)
    if v1 is None and v2 is None:
        raise MagnetError("no urn:btih or urn:btmh info-hash", "magnet.xt")
    return Magnet(v1, v2, name, list(trackers), web_seeds, peers, sorted(so))


def magnet_from_torrent(t: Torrent) -> Magnet:
    """The magnet link of a torrent: its info-hashes, name, every tracker (tiers flattened), web seeds."""
    trackers: list[str] = []
    for tier in t.trackers:
        for url in tier:
            if url not in trackers:
                trackers.append(url)
    return Magnet(
        info_hash_v1=t.info_hash_v1,
        info_hash_v2=t.info_hash_v2,
        name=t.name,
        trackers=trackers,
        web_seeds=list(t.url_list),
    )
