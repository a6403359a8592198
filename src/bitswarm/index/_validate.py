"""Checks every front end runs on client input before it reaches the store (raise ValidationError)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from bitswarm.index._errors import ValidationError
from bitswarm.index._model import Chunk, FileSpec

MAX_NAME = 1024
MAX_HASH = 128
MAX_CHUNKS = 100_000
MAX_PATH = 4096
MAX_PASSWORD = 1024
_USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_OPAQUE_HASH = re.compile(r"[!-~]{1,128}")  # printable ASCII, no spaces
_HEX_LEN = {"sha1": 40, "md5": 32, "btih_v1": 40, "btih_v2": 64, "sha256": 64}
MAX_INT = 2**63 - 1


def name(value: object, what: str = "name") -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string")
    if not value or len(value) > MAX_NAME:
        raise ValidationError(f"{what} must have 1 to {MAX_NAME} characters")
    if any(c in value for c in "\x00\n\r") or ("|" in value and what == "filename"):
        raise ValidationError(f"{what} has a forbidden character")
    return value


def hex_hash(value: object, algo: str) -> str:
    """A hex digest of the right length for ``algo``, lower-cased."""
    if not isinstance(value, str) or len(value) != _HEX_LEN[algo] or not _HEX.fullmatch(value):
        raise ValidationError(f"{algo} must be {_HEX_LEN[algo]} hex digits")
    return value.lower()


def opaque_hash(value: object, what: str = "hash") -> str:
    """Seed 000 ``full_hash``/``chunk_hash``: called a SHA-256 but shown as base64 and as free text in
    the examples, so any 1–128 printable ASCII characters; a 64-hex value is lower-cased."""
    if not isinstance(value, str) or not _OPAQUE_HASH.fullmatch(value):
        raise ValidationError(f"{what} must be 1 to {MAX_HASH} printable ASCII characters")
    if len(value) == 64 and _HEX.fullmatch(value):
        return value.lower()
    return value


def integer(value: object, what: str, *, lo: int = 0, hi: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be an integer")
    if not lo <= value <= hi:
        raise ValidationError(f"{what} must be between {lo} and {hi}")
    return value


def guid(value: object, what: str = "guid") -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationError(f"{what} must be a UUID") from None


def username(value: object) -> str:
    if not isinstance(value, str) or not _USERNAME.fullmatch(value):
        raise ValidationError("username must be 1 to 64 of A-Z a-z 0-9 _ . @ -")
    return value


def password(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_PASSWORD or "\n" in value:
        raise ValidationError(f"password must be 1 to {MAX_PASSWORD} characters without newline")
    return value


def ip(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("ip must be a string")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValidationError(f"bad ip address {value[:64]!r}") from None


def port(value: object) -> int:
    return integer(value, "port", lo=1, hi=65535)


def path(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_PATH or "\x00" in value:
        raise ValidationError(f"path must be a string of at most {MAX_PATH} characters")
    return value


def chunks(value: object, *, hash_key: str = "chunk_hash") -> tuple[Chunk, ...]:
    """Seed 000 chunk list ``[{"id": int, "name": str, "chunk_hash": str}]``; ids must be unique."""
    if not isinstance(value, list):
        raise ValidationError("chunks must be a list")
    if len(value) > MAX_CHUNKS:
        raise ValidationError(f"at most {MAX_CHUNKS} chunks")
    out: list[Chunk] = []
    seen: set[int] = set()
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValidationError(f"chunks[{i}] must be an object")
        cid = integer(item.get("id"), f"chunks[{i}].id")
        if cid in seen:
            raise ValidationError(f"duplicate chunk id {cid}")
        seen.add(cid)
        out.append(Chunk(cid, name(item.get("name"), f"chunks[{i}].name"), opaque_hash(item.get(hash_key))))
    return tuple(out)


def magnet(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("magnet:?") or len(value) > 8192:
        raise ValidationError("magnet must be a magnet: URI")
    return value


def file_spec(
    *,
    file_name: object,
    size: object = None,
    sha1: object = None,
    sha256: object = None,
    md5: object = None,
    btih_v1: object = None,
    btih_v2: object = None,
    magnet_uri: object = None,
    chunk_list: Iterable[Chunk] = (),
    torrent: bytes | None = None,
) -> FileSpec:
    if torrent is not None:
        btih_v1, btih_v2, size = _torrent_hashes(torrent, btih_v1, btih_v2, size)
    spec = FileSpec(
        name=name(file_name),
        size=None if size is None else integer(size, "size"),
        sha1=None if sha1 is None else hex_hash(sha1, "sha1"),
        sha256=None if sha256 is None else opaque_hash(sha256, "sha256"),
        md5=None if md5 is None else hex_hash(md5, "md5"),
        btih_v1=None if btih_v1 is None else hex_hash(btih_v1, "btih_v1"),
        btih_v2=None if btih_v2 is None else hex_hash(btih_v2, "btih_v2"),
        magnet=None if magnet_uri is None else magnet(magnet_uri),
        chunks=tuple(chunk_list),
        torrent=torrent,
    )
    if not spec.hashes():
        raise ValidationError("a file needs at least one of sha1, sha256, md5, btih_v1, btih_v2")
    if spec.magnet is None and (spec.btih_v1 or spec.btih_v2):
        spec = _with_magnet(spec)
    return spec


MAX_TORRENT = 8 << 20


def torrent_b64(value: object) -> bytes:
    """A base64 .torrent from a JSON body (checked to be valid metainfo by :func:`file_spec`)."""
    if not isinstance(value, str) or len(value) > MAX_TORRENT * 4 // 3 + 4:
        raise ValidationError("torrent must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("torrent is not valid base64") from None
    if not data:
        raise ValidationError("torrent is empty")
    return data


def _torrent_hashes(
    data: bytes, btih_v1: object, btih_v2: object, size: object
) -> tuple[object, object, object]:
    """BEP 3 / BEP 52 info-hashes (and total size) of a .torrent; given hashes must agree."""
    from bitswarm.metainfo import parse_torrent

    try:
        t = parse_torrent(data)
    except Exception as exc:  # MetainfoError, BencodeError: anything bad in client bytes
        raise ValidationError(f"torrent is not valid metainfo: {str(exc)[:200]}") from None
    mine_v1 = None if t.info_hash_v1 is None else t.info_hash_v1.hex()
    mine_v2 = None if t.info_hash_v2 is None else t.info_hash_v2.hex()
    for given, mine, what in ((btih_v1, mine_v1, "info_hash_v1"), (btih_v2, mine_v2, "info_hash_v2")):
        if given is not None and (not isinstance(given, str) or given.lower() != mine):
            raise ValidationError(f"{what} does not match the torrent")
    return mine_v1, mine_v2, t.info.total_size if size is None else size


def _with_magnet(spec: FileSpec) -> FileSpec:
    """BEP 9 / BEP 53 style magnet from the info-hashes (v1 ``urn:btih``, v2 ``urn:btmh`` multihash)."""
    parts = []
    if spec.btih_v1:
        parts.append(f"xt=urn:btih:{spec.btih_v1}")
    if spec.btih_v2:
        parts.append(f"xt=urn:btmh:1220{spec.btih_v2}")
    parts.append("dn=" + quote(spec.name, safe=""))
    if spec.size is not None:
        parts.append(f"xl={spec.size}")
    return replace(spec, magnet="magnet:?" + "&".join(parts))


def json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError("the body must be a JSON object")
    return value
