"""The bencode codec proper. Pure functions over ``bytes``; no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bitswarm.errors import LocalProtocolError, RemoteProtocolError

_fast: Any
try:  # The compiled, strict bencode2 is the fast path; the pure-Python decoder below is the reference.
    import bencode2 as _fast
except ImportError:  # pragma: no cover - bencode2 is a declared dependency
    _fast = None

#: Deepest nesting of lists/dicts accepted by default (a v2 ``file tree`` nests once per directory).
DEFAULT_MAX_DEPTH = 256
#: Longest integer accepted, in digits (a ``-`` sign not counted): every 64-bit integer, signed or
#: unsigned, has at most 20. One bound for every input, ``.torrent`` files included: their integers
#: (lengths, piece length, creation date) are 64-bit in every client, and libtorrent rejects longer
#: ones too. Without it a 5,000-digit integer would hit Python's int-string limit (``ValueError``)
#: or cost quadratic time to convert.
MAX_INT_DIGITS = 20
#: Where an integer longer than :data:`MAX_INT_DIGITS` may start (may also match inside a string, or a
#: 20-digit negative): such input skips the fast path, and the reference decoder decides.
_LONG_INT = re.compile(rb"i[-0-9][0-9]{%d}" % MAX_INT_DIGITS)

_D, _L, _I, _E, _COLON, _MINUS, _ZERO = 100, 108, 105, 101, 58, 45, 48


class BencodeError(RemoteProtocolError):
    """Bencoded input is malformed. ``offset`` is the index of the offending byte."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte {offset}")
        self.offset = offset
        self.reason = message


