"""BEP 44 (arbitrary data in the DHT): targets, the signed buffer, ed25519 sign/verify.

Immutable items live at ``SHA-1(bencoded v)``; mutable ones at ``SHA-1(k + salt)`` and carry an
ed25519 signature over ``[4:salt<len>:<salt>]3:seqi<seq>e1:v<bencoded v>`` (made with the
``cryptography`` package).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# ``cryptography`` is imported by sign/verify only: every peer process runs a DHT node, few of them
# ever see a mutable item, and the import costs ~5 ms of CPU at start.

__all__ = [
    "MAX_SALT",
    "MAX_V",
    "immutable_target",
    "mutable_target",
    "sign",
    "signature_buffer",
    "verify",
]

MAX_V: Final = 1000  # bytes of bencoded ``v`` a storing node accepts
MAX_SALT: Final = 64


def immutable_target(v: bytes) -> bytes:
    """Target of an immutable item: SHA-1 of its bencoded value."""
    return hashlib.sha1(v).digest()


def mutable_target(k: bytes, salt: bytes = b"") -> bytes:
    """Target of a mutable item: SHA-1 of the public key followed by the salt."""
    return hashlib.sha1(k + salt).digest()


def signature_buffer(seq: int, v: bytes, salt: bytes = b"") -> bytes:
    """The bytes a mutable item's signature covers (``v`` already bencoded)."""
    prefix = b"4:salt%d:%s" % (len(salt), salt) if salt else b""
    return prefix + b"3:seqi%de1:v" % seq + v


def sign(private_key: Ed25519PrivateKey, seq: int, v: bytes, salt: bytes = b"") -> bytes:
    """64-byte ed25519 signature of a mutable item."""
    return private_key.sign(signature_buffer(seq, v, salt))


def verify(k: bytes, sig: bytes, seq: int, v: bytes, salt: bytes = b"") -> bool:
    """True when ``sig`` is a valid signature by public key ``k`` of the item."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(k).verify(sig, signature_buffer(seq, v, salt))
    except (InvalidSignature, ValueError):
        return False
    return True
