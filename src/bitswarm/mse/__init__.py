"""Message Stream Encryption (MSE/PE): the obfuscated BitTorrent handshake and RC4 payload stream.

Sans-I/O, like :mod:`bitswarm.wire`: :class:`MSEHandshake` takes bytes (``receive_data``), reports
events (``next_event`` until :data:`NEED_DATA`) and hands out what to write (``data_to_send``).
An initiator is built with the torrent's SKEY (:func:`skey_for`) and its BitTorrent handshake as
the initial payload; a responder with the :class:`SkeyIndex` of every active torrent, and it tells
a plaintext BitTorrent handshake from MSE by itself (:func:`sniff`). After
:class:`HandshakeComplete`, :attr:`MSEHandshake.cipher` (a :class:`StreamCipher`, or ``None`` when
the plaintext method was selected) encrypts outgoing bytes and decrypts incoming bytes in place.
The peer's violations raise :class:`MSEProtocolError`, our misuse :class:`LocalMSEError`.
See ``docs/protocols/mse.md``.
"""

from bitswarm.mse._connection import (
    MAX_INITIAL_PAYLOAD,
    MAX_PAD,
    PLAINTEXT_HEADER,
    MSEHandshake,
    sniff,
)
from bitswarm.mse._crypto import RC4Stream
from bitswarm.mse._errors import LocalMSEError, MSEProtocolError
from bitswarm.mse._events import (
    NEED_DATA,
    CryptoMethod,
    EncryptionPolicy,
    Event,
    HandshakeComplete,
    PlaintextHandshake,
    Sniff,
)
from bitswarm.mse._skey import SkeyIndex, skey_for
from bitswarm.mse._state import TRANSITIONS, Role, State, Step
from bitswarm.mse._stream import StreamCipher

__all__ = [
    "MAX_INITIAL_PAYLOAD",
    "MAX_PAD",
    "NEED_DATA",
    "PLAINTEXT_HEADER",
    "TRANSITIONS",
    "CryptoMethod",
    "EncryptionPolicy",
    "Event",
    "HandshakeComplete",
    "LocalMSEError",
    "MSEHandshake",
    "MSEProtocolError",
    "PlaintextHandshake",
    "RC4Stream",
    "Role",
    "SkeyIndex",
    "Sniff",
    "State",
    "Step",
    "StreamCipher",
    "skey_for",
    "sniff",
]