class BencodeEncodeError(LocalProtocolError):
    """A value cannot be bencoded (wrong type, non-bytes/str key, duplicate key, float, None ...)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """Result of :func:`decode_full`.

    ``spans`` maps each key of a top-level dict to the ``(start, end)`` byte span of its raw value, so
    ``data[start:end]`` is the value exactly as it was sent. ``issues`` lists what a tolerant
    (``strict=False``) decode let pass: unsorted or duplicate dict keys, each with its offset.
    """

    value: Any
    spans: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    issues: tuple[str, ...] = ()


class _Decoder:
    __slots__ = ("data", "issues", "max_depth", "n", "strict")

    def __init__(self, data: bytes, strict: bool, max_depth: int) -> None:
        self.data = data
        self.n = len(data)
        self.strict = strict
        self.max_depth = max_depth
        self.issues: list[str] = []

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        data = self.data
        if pos >= self.n:
            raise BencodeError("unexpected end of data", pos)
        c = data[pos]
        if 48 <= c <= 57:
            return self.string(pos)
        if c == _I:
            return self.integer(pos)
        if c == _L:
            if depth >= self.max_depth:
                raise BencodeError(f"nesting deeper than {self.max_depth}", pos)
            out: list[Any] = []
            append = out.append
            pos += 1
            value = self.value
            while True:
                if pos >= self.n:
                    raise BencodeError("unterminated list", pos)
                if data[pos] == _E:
                    return out, pos + 1
                item, pos = value(pos, depth + 1)
                append(item)
        if c == _D:
            if depth >= self.max_depth:
                raise BencodeError(f"nesting deeper than {self.max_depth}", pos)
            return self.dictionary(pos, depth, None)
        raise BencodeError(f"invalid type byte {bytes([c])!r}", pos)

    def dictionary(
        self, pos: int, depth: int, spans: dict[bytes, tuple[int, int]] | None
    ) -> tuple[dict[bytes, Any], int]:
        data = self.data
        out: dict[bytes, Any] = {}
        pos += 1
        last: bytes | None = None
        value = self.value
        while True:
            if pos >= self.n:
                raise BencodeError("unterminated dict", pos)
            c = data[pos]
            if c == _E:
                return out, pos + 1
            if not 48 <= c <= 57:
                raise BencodeError("dict key is not a byte string", pos)
            key_pos = pos
            key, pos = self.string(pos)
            start = pos
            item, pos = value(pos, depth + 1)
            if last is not None and key <= last:
                what = "duplicate" if key == last or key in out else "unsorted"
                if self.strict:
                    raise BencodeError(f"{what} dict key {key[:40]!r}", key_pos)
                self.issues.append(f"{what} dict key {key[:40]!r} at byte {key_pos}")
                if key in out:
                    continue  # keep the first occurrence, as libtorrent's dict_find does
            out[key] = item
            if spans is not None:
                spans[key] = (start, pos)
            last = key

    def string(self, pos: int) -> tuple[bytes, int]:
        data = self.data
        colon = data.find(b":", pos, pos + 21)
        if colon < 0:
            raise BencodeError("bad string length", pos)
        digits = data[pos:colon]
        if not digits.isdigit() or (digits[0] == _ZERO and len(digits) > 1):
            raise BencodeError("bad string length", pos)
        end = colon + 1 + int(digits)
        if end > self.n:
            raise BencodeError("string runs past the end of data", pos)
        return data[colon + 1 : end], end

    def integer(self, pos: int) -> tuple[int, int]:
        data = self.data
        end = data.find(b"e", pos + 1, pos + 2 + MAX_INT_DIGITS + 1)
        if end < 0:
            raise BencodeError(f"unterminated integer or longer than {MAX_INT_DIGITS} digits", pos)
        digits = data[pos + 1 : end]
        if len(digits) > MAX_INT_DIGITS and digits[:1] != b"-":
            raise BencodeError(f"integer longer than {MAX_INT_DIGITS} digits", pos)
        if digits.isdigit():
            if digits[0] == _ZERO and len(digits) > 1:
                raise BencodeError("integer with a leading zero", pos)
        elif digits[:1] == b"-" and digits[1:].isdigit():
            if digits[1] == _ZERO:
                raise BencodeError("negative zero or leading zero in integer", pos)
        else:
            raise BencodeError("bad integer", pos)
        return int(digits), end + 1


def _has_long_int(data: bytes) -> bool:
    """True if ``data`` may hold an integer the fast path would accept but the bound rejects."""
    try:
        return _LONG_INT.search(data) is not None
    except TypeError:  # not a bytes-like object: the decoders name the error
        return False


def decode(data: bytes, *, strict: bool = True, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode one complete bencoded value; trailing bytes are an error."""
    if _fast is not None and strict and max_depth == DEFAULT_MAX_DEPTH and not _has_long_int(data):
        try:
            return _fast.bdecode(data)
        except (_fast.BencodeDecodeError, TypeError, ValueError):
            pass  # fall through: the reference decoder names the reason and the offset
    value, end = decode_prefix(data, strict=strict, max_depth=max_depth)
    if end != len(data):
        raise BencodeError("trailing bytes after the value", end)
    return value


