"""Bencoding (BEP 3): a strict, fast decoder that exposes raw byte spans, and an encoder.

Bencode is written here rather than taken from a library because bitswarm needs two things the
libraries do not give: the exact byte span of a top-level value (the info-hash is SHA-1/SHA-256 over
the *original* bytes of ``info``), and a choice between strict decoding (network input: KRPC,
trackers, extension messages) and the tolerant reading of ``.torrent`` files that libtorrent does
(unsorted or duplicate dict keys are reported, not fatal). See ``docs/benchmarks.md`` for how it
compares with ``bencode2`` and ``fastbencode``.

Decoded values: ``int``, ``bytes``, ``list`` and ``dict[bytes, ...]``. Every decoding failure raises
:class:`BencodeError` (a :class:`~bitswarm.errors.RemoteProtocolError`) carrying the byte offset.
"""

from bitswarm.bencode._codec import (
    DEFAULT_MAX_DEPTH,
    BencodeEncodeError,
    BencodeError,
    Decoded,
    decode,
    decode_full,
    decode_prefix,
    encode,
)

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "BencodeEncodeError",
    "BencodeError",
    "Decoded",
    "decode",
    "decode_full",
    "decode_prefix",
    "encode",
]
