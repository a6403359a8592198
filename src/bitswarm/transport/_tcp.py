"""TCP (and any asyncio transport) as a :class:`~bitswarm.transport.PeerStream`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable
from typing import cast

from bitswarm.transport._stream import ReceiverRelay, StreamReceiver

#: Transport flow control: ``pause_writing`` as soon as anything waits in our buffer (the kernel
#: took less than we wrote), ``resume_writing`` once it is empty again; the upload task writes its
#: next batch only then.
WRITE_HIGH_WATER = 0
WRITE_LOW_WATER = 0
#: Unsent bytes the kernel may hold per connection (Linux ``TCP_NOTSENT_LOWAT``): enough to keep
#: the link busy between two event-loop turns, little enough that queued requests stay cancellable.
NOTSENT_LOWAT = 32 * 1024


class TcpStream(ReceiverRelay, asyncio.BufferedProtocol):
    """The asyncio protocol of one connection; the peer connection behind it sees a PeerStream.

    Received bytes go straight into the receiver's buffers (asyncio's ``recv_into``); writes go to
    the transport. ``kind`` is ``"tcp"`` unless an asyncio-transport-like uTP stream drives it."""

    encrypted = False

    def __init__(self, receiver: StreamReceiver, *, kind: str = "tcp") -> None:
        self.receiver = receiver
        self.kind = kind
        # The receive hot path: the loop calls these once per read; bound straight to the
        # receiver's methods, a read costs no extra call through this adapter.
        self.get_buffer = receiver.get_buffer  # type: ignore[method-assign]
        self.buffer_updated = receiver.buffer_updated  # type: ignore[method-assign]
        self.transport: asyncio.Transport | None = None
        self._sock: socket.socket | None = None
        self._address: tuple[str, int] | None = None

    # -- asyncio side --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        t.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        sock = self._sock = t.get_extra_info("socket")
        lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
        if sock is not None and lowat is not None and self.kind == "tcp":
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, lowat, NOTSENT_LOWAT)
        else:
            self._sock = None
        peer = t.get_extra_info("peername")
        if peer:
            host = str(peer[0])
            if host.startswith("::ffff:") and "." in host:
                host = host[7:]  # IPv4-mapped on a dual-stack socket: the peer is an IPv4 one
            self._address = (host, int(peer[1]))
        self.receiver.connection_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:  # replaced per instance (see __init__)
        return self.receiver.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:  # replaced per instance (see __init__)
        self.receiver.buffer_updated(nbytes)

    # -- PeerStream side -----------------------------------------------------------------------

    @property
    def peer_address(self) -> tuple[str, int] | None:
        return self._address

    @property
    def socket(self) -> socket.socket | None:
        """The TCP socket (diagnostics: ``TCP_INFO``), None for other transports."""
        return self._sock

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def writelines(self, parts: Iterable[bytes | memoryview]) -> None:
        if self.transport is not None:
            self.transport.writelines(parts)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def set_receive_hint(self, nbytes: int) -> None:
        # never above what is certain to come: a peer that then waits for us must still wake us;
        # EOF and errors wake us whatever the value
        if self._sock is not None:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, max(1, nbytes))
            except OSError:
                self._sock = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect_tcp(host: str, port: int, receiver: StreamReceiver) -> TcpStream:
    """Dial ``host:port``; the receiver gets ``connection_made(stream)`` once connected."""
    loop = asyncio.get_running_loop()
    _, stream = await loop.create_connection(lambda: TcpStream(receiver), host, port)
    return stream
