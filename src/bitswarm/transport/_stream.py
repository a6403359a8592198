"""The two halves of the seam: what a peer connection needs from its stream, and what it offers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class PeerStream(Protocol):
    """A reliable, ordered byte stream to one peer (TCP, uTP, either one encrypted)."""

    @property
    def kind(self) -> str:
        """``"tcp"`` or ``"utp"`` (status, BEP 11 PEX flags)."""
        ...

    @property
    def encrypted(self) -> bool:
        """True when the payload is encrypted (MSE/PE)."""
        ...

    @property
    def peer_address(self) -> tuple[str, int] | None:
        """The remote (IP, port), if known."""
        ...

    def write(self, data: bytes) -> None: ...

    def writelines(self, parts: Iterable[bytes | memoryview]) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_receive_hint(self, nbytes: int) -> None:
        """At least ``nbytes`` more bytes are certain to come: the stream may wait for all of them
        before its next ``buffer_updated`` (TCP: ``SO_RCVLOWAT``; others may ignore it). 1 resets."""
        ...

    def close(self) -> None:
        """Close after the buffered writes are sent."""
        ...

    def abort(self) -> None:
        """Close at once, dropping buffered writes."""
        ...


class StreamReceiver(Protocol):
    """The receiving end of a :class:`PeerStream` (a peer connection, or a wrapping stream)."""

    def connection_made(self, stream: PeerStream) -> None: ...

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the stream writes the next received bytes (``sizehint`` -1: any size)."""
        ...

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the last buffer given out."""
        ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None:
        """The stream's write buffer is full: stop writing until :meth:`resume_writing`."""
        ...

    def resume_writing(self) -> None: ...


class ReceiverRelay:
    """Passes the end-of-stream and flow-control callbacks on to ``self.receiver`` (for streams and
    wrappers that sit below a receiver)."""

    receiver: StreamReceiver

    def eof_received(self) -> bool | None:
        return self.receiver.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.receiver.connection_lost(exc)

    def pause_writing(self) -> None:
        self.receiver.pause_writing()

    def resume_writing(self) -> None:
        self.receiver.resume_writing()


def deliver(receiver: StreamReceiver, data: bytes | bytearray | memoryview) -> None:
    """Hand ``data`` to a buffered receiver in as many ``get_buffer``/``buffer_updated`` rounds as
    its buffers take (one copy, into the receiver's buffer: a block sink still receives in place)."""
    view = memoryview(data)
    while view:
        buf = receiver.get_buffer(len(view))
        n = min(len(buf), len(view))
        if n == 0:
            raise BufferError("the receiver offered an empty buffer")
        buf[:n] = view[:n]
        receiver.buffer_updated(n)
        view = view[n:]


class StreamWrapper(ReceiverRelay):
    """A stream over another one (``inner``, set by ``connection_made``): address, kind, flow
    control and closing pass through; subclasses transform what is read and written."""

    inner: PeerStream | None = None

    @property
    def kind(self) -> str:
        return self.inner.kind if self.inner is not None else "tcp"

    @property
    def peer_address(self) -> tuple[str, int] | None:
        return self.inner.peer_address if self.inner is not None else None

    def pause_reading(self) -> None:
        if self.inner is not None:
            self.inner.pause_reading()

    def resume_reading(self) -> None:
        if self.inner is not None:
            self.inner.resume_reading()

    def set_receive_hint(self, nbytes: int) -> None:
        if self.inner is not None:
            self.inner.set_receive_hint(nbytes)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()

    def abort(self) -> None:
        if self.inner is not None:
            self.inner.abort()
