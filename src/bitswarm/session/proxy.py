"""A SOCKS5 proxy for outgoing peer connections, HTTP(S) trackers and web seeds.

``SessionConfig.proxy = "socks5://[user:pass@]host:port"`` (``socks5h://`` has the proxy resolve
host names: tracker and web seed hosts are then never looked up locally). What goes through it:

* outgoing TCP peer connections (:func:`connect_tcp_via_proxy`, python-socks' asyncio client: the
  SOCKS5 handshake then the connected socket handed to the event loop as any TCP stream);
* HTTP and HTTPS tracker announces and scrapes, web seeds (BEP 19/17) and blocklist downloads:
  httpx with its own SOCKS support (``socksio``), from :func:`httpx_proxy`.

What does not (``docs/security.md``): UDP. No UDP ASSOCIATE: while a proxy is set the session opens
no uTP socket (peers are dialed over TCP only), runs no DHT node, and a ``udp://`` tracker is
skipped with an error in its status. Incoming connections are not proxied (the TCP listener stays
open; a user who wants none can firewall it).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from bitswarm.transport import TcpStream

if TYPE_CHECKING:
    from bitswarm.transport import StreamReceiver

#: The proxy URL schemes accepted.
SCHEMES = ("socks5", "socks5h")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A parsed proxy URL."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def remote_dns(self) -> bool:
        """``socks5h``: host names are resolved by the proxy."""
        return self.scheme == "socks5h"

    def url(self) -> str:
        auth = ""
        if self.username is not None:
            auth = f"{quote(self.username, safe='')}:{quote(self.password or '', safe='')}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}"


def parse_proxy(url: str) -> ProxyConfig:
    """``socks5://[user:pass@]host:port`` (or ``socks5h://``): ValueError naming what is wrong."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad proxy URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"proxy must be socks5://[user:pass@]host:port (got {url!r})")
    if not parts.hostname or port is None or not 0 < port < 65536:
        raise ValueError(f"proxy URL needs a host and a port (got {url!r})")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"proxy URL has a path or query (got {url!r})")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyConfig(scheme, parts.hostname, port, user, password)


def httpx_proxy(url: str | None) -> str | None:
    """The proxy URL for an httpx client (None: direct)."""
    return None if not url else parse_proxy(url).url()


async def open_via_proxy(proxy: str, host: str, port: int, *, timeout: float) -> socket.socket:
    """A socket connected to ``host:port`` through the SOCKS5 proxy ``proxy`` (python-socks'
    asyncio client). ConnectionError when the proxy cannot be reached or refuses, TimeoutError."""
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
    from python_socks.async_.asyncio import Proxy

    cfg = parse_proxy(proxy)
    client = Proxy(
        ProxyType.SOCKS5, cfg.host, cfg.port, username=cfg.username, password=cfg.password,
        rdns=cfg.remote_dns,
    )  # fmt: skip
    try:
        return await client.connect(host, port, timeout=timeout)
    except ProxyTimeoutError:
        raise TimeoutError() from None
    except ProxyConnectionError as exc:
        raise ConnectionError(f"proxy {cfg.host}:{cfg.port} unreachable: {exc}") from None
    except ProxyError as exc:
        raise ConnectionError(f"proxy refused {host}:{port}: {exc}") from None


async def connect_tcp_via_proxy(
    proxy: str, host: str, port: int, receiver: StreamReceiver, *, timeout: float
) -> TcpStream:
    """Dial ``host:port`` through the SOCKS5 proxy ``proxy`` (:func:`open_via_proxy`); the receiver
    gets ``connection_made(stream)`` once the proxy has connected, the stream's ``peer_address``
    being ``host:port`` (not the proxy's)."""
    sock = await open_via_proxy(proxy, host, port, timeout=timeout)
    loop = asyncio.get_running_loop()
    try:
        _, stream = await loop.create_connection(lambda: _proxied_stream(receiver, (host, port)), sock=sock)
    except BaseException:
        sock.close()
        raise
    return stream


class ProxiedTcpStream(TcpStream):
    """A TCP stream to the proxy that stands for the connection to ``target``: its
    :attr:`peer_address` is the peer dialed, not the proxy's address."""

    def __init__(self, receiver: StreamReceiver, target: tuple[str, int]) -> None:
        super().__init__(receiver)
        self.target = target

    @property
    def peer_address(self) -> tuple[str, int] | None:
        return self.target


def _proxied_stream(receiver: StreamReceiver, target: tuple[str, int]) -> ProxiedTcpStream:
    return ProxiedTcpStream(receiver, target)
