"""What :meth:`Storage.open` does, decided without I/O: :func:`plan_open`.

The storage's worker job gathers the facts (the resume record, a ``stat`` of every file, of the
``.parts`` side file and of the resume file), asks :func:`plan_open` what to do, then does it: create
or extend files, move bytes out of ``.parts``, hash pieces. Keeping the decision pure lets every
combination of resume data, files on disk, priorities and seed mode be tested as a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bitswarm.storage.bitfield import Bitfield, BitfieldError
from bitswarm.storage.resume import FileStat, ResumeData

#: how the resume data was used: absent, unreadable, for another torrent/layout, trusted for every
#: file, trusted except for files that changed on disk, or not needed (seed mode)
ResumeStatus = Literal["none", "corrupt", "mismatch", "trusted", "partial", "seed-mode"]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One entry of ``info.files`` as the plan sees it."""

    length: int
    pad: bool = False  #: BEP 47 padding: never on disk
    pieces: range = range(0)  #: pieces holding its bytes (empty for padding and empty files)


@dataclass(frozen=True, slots=True)
class OpenLayout:
    """The torrent's shape: what resume data must match, and which pieces each file touches."""

    swarm_hash: bytes
    num_pieces: int
    files: tuple[FileEntry, ...]


@dataclass(frozen=True, slots=True)
class DiskStats:
    """What is on disk before opening: ``(size, mtime_ns)`` or None per ``info.files`` entry (None
    for padding), the same for the ``.parts`` file, and whether a resume file exists at all (tells
    an unreadable one from a missing one)."""

    files: tuple[FileStat, ...]
    parts: FileStat = None
    resume_exists: bool = False


@dataclass(frozen=True, slots=True)
class OpenPlan:
    """What to do, in this order: create (or extend, sparse) the files in ``create``; the files in
    ``materialized`` live in their own file from now on (the others in ``.parts``); copy the
    verified bytes of the files in ``migrate`` out of ``.parts`` (``have`` says which pieces are
    verified); drop ``.parts`` if no file needs it (``drop_parts``); then hash ``to_check``."""

    status: ResumeStatus
    priorities: tuple[int, ...]
    have: Bitfield
    create: tuple[int, ...] = ()
    materialized: tuple[bool, ...] = ()
    migrate: tuple[int, ...] = ()
    drop_parts: bool = False
    to_check: tuple[int, ...] = ()


def plan_open(
    layout: OpenLayout,
    resume: ResumeData | None,
    stats: DiskStats,
    priorities: Sequence[int] | None,
    seed_mode: bool,
) -> OpenPlan:
    """Decide how to open a torrent's storage.

    ``resume``: the decoded resume record (None: missing or unreadable, ``stats.resume_exists``
    tells which). ``priorities``: per file, given by the caller (None: take them from the resume
    record, else 1). Resume data is trusted per file: the pieces of a file whose size or mtime
    differs from the record (or that appeared or vanished) are hashed again, the rest are taken as
    recorded. Without usable resume data every piece touching an existing file (or the ``.parts``
    file, for a skipped one) is hashed; files created now are known to be empty and are not.
    ``seed_mode`` with no usable resume data and every file present at its exact size: every piece
    is taken as had, nothing is hashed now. Raises ValueError when ``stats`` or ``priorities`` do
    not have one entry per file.
    """
    nfiles = len(layout.files)
    if len(stats.files) != nfiles or (priorities is not None and len(priorities) != nfiles):
        raise ValueError(f"stats and priorities need one entry per file ({nfiles})")
    resume, status = _usable_resume(layout, resume, stats.resume_exists)
    prios = _choose_priorities(layout, resume, priorities)
    have = Bitfield(layout.num_pieces)
    if resume is not None:
        try:
            have = Bitfield.from_bytes(resume.pieces, layout.num_pieces)
        except BitfieldError:
            resume, status = None, "corrupt"
    create, new, materialized = _files_on_disk(layout, prios, stats)
    if resume is None:
        if seed_mode and _complete(layout, stats):
            return OpenPlan("seed-mode", prios, Bitfield(layout.num_pieces, full=True), create, materialized)
        return OpenPlan(
            status, prios, have, create, materialized, to_check=_hash_all(layout, stats, new, materialized)
        )
    changed = _changed_files(layout, resume, stats)
    to_check = sorted({k for i in changed for k in layout.files[i].pieces})
    for k in to_check:
        have.clear(k)
    migrate: tuple[int, ...] = ()
    if stats.parts is not None:  # skipped before, wanted now: its verified bytes wait in .parts
        migrate = tuple(i for i in new if resume.files[i] is None and i not in changed)
    return OpenPlan(
        "partial" if changed else "trusted",
        prios,
        have,
        create,
        materialized,
        migrate,
        drop_parts=stats.parts is not None,
        to_check=tuple(to_check),
    )


def _usable_resume(
    layout: OpenLayout, resume: ResumeData | None, exists: bool
) -> tuple[ResumeData | None, ResumeStatus]:
    if resume is None:
        return None, "corrupt" if exists else "none"
    if (
        resume.info_hash != layout.swarm_hash
        or resume.num_pieces != layout.num_pieces
        or len(resume.files) != len(layout.files)
    ):
        return None, "mismatch"
    return resume, "none"


def _choose_priorities(
    layout: OpenLayout, resume: ResumeData | None, given: Sequence[int] | None
) -> tuple[int, ...]:
    if given is not None:
        return tuple(given)
    if resume is not None and len(resume.priorities) == len(layout.files):
        return resume.priorities
    return (1,) * len(layout.files)


def _files_on_disk(
    layout: OpenLayout, prios: Sequence[int], stats: DiskStats
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[bool, ...]]:
    """(files to create or extend, of those the ones that did not exist, which files live in their
    own file). A wanted file lives in its own file; so does an existing one, whatever its priority."""
    create: list[int] = []
    new: list[int] = []
    materialized = [False] * len(layout.files)
    for i, f in enumerate(layout.files):
        st = stats.files[i]
        if f.pad or (prios[i] <= 0 and st is None):
            continue
        materialized[i] = True
        if st is None or st[0] < f.length:
            create.append(i)
            if st is None:
                new.append(i)
    return tuple(create), tuple(new), tuple(materialized)


def _changed_files(layout: OpenLayout, resume: ResumeData, stats: DiskStats) -> set[int]:
    """Files whose state on disk differs from the resume record (for a file kept in ``.parts``:
    the file appeared, or ``.parts`` changed)."""
    changed: set[int] = set()
    for i, f in enumerate(layout.files):
        if f.pad or f.length == 0:
            continue
        rec, st = resume.files[i], stats.files[i]
        same = st == rec if rec is not None else st is None and resume.parts == stats.parts
        if not same:
            changed.add(i)
    return changed


def _complete(layout: OpenLayout, stats: DiskStats) -> bool:
    """Every file is on disk at its exact size."""
    pairs = zip(layout.files, stats.files, strict=True)
    return all(f.pad or (st is not None and st[0] == f.length) for f, st in pairs)


def _hash_all(
    layout: OpenLayout, stats: DiskStats, new: Sequence[int], materialized: Sequence[bool]
) -> tuple[int, ...]:
    """No resume data: the pieces of every file that may hold data (it existed, or it is skipped
    and a ``.parts`` file exists)."""
    fresh = set(new)
    pieces: set[int] = set()
    for i, f in enumerate(layout.files):
        if f.pad or i in fresh:
            continue
        if stats.files[i] is not None if materialized[i] else stats.parts is not None:
            pieces.update(f.pieces)
    return tuple(sorted(pieces))
