"""Reading and validating .torrent files: BEP 3 (v1), BEP 12, 19, 27, 47 and BEP 52 (v2 and hybrid).

Sans-I/O apart from :func:`load_torrent`, which only reads the file. Every problem is reported as a
:class:`~bitswarm.metainfo.MetainfoError` whose ``field`` names the offending field in dotted form
(``info.files[3].path``, ``info.file tree.dir.x``, ``piece layers``, ``announce-list[0][1]``).
Malformed bencoding is reported the same way, as a ``MetainfoError`` with field ``"bencode"`` whose
message carries the byte offset (the original :class:`~bitswarm.bencode.BencodeError` is chained as
``__cause__``); callers never need to catch anything but ``MetainfoError``.

Decoding is tolerant like libtorrent's (unsorted or duplicate dict keys are accepted, the first
occurrence of a key wins), but the info-hashes are always SHA-1 (v1) / SHA-256 (v2) over the original
bytes of the ``info`` value, never over a re-encoding.

Layout rules (see :mod:`bitswarm.metainfo._model`): v1 and hybrid files are laid end to end with their
BEP 47 padding files as explicit entries; in a v2-only torrent every non-empty file starts on a piece
boundary (the gap after a file is implicit) and an empty file sits at the end of the data before it.

Piece length: BEP 3 does not require a power of two and libtorrent accepts any positive v1 piece
length, so v1 torrents only need ``0 < piece length <= 2**30``; v2 and hybrid need a power of two of at
least 16 KiB (BEP 52).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from bitswarm.bencode import BencodeError, decode_full
from bitswarm.metainfo import merkle
from bitswarm.metainfo._model import FileEntry, InfoDict, MetainfoError, Torrent

#: Most files accepted in one torrent (padding files included).
MAX_FILES = 10_000_000
#: Largest total size (padding included) accepted: 1 PiB.
MAX_TOTAL_SIZE = 1 << 50
#: Most pieces accepted.
MAX_PIECES = 1 << 24
#: Largest piece length accepted (libtorrent's limit is INT_MAX / 2).
MAX_PIECE_LENGTH = 1 << 30
#: Smallest v2 / hybrid piece length (BEP 52: one 16 KiB block).
MIN_V2_PIECE_LENGTH = merkle.BLOCK_SIZE
#: Largest .torrent file :func:`load_torrent` reads.
MAX_TORRENT_FILE = 256 * 1024 * 1024

_DRIVE = re.compile(r"^[A-Za-z]:")
_LEGACY_PAD = "_____padding_file_"


def _type_name(v: object) -> str:
    return {bytes: "string", int: "integer", list: "list", dict: "dictionary"}.get(type(v), type(v).__name__)


def _expect(v: object, typ: type, field: str) -> None:
    if type(v) is not typ:
        raise MetainfoError(f"expected {_type_name(typ())}, got {_type_name(v)}", field)


def _text(raw: bytes) -> str:
    """Decode a metainfo string: UTF-8, with invalid sequences replaced (as libtorrent sanitises)."""
    return raw.decode("utf-8", "replace")


def _opt_str(d: dict[bytes, Any], key: bytes, field: str) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    _expect(v, bytes, field)
    return _text(v)


def _opt_int(d: dict[bytes, Any], key: bytes, field: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    _expect(v, int, field)
    return int(v)


def _length(d: dict[bytes, Any], key: bytes, field: str) -> int:
    v = d.get(key)
    if v is None:
        raise MetainfoError("missing", field)
    _expect(v, int, field)
    if v < 0:
        raise MetainfoError(f"negative length {v}", field)
    if v > MAX_TOTAL_SIZE:
        raise MetainfoError(f"length {v} is absurdly large", field)
    return int(v)


def _component(raw: object, field: str) -> str:
    """One path component, checked so it can never escape the download directory."""
    _expect(raw, bytes, field)
    assert isinstance(raw, bytes)
    s = _text(raw)
    if s in ("", ".", ".."):
        raise MetainfoError(f"unsafe path component {s!r}", field)
    for bad in ("/", "\\", "\0"):
        if bad in s:
            raise MetainfoError(f"path component {s[:60]!r} contains {bad!r}", field)
    if _DRIVE.match(s):
        raise MetainfoError(f"path component {s[:60]!r} starts with a drive letter", field)
    return s


class _NotPlain(Exception):
    pass


def _plain_component(c: object) -> str:
    """Fast acceptance of an ordinary component; raises :class:`_NotPlain` to take the checked path."""
    if (
        type(c) is not bytes
        or c in (b"", b".", b"..")
        or b"/" in c
        or b"\\" in c
        or b"\0" in c
        or c[1:2] == b":"
    ):
        raise _NotPlain
    try:
        return c.decode()
    except UnicodeDecodeError:
        raise _NotPlain from None


def _path(v: object, field: str) -> tuple[str, ...]:
    _expect(v, list, field)
    assert isinstance(v, list)
    if not v:
        raise MetainfoError("empty path", field)
    return tuple(_component(c, f"{field}[{i}]") for i, c in enumerate(v))


def _attr(d: dict[bytes, Any], field: str) -> str:
    v = d.get(b"attr")
    if v is None:
        return ""
    _expect(v, bytes, field)
    return "".join(c for c in v.decode("ascii", "replace") if c.isalpha())


def _bep47_extras(d: dict[bytes, Any], field: str) -> tuple[int | None, tuple[str, ...] | None]:
    mtime = _opt_int(d, b"mtime", f"{field}.mtime")
    sp = d.get(b"symlink path")
    symlink = None if sp is None else _path(sp, f"{field}.symlink path")
    return mtime, symlink


def _pieces_root(leaf: dict[bytes, Any], length: int, field: str) -> bytes | None:
    root = leaf.get(b"pieces root")
    if length == 0:
        if root is not None:
            _expect(root, bytes, f"{field}.pieces root")
        return None  # BEP 52: empty files have no pieces root
    if root is None:
        raise MetainfoError("missing for a non-empty file", f"{field}.pieces root")
    _expect(root, bytes, f"{field}.pieces root")
    if len(root) != merkle.HASH_SIZE:
        raise MetainfoError(f"must be 32 bytes, not {len(root)}", f"{field}.pieces root")
    return bytes(root)


def _v1_files(info: dict[bytes, Any], name: str) -> tuple[list[FileEntry], bool]:
    """The BEP 3 file list (with BEP 47 pad files) laid end to end, and the single-file flag."""
    has_length, has_files = b"length" in info, b"files" in info
    if has_length and has_files:
        raise MetainfoError("has both 'length' and 'files'", "info")
    if has_length:
        length = _length(info, b"length", "info.length")
        mtime, symlink = _bep47_extras(info, "info")
        return [FileEntry((name,), length, 0, _attr(info, "info.attr"), None, mtime, symlink)], True
    if not has_files:
        raise MetainfoError("missing (v1 torrents need 'length' or 'files')", "info.files")
    files = info[b"files"]
    _expect(files, list, "info.files")
    if not files:
        raise MetainfoError("empty file list", "info.files")
    if len(files) > MAX_FILES:
        raise MetainfoError(f"{len(files)} files is too many", "info.files")
    out: list[FileEntry] = []
    offset = 0
    for i, f in enumerate(files):
        # Fast path for the common plain entry ({length, path} of plain components); anything unusual
        # goes through the field-naming checks below.
        ln: Any = f.get(b"length") if type(f) is dict and len(f) == 2 else None
        raw_path = f.get(b"path") if ln is not None else None
        if type(ln) is int and 0 <= ln <= MAX_TOTAL_SIZE and type(raw_path) is list and raw_path:
            length = ln
            try:
                path = tuple([_plain_component(c) for c in raw_path])
            except _NotPlain:
                path = _path(raw_path, f"info.files[{i}].path")
            attr = "p" if path[-1].startswith(_LEGACY_PAD) else ""
            out.append(FileEntry(path, length, offset, attr))
        else:
            fld = f"info.files[{i}]"
            _expect(f, dict, fld)
            length = _length(f, b"length", f"{fld}.length")
            if b"path.utf-8" in f:
                path = _path(f[b"path.utf-8"], f"{fld}.path.utf-8")
            elif b"path" in f:
                path = _path(f[b"path"], f"{fld}.path")
            else:
                raise MetainfoError("missing", f"{fld}.path")
            attr = _attr(f, f"{fld}.attr")
            if "p" not in attr and path[-1].startswith(_LEGACY_PAD):
                attr += "p"  # pre-BEP 47 padding files (libtorrent treats them as padding too)
            mtime, symlink = _bep47_extras(f, fld)
            out.append(FileEntry(path, length, offset, attr, None, mtime, symlink))
        offset += length
        if offset > MAX_TOTAL_SIZE:
            raise MetainfoError("total size is absurdly large", "info.files")
    return out, False


def _v2_tree(tree: object) -> list[tuple[tuple[str, ...], int, dict[bytes, Any], str]]:
    """Walk the BEP 52 ``file tree`` in sorted key order: (path, length, leaf dict, field) per file."""
    _expect(tree, dict, "info.file tree")
    assert isinstance(tree, dict)
    out: list[tuple[tuple[str, ...], int, dict[bytes, Any], str]] = []
    # Explicit stack (reversed sorted children) so deep trees cannot hit the recursion limit.
    stack: list[tuple[tuple[str, ...], str, Any]] = []
    for key in sorted(tree, reverse=True):
        stack.append(((), "info.file tree", (key, tree[key])))
    while stack:
        parent, pfield, (key, node) = stack.pop()
        fld = f"{pfield}[{_text(key)[:80]!r}]"
        comp = _component(key, fld)
        path = (*parent, comp)
        _expect(node, dict, fld)
        if b"" in node:
            if len(node) != 1:
                raise MetainfoError("a file node must hold only the '' key", fld)
            leaf = node[b""]
            _expect(leaf, dict, f"{fld}['']")
            length = _length(leaf, b"length", f"{fld}.length")
            out.append((path, length, leaf, fld))
            if len(out) > MAX_FILES:
                raise MetainfoError("too many files", "info.file tree")
            continue
        for child in sorted(node, reverse=True):
            stack.append((path, fld, (child, node[child])))
    if not out:
        raise MetainfoError("no files", "info.file tree")
    return out


def _check_paths(files: list[FileEntry], v2_only: bool) -> None:
    """No duplicate file paths, and no file whose path is a directory of another file."""

    def where(i: int) -> str:
        return "info.file tree" if v2_only else f"info.files[{i}].path"

    seen: dict[tuple[str, ...], int] = {}
    dirs: set[tuple[str, ...]] = set()
    for i, f in enumerate(files):
        if f.pad:
            continue
        if f.path in seen:
            raise MetainfoError(f"duplicate file path {f.path_str!r}", where(i))
        seen[f.path] = i
        for k in range(1, len(f.path)):
            dirs.add(f.path[:k])
    for p, i in seen.items():
        if p in dirs:
            raise MetainfoError(f"file path {'/'.join(p)!r} is also a directory of another file", where(i))


def _piece_length(info: dict[bytes, Any], v2: bool) -> int:
    pl = info.get(b"piece length")
    if pl is None:
        raise MetainfoError("missing", "info.piece length")
    _expect(pl, int, "info.piece length")
    if pl <= 0 or pl > MAX_PIECE_LENGTH:
        raise MetainfoError(f"{pl} is out of range", "info.piece length")
    if v2 and (pl < MIN_V2_PIECE_LENGTH or pl & (pl - 1)):
        raise MetainfoError(f"{pl} is not a power of two of at least 16 KiB (BEP 52)", "info.piece length")
    return int(pl)


def _info_from_value(info: Any, raw: bytes) -> tuple[InfoDict, bytes | None, bytes | None]:
    _expect(info, dict, "info")
    mv = info.get(b"meta version")
    if mv is not None:
        _expect(mv, int, "info.meta version")
        if mv != 2:
            raise MetainfoError(f"unsupported meta version {mv}", "info.meta version")
    has_v2 = mv == 2
    has_v1 = b"pieces" in info
    if has_v2 and b"file tree" not in info:
        raise MetainfoError("missing (required by meta version 2)", "info.file tree")
    if not has_v1 and not has_v2:
        raise MetainfoError("missing", "info.pieces")

    raw_name = info.get(b"name.utf-8", info.get(b"name"))
    name_field = "info.name.utf-8" if b"name.utf-8" in info else "info.name"
    if raw_name is None:
        raise MetainfoError("missing", "info.name")
    name = _component(raw_name, name_field)
    pl = _piece_length(info, has_v2)
    private = _opt_int(info, b"private", "info.private") == 1
    source = _opt_str(info, b"source", "info.source")

    v2_files = _v2_tree(info[b"file tree"]) if has_v2 else None
    pieces: bytes | None = None
    if has_v1:
        files, single = _v1_files(info, name)
        if v2_files is not None:
            files = _merge_hybrid(files, v2_files, pl)
        pieces = info[b"pieces"]
        _expect(pieces, bytes, "info.pieces")
        if len(pieces) % 20:
            raise MetainfoError(f"length {len(pieces)} is not a multiple of 20", "info.pieces")
    else:
        assert v2_files is not None
        files = []
        pos = 0
        for path, length, leaf, fld in v2_files:
            if length:
                pos = -(-pos // pl) * pl
            mtime, symlink = _bep47_extras(leaf, fld)
            root = _pieces_root(leaf, length, fld)
            files.append(FileEntry(path, length, pos, _attr(leaf, f"{fld}.attr"), root, mtime, symlink))
            pos += length
            if pos > MAX_TOTAL_SIZE:
                raise MetainfoError("total size is absurdly large", "info.file tree")
        single = len(files) == 1 and len(files[0].path) == 1
    _check_paths(files, not has_v1)

    end = files[-1].offset + files[-1].length
    num_pieces = -(-end // pl)
    if num_pieces > MAX_PIECES:
        raise MetainfoError(f"{num_pieces} pieces is too many", "info.piece length")
    if pieces is not None and len(pieces) // 20 != num_pieces:
        raise MetainfoError(
            f"holds {len(pieces) // 20} hashes but the files need {num_pieces} pieces", "info.pieces"
        )
    model = InfoDict(
        name=name,
        piece_length=pl,
        files=tuple(files),
        single_file=single,
        pieces=None if pieces is None else bytes(pieces),
        meta_version=2 if has_v2 else None,
        private=private,
        source=source,
        raw=raw,
    )
    h1 = hashlib.sha1(raw).digest() if has_v1 else None
    h2 = hashlib.sha256(raw).digest() if has_v2 else None
    return model, h1, h2


def _merge_hybrid(
    v1: list[FileEntry], v2: list[tuple[tuple[str, ...], int, dict[bytes, Any], str]], pl: int
) -> list[FileEntry]:
    """Check that the v1 ``files`` (minus padding) and the v2 tree describe the same files (BEP 52
    hybrid), each non-empty one piece-aligned, and attach the v2 pieces roots to the v1 entries."""
    data = [i for i, f in enumerate(v1) if not f.pad]
    if len(data) != len(v2):
        raise MetainfoError(
            f"v1 'files' lists {len(data)} files but the v2 file tree {len(v2)}", "info.file tree"
        )
    out = list(v1)
    for n, (i, (path, length, leaf, fld)) in enumerate(zip(data, v2, strict=True)):
        f = v1[i]
        # A v1 single-file torrent names its one file by ``name``; the tree holds it under that name.
        if f.path != path or f.length != length:
            raise MetainfoError(
                f"file {n} is {f.path_str!r} ({f.length} bytes) in v1 but {'/'.join(path)!r} "
                f"({length} bytes) in the v2 file tree",
                "info.file tree",
            )
        if length and f.offset % pl:
            raise MetainfoError(
                "file does not start on a piece boundary in a hybrid torrent", f"info.files[{i}]"
            )
        root = _pieces_root(leaf, length, fld)
        mtime, symlink = f.mtime, f.symlink_path
        if mtime is None and symlink is None:
            mtime, symlink = _bep47_extras(leaf, fld)
        out[i] = FileEntry(
            f.path, f.length, f.offset, f.attr or _attr(leaf, f"{fld}.attr"), root, mtime, symlink
        )
    return out


def _decode(data: bytes) -> Any:
    try:
        return decode_full(data, strict=False)
    except BencodeError as exc:
        raise MetainfoError(f"{exc.reason} at byte {exc.offset}", "bencode") from exc


def parse_info(raw_info: bytes) -> tuple[InfoDict, bytes | None, bytes | None]:
    """Parse a bencoded ``info`` dictionary (from a .torrent or BEP 9 metadata exchange).

    Returns the :class:`InfoDict` with its v1 (SHA-1) and v2 (SHA-256) info-hashes over ``raw_info``
    exactly as given; a hash is None when the dictionary is not of that version.
    """
    raw_info = bytes(raw_info)
    return _info_from_value(_decode(raw_info).value, raw_info)


def check_piece_layers(info: InfoDict, layers: object) -> dict[bytes, bytes]:
    """Validate a BEP 52 ``piece layers`` dictionary against ``info``; return pieces root -> layer.

    Every file larger than one piece needs its layer; a layer must be a whole number of 32-byte hashes,
    one per piece of the file, and must hash up to the file's ``pieces root``. Entries for roots of no
    such file are dropped.
    """
    if layers is None:
        layers = {}
    _expect(layers, dict, "piece layers")
    assert isinstance(layers, dict)
    pl = info.piece_length
    height = (pl // merkle.BLOCK_SIZE).bit_length() - 1
    out: dict[bytes, bytes] = {}
    for f in info.files:
        if f.pad or f.length <= pl or f.pieces_root is None:
            continue
        root = f.pieces_root
        if root in out:
            continue
        layer = layers.get(root)
        if layer is None:
            raise MetainfoError(f"missing the layer of {f.path_str!r}", "piece layers")
        _expect(layer, bytes, "piece layers")
        want = -(-f.length // pl)
        if len(layer) % merkle.HASH_SIZE:
            raise MetainfoError(f"layer of {f.path_str!r} is not a multiple of 32 bytes", "piece layers")
        if len(layer) // merkle.HASH_SIZE != want:
            raise MetainfoError(
                f"layer of {f.path_str!r} has {len(layer) // 32} hashes, the file has {want} pieces",
                "piece layers",
            )
        hashes = [layer[i : i + 32] for i in range(0, len(layer), 32)]
        if merkle.merkle_root(hashes, leaf_height=height) != root:
            raise MetainfoError(f"layer of {f.path_str!r} does not hash to its pieces root", "piece layers")
        out[root] = bytes(layer)
    return out


def _trackers(top: dict[bytes, Any]) -> list[list[str]]:
    al = top.get(b"announce-list")
    if al is not None:
        _expect(al, list, "announce-list")
        tiers: list[list[str]] = []
        for i, tier in enumerate(al):
            _expect(tier, list, f"announce-list[{i}]")
            urls = []
            for j, url in enumerate(tier):
                _expect(url, bytes, f"announce-list[{i}][{j}]")
                s = _text(url).strip()
                if s and s not in urls:
                    urls.append(s)
            if urls:
                tiers.append(urls)
        if tiers:
            return tiers
    announce = _opt_str(top, b"announce", "announce")
    if announce and announce.strip():
        return [[announce.strip()]]
    return []


def _url_list(top: dict[bytes, Any], key: str = "url-list") -> list[str]:
    """BEP 19 ``url-list`` (or BEP 17 ``httpseeds``): a URL or a list of them."""
    v = top.get(key.encode())
    if v is None:
        return []
    if type(v) is bytes:
        v = [v]
    _expect(v, list, key)
    out = []
    for i, u in enumerate(v):
        _expect(u, bytes, f"{key}[{i}]")
        s = _text(u).strip()
        if s:
            out.append(s)
    return out


def _nodes(top: dict[bytes, Any]) -> list[tuple[str, int]]:
    v = top.get(b"nodes")
    if v is None:
        return []
    _expect(v, list, "nodes")
    out = []
    for i, n in enumerate(v):
        fld = f"nodes[{i}]"
        _expect(n, list, fld)
        if len(n) != 2:
            raise MetainfoError("expected [host, port]", fld)
        host, port = n
        _expect(host, bytes, f"{fld}[0]")
        _expect(port, int, f"{fld}[1]")
        if not 0 < port < 65536:
            raise MetainfoError(f"port {port} out of range", f"{fld}[1]")
        out.append((_text(host), int(port)))
    return out


def parse_torrent(data: bytes, *, layers_optional: bool = False) -> Torrent:
    """Parse and validate a complete .torrent file (v1, v2 or hybrid).

    ``layers_optional``: a v2 or hybrid torrent without a ``piece layers`` key is accepted with no
    layers (metadata from a magnet link, BEP 9: the layers are not part of the info dictionary);
    layers that are present are still checked."""
    data = bytes(data)
    dec = _decode(data)
    top = dec.value
    if type(top) is not dict:
        raise MetainfoError(f"a .torrent must be a dictionary, not a {_type_name(top)}", "torrent")
    if b"info" not in top:
        raise MetainfoError("missing", "info")
    start, end = dec.spans[b"info"]
    info, h1, h2 = _info_from_value(top[b"info"], data[start:end])
    layers: dict[bytes, bytes] = {}
    if h2 is not None and not (layers_optional and b"piece layers" not in top):
        layers = check_piece_layers(info, top.get(b"piece layers"))
    comment = top.get(b"comment.utf-8", top.get(b"comment"))
    created_by = _opt_str(top, b"created by", "created by")
    return Torrent(
        info=info,
        info_hash_v1=h1,
        info_hash_v2=h2,
        trackers=_trackers(top),
        url_list=_url_list(top),
        httpseeds=_url_list(top, "httpseeds"),
        piece_layers=layers,
        comment=_opt_str({b"c": comment}, b"c", "comment"),
        created_by=created_by,
        creation_date=_opt_int(top, b"creation date", "creation date"),
        nodes=_nodes(top),
        raw=data,
    )


def load_torrent(path: str | os.PathLike[str]) -> Torrent:
    """Read and parse a .torrent file (OSError for I/O problems, MetainfoError for its contents)."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_TORRENT_FILE + 1)
    if len(data) > MAX_TORRENT_FILE:
        raise MetainfoError(f"file is larger than {MAX_TORRENT_FILE} bytes", "torrent")
    return parse_torrent(data)
