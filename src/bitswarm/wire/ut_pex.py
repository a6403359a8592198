"""BEP 11 Peer Exchange (``ut_pex``): the message codec and a per-peer diff tracker.

Sans-I/O. The payload travels inside :class:`~bitswarm.wire.Extended` on the extended id the receiver
put under ``"ut_pex"`` in its BEP 10 handshake ``m`` dictionary. It is a bencoded dictionary with
compact contacts: ``added`` / ``dropped`` (IPv4, 6 bytes each: address + big-endian port), ``added6`` /
``dropped6`` (IPv6, 18 bytes each), and ``added.f`` / ``added6.f`` with one flag byte per added
contact (:data:`FLAG_PREFERS_ENCRYPTION` ... :data:`FLAG_REACHABLE`).

* :func:`encode_pex_message` / :func:`decode_pex_message` convert :class:`PexMessage` to payload bytes
  and back. Malformed payloads raise :class:`~bitswarm.wire.ut_metadata.ExtensionProtocolError` and
  nothing else. Decoding is lenient where real clients differ and nothing is at stake: a flags string
  of the wrong length is ignored (flags 0), duplicates are removed, contacts with port 0 are skipped,
  and a contact both added and dropped in one message (BEP 11 forbids it) is ignored.
* :class:`PexTracker` produces, for one recipient at a time, the next message: only what changed in our
  set of connected peers since the last message to that recipient, at most one message per
  ``interval`` (60 s, BEP 11), at most 50 added and 50 dropped contacts per message.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from bitswarm.bencode import BencodeError, decode, encode
from bitswarm.wire._errors import LocalWireError
from bitswarm.wire.ut_metadata import ExtensionProtocolError

__all__ = [
    "EXTENSION_NAME",
    "FLAG_HOLEPUNCH",
    "FLAG_PREFERS_ENCRYPTION",
    "FLAG_REACHABLE",
    "FLAG_SEED",
    "FLAG_UTP",
    "MAX_PEX_ENTRIES",
    "MAX_PEX_PAYLOAD",
    "PEX_INTERVAL",
    "PEX_MAX_PER_MESSAGE",
    "ExtensionProtocolError",
    "PexAddress",
    "PexMessage",
    "PexPeer",
    "PexTracker",
    "decode_pex_message",
    "encode_pex_message",
]

#: The name in the BEP 10 handshake ``m`` dictionary.
EXTENSION_NAME: Final = "ut_pex"

#: BEP 11 flag bits (one byte per added contact).
FLAG_PREFERS_ENCRYPTION: Final = 0x01  #: ``e`` set in the peer's extended handshake
FLAG_SEED: Final = 0x02  #: seed / upload_only
FLAG_UTP: Final = 0x04  #: supports uTP
FLAG_HOLEPUNCH: Final = 0x08  #: announced ``ut_holepunch`` (BEP 55)
FLAG_REACHABLE: Final = 0x10  #: we connected to it (outgoing), so it is reachable

#: Most added (IPv4 + IPv6) and, separately, most dropped contacts accepted in one message.
MAX_PEX_ENTRIES: Final = 200
#: Largest payload accepted (200 added + 200 dropped IPv6 contacts with flags fit in 8 KiB).
MAX_PEX_PAYLOAD: Final = 16384
#: BEP 11: no more than one message per minute to a peer.
PEX_INTERVAL: Final = 60.0
#: BEP 11: at most 50 added and 50 dropped contacts per message.
PEX_MAX_PER_MESSAGE: Final = 50

#: A contact: IP address (normalized text form) and port.
PexAddress = tuple[str, int]


class PexPeer(NamedTuple):
    """An added contact: ``ip`` (normalized text), ``port`` and BEP 11 ``flags`` (0..255)."""

    ip: str
    port: int
    flags: int = 0

    @property
    def address(self) -> PexAddress:
        return (self.ip, self.port)


@dataclass(frozen=True, slots=True)
class PexMessage:
    """One BEP 11 message: contacts we connected to (``added``) and disconnected from (``dropped``).

    IPv4 and IPv6 contacts share the lists; the codec splits them into ``added``/``added6`` etc.
    """

    added: tuple[PexPeer, ...] = ()
    dropped: tuple[PexAddress, ...] = field(default=())


def _pack(ip: str, port: int) -> tuple[int, bytes]:
    """(family 4 or 6, compact bytes); LocalWireError for a bad address or port."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise LocalWireError(f"not an IP address: {ip!r}") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # a dual-stack socket's IPv4 peer goes in ``added``, not ``added6``
    if type(port) is not int or not 0 < port < 65536:
        raise LocalWireError(f"bad port for {ip}: {port!r}")
    return addr.version, addr.packed + port.to_bytes(2, "big")


