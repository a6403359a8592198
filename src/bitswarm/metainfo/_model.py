"""The typed model of a .torrent file (BEP 3, 12, 19, 27, 47, 52) shared by every subsystem.

One piece space for every kind of torrent: files are laid end to end at ``FileEntry.offset``. In v1
and hybrid torrents that is the BEP 3 concatenation (with BEP 47 padding files as explicit entries,
``pad=True``); in a v2-only torrent every non-empty file starts on a piece boundary and the gap is
implicit (no entry), as libtorrent lays it out. Storage maps piece ranges onto these offsets and
never writes a padding range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bitswarm.errors import BitswarmError

TorrentVersion = Literal["v1", "v2", "hybrid"]


class MetainfoError(BitswarmError):
    """A .torrent file or magnet link is invalid. ``field`` names the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a torrent, in info-dict order."""

    path: tuple[str, ...]  #: components below the torrent's root directory (single-file v1: ``(name,)``)
    length: int
    offset: int  #: first byte of the file in the torrent's piece space
    attr: str = ""  #: BEP 47 attribute letters: ``p`` padding, ``x`` executable, ``h`` hidden, ``l`` symlink
    pieces_root: bytes | None = None  #: BEP 52 merkle root (32 bytes) of a non-empty file in v2/hybrid
    mtime: int | None = None  #: BEP 47 ``mtime``
    symlink_path: tuple[str, ...] | None = None  #: BEP 47 ``symlink path``

    @property
    def pad(self) -> bool:
        """True for a BEP 47 padding file: zeros that are never written to disk."""
        return "p" in self.attr

    @property
    def path_str(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True, slots=True)
class InfoDict:
    """The parsed ``info`` dictionary. ``raw`` is its exact bytes, the input of the info-hashes."""

    name: str
    piece_length: int
    files: tuple[FileEntry, ...]  #: every entry in order, padding files included (``pad=True``)
    single_file: bool  #: v1 single-file form (``length`` at the top of ``info``)
    pieces: bytes | None  #: v1 concatenated SHA-1 piece hashes (None in a v2-only torrent)
    meta_version: int | None  #: 2 for v2 and hybrid (BEP 52)
    private: bool  #: BEP 27
    source: str | None
    raw: bytes

    @property
    def total_size(self) -> int:
        """Bytes of real data (padding excluded)."""
        return sum(f.length for f in self.files if not f.pad)

    @property
    def data_files(self) -> tuple[FileEntry, ...]:
        """The files that hold data (padding files excluded)."""
        return tuple(f for f in self.files if not f.pad)

    @property
    def piece_space(self) -> int:
        """Length of the piece space: the end of the last file (padding and v2 gaps included)."""
        if not self.files:
            return 0
        last = self.files[-1]
        return last.offset + last.length

    @property
    def num_pieces(self) -> int:
        return -(-self.piece_space // self.piece_length)

    def piece_size(self, index: int) -> int:
        """Bytes in piece ``index`` (the last piece may be short)."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(index)
        return min(self.piece_length, self.piece_space - index * self.piece_length)

    def piece_hash_v1(self, index: int) -> bytes:
        if self.pieces is None:
            raise MetainfoError("torrent has no v1 piece hashes", "pieces")
        return self.pieces[index * 20 : index * 20 + 20]


@dataclass(frozen=True, slots=True)
class Torrent:
    """A complete .torrent file."""

    info: InfoDict
    info_hash_v1: bytes | None  #: SHA-1 of ``info.raw`` (v1 and hybrid)
    info_hash_v2: bytes | None  #: SHA-256 of ``info.raw`` (v2 and hybrid)
    trackers: list[list[str]] = field(default_factory=list)  #: BEP 12 tiers (``announce`` alone = one tier)
    url_list: list[str] = field(default_factory=list)  #: BEP 19 web seeds
    httpseeds: list[str] = field(default_factory=list)  #: BEP 17 HTTP seeds (``httpseeds``)
    piece_layers: dict[bytes, bytes] = field(default_factory=dict)  #: BEP 52: pieces root -> hashes
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None
    nodes: list[tuple[str, int]] = field(default_factory=list)  #: BEP 5 DHT bootstrap nodes
    raw: bytes = b""  #: the whole file as read (empty for a torrent built from a magnet's metadata)

    @property
    def version(self) -> TorrentVersion:
        if self.info_hash_v1 is not None and self.info_hash_v2 is not None:
            return "hybrid"
        return "v2" if self.info_hash_v2 is not None else "v1"

    @property
    def info_hash_v2_short(self) -> bytes | None:
        """The v2 info-hash truncated to 20 bytes, as used in the peer handshake and the DHT."""
        return None if self.info_hash_v2 is None else self.info_hash_v2[:20]

    @property
    def swarm_hash(self) -> bytes:
        """The 20-byte hash this torrent's swarm is known by (v1 if present, else truncated v2)."""
        h = self.info_hash_v1 or self.info_hash_v2_short
        assert h is not None
        return h

    @property
    def name(self) -> str:
        return self.info.name
