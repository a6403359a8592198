"""What the MSE handshake reports, and the policy/method vocabulary."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class EncryptionPolicy(enum.Enum):
    """The user's ``encryption`` setting (``--encryption``)."""

    #: Outgoing: MSE offering RC4 and plaintext (the driver retries plaintext BitTorrent if the peer
    #: refuses MSE). Incoming: plaintext BitTorrent and MSE both accepted; RC4 selected when offered.
    PREFER = "prefer"
    #: MSE only, RC4 only, both ways: plaintext handshakes and plaintext payloads are refused.
    REQUIRE = "require"
    #: Never MSE: outgoing speaks plaintext BitTorrent, incoming MSE is refused.
    OFF = "off"


class CryptoMethod(enum.IntFlag):
    """``crypto_provide`` / ``crypto_select`` bits (32-bit big-endian on the wire)."""

    PLAINTEXT = 0x01
    RC4 = 0x02


class Sniff(enum.Enum):
    """What the first bytes of an incoming connection are (see :func:`sniff`)."""

    #: Still a prefix of ``\\x13BitTorrent protocol``: read more.
    NEED_MORE = "NEED_MORE"
    #: A plaintext BitTorrent handshake (BEP 3).
    PLAINTEXT = "PLAINTEXT"
    #: Anything else: an MSE DH key (or garbage, which the handshake will find out).
    ENCRYPTED = "ENCRYPTED"


class Event:
    """Base class of what :meth:`MSEHandshake.next_event` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class PlaintextHandshake(Event):
    """Responder only: the peer opened with a plaintext BitTorrent handshake, not MSE.

    ``data`` is every byte received so far; hand it unchanged to the wire codec and keep reading
    plaintext. Never reported under :attr:`EncryptionPolicy.REQUIRE` (that is an error instead).
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class HandshakeComplete(Event):
    """The MSE handshake succeeded; the payload stream starts.

    Feed ``initial_payload`` then ``trailing`` to the wire codec, in that order: both are already
    decrypted. From here on the connection's :attr:`MSEHandshake.cipher` (``None`` for
    :attr:`CryptoMethod.PLAINTEXT`) encrypts what we send and decrypts what we receive.
    """

    #: The method the responder selected: RC4 or PLAINTEXT.
    method: CryptoMethod
    #: The 20-byte stream key: the torrent's v1 info-hash or truncated v2 info-hash.
    skey: bytes
    #: Responder: the decrypted IA (normally the peer's BitTorrent handshake). Initiator: ``b""``.
    initial_payload: bytes
    #: Payload bytes that came in the same reads as the end of the handshake, decrypted.
    trailing: bytes


class _Need(enum.Enum):
    NEED_DATA = "NEED_DATA"


#: :meth:`MSEHandshake.next_event` needs more bytes from the peer.
NEED_DATA: Final = _Need.NEED_DATA
