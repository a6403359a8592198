"""Torrent storage: pieces onto files, disk I/O and hashing off the event loop, resume data.

BEP 3 (v1 SHA-1 pieces, file concatenation), BEP 47 (padding files: never written), BEP 52 (v2:
piece-aligned files, SHA-256 merkle verification against piece layers). See :class:`Storage`.
"""

from bitswarm.storage._filemap import Extent, FileMap, PathEscapeError, StorageError
from bitswarm.storage._prealloc import PREALLOCATION_MODES, DiskSpaceError, Preallocation
from bitswarm.storage._storage import (
    DEFAULT_MAX_INFLIGHT_BYTES,
    ProgressCallback,
    SendSegment,
    Storage,
    StorageStats,
)
from bitswarm.storage.bitfield import Bitfield, BitfieldError
from bitswarm.storage.resume import ResumeData, load_resume, save_resume_file

__all__ = [
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "PREALLOCATION_MODES",
    "Bitfield",
    "BitfieldError",
    "DiskSpaceError",
    "Extent",
    "FileMap",
    "PathEscapeError",
    "Preallocation",
    "ProgressCallback",
    "ResumeData",
    "SendSegment",
    "Storage",
    "StorageError",
    "StorageStats",
    "load_resume",
    "save_resume_file",
]
