"""plan_open: how a storage opens, decided from resume data, file stats, priorities and seed mode."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.storage._plan import DiskStats, FileEntry, OpenLayout, OpenPlan, plan_open
from bitswarm.storage.bitfield import Bitfield
from bitswarm.storage.resume import FileStat, ResumeData

H = b"\x01" * 20
#: a(200 B, pieces 0-1) | padding | b(150 B, pieces 2-3) | c(10 B, piece 3) | an empty file
LAYOUT = OpenLayout(
    H,
    4,
    (
        FileEntry(200, pieces=range(0, 2)),
        FileEntry(56, pad=True),
        FileEntry(150, pieces=range(2, 4)),
        FileEntry(10, pieces=range(3, 4)),
        FileEntry(0),
    ),
)
ON_DISK: tuple[FileStat, ...] = ((200, 1), None, (150, 1), (10, 1), (0, 1))
NOTHING: tuple[FileStat, ...] = (None,) * 5
ALL = 0xF0  # the bitfield byte of all four pieces
PARTS = (4096, 7)


def resume(
    pieces: bytes = bytes([ALL]),
    files: tuple[FileStat, ...] = ON_DISK,
    *,
    parts: FileStat = None,
    priorities: tuple[int, ...] = (1, 1, 1, 1, 1),
    info_hash: bytes = H,
    num_pieces: int = 4,
) -> ResumeData:
    return ResumeData(info_hash, num_pieces, pieces, files, parts, priorities)


def on_disk(**changes: FileStat) -> tuple[FileStat, ...]:
    names = {"a": 0, "b": 2, "c": 3, "empty": 4}
    out = list(ON_DISK)
    for name, value in changes.items():
        out[names[name]] = value
    return tuple(out)


@dataclass(frozen=True)
class Case:
    name: str
    resume: ResumeData | None
    stats: DiskStats
    want: dict[str, object]  # expected OpenPlan fields ("have": the set pieces)
    priorities: tuple[int, ...] | None = None
    seed_mode: bool = False


MATERIAL_ALL = (True, False, True, True, True)

CASES = [
    Case(
        "fresh download: wanted files are created, nothing to hash",
        None,
        DiskStats(NOTHING),
        {
            "status": "none",
            "create": (0, 2, 3, 4),
            "materialized": MATERIAL_ALL,
            "to_check": (),
            "have": set(),
        },
    ),
    Case("an unreadable resume file", None, DiskStats(NOTHING, resume_exists=True), {"status": "corrupt"}),
    Case(
        "files on disk, no resume data: every piece is hashed",
        None,
        DiskStats(ON_DISK),
        {"status": "none", "create": (), "to_check": (0, 1, 2, 3), "have": set()},
    ),
    Case(
        "seed mode with every file complete: all had, nothing hashed now",
        None,
        DiskStats(ON_DISK),
        {"status": "seed-mode", "to_check": (), "have": {0, 1, 2, 3}},
        seed_mode=True,
    ),
    Case(
        "seed mode with a short file: extended and hashed like any",
        None,
        DiskStats(on_disk(c=(5, 1))),
        {"status": "none", "create": (3,), "to_check": (0, 1, 2, 3), "have": set()},
        seed_mode=True,
    ),
    Case(
        "seed mode with a missing file: created, the rest hashed",
        None,
        DiskStats(on_disk(a=None)),
        {"status": "none", "create": (0,), "to_check": (2, 3)},
        seed_mode=True,
    ),
    Case(
        "resume data matching every file is trusted",
        resume(),
        DiskStats(ON_DISK),
        {"status": "trusted", "create": (), "to_check": (), "have": {0, 1, 2, 3}, "drop_parts": False},
    ),
    Case(
        "trusted resume data wins over seed mode",
        resume(bytes([0xC0])),
        DiskStats(ON_DISK),
        {"status": "trusted", "to_check": (), "have": {0, 1}},
        seed_mode=True,
    ),
    Case(
        "resume data of another torrent",
        resume(info_hash=b"\x02" * 20),
        DiskStats(ON_DISK),
        {"status": "mismatch", "to_check": (0, 1, 2, 3), "have": set()},
    ),
    Case(
        "resume data with another piece count",
        resume(num_pieces=5),
        DiskStats(ON_DISK),
        {"status": "mismatch", "to_check": (0, 1, 2, 3)},
    ),
    Case(
        "resume data with another file count",
        resume(files=ON_DISK[:4]),
        DiskStats(ON_DISK),
        {"status": "mismatch", "to_check": (0, 1, 2, 3)},
    ),
    Case(
        "resume data whose bitfield is broken is corrupt (its priorities still count)",
        resume(b"\xf0\x00", priorities=(2, 0, 1, 1, 1)),
        DiskStats(ON_DISK),
        {"status": "corrupt", "to_check": (0, 1, 2, 3), "have": set(), "priorities": (2, 0, 1, 1, 1)},
    ),
    Case(
        "a file whose mtime changed: only its pieces are hashed again",
        resume(),
        DiskStats(on_disk(c=(10, 2))),
        {"status": "partial", "to_check": (3,), "have": {0, 1, 2}},
    ),
    Case(
        "a file that vanished: recreated, its pieces hashed again",
        resume(),
        DiskStats(on_disk(b=None)),
        {"status": "partial", "create": (2,), "to_check": (2, 3), "have": {0, 1}, "migrate": ()},
    ),
    Case(
        "an empty file's stat is never compared",
        resume(),
        DiskStats(on_disk(empty=(0, 99))),
        {"status": "trusted", "to_check": ()},
    ),
    Case(
        "a skipped file is not created; without .parts its pieces hold nothing to hash",
        None,
        DiskStats(on_disk(b=None)),
        {"create": (), "materialized": (True, False, False, True, True), "to_check": (0, 1, 3)},
        priorities=(1, 1, 0, 1, 1),
    ),
    Case(
        "a skipped file with a .parts file: its pieces are hashed from .parts",
        None,
        DiskStats(on_disk(b=None), parts=PARTS),
        {"create": (), "materialized": (True, False, False, True, True), "to_check": (0, 1, 2, 3)},
        priorities=(1, 1, 0, 1, 1),
    ),
    Case(
        "a skipped file that exists on disk is used in place",
        None,
        DiskStats(ON_DISK),
        {"create": (), "materialized": MATERIAL_ALL},
        priorities=(1, 1, 0, 1, 1),
    ),
    Case(
        "skipped before, wanted now: created, its verified bytes move out of .parts",
        resume(files=on_disk(b=None), parts=PARTS, priorities=(1, 1, 0, 1, 1)),
        DiskStats(on_disk(b=None), parts=PARTS),
        {
            "status": "trusted",
            "create": (2,),
            "migrate": (2,),
            "drop_parts": True,
            "to_check": (),
            "have": {0, 1, 2, 3},
        },
        priorities=(1, 1, 1, 1, 1),
    ),
    Case(
        "still skipped, .parts unchanged: trusted, nothing moves",
        resume(files=on_disk(b=None), parts=PARTS, priorities=(1, 1, 0, 1, 1)),
        DiskStats(on_disk(b=None), parts=PARTS),
        {"status": "trusted", "create": (), "migrate": (), "drop_parts": True, "priorities": (1, 1, 0, 1, 1)},
    ),
    Case(
        ".parts changed since the save: the skipped file's pieces are hashed again, nothing moves",
        resume(files=on_disk(b=None), parts=PARTS),
        DiskStats(on_disk(b=None), parts=(4096, 8)),
        {"status": "partial", "create": (2,), "migrate": (), "to_check": (2, 3), "have": {0, 1}},
    ),
    Case(
        "given priorities beat the recorded ones",
        resume(priorities=(3, 0, 3, 3, 3)),
        DiskStats(ON_DISK),
        {"priorities": (1, 2, 0, 1, 1)},
        priorities=(1, 2, 0, 1, 1),
    ),
    Case(
        "recorded priorities are used when none are given",
        resume(priorities=(3, 0, 2, 1, 1)),
        DiskStats(ON_DISK),
        {"priorities": (3, 0, 2, 1, 1)},
    ),
    Case(
        "recorded priorities of the wrong length are ignored",
        resume(priorities=(3, 0)),
        DiskStats(ON_DISK),
        {"priorities": (1, 1, 1, 1, 1)},
    ),
    Case(
        "no resume data, no priorities: every file wanted", None, DiskStats(NOTHING), {"priorities": (1,) * 5}
    ),
]


def fields(plan: OpenPlan, names: object) -> dict[str, object]:
    assert isinstance(names, dict)
    got: dict[str, object] = {}
    for name in names:
        value = getattr(plan, name)
        got[name] = set(value.iter_set()) if isinstance(value, Bitfield) else value
    return got


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan_open(case: Case) -> None:
    plan = plan_open(LAYOUT, case.resume, case.stats, case.priorities, case.seed_mode)
    assert fields(plan, case.want) == case.want


def test_lengths_must_match_the_files() -> None:
    with pytest.raises(ValueError):
        plan_open(LAYOUT, None, DiskStats(NOTHING[:4]), None, False)
    with pytest.raises(ValueError):
        plan_open(LAYOUT, None, DiskStats(NOTHING), (1, 1), False)


stats_st = st.one_of(st.none(), st.tuples(st.integers(0, 300), st.integers(0, 3)))
file_stats_st = st.tuples(stats_st, st.none(), stats_st, stats_st, stats_st)


@given(
    rec=st.one_of(
        st.none(),
        st.builds(
            resume,
            st.binary(max_size=2),
            file_stats_st,
            parts=stats_st,
            priorities=st.tuples(*[st.integers(0, 3)] * 5),
            num_pieces=st.sampled_from([4, 5]),
        ),
    ),
    files=file_stats_st,
    parts=stats_st,
    prios=st.one_of(st.none(), st.tuples(*[st.integers(0, 3)] * 5)),
    seed_mode=st.booleans(),
    exists=st.booleans(),
)
def test_plan_invariants(
    rec: ResumeData | None,
    files: tuple[FileStat, ...],
    parts: FileStat,
    prios: tuple[int, ...] | None,
    seed_mode: bool,
    exists: bool,
) -> None:
    plan = plan_open(LAYOUT, rec, DiskStats(files, parts, exists), prios, seed_mode)
    assert list(plan.to_check) == sorted(set(plan.to_check))
    assert all(0 <= k < LAYOUT.num_pieces for k in plan.to_check)
    assert not plan.materialized[1] and 1 not in plan.create  # padding never touches the disk
    assert set(plan.create) <= {i for i, m in enumerate(plan.materialized) if m}
    assert set(plan.migrate) <= set(plan.create)
    assert not any(plan.have.get(k) for k in plan.to_check)  # nothing hashed is taken as had
    if plan.status == "seed-mode":
        assert seed_mode and plan.have.all() and not plan.to_check
    if plan.status in ("trusted", "partial"):
        assert rec is not None and (plan.status == "partial") == bool(plan.to_check)
