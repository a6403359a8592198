"""The torrent geometry the codec validates indices and block ranges against (BEP 3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bitswarm.wire._errors import LocalWireError


class _HasPieces(Protocol):
    @property
    def num_pieces(self) -> int: ...

    @property
    def piece_length(self) -> int: ...

    def piece_size(self, index: int) -> int: ...


@dataclass(frozen=True, slots=True)
class PieceLayout:
    """Number of pieces and the size of each.

    Pieces are ``piece_length`` long except the last (``last_piece_size``), which is how BEP 3 lays
    out v1 torrents and how :class:`bitswarm.metainfo.InfoDict` numbers the piece space of every
    torrent. ``size_of`` overrides that rule for layouts where other pieces are short as well.
    """

    num_pieces: int
    piece_length: int
    last_piece_size: int
    size_of: Callable[[int], int] | None = None

    def __post_init__(self) -> None:
        if self.num_pieces < 0 or self.piece_length <= 0:
            raise LocalWireError("num_pieces must be >= 0 and piece_length > 0")
        if self.num_pieces and not 0 < self.last_piece_size <= self.piece_length:
            raise LocalWireError("last_piece_size must be in 1..piece_length")

    @classmethod
    def uniform(cls, piece_length: int, total_length: int) -> PieceLayout:
        """Layout of ``total_length`` bytes cut into ``piece_length`` pieces."""
        if piece_length <= 0 or total_length < 0:
            raise LocalWireError("piece_length must be > 0 and total_length >= 0")
        n = -(-total_length // piece_length)
        last = total_length - (n - 1) * piece_length if n else piece_length
        return cls(n, piece_length, last)

    @classmethod
    def from_info(cls, info: _HasPieces) -> PieceLayout:
        """Layout of a :class:`bitswarm.metainfo.InfoDict` (anything with ``num_pieces``,
        ``piece_length`` and ``piece_size(index)``)."""
        n = info.num_pieces
        last = info.piece_size(n - 1) if n else info.piece_length
        return cls(n, info.piece_length, last)

    def piece_size(self, index: int) -> int:
        """Size of piece ``index`` (no range check)."""
        if self.size_of is not None:
            return self.size_of(index)
        return self.last_piece_size if index == self.num_pieces - 1 else self.piece_length

    @property
    def bitfield_length(self) -> int:
        """Bytes in a bitfield: ``ceil(num_pieces / 8)``."""
        return (self.num_pieces + 7) >> 3
