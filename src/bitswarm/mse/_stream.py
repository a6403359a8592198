"""The payload cipher after an RC4 handshake: one object per connection, both directions."""

from __future__ import annotations

from collections.abc import Iterable

from bitswarm.mse._crypto import RC4Stream


class StreamCipher:
    """RC4 over the payload: :meth:`encrypt` what we send, :meth:`decrypt_in_place` what we receive.

    Both keystreams continue where the handshake left them, so the object must see every payload
    byte of its direction exactly once and in order. A transport wraps it like this::

        write(data)           -> inner.write(cipher.encrypt(data))
        writelines(chunks)    -> inner.writelines(cipher.encrypt_chunks(chunks))
        buffer_updated(n)     -> cipher.decrypt_in_place(buf[start:start + n]); protocol.buffer_updated(n)

    ``decrypt_in_place`` runs OpenSSL over the receive buffer itself, block slots included, so the
    zero-copy receive path keeps its single copy (the kernel's).
    """

    __slots__ = ("_dec", "_enc", "encrypt")

    def __init__(self, encrypt: RC4Stream, decrypt: RC4Stream) -> None:
        self._enc = encrypt
        self._dec = decrypt
        #: Our next outgoing bytes, encrypted, as new ``bytes`` (the caller's buffer is untouched).
        self.encrypt = encrypt.process

    def encrypt_chunks(self, chunks: Iterable[bytes | bytearray | memoryview]) -> list[bytes]:
        """Encrypt several buffers in order (for ``writelines``)."""
        process = self._enc.process
        return [process(c) for c in chunks]

    def decrypt_in_place(self, buf: bytearray | memoryview) -> None:
        """Decrypt the next ``len(buf)`` received bytes where they lie."""
        self._dec.process_in_place(buf)

    def decrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Decrypt the next ``len(data)`` received bytes into new ``bytes``."""
        return self._dec.process(data)
