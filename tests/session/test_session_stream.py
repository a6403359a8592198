"""Streaming: ranged HTTP reads and seeks are served from a torrent that is still downloading."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from bitswarm.metainfo import create_torrent, parse_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.stream import StreamError, StreamServer, TorrentReader, parse_range

pytestmark = pytest.mark.timeout(90)
SIZE = 12 * 1024 * 1024


def config(**kw: object) -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, **kw)  # type: ignore[arg-type]


@pytest.fixture
def movie(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(7).randbytes(SIZE)
    path = tmp_path / "seed" / "movie.mp4"
    path.parent.mkdir()
    path.write_bytes(data)
    return path, data


async def test_ranges_are_served_before_the_download_completes(
    tmp_path: Path, movie: tuple[Path, bytes]
) -> None:
    path, data = movie
    t = parse_torrent(create_torrent(path, version="v1", piece_length=65536))
    async with Session(config(upload_rate_limit=1_500_000)) as seeder, Session(config()) as leecher:
        await seeder.add(t, path.parent)
        h = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)], sequential=True)
        server = StreamServer(h)
        await server.start("127.0.0.1", 0)
        url = server.file_url(0)
        try:
            async with httpx.AsyncClient(timeout=60) as http:
                r = await http.get(url, headers={"Range": "bytes=-1000"})  # suffix: the very end
                assert r.status_code == 206
                assert r.headers["content-range"] == f"bytes {SIZE - 1000}-{SIZE - 1}/{SIZE}"
                assert r.content == data[-1000:]
                assert h.status().pieces_done < t.info.num_pieces // 2  # long before completion
                r = await http.get(url, headers={"Range": "bytes=0-99"})
                assert r.status_code == 206 and r.content == data[:100]
                mid = SIZE // 2 + 12345
                r = await http.get(url, headers={"Range": f"bytes={mid}-{mid + 99_999}"})
                assert r.content == data[mid : mid + 100_000]
                assert h.status().state == "downloading"
                r = await http.head(url)
                assert r.status_code == 200 and int(r.headers["content-length"]) == SIZE
                assert r.headers["accept-ranges"] == "bytes" and r.headers["content-type"] == "video/mp4"
                assert (await http.get(url, headers={"Range": f"bytes={SIZE}-"})).status_code == 416
                assert (
                    await http.get(server.file_url(0).replace("/files/0/", "/files/9/"))
                ).status_code == 404
                assert "movie.mp4" in (await http.get(f"http://127.0.0.1:{server.port}/")).text
        finally:
            await server.stop()


async def test_seek_far_ahead_is_served_long_before_completion(
    tmp_path: Path, movie: tuple[Path, bytes]
) -> None:
    path, data = movie
    t = parse_torrent(create_torrent(path, version="v1", piece_length=65536))
    async with Session(config(upload_rate_limit=1_500_000)) as seeder, Session(config()) as leecher:
        await seeder.add(t, path.parent)
        h = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)], sequential=True)
        async with TorrentReader(h, 0) as reader:
            assert await reader.read(4096) == data[:4096]
            reader.seek(SIZE - 300_000)
            chunk = await reader.read(200_000, timeout=30)
            assert chunk == data[SIZE - 300_000 : SIZE - 100_000]
            assert reader.tell() == SIZE - 100_000
            assert h.status().progress < 0.6
            assert await reader.read() == data[SIZE - 100_000 :]
            assert await reader.read() == b""
            with pytest.raises(StreamError):
                reader.seek(-1)


def test_parse_range() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-1000", 100) == (0, 99)
    assert parse_range("bytes=95-200", 100) == (95, 99)
    assert parse_range("bytes=0-1,5-9", 100) is None  # multi-range: whole file
    for bad in ("bytes=100-", "bytes=9-3", "bytes=-0"):
        with pytest.raises(StreamError):
            parse_range(bad, 100)
