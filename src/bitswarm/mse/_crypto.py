"""MSE primitives: the 768-bit Diffie-Hellman group, the handshake hashes and RC4 streams.

RC4 is OpenSSL's, through ``cryptography``; SHA-1 is ``hashlib``'s. Diffie-Hellman is CPython's
``pow()`` on ints (C code, not a pure-Python loop). ``cryptography``'s ``dh`` module was measured
first (``bench/bench_mse.py``): its key generation and exchange are fast (~0.2 ms each), but loading
the peer's public key from the number on the wire costs ~22 ms, because OpenSSL re-checks the group
on every key load -- that alone caps a core at ~45 handshakes/s -- and ``cryptography`` 50
deprecates finite-field DH with a warning on each use. ``pow()`` with the spec's 160-bit private
exponents costs ~0.25 ms per modular exponentiation, ~0.5 ms per side per handshake.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from bitswarm.mse._errors import LocalMSEError, MSEProtocolError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import CipherContext


def _rc4_encryptor(key: bytes) -> CipherContext:
    """OpenSSL's RC4 keyed with ``key``. ``cryptography`` is imported here, at the first RC4 stream:
    a process whose peers all talk plaintext (``--encryption off``, or ``prefer`` against plaintext
    peers) never loads it (issue 24: start-up time)."""
    from cryptography.hazmat.primitives.ciphers import Cipher

    arc4: Any
    try:  # cryptography >= 43 keeps RC4 among the "decrepit" algorithms
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4 as arc4
    except ImportError:  # pragma: no cover - cryptography 42
        from cryptography.hazmat.primitives.ciphers.algorithms import ARC4 as arc4
    return Cipher(arc4(key), mode=None).encryptor()


#: The MSE prime (768 bits) and generator.
P: Final = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E34"
    "04DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A362100000000"
    "00090563",
    16,
)
G: Final = 2
#: Public keys and the shared secret travel as 96-byte big-endian numbers.
KEY_LENGTH: Final = 96
#: Private exponent size: the spec recommends 160 bits (at least 128; beyond 180 adds nothing).
PRIVATE_KEY_BYTES: Final = 20
#: RC4 keystream bytes thrown away before use, each direction.
RC4_DISCARD: Final = 1024
#: The verification constant: 8 zero bytes, sent encrypted.
VC: Final = bytes(8)

_DISCARD_BLOCK: Final = bytes(RC4_DISCARD)


def private_key(random_bytes: Callable[[int], bytes]) -> int:
    """A fresh 160-bit private exponent (never 0 or 1)."""
    return max(int.from_bytes(random_bytes(PRIVATE_KEY_BYTES), "big"), 2)


def public_key(private: int) -> bytes:
    """``G**private mod P`` as 96 big-endian bytes (Ya / Yb)."""
    return pow(G, private, P).to_bytes(KEY_LENGTH, "big")


def shared_secret(private: int, remote_public: bytes) -> bytes:
    """``S = remote**private mod P`` as 96 big-endian bytes.

    A remote key outside ``2 .. P-2`` (0, 1, P-1 or not reduced) would pin S to a value an observer
    can guess: :class:`MSEProtocolError`.
    """
    y = int.from_bytes(remote_public, "big")
    if not 1 < y < P - 1:
        raise MSEProtocolError("invalid Diffie-Hellman public key from the peer (outside 2..P-2)")
    return pow(y, private, P).to_bytes(KEY_LENGTH, "big")


def sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for part in parts:
        h.update(part)
    return h.digest()


def req1_hash(secret: bytes) -> bytes:
    """HASH('req1', S): the responder synchronises on it."""
    return sha1(b"req1", secret)


def req2_hash(skey: bytes) -> bytes:
    """HASH('req2', SKEY): identifies the torrent once xored with HASH('req3', S)."""
    return sha1(b"req2", skey)


def req3_hash(secret: bytes) -> bytes:
    """HASH('req3', S): the mask over HASH('req2', SKEY)."""
    return sha1(b"req3", secret)


def xor20(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(20, "big")


class RC4Stream:
    """One direction of an MSE RC4 stream: keyed with a 20-byte SHA-1 key, first 1024 bytes dropped.

    Encryption and decryption are the same operation; :meth:`process_in_place` runs OpenSSL over a
    writable buffer without copying (the receive path decrypts in the receive buffer).
    """

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 20:
            raise LocalMSEError(f"RC4 key must be 20 bytes, got {len(key)}")
        ctx = _rc4_encryptor(key)
        ctx.update(_DISCARD_BLOCK)
        self._ctx = ctx

    def process(self, data: bytes | bytearray | memoryview) -> bytes:
        """The next ``len(data)`` bytes of the stream xored with ``data``, as new bytes."""
        return self._ctx.update(data)

    def process_in_place(self, buf: bytearray | memoryview) -> None:
        """Xor the next ``len(buf)`` stream bytes into ``buf`` itself (no copy).

        OpenSSL documents in == out as supported for its ciphers; RC4 keeps no partial block, so
        full overlap is exact (``tests/mse`` checks it against :meth:`process`).
        """
        if len(buf):
            self._ctx.update_into(buf, buf)


def key_a(secret: bytes, skey: bytes) -> bytes:
    """HASH('keyA', S, SKEY): the initiator's sending key (the responder decrypts with it)."""
    return sha1(b"keyA", secret, skey)


def key_b(secret: bytes, skey: bytes) -> bytes:
    """HASH('keyB', S, SKEY): the responder's sending key."""
    return sha1(b"keyB", secret, skey)