def encode_pex_message(msg: PexMessage) -> bytes:
    """The :class:`~bitswarm.wire.Extended` payload for ``msg`` (BEP 11).

    ``added``, ``added.f`` and ``dropped`` are always present (older parsers expect them); the IPv6 keys
    only when they have contacts. Raises :class:`~bitswarm.wire.LocalWireError` for bad addresses,
    flags, more than :data:`MAX_PEX_ENTRIES` per list, or a contact both added and dropped.
    """
    if len(msg.added) > MAX_PEX_ENTRIES or len(msg.dropped) > MAX_PEX_ENTRIES:
        raise LocalWireError(f"more than {MAX_PEX_ENTRIES} added or dropped contacts in one PEX message")
    added: dict[int, list[bytes]] = {4: [], 6: []}
    flags: dict[int, bytearray] = {4: bytearray(), 6: bytearray()}
    dropped: dict[int, list[bytes]] = {4: [], 6: []}
    for p in msg.added:
        if type(p.flags) is not int or not 0 <= p.flags <= 255:
            raise LocalWireError(f"PEX flags must be one byte, got {p.flags!r}")
        fam, packed = _pack(p.ip, p.port)
        added[fam].append(packed)
        flags[fam].append(p.flags)
    for ip, port in msg.dropped:
        fam, packed = _pack(ip, port)
        dropped[fam].append(packed)
    if set(added[4] + added[6]) & set(dropped[4] + dropped[6]):
        raise LocalWireError("a PEX contact must not be added and dropped in the same message (BEP 11)")
    d: dict[bytes, bytes] = {
        b"added": b"".join(added[4]),
        b"added.f": bytes(flags[4]),
        b"dropped": b"".join(dropped[4]),
    }
    if added[6]:
        d[b"added6"] = b"".join(added[6])
        d[b"added6.f"] = bytes(flags[6])
    if dropped[6]:
        d[b"dropped6"] = b"".join(dropped[6])
    return encode(d)


def decode_pex_message(payload: bytes) -> PexMessage:
    """Decode a ``ut_pex`` payload (BEP 11); :class:`ExtensionProtocolError` for malformed input.

    Rules: at most :data:`MAX_PEX_PAYLOAD` bytes; a strict bencoded dictionary; each of the six known
    keys, when present, is a byte string; contact strings are whole multiples of 6 (IPv4) or 18 (IPv6)
    bytes; at most :data:`MAX_PEX_ENTRIES` added and as many dropped. Unknown keys are ignored.
    """
    if len(payload) > MAX_PEX_PAYLOAD:
        raise ExtensionProtocolError(f"ut_pex payload of {len(payload)} bytes (limit {MAX_PEX_PAYLOAD})")
    try:
        d = decode(bytes(payload))
    except BencodeError as exc:
        raise ExtensionProtocolError(f"ut_pex payload: {exc}") from None
    if type(d) is not dict:
        raise ExtensionProtocolError("ut_pex payload is not a dictionary")
    added = _contacts(d, b"added", b"added.f", 4) + _contacts(d, b"added6", b"added6.f", 6)
    dropped = _contacts(d, b"dropped", None, 4) + _contacts(d, b"dropped6", None, 6)
    if len(added) > MAX_PEX_ENTRIES or len(dropped) > MAX_PEX_ENTRIES:
        raise ExtensionProtocolError(f"more than {MAX_PEX_ENTRIES} added or dropped contacts in ut_pex")
    both = {p.address for p in added} & {p.address for p in dropped}
    return PexMessage(
        added=tuple(p for p in _unique(added) if p.address not in both),
        dropped=tuple(p.address for p in _unique(dropped) if p.address not in both),
    )


def _bytes_field(d: dict[bytes, Any], key: bytes) -> bytes:
    v = d.get(key, b"")
    if type(v) is not bytes:
        raise ExtensionProtocolError(f"ut_pex {key.decode()!r} is not a byte string")
    return v


