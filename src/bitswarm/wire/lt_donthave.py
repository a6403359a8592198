"""BEP 54 ``lt_donthave`` and the BEP 21 ``upload_only`` handshake key (sans-I/O).

``lt_donthave`` is a BEP 10 extension message whose payload is one big-endian 32-bit piece index:
the sender no longer has that piece (it announced it earlier with a bitfield or ``have``).
``upload_only`` (BEP 21) is an integer key of the extended handshake: 1 when the sender will not
download anything (a seed, or a *partial seed* that has every piece it wants but not all pieces);
0 (or absent) otherwise. A handshake sent again later may change it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

from bitswarm.wire._errors import WireProtocolError

#: The extension's name in the ``m`` dictionary.
LT_DONTHAVE: Final = "lt_donthave"
#: The extended-handshake key of BEP 21.
UPLOAD_ONLY_KEY: Final = b"upload_only"

_INDEX = struct.Struct(">I")


def encode_donthave(index: int) -> bytes:
    """The payload of an ``lt_donthave`` for piece ``index`` (after the extended id byte)."""
    if not 0 <= index < 1 << 32:
        raise ValueError(f"piece index {index} out of range")
    return _INDEX.pack(index)


def decode_donthave(payload: bytes, num_pieces: int | None = None) -> int:
    """The piece index of an ``lt_donthave`` payload; :class:`WireProtocolError` unless it is
    exactly 4 bytes (and, with ``num_pieces``, a valid index)."""
    if len(payload) != _INDEX.size:
        raise WireProtocolError(f"lt_donthave payload is {len(payload)} bytes, not 4")
    index: int = _INDEX.unpack(payload)[0]
    if num_pieces is not None and index >= num_pieces:
        raise WireProtocolError(f"lt_donthave for piece {index} of {num_pieces}")
    return index


def upload_only_of(extra: Mapping[bytes, Any]) -> bool | None:
    """The ``upload_only`` flag of an extended handshake's untyped keys: True/False, or None when
    the key is absent or not an integer (a later handshake that omits it changes nothing)."""
    value = extra.get(UPLOAD_ONLY_KEY)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value != 0
