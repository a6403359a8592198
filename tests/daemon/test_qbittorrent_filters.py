"""qBittorrent's list filters (``torrents/info?filter=``): each selects the rows its name says, ``all``
and unknown filters every row (issue 24: the filters are tested per row only for the one asked)."""

from __future__ import annotations

from typing import Any

import pytest

from bitswarm.daemon.qbittorrent import _matches

STATES = [
    "downloading", "stalledDL", "metaDL", "queuedDL", "checkingDL", "pausedDL", "uploading", "stalledUP",
    "checkingUP", "pausedUP", "queuedUP", "moving", "error", "missingFiles",
]  # fmt: skip


def _expected(flt: str, r: dict[str, Any]) -> bool:
    """The filters as qBittorrent documents them."""
    st = r["state"]
    paused = st.startswith("paused")
    moving = bool(r["dlspeed"] or r["upspeed"])
    return {
        "downloading": st in ("downloading", "stalledDL", "metaDL", "queuedDL", "checkingDL", "pausedDL"),
        "seeding": st in ("uploading", "stalledUP", "checkingUP"),
        "completed": r["progress"] >= 1.0,
        "paused": paused,
        "stopped": paused,
        "resumed": not paused,
        "running": not paused,
        "active": moving,
        "inactive": not moving,
        "stalled": st in ("stalledDL", "stalledUP"),
        "stalled_uploading": st == "stalledUP",
        "stalled_downloading": st == "stalledDL",
        "checking": st.startswith("checking"),
        "moving": st == "moving",
        "errored": st == "error",
    }.get(flt, True)


FILTERS = [
    "all", "downloading", "seeding", "completed", "paused", "stopped", "resumed", "running", "active",
    "inactive", "stalled", "stalled_uploading", "stalled_downloading", "checking", "moving", "errored",
    "no-such-filter",
]  # fmt: skip


@pytest.mark.parametrize("flt", FILTERS)
def test_each_filter_selects_the_rows_it_names(flt: str) -> None:
    rows = [
        {"state": st, "progress": progress, "dlspeed": down, "upspeed": up}
        for st in STATES
        for progress in (0.5, 1.0)
        for down, up in ((0, 0), (10, 0), (0, 10))
    ]
    assert [_matches(flt, r) for r in rows] == [_expected(flt, r) for r in rows]
    if flt in ("all", "no-such-filter"):
        assert all(_matches(flt, r) for r in rows)