def decode_prefix(
    data: bytes, start: int = 0, *, strict: bool = True, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[Any, int]:
    """Decode the value starting at ``start`` and return it with the offset just past it.

    For framings that put raw bytes after a bencoded dict (BEP 9 ``ut_metadata`` data messages).
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    dec = _Decoder(data, strict, max_depth)
    try:
        return dec.value(start, 0)
    except RecursionError:
        raise BencodeError("nesting too deep", start) from None


def decode_full(data: bytes, *, strict: bool = True, max_depth: int = DEFAULT_MAX_DEPTH) -> Decoded:
    """Decode a complete value and, for a top-level dict, the raw span of each of its values."""
    if not isinstance(data, bytes):
        data = bytes(data)
    if _fast is not None and max_depth == DEFAULT_MAX_DEPTH and data[:1] == b"d" and not _has_long_int(data):
        fast = _fast_full(data)
        if fast is not None:
            return fast
    dec = _Decoder(data, strict, max_depth)
    spans: dict[bytes, tuple[int, int]] = {}
    try:
        if data[:1] == b"d":
            value, end = dec.dictionary(0, 0, spans)
        else:
            value, end = dec.value(0, 0)
    except RecursionError:
        raise BencodeError("nesting too deep", 0) from None
    if end != len(data):
        raise BencodeError("trailing bytes after the value", end)
    return Decoded(value, spans, tuple(dec.issues))


def _fast_full(data: bytes) -> Decoded | None:
    """Spans of a strictly valid top-level dict, without walking it in Python.

    Strictly valid input is canonical, so every value re-encodes to its original bytes: spans follow
    from the encoded lengths, each checked against the input. The largest value (``info`` in a
    torrent) is not re-encoded at all: its span lies between its neighbours' spans, computed forward
    from the start and backward from the end. None means: use the reference decoder.
    """
    assert _fast is not None
    try:
        value = _fast.bdecode(data)
        keys = list(value)
        skip = keys.index(b"info") if b"info" in value else len(keys)
        spans: dict[bytes, tuple[int, int]] = {}
        pos = 1
        for key in keys[:skip]:
            pos += len(b"%d:" % len(key)) + len(key)
            raw = _fast.bencode(value[key])
            end = pos + len(raw)
            if data[pos:end] != raw:
                return None
            spans[key] = (pos, end)
            pos = end
        if skip < len(keys):
            end = len(data) - 1  # before the dict's closing "e"
            for key in reversed(keys[skip + 1 :]):
                raw = _fast.bencode(value[key])
                start = end - len(raw)
                if data[start:end] != raw:
                    return None
                spans[key] = (start, end)
                end = start - len(b"%d:" % len(key)) - len(key)
            key = keys[skip]
            pos += len(b"%d:" % len(key)) + len(key)
            if data[pos - len(key) : pos] != key or pos > end:
                return None
            spans[key] = (pos, end)
            spans = {k: spans[k] for k in keys}
    except (_fast.BencodeDecodeError, _fast.BencodeEncodeError, TypeError, ValueError):
        return None
    return Decoded(value, spans, ())


def _encode_into(value: Any, out: list[bytes]) -> None:
    t = type(value)
    if t is bytes:
        out.append(b"%d:" % len(value))
        out.append(value)
    elif t is int:
        out.append(b"i%de" % value)
    elif t is dict or isinstance(value, Mapping):
        out.append(b"d")
        items = []
        for k, v in value.items():
            if type(k) is str:
                k = k.encode()
            elif type(k) is not bytes:
                raise BencodeEncodeError(f"dict key must be bytes or str, not {type(k).__name__}")
            items.append((k, v))
        items.sort(key=lambda kv: kv[0])
        prev = None
        for k, v in items:
            if k == prev:
                raise BencodeEncodeError(f"duplicate dict key {k!r}")
            prev = k
            out.append(b"%d:" % len(k))
            out.append(k)
            _encode_into(v, out)
        out.append(b"e")
    elif t is list or t is tuple:
        out.append(b"l")
        for item in value:
            _encode_into(item, out)
        out.append(b"e")
    elif t is str:
        raw = value.encode()
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif t is bytearray or t is memoryview:
        raw = bytes(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, int):  # bool included: True -> i1e, as bencode2 does
        out.append(b"i%de" % int(value))
    else:
        raise BencodeEncodeError(f"cannot bencode a value of type {t.__name__}")


def encode(value: Any) -> bytes:
    """Bencode ``value``: bytes/bytearray/memoryview/str, int, list/tuple, dict (keys sorted as bytes)."""
    if _fast is not None:
        try:
            result: bytes = _fast.bencode(value)
            return result
        except (_fast.BencodeEncodeError, TypeError, ValueError, OverflowError):
            pass  # fall through: the reference encoder raises the typed error with a clear message
    out: list[bytes] = []
    try:
        _encode_into(value, out)
    except RecursionError:
        raise BencodeEncodeError("value nests too deeply to encode") from None
    return b"".join(out)
