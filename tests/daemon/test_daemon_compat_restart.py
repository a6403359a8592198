"""What the compatible APIs keep survives a restart of the daemon: Transmission's integer ids (a
removed torrent's id is never given again, even the last one), labels and the queue order;
qBittorrent's categories with their save paths, and tags."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from daemon_testlib import Running, make_content, running_daemon, torrent_of

pytestmark = pytest.mark.timeout(60)


class Rpc:
    def __init__(self, run: Running, client: httpx.AsyncClient) -> None:
        self.url = run.url + "/transmission/rpc"
        self.client = client
        self.sid = ""

    async def __call__(self, method: str, **arguments: object) -> dict[str, object]:
        for _ in range(2):
            r = await self.client.post(
                self.url,
                json={"method": method, "arguments": arguments},
                headers={"X-Transmission-Session-Id": self.sid},
            )
            if r.status_code == 409:
                self.sid = r.headers["x-transmission-session-id"]
                continue
            out = r.json()
            assert out["result"] == "success", out
            return dict(out["arguments"])
        raise AssertionError("no session id")


async def _ids(rpc: Rpc) -> list[tuple[int, str, list[str], int]]:
    got = await rpc("torrent-get", fields=["id", "name", "labels", "queuePosition"])
    return sorted((t["id"], t["name"], t["labels"], t["queuePosition"]) for t in got["torrents"])  # type: ignore[attr-defined]


async def test_ids_labels_queue_categories_and_tags_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "daemon"
    metas = [
        torrent_of(make_content(tmp_path / "c", f"t{i}", files=1, size=20_000, seed=i))[0] for i in range(4)
    ]
    music = str(tmp_path / "music")
    async with (
        running_daemon(data_dir) as run,
        httpx.AsyncClient(auth=("u", run.token), timeout=10) as client,
    ):
        rpc = Rpc(run, client)
        for i in range(3):
            meta = base64.b64encode(metas[i]).decode()
            await rpc("torrent-add", metainfo=meta, paused=True, labels=[f"l{i}"])
        await rpc("torrent-remove", ids=[3])
        await rpc("queue-move-top", ids=[2])
        before = await _ids(rpc)
        assert before == [(1, "t0", ["l0"], 1), (2, "t1", ["l1"], 0)]
        q = httpx.AsyncClient(base_url=run.url, timeout=10)
        async with q:
            assert (
                await q.post("/api/v2/auth/login", data={"username": "u", "password": run.token})
            ).text == "Ok."
            await q.post("/api/v2/torrents/createCategory", data={"category": "music", "savePath": music})
            hashes = [t["hash"] for t in (await q.get("/api/v2/torrents/info")).json()]
            await q.post("/api/v2/torrents/setCategory", data={"hashes": hashes[0], "category": "music"})
            await q.post("/api/v2/torrents/addTags", data={"hashes": "all", "tags": "x,y"})
    async with (
        running_daemon(data_dir) as run,
        httpx.AsyncClient(auth=("u", run.token), timeout=10) as client,
    ):
        rpc = Rpc(run, client)
        assert await _ids(rpc) == before
        added = await rpc("torrent-add", metainfo=base64.b64encode(metas[3]).decode(), paused=True)
        assert added["torrent-added"]["id"] == 4  # type: ignore[index]  # 3 is never given again
        async with httpx.AsyncClient(base_url=run.url, timeout=10) as q:
            await q.post("/api/v2/auth/login", data={"username": "u", "password": run.token})
            assert (await q.get("/api/v2/torrents/categories")).json() == {
                "music": {"name": "music", "savePath": music}
            }
            assert (await q.get("/api/v2/torrents/tags")).json() == ["x", "y"]
            info = {t["hash"]: t for t in (await q.get("/api/v2/torrents/info")).json()}
            assert info[hashes[0]]["category"] == "music" and info[hashes[0]]["tags"] == "x, y"
            assert info[hashes[1]]["category"] == "" and info[hashes[1]]["tags"] == "x, y"
