"""A list of thousands of torrents is built with the cyclic GC off (its collections, set off by the
rows' allocations, were a third of a cold ``torrent-get`` at 10,000 torrents; issue 24), and the
list's JSON encoder, made once, writes what ``json.dumps`` with the API's options writes."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_testlib import make_content, session_config, torrent_of, wait_for

from bitswarm.daemon import Daemon
from bitswarm.daemon._core import _dumps, gc_paused
from bitswarm.daemon.qbittorrent import Form, QbittorrentAPI
from bitswarm.daemon.transmission import TransmissionRPC

pytestmark = pytest.mark.timeout(120)


async def test_lists_are_built_with_the_gc_off_and_it_is_on_after(tmp_path: Path) -> None:
    """The REST status, the Transmission row and the qBittorrent row of a torrent are each built
    (cold, after a change) with the GC off; it is on again after each call."""
    content = make_content(tmp_path / "src", "one", files=2, size=20_000)
    raw, _ = torrent_of(content)
    async with Daemon(tmp_path / "data", session_config()) as d:
        tid = str((await d.add_torrent(raw, save_path=str(content.parent)))["id"])
        await wait_for(lambda: d.list()[0]["state"] == "seeding", 30)
        rpc, qbt = TransmissionRPC(d, "t"), QbittorrentAPI(d, "t")
        fields = {"fields": ["id", "name", "status", "peersSendingToUs", "uploadRatio"]}
        built: list[tuple[str, bool]] = []
        status, row_inputs, torrent_info = d.status, d.row_inputs, qbt.torrent_info

        def recorded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kw: Any) -> Any:
                built.append((name, gc.isenabled()))
                return fn(*args, **kw)

            return call

        d.status = recorded("status", status)  # type: ignore[method-assign]
        d.row_inputs = recorded("transmission", row_inputs)  # type: ignore[method-assign]
        qbt.torrent_info = recorded("qbittorrent", torrent_info)  # type: ignore[method-assign]
        for calls in range(1, 3):
            d.account(tid, 0, 0, 30.0)
            d.set_tags(tid, [f"t{calls}"])  # a change the status shows: every row is built again
            assert gc.isenabled()
            built.clear()  # (the changes may read the status: not a list)
            assert [s["id"] for s in json.loads(d.list_json())] == [tid]
            assert gc.isenabled()
            got = await rpc.torrent_get(dict(fields))
            assert [r["id"] for r in json.loads(got["torrents"].data)] == [d.number(tid)]
            assert gc.isenabled()
            info = await qbt.info(Form({}, []))
            assert [r["tags"] for r in json.loads(info.data)] == [f"t{calls}"]
            assert gc.isenabled()
            assert {name for name, _ in built} == {"status", "transmission", "qbittorrent"}
            assert not any(on for _, on in built), built


def test_gc_paused_nests_and_restores() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer one still holds it off
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, -2.0, True, None], "c": {"d": 'é ü \u2028 "q" \\ \n'}, "e": ""},
        {"path": Path("/x"), 3: "int key", "f": 1e300, "g": -1.0, "t": (1, 2)},
        [{"a": 1}, "s"],
        "text",
    ],
)
def test_list_json_matches_json_dumps(value: object) -> None:
    expected = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str).encode()
    assert _dumps(value) == expected


def test_list_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        _dumps({"eta": float("nan")})
