"""BEP 14 Local Service Discovery: the ``BT-SEARCH`` announce codec and an asyncio multicast driver.

An announce is one UDP datagram to ``239.192.152.143:6771`` (IPv4) or ``[ff15::efc0:988f]:6771``
(IPv6), SSDP style::

    BT-SEARCH * HTTP/1.1\\r\\n
    Host: 239.192.152.143:6771\\r\\n
    Port: 6881\\r\\n
    Infohash: 0123456789abcdef0123456789abcdef01234567\\r\\n
    cookie: 5f3a9c1e\\r\\n
    \\r\\n
    \\r\\n

The peer's address is the UDP source address with the ``Port`` header. Several ``Infohash`` lines may
share one datagram (kept under 1400 bytes); the ``cookie`` lets a client drop its own announces that
multicast loopback hands back to it.

The codec (:func:`encode_lsd_announce`, :func:`encode_lsd_announces`, :func:`decode_lsd_announce`) is
sans-I/O and raises only :class:`LsdProtocolError` for bad datagrams. :class:`LocalDiscovery` is the
asyncio driver: one multicast socket per group, ``announce(info_hashes)`` rate limited per torrent,
and an ``on_peer(info_hash, (ip, port))`` callback for every announce heard from someone else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from bitswarm.errors import RemoteProtocolError

__all__ = [
    "LSD_GROUP_V4",
    "LSD_GROUP_V6",
    "LSD_INTERVAL",
    "MAX_LSD_DATAGRAM",
    "MAX_LSD_PACKET",
    "LocalDiscovery",
    "LsdAnnounce",
    "LsdProtocolError",
    "decode_lsd_announce",
    "encode_lsd_announce",
    "encode_lsd_announces",
    "format_lsd_host",
]

#: BEP 14 multicast groups (org-local IPv4, site-local IPv6) and port.
LSD_GROUP_V4: Final = ("239.192.152.143", 6771)
LSD_GROUP_V6: Final = ("ff15::efc0:988f", 6771)
#: BEP 14: announce each torrent every 5 minutes.
LSD_INTERVAL: Final = 300.0
#: BEP 14: keep a multi-infohash announce under 1400 bytes (no fragmentation).
MAX_LSD_PACKET: Final = 1400
#: Largest datagram we parse at all.
MAX_LSD_DATAGRAM: Final = 4096

_REQUEST_LINE: Final = "BT-SEARCH * HTTP/1.1"
_MAX_HEADERS: Final = 64
_MAX_COOKIE: Final = 128
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_PORT = re.compile(r"[0-9]{1,5}")
_COOKIE = re.compile(r"[\x21-\x7e]+")


class LsdProtocolError(RemoteProtocolError):
    """A datagram on the LSD group is not a valid BEP 14 announce (ignore it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="ignore")


@dataclass(frozen=True, slots=True)
class LsdAnnounce:
    """One BEP 14 announce: our TCP ``port``, the 20-byte ``info_hashes``, ``cookie`` and ``host``.

    ``host`` is the group as the ``Host`` header writes it (:func:`format_lsd_host`); a decoded
    announce without one has ``host=None``.
    """

    port: int
    info_hashes: tuple[bytes, ...]
    cookie: str | None = None
    host: str | None = "239.192.152.143:6771"


def format_lsd_host(group: tuple[str, int]) -> str:
    """The ``Host`` header for a group: ``239.192.152.143:6771`` or ``[ff15::efc0:988f]:6771``."""
    ip, port = group
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _check_out(a: LsdAnnounce) -> None:
    if type(a.port) is not int or not 0 < a.port < 65536:
        raise ValueError(f"LSD port out of range: {a.port!r}")
    if not a.info_hashes or any(len(h) != 20 for h in a.info_hashes):
        raise ValueError("an LSD announce needs one or more 20-byte info-hashes")
    if a.cookie is not None and (len(a.cookie) > _MAX_COOKIE or not _COOKIE.fullmatch(a.cookie)):
        raise ValueError("an LSD cookie is 1..128 printable ASCII characters without spaces")
    if a.host is not None and not _COOKIE.fullmatch(a.host):
        raise ValueError(f"bad LSD host {a.host!r}")


def encode_lsd_announce(a: LsdAnnounce) -> bytes:
    """The datagram for ``a`` (libtorrent's layout: ``Host``, ``Port``, ``Infohash``\\ s, ``cookie``)."""
    _check_out(a)
    lines = [_REQUEST_LINE]
    if a.host is not None:
        lines.append(f"Host: {a.host}")
    lines.append(f"Port: {a.port}")
    lines.extend(f"Infohash: {h.hex()}" for h in a.info_hashes)
    if a.cookie is not None:
        lines.append(f"cookie: {a.cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n\r\n").encode("ascii")


