"""A stream wrapped in a stream cipher (MSE/PE after its handshake: RC4 both ways)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from bitswarm.transport._stream import PeerStream, StreamReceiver, StreamWrapper


class Cipher(Protocol):
    """Both directions of a stream cipher (:class:`bitswarm.mse.StreamCipher` is one)."""

    def encrypt_chunks(self, chunks: Iterable[bytes | bytearray | memoryview]) -> list[bytes]: ...

    def decrypt_in_place(self, buf: bytearray | memoryview) -> None: ...


class CipherStream(StreamWrapper):
    """A :class:`PeerStream` over another one: writes are encrypted; received bytes are decrypted
    in place, in the upper receiver's own buffer (so a block received into its piece buffer is
    decrypted there, no extra copy). It is the inner stream's :class:`StreamReceiver`."""

    encrypted = True

    def __init__(self, receiver: StreamReceiver, cipher: Cipher) -> None:
        self.receiver = receiver
        self.cipher = cipher
        self.inner: PeerStream | None = None
        self._buf: memoryview | None = None

    # -- receiver side (called by the inner stream) --------------------------------------------

    def connection_made(self, stream: PeerStream) -> None:
        self.inner = stream
        self.receiver.connection_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        self._buf = buf = self.receiver.get_buffer(sizehint)
        return buf

    def buffer_updated(self, nbytes: int) -> None:
        buf = self._buf
        assert buf is not None
        self.cipher.decrypt_in_place(buf[:nbytes])
        self._buf = None
        self.receiver.buffer_updated(nbytes)

    # -- stream side (called by the upper receiver) --------------------------------------------

    def write(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.writelines(self.cipher.encrypt_chunks([data]))

    def writelines(self, parts: Iterable[bytes | memoryview]) -> None:
        if self.inner is not None:
            self.inner.writelines(self.cipher.encrypt_chunks(parts))