def _contacts(d: dict[bytes, Any], key: bytes, flags_key: bytes | None, family: int) -> list[PexPeer]:
    raw = _bytes_field(d, key)
    size = 6 if family == 4 else 18
    if len(raw) % size:
        raise ExtensionProtocolError(f"ut_pex {key.decode()!r} is {len(raw)} bytes, not a multiple of {size}")
    n = len(raw) // size
    if n > MAX_PEX_ENTRIES:
        raise ExtensionProtocolError(f"more than {MAX_PEX_ENTRIES} contacts in ut_pex {key.decode()!r}")
    flags = _bytes_field(d, flags_key) if flags_key is not None else b""
    if len(flags) != n:
        flags = bytes(n)  # missing or inconsistent flags: ignore them rather than the contacts
    out: list[PexPeer] = []
    alen = size - 2
    for i in range(n):
        chunk = raw[i * size : (i + 1) * size]
        port = int.from_bytes(chunk[alen:], "big")
        if port == 0:
            continue
        ip = ipaddress.IPv4Address(chunk[:alen]) if family == 4 else ipaddress.IPv6Address(chunk[:alen])
        out.append(PexPeer(ip.compressed, port, flags[i]))
    return out


def _unique(peers: Iterable[PexPeer]) -> list[PexPeer]:
    seen: set[PexAddress] = set()
    out: list[PexPeer] = []
    for p in peers:
        if p.address not in seen:
            seen.add(p.address)
            out.append(p)
    return out


def _normalize(address: PexAddress) -> PexAddress:
    ip, port = address
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (addr.compressed, port)


@dataclass(slots=True)
class _Recipient:
    """What one peer has been sent so far."""

    last_sent: float | None = None
    #: What this recipient has been told we are connected to (address -> flags).
    advertised: dict[PexAddress, int] = field(default_factory=dict)


class PexTracker:
    """Builds BEP 11 messages for each recipient from snapshots of our connected peers.

    Call :meth:`next_message` for a recipient with the current connected set (:class:`PexPeer`\\ s of
    fully handshaken connections, listen ports where known) and a monotonic clock value; send what it
    returns (None: nothing to send yet). Contacts connected and gone again between two messages are
    never mentioned (BEP 11 allows the elision). A contact over the per-message limit waits for the
    next message. The first message may go out at once; later ones ``interval`` seconds apart.
    """

    def __init__(
        self,
        *,
        interval: float = PEX_INTERVAL,
        max_added: int = PEX_MAX_PER_MESSAGE,
        max_dropped: int = PEX_MAX_PER_MESSAGE,
    ) -> None:
        self.interval = interval
        self.max_added = max_added
        self.max_dropped = max_dropped
        self._recipients: dict[Hashable, _Recipient] = {}

    def next_message(
        self,
        recipient: Hashable,
        connected: Iterable[PexPeer],
        now: float,
        *,
        exclude: Iterable[PexAddress] = (),
    ) -> PexMessage | None:
        """The message to send ``recipient`` now, or None (too soon, or nothing changed).

        ``exclude``: addresses not to tell this recipient about (typically its own address).
        Contacts go out in the order of ``connected`` (sort it, e.g. by BEP 40 priority, to choose).
        """
        state = self._recipients.setdefault(recipient, _Recipient())
        if state.last_sent is not None and now - state.last_sent < self.interval:
            return None
        skip = {_normalize(a) for a in exclude}
        current: dict[PexAddress, int] = {}
        for p in connected:
            addr = _normalize(p.address)
            if addr not in skip and 0 < addr[1] < 65536:
                current.setdefault(addr, p.flags & 0xFF)
        added = [
            PexPeer(ip, port, fl) for (ip, port), fl in current.items() if (ip, port) not in state.advertised
        ]
        dropped = [a for a in state.advertised if a not in current]
        added, dropped = added[: self.max_added], dropped[: self.max_dropped]
        if not added and not dropped:
            return None
        for a in dropped:
            del state.advertised[a]
        for p in added:
            state.advertised[p.address] = p.flags
        state.last_sent = now
        return PexMessage(added=tuple(added), dropped=tuple(dropped))

    def advertised(self, recipient: Hashable) -> set[PexAddress]:
        """The contacts ``recipient`` has been told about and not yet told dropped."""
        state = self._recipients.get(recipient)
        return set(state.advertised) if state else set()

    def forget(self, recipient: Hashable) -> None:
        """Drop the state kept for ``recipient`` (on disconnect)."""
        self._recipients.pop(recipient, None)
