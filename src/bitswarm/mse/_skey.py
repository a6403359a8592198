"""Finding the torrent an incoming MSE connection wants, from HASH('req2', SKEY) (one dict lookup)."""

from __future__ import annotations

from collections.abc import Iterable

from bitswarm.mse._crypto import req2_hash
from bitswarm.mse._errors import LocalMSEError

#: An SKEY is 20 bytes: a v1 info-hash, or a v2 (SHA-256) info-hash truncated to 20 bytes.
SKEY_LENGTH = 20


def skey_for(info_hash: bytes) -> bytes:
    """The MSE stream key of a v1 (20-byte) or v2 (32-byte) info-hash: its first 20 bytes."""
    if len(info_hash) not in (20, 32):
        raise LocalMSEError(f"an info-hash is 20 (v1) or 32 (v2) bytes, got {len(info_hash)}")
    return bytes(info_hash[:SKEY_LENGTH])


class SkeyIndex:
    """The SKEYs a responder accepts: every active torrent's v1 and v2 hashes.

    Each SKEY is stored under HASH('req2', SKEY), computed once when it is added, so identifying
    the torrent of an incoming connection (after unmasking req2^req3) is one dict lookup however
    many torrents there are. The session adds a torrent's hashes when it starts and discards them
    when it stops; the index is shared by every incoming handshake.
    """

    __slots__ = ("_by_req2",)

    def __init__(self, info_hashes: Iterable[bytes] = ()) -> None:
        self._by_req2: dict[bytes, bytes] = {}
        for h in info_hashes:
            self.add(h)

    def add(self, info_hash: bytes) -> bytes:
        """Accept connections for this v1 or v2 info-hash; returns its SKEY."""
        skey = skey_for(info_hash)
        self._by_req2[req2_hash(skey)] = skey
        return skey

    def discard(self, info_hash: bytes) -> None:
        """Stop accepting this info-hash (no error if it was not there)."""
        self._by_req2.pop(req2_hash(skey_for(info_hash)), None)

    def find(self, req2: bytes) -> bytes | None:
        """The SKEY whose HASH('req2', SKEY) is ``req2``, or ``None``."""
        return self._by_req2.get(req2)

    def __len__(self) -> int:
        return len(self._by_req2)

    def __contains__(self, info_hash: object) -> bool:
        if not isinstance(info_hash, bytes | bytearray) or len(info_hash) not in (20, 32):
            return False
        return req2_hash(bytes(info_hash[:SKEY_LENGTH])) in self._by_req2