def encode_lsd_announces(
    port: int,
    info_hashes: Iterable[bytes],
    *,
    host: str | None = "239.192.152.143:6771",
    cookie: str | None = None,
    max_size: int = MAX_LSD_PACKET,
) -> list[bytes]:
    """Datagrams announcing every hash in ``info_hashes``, as few as fit under ``max_size`` bytes."""
    hashes = list(dict.fromkeys(info_hashes))
    out: list[bytes] = []
    batch: list[bytes] = []
    for h in hashes:
        trial = encode_lsd_announce(LsdAnnounce(port, (*batch, h), cookie, host))
        if len(trial) > max_size and batch:
            out.append(encode_lsd_announce(LsdAnnounce(port, tuple(batch), cookie, host)))
            batch = [h]
        else:
            batch.append(h)
    if batch:
        out.append(encode_lsd_announce(LsdAnnounce(port, tuple(batch), cookie, host)))
    return out


def decode_lsd_announce(data: bytes) -> LsdAnnounce:
    """Parse one datagram; :class:`LsdProtocolError` unless it is a BEP 14 announce.

    Rules: at most :data:`MAX_LSD_DATAGRAM` bytes of ASCII; request line exactly ``BT-SEARCH *
    HTTP/1.1``; lines end in CRLF (a bare LF is tolerated); ``Name: value`` headers up to the first
    empty line, at most 64, names case-insensitive; exactly one ``Port`` (1..65535), one or more
    ``Infohash`` of 40 hex digits (duplicates merged), at most one ``cookie`` and ``Host``; unknown
    headers ignored; only empty lines after the headers.
    """
    port: int | None = None
    host: str | None = None
    cookie: str | None = None
    hashes: dict[bytes, None] = {}
    for line in _lsd_headers(data):
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise LsdProtocolError(f"bad LSD header line {line[:40]!r}")
        value = value.strip(" \t")
        key = name.lower()
        if key == "port":
            if port is not None or not _PORT.fullmatch(value) or not 0 < int(value) < 65536:
                raise LsdProtocolError(f"bad or repeated LSD Port {value[:10]!r}")
            port = int(value)
        elif key == "infohash":
            if not _HEX40.fullmatch(value):
                raise LsdProtocolError(f"bad LSD Infohash {value[:50]!r}")
            hashes[bytes.fromhex(value)] = None
        elif key == "cookie":
            if cookie is not None or len(value) > _MAX_COOKIE or not _COOKIE.fullmatch(value):
                raise LsdProtocolError("bad or repeated LSD cookie")
            cookie = value
        elif key == "host":
            if host is not None or not _COOKIE.fullmatch(value):
                raise LsdProtocolError("bad or repeated LSD Host")
            host = value
    if port is None:
        raise LsdProtocolError("LSD announce without Port")
    if not hashes:
        raise LsdProtocolError("LSD announce without Infohash")
    return LsdAnnounce(port, tuple(hashes), cookie, host)


def _lsd_headers(data: bytes) -> list[str]:
    """The header lines of an LSD datagram (framing rules of :func:`decode_lsd_announce`)."""
    if len(data) > MAX_LSD_DATAGRAM:
        raise LsdProtocolError(f"LSD datagram of {len(data)} bytes")
    try:
        text = bytes(data).decode("ascii")
    except UnicodeDecodeError:
        raise LsdProtocolError("LSD datagram is not ASCII") from None
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines[0] != _REQUEST_LINE:
        raise LsdProtocolError(f"not a BT-SEARCH request line: {lines[0][:40]!r}")
    try:
        end = lines.index("", 1, len(lines) - 1)  # the last item is what follows the final LF
    except ValueError:
        raise LsdProtocolError("LSD announce has no empty line after its headers") from None
    if any(lines[end:]):
        raise LsdProtocolError("data after the LSD announce headers")
    headers = lines[1:end]
    if len(headers) > _MAX_HEADERS:
        raise LsdProtocolError(f"more than {_MAX_HEADERS} LSD headers")
    return headers


# --------------------------------------------------------------------------------------------------
# asyncio driver

OnPeer = Callable[[bytes, tuple[str, int]], None]


class _LsdProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: LocalDiscovery) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int] | tuple[str, int, int, int]) -> None:
        self.owner._datagram(data, addr[0])

    def error_received(self, exc: Exception) -> None:
        self.owner.errors += 1
        self.owner.last_error = exc


