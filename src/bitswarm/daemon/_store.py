"""The daemon's data directory: what survives a restart (also a SIGKILL).

    DIR/token                    the API's bearer token (0600)
    DIR/settings.json            global settings (limits, queue, seeding goals, schedule, watch
                                 folder, categories, tags, queue order: docs/daemon.md)
    DIR/torrents/<id>.torrent    the metainfo as added (absent while a magnet waits for metadata; for a
                                 magnet, the fetched info dictionary without BEP 52 piece layers)
    DIR/torrents/<id>.json       save path and per-torrent settings (paused, priorities, limits ...)
    DIR/resume/<id>.resume       the engine's resume data (which pieces are verified)
    DIR/resume/<id>.info         the engine's copy of a magnet's info dictionary
    DIR/downloads/               the default save path

Every file is replaced atomically (write a temporary file, fsync, rename, fsync the directory), so a
kill at any moment leaves either the old or the new version, never a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import sys
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

_ID = re.compile(r"^[0-9a-f]{40}$")


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content
    (``sync_dir`` False: the caller fsyncs the directory once after a batch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(slots=True)
class TorrentRecord:
    """Everything the daemon remembers about one torrent besides its metainfo and resume data."""

    id: str  #: the swarm hash (BEP 3 info-hash, or the truncated BEP 52 one) in hex
    name: str
    save_path: str
    paused: bool = False
    priorities: list[int] | None = None  #: per ``info.files`` entry; None: all 1
    download_limit: int = 0  #: bytes/s, 0 = unlimited
    upload_limit: int = 0
    added_at: float = 0.0
    trackers: list[str] = field(default_factory=list)  #: extra trackers given when adding
    peers: list[tuple[str, int]] = field(default_factory=list)  #: extra peers given when adding
    magnet: str | None = None  #: BEP 9 link, while (and after) its metadata is fetched
    #: the saved .torrent is a magnet's metadata: a v2/hybrid one has no piece layers (SHA-1 checks)
    metadata_only: bool = False
    #: last known progress, shown while the torrent is paused or stopped
    progress: float = 0.0
    done_size: int = 0
    wanted_size: int = 0
    total_size: int = 0
    pieces_done: int = 0
    num_pieces: int = 0
    #: what the Transmission and qBittorrent APIs keep (their int id, labels, category, tags ...)
    compat: dict[str, Any] = field(default_factory=dict)
    #: payload totals over every session (the ratio of the seeding goals) and time seeded
    downloaded_ever: int = 0
    uploaded_ever: int = 0
    seeding_seconds: float = 0.0
    #: this torrent's seeding goals (automation.check_goals: ratio_mode, ratio_limit, time_mode,
    #: time_minutes); empty: the global goals
    goals: dict[str, Any] = field(default_factory=dict)
    #: a goal was reached (paused then); resumed by hand it seeds on until its goals change
    goal_reached: bool = False

    def __post_init__(self) -> None:
        # thousands of torrents share a few save paths: one string for each (issue 24, RSS)
        if type(self.save_path) is str:
            self.save_path = sys.intern(self.save_path)

    def to_json(self) -> bytes:
        # the fields as they are (``asdict`` deep-copied every list and dict first: twice as slow),
        # compact: json's C encoder (``indent`` takes the pure-Python one, 5x slower; 10,000 records
        # with their seeding time are written at a close)
        fields_ = {k: getattr(self, k) for k in _RECORD_FIELDS}
        return json.dumps(fields_, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TorrentRecord:
        d: dict[str, Any] = json.loads(data)
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        rec = cls(**known)
        rec.peers = [(str(h), int(p)) for h, p in rec.peers]
        return rec


_RECORD_FIELDS = tuple(f.name for f in fields(TorrentRecord))


class DataDir:
    """Files of one daemon data directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.torrents = self.root / "torrents"
        self.resume = self.root / "resume"
        self.downloads = self.root / "downloads"
        for d in (self.root, self.torrents, self.resume, self.downloads):
            d.mkdir(parents=True, exist_ok=True)
        #: id → digest of the record as it is on disk (read or written): an unchanged record is not
        #: written again (10,000 idle seeds at start-up and at close; issue 24)
        self._on_disk: dict[str, bytes] = {}

    # -- token ---------------------------------------------------------------------------------

    @property
    def token_path(self) -> Path:
        return self.root / "token"

    def token(self, given: str | None = None) -> str:
        """``given`` (saved for ``bitswarm ctl``), else the saved token, else a new random one."""
        if given:
            if self.read_token() != given:
                atomic_write(self.token_path, given.encode() + b"\n", mode=0o600)
            return given
        saved = self.read_token()
        if saved:
            return saved
        token = secrets.token_urlsafe(24)
        atomic_write(self.token_path, token.encode() + b"\n", mode=0o600)
        return token

    def read_token(self) -> str | None:
        try:
            return self.token_path.read_text().strip() or None
        except OSError:
            return None

    # -- settings ------------------------------------------------------------------------------

    def load_settings(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "settings.json").read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_settings(self, settings: dict[str, Any]) -> None:
        atomic_write(self.root / "settings.json", json.dumps(settings, indent=1, sort_keys=True).encode())

    # -- torrents ------------------------------------------------------------------------------

    def save_record(self, rec: TorrentRecord) -> None:
        """Write the record if it differs from what is on disk."""
        data = rec.to_json()
        digest = _digest(data)
        if self._on_disk.get(rec.id) == digest:
            return
        atomic_write(self.torrents / f"{rec.id}.json", data)
        self._on_disk[rec.id] = digest

    def changed_records(self, recs: list[TorrentRecord]) -> list[tuple[str, bytes]]:
        """(id, serialized record) of those of ``recs`` that differ from what is on disk (on the event
        loop: the records are not touched by :meth:`save_serialized` in its thread)."""
        out = []
        for rec in recs:
            data = rec.to_json()
            if self._on_disk.get(rec.id) != _digest(data):
                out.append((rec.id, data))
        return out

    def save_serialized(self, records: list[tuple[str, bytes]]) -> None:
        """Write many records (from :meth:`changed_records`) in one go, one directory fsync at the
        end: the daemon's close runs it as one disk job."""
        if not records:
            return
        try:
            for tid, data in records:
                atomic_write(self.torrents / f"{tid}.json", data, sync_dir=False)
                self._on_disk[tid] = _digest(data)
        finally:
            _sync_dir(self.torrents)

    def save_metainfo(self, torrent_id: str, data: bytes) -> None:
        atomic_write(self.torrents / f"{torrent_id}.torrent", data)

    def metainfo(self, torrent_id: str) -> bytes | None:
        try:
            return (self.torrents / f"{torrent_id}.torrent").read_bytes()
        except OSError:
            return None

    def resume_file(self, torrent_id: str) -> Path:
        return self.resume / f"{torrent_id}.resume"

    def delete(self, torrent_id: str) -> None:
        for p in (
            self.torrents / f"{torrent_id}.json",
            self.torrents / f"{torrent_id}.torrent",
            self.resume_file(torrent_id),
            self.resume / f"{torrent_id}.info",
        ):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self._on_disk.pop(torrent_id, None)

    def records(self) -> tuple[list[TorrentRecord], dict[str, str]]:
        """Every saved torrent, oldest first, and {id: reason} of those whose record cannot be read
        (a damaged ``<id>.json``, or a ``<id>.torrent`` without one): the daemon lists them as errors."""
        out: list[TorrentRecord] = []
        broken: dict[str, str] = {}
        for p in sorted(self.torrents.glob("*.json")):
            if not _ID.match(p.stem):
                continue
            try:
                data = p.read_bytes()
                rec = TorrentRecord.from_json(data)
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
                broken[p.stem] = f"its settings file {p.name} cannot be read: {exc}"[:300]
                continue
            if rec.id != p.stem:
                broken[p.stem] = f"its settings file {p.name} names another torrent ({rec.id[:40]!r})"
                continue
            self._on_disk[rec.id] = _digest(data)
            out.append(rec)
        known = {r.id for r in out}
        for p in sorted(self.torrents.glob("*.torrent")):
            if _ID.match(p.stem) and p.stem not in known and p.stem not in broken:
                broken[p.stem] = f"its settings file {p.stem}.json is missing"
        out.sort(key=lambda r: r.added_at)
        return out, broken
