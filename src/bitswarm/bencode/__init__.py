"""Bencoding (BEP 3): a strict, fast decoder that exposes raw byte spans, and an encoder.

Bencode is written here rather than taken from a library because bitswarm needs two things the
libraries do not give: the exact byte span of a top-level value (the info-hash is SHA-1/SHA-256 over
the *original* bytes of ``info``), and a choice between strict decoding (network input: KRPC,
trackers, extension messages) and the tolerant reading of ``.torrent`` files that libtorrent does
(unsorted or duplicate dict keys are reported, not fatal).

Speed: strict decoding and encoding run on the compiled ``bencode2`` library, which a differential
Hypothesis test shows accepts exactly what our pure-Python reference decoder accepts; spans of a
strictly valid top-level dict follow from re-encoding (canonical input re-encodes byte for byte). The
reference decoder runs when bencode2 rejects (to name the reason and offset), for ``strict=False``
and for a non-default ``max_depth``. Depth limits: 4096 on the fast path (bencode2, iterative),
:data:`DEFAULT_MAX_DEPTH` on the reference path. See ``docs/benchmarks.md`` for the measurements.

Decoded values: ``int``, ``bytes``, ``list`` and ``dict[bytes, ...]``. Every decoding failure raises
:class:`BencodeError` (a :class:`~bitswarm.errors.RemoteProtocolError`) carrying the byte offset. An
integer has at most 20 digits (every 64-bit value fits; ``.torrent`` files included): a longer one is a
``BencodeError`` on the fast path too, whose input is pre-scanned for one (``docs/security.md``).
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