class LocalDiscovery:
    """BEP 14 on one multicast group: announce our torrents, report peers announcing theirs.

    ``port``: our BitTorrent TCP listen port (the ``Port`` header). ``on_peer(info_hash, (ip, port))``
    runs on the event loop for every hash in every valid announce from another client (the session
    filters for torrents it has). ``interface``: for IPv4 the local address whose interface joins
    the group and sends (``0.0.0.0``: the kernel's choice), for IPv6 an interface name (``""``: the
    kernel's choice). ``group``: the multicast group and port (the BEP 14 IPv4 group by default; tests
    use their own). ``min_interval``: a hash is announced at most once per this many seconds
    (:meth:`announce` skips it otherwise). ``clock``: monotonic seconds, injectable for tests.

    Sockets: ``SO_REUSEADDR`` (and ``SO_REUSEPORT``) so several clients on one host share the port,
    membership of the group on ``interface``, multicast loop on, TTL/hops 1 (the local link only).
    """

    def __init__(
        self,
        port: int,
        on_peer: OnPeer,
        *,
        interface: str = "0.0.0.0",
        group: tuple[str, int] = LSD_GROUP_V4,
        min_interval: float = LSD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        cookie: str | None = None,
    ) -> None:
        self.port = port
        self.on_peer = on_peer
        self.interface = interface
        self.group = (ipaddress.ip_address(group[0]).compressed, group[1])
        self.family = socket.AF_INET6 if ":" in self.group[0] else socket.AF_INET
        self.host_header = format_lsd_host(self.group)
        self.min_interval = min_interval
        self.clock = clock
        self.cookie = cookie if cookie is not None else secrets.token_hex(8)
        self._transport: asyncio.DatagramTransport | None = None
        self._last: dict[bytes, float] = {}
        self._ifindex = 0
        #: Counters: valid announces from others, our own echoes, unparsable datagrams, socket errors.
        self.received = 0
        self.own = 0
        self.invalid = 0
        self.errors = 0
        #: The last socket error (a failed send lands here, asyncio does not raise it).
        self.last_error: Exception | None = None

    @property
    def running(self) -> bool:
        return self._transport is not None

    def _socket(self) -> socket.socket:
        ip, gport = self.group
        s = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:  # on Linux binding to the group address keeps other traffic to the port out
                s.bind((ip, gport))
            except OSError:
                s.bind(("::" if self.family == socket.AF_INET6 else "0.0.0.0", gport))
            if self.family == socket.AF_INET:
                iface = socket.inet_aton(self.interface)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(ip) + iface)
                if self.interface != "0.0.0.0":
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            else:
                self._ifindex = (
                    socket.if_nametoindex(self.interface) if self.interface not in ("", "::") else 0
                )
                mreq = socket.inet_pton(socket.AF_INET6, ip) + struct.pack("@I", self._ifindex)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                if self._ifindex:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self._ifindex)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return s

    async def start(self) -> None:
        """Open and join the multicast socket. ``OSError`` if the host cannot do multicast there."""
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _LsdProtocol(self), sock=self._socket())
        self._transport = transport

    async def stop(self) -> None:
        """Leave the group and close the socket (idempotent)."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
            await asyncio.sleep(0)  # let the transport's close callback run

    async def __aenter__(self) -> LocalDiscovery:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def announce(self, info_hashes: Iterable[bytes]) -> list[bytes]:
        """Announce the hashes not announced in the last ``min_interval`` s; returns those sent.

        20-byte hashes only (for a v2-only torrent, the truncated SHA-256 as on trackers/DHT). Sends
        as few datagrams as fit under 1400 bytes each. Not started: sends nothing.
        """
        if self._transport is None:
            return []
        now = self.clock()
        due = [
            h
            for h in dict.fromkeys(info_hashes)
            if len(h) == 20 and (h not in self._last or now - self._last[h] >= self.min_interval)
        ]
        dest: tuple[str, int] | tuple[str, int, int, int] = self.group
        if self.family == socket.AF_INET6:
            dest = (self.group[0], self.group[1], 0, self._ifindex)
        for datagram in encode_lsd_announces(self.port, due, host=self.host_header, cookie=self.cookie):
            self._transport.sendto(datagram, dest)
        for h in due:
            self._last[h] = now
        return due

    def _datagram(self, data: bytes, source_ip: str) -> None:
        try:
            a = decode_lsd_announce(data)
        except LsdProtocolError:
            self.invalid += 1
            return
        if a.cookie == self.cookie:
            self.own += 1
            return
        self.received += 1
        ip = source_ip.split("%", 1)[0]
        for h in a.info_hashes:
            self.on_peer(h, (ip, a.port))
