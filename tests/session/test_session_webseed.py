"""Web seeds (BEP 19 url-list, BEP 17 httpseeds) against a real nginx started by the test."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_session_transfer import make_tree
from tests.testtools import require_tool

from bitswarm.bencode import decode, encode
from bitswarm.metainfo import Torrent, create_torrent, parse_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.session import Session, SessionConfig

pytestmark = pytest.mark.timeout(90)


class Nginx:
    """nginx serving ``root`` on 127.0.0.1 (one process, no daemon)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "www"
        self.root.mkdir(parents=True)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, nginx: str) -> None:
        with socket.socket() as s:  # nginx cannot listen on port 0: take a free port first
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        b = self.base
        user = "user root;" if os.geteuid() == 0 else ""
        temps = " ".join(
            f"{k}_temp_path {b}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (b / "nginx.conf").write_text(
            f"""
daemon off; master_process off; worker_processes 1; {user}
pid {b}/nginx.pid; error_log {b}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {b}/access.log; {temps}
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{self.port};
    root {self.root};
    location /moved/ {{ rewrite ^/moved/(.*)$ /files/$1 redirect; }}
    location = /seed.php {{ try_files /pieces/$arg_piece =404; }}
    location /norange/ {{ max_ranges 0; }}
  }}
}}
"""
        )
        self.proc = subprocess.Popen(
            [nginx, "-p", str(b), "-c", str(b / "nginx.conf"), "-e", str(b / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"nginx exited: {err}") from None
                time.sleep(0.01)  # startup poll of a subprocess (a sync fixture)
        raise RuntimeError("nginx did not listen")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    exe = require_tool("nginx", "apt-get install nginx")
    server = Nginx(tmp_path / "nginx")
    server.start(exe)
    try:
        yield server
    finally:
        server.stop()


def config() -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0)


def torrent(
    path: Path,
    web_seeds: list[str],
    *,
    version: TorrentVersion = "v1",
    piece_length: int = 32768,
    httpseeds: list[str] | None = None,
) -> Torrent:
    data = create_torrent(path, version=version, piece_length=piece_length, web_seeds=web_seeds or None)
    if httpseeds:
        top = decode(data)
        assert isinstance(top, dict)
        top[b"httpseeds"] = [u.encode() for u in httpseeds]
        data = encode(top)
    return parse_torrent(data)


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)


async def test_single_file_from_web_seed_only(tmp_path: Path, nginx: Nginx) -> None:
    src = make_tree(tmp_path / "src", {"data.bin": 500_000})
    shutil.copy(src / "data.bin", nginx.root / "mirror.bin")
    t = torrent(src / "data.bin", [f"{nginx.url}/mirror.bin"])
    async with Session(config()) as s:
        h = await s.add(t, tmp_path / "dl")
        await h.wait_complete(timeout=60)
        st = h.status()
        assert st.web_seeds == 1 and st.web_seed_downloaded == 500_000 == st.downloaded
        (seed,) = h.peers()
        assert seed["transport"] == "http" and seed["address"] == f"{nginx.url}/mirror.bin"
        assert st.as_dict()["web_seed_downloaded"] == 500_000
    assert (tmp_path / "dl" / "data.bin").read_bytes() == (src / "data.bin").read_bytes()


@pytest.mark.parametrize("version", ["v1", "hybrid", "v2"])
async def test_multi_file_across_file_boundaries_and_a_redirect(
    tmp_path: Path, nginx: Nginx, version: TorrentVersion
) -> None:
    """Pieces span files (v1), padding files are not requested (hybrid), v2 gaps are zeros; the URL
    redirects (nginx 302) to where the files are."""
    files = {"a/one.bin": 70_000, "a/b/two words.bin": 5_000, "empty.txt": 0, "three.bin": 200_001}
    src = make_tree(tmp_path / "src" / "album", files)
    shutil.copytree(src, nginx.root / "files" / "album")
    t = torrent(src, [f"{nginx.url}/moved/"], version=version, piece_length=16384)
    async with Session(config()) as s:
        h = await s.add(t, tmp_path / "dl")
        await h.wait_complete(timeout=60)
        assert h.status().web_seed_downloaded == sum(files.values())
    assert same_tree(tmp_path / "dl" / "album", src)
    log = (nginx.base / "access.log").read_text()
    assert "206" in log and ".pad" not in log and "/files/album/a/b/two%20words.bin" in log


async def test_httpseeds_bep17(tmp_path: Path, nginx: Nginx) -> None:
    """BEP 17: ``seed.php?info_hash=..&piece=N`` answers piece N (nginx serves pieces/N)."""
    src = make_tree(tmp_path / "src", {"x.bin": 100_000})
    data = (src / "x.bin").read_bytes()
    (nginx.root / "pieces").mkdir()
    for i in range(0, len(data), 16384):
        (nginx.root / "pieces" / str(i // 16384)).write_bytes(data[i : i + 16384])
    t = torrent(src / "x.bin", [], piece_length=16384, httpseeds=[f"{nginx.url}/seed.php"])
    assert t.httpseeds == [f"{nginx.url}/seed.php"]
    async with Session(config()) as s:
        h = await s.add(t, tmp_path / "dl")
        await h.wait_complete(timeout=60)
        assert h.status().web_seed_downloaded == len(data)
        assert h.peers()[0]["client"] == "web seed (bep17)"
    assert (tmp_path / "dl" / "x.bin").read_bytes() == data
    assert "info_hash=" in (nginx.base / "access.log").read_text()


async def test_web_seed_plus_peers(tmp_path: Path, nginx: Nginx) -> None:
    src = make_tree(tmp_path / "src" / "set", {"one.bin": 400_000, "two.bin": 300_000})
    shutil.copytree(src, nginx.root / "set")
    t = torrent(src, [f"{nginx.url}/"])
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, tmp_path / "src")
        h = await leecher.add(t, tmp_path / "dl", peers=[("127.0.0.1", seeder.port)])
        await h.wait_complete(timeout=60)
        st = h.status()
        assert st.web_seed_downloaded > 0
        assert st.downloaded - st.redundant >= 700_000
    assert same_tree(tmp_path / "dl" / "set", src)


async def test_corrupt_web_seed_is_dropped_and_peers_finish(tmp_path: Path, nginx: Nginx) -> None:
    src = make_tree(tmp_path / "src", {"data.bin": 600_000})
    (nginx.root / "data.bin").write_bytes(random.Random(99).randbytes(600_000))  # other bytes
    t = torrent(src / "data.bin", [f"{nginx.url}/"])
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, tmp_path / "src")
        events = leecher.events()
        h = await leecher.add(t, tmp_path / "dl")

        async def first_hash_failure() -> None:
            async for ev in events:
                if ev.kind == "hash_failed":
                    return

        await asyncio.wait_for(first_hash_failure(), 30)
        h.add_peer("127.0.0.1", seeder.port)  # now the peer: the failed piece comes from it
        await h.wait_complete(timeout=60)
        (seed,) = [p for p in h.peers() if p["transport"] == "http"]
        assert seed["state"] == "dropped" and "hash check" in str(seed["error"])
        assert h.status().web_seeds == 0
    assert (tmp_path / "dl" / "data.bin").read_bytes() == (src / "data.bin").read_bytes()


async def test_404_and_refused_seeds_back_off_and_peers_finish(tmp_path: Path, nginx: Nginx) -> None:
    src = make_tree(tmp_path / "src", {"data.bin": 300_000})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/"  # nobody listens there
    t = torrent(src / "data.bin", [f"{nginx.url}/missing/", closed])
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, tmp_path / "src")
        h = await leecher.add(t, tmp_path / "dl")
        for _ in range(1000):  # web seeds only: both fail their first request
            seeds = {str(p["address"]): p for p in h.peers() if p["transport"] == "http"}
            if all(p["state"] == "backoff" for p in seeds.values()):
                break
            await asyncio.sleep(0.02)
        missing, refused = seeds[f"{nginx.url}/missing/"], seeds[closed]
        assert missing["state"] == "backoff" and "404" in str(missing["error"])
        assert refused["state"] == "backoff" and "Connect" in str(refused["error"])
        h.add_peer("127.0.0.1", seeder.port)
        await h.wait_complete(timeout=60)
        st = h.status()
        assert st.web_seeds == 0 and st.web_seed_downloaded == 0 and st.pieces_done == st.num_pieces
    assert (tmp_path / "dl" / "data.bin").read_bytes() == (src / "data.bin").read_bytes()


async def test_server_without_range_support(tmp_path: Path, nginx: Nginx) -> None:
    """nginx with ``max_ranges 0`` answers every GET with 200 and the whole file: each piece is read
    from its offset in that answer."""
    src = make_tree(tmp_path / "src", {"data.bin": 150_000})
    (nginx.root / "norange").mkdir()
    shutil.copy(src / "data.bin", nginx.root / "norange" / "data.bin")
    t = torrent(src / "data.bin", [f"{nginx.url}/norange/"], piece_length=16384)
    async with Session(config()) as s:
        h = await s.add(t, tmp_path / "dl")
        await h.wait_complete(timeout=60)
    assert (tmp_path / "dl" / "data.bin").read_bytes() == (src / "data.bin").read_bytes()
    assert " 200 " in (nginx.base / "access.log").read_text()


async def test_rate_limit_applies_and_pause_resume_mid_download(tmp_path: Path, nginx: Nginx) -> None:
    """Web seed bytes pass the torrent's download limiter; a pause in the middle of a web seed's
    piece loses nothing (the piece goes back to the picker or lands) and resume finishes."""
    size = 600_000
    src = make_tree(tmp_path / "src", {"data.bin": size})
    shutil.copy(src / "data.bin", nginx.root / "data.bin")
    t = torrent(src / "data.bin", [f"{nginx.url}/"], piece_length=16384)
    loop = asyncio.get_running_loop()
    async with Session(config()) as s:
        h = await s.add(t, tmp_path / "dl")
        h.set_rate_limits(download=200_000)
        started = loop.time()
        while h.status().web_seed_downloaded < 150_000:
            await asyncio.sleep(0.02)
        await h.pause()
        paused_at = h.status().web_seed_downloaded
        assert h.status().state == "paused" and paused_at < size
        await h.resume()
        await h.wait_complete(timeout=60)
        elapsed = loop.time() - started
        assert h.status().pieces_done == h.status().num_pieces
    # 600 kB at 200 kB/s (plus at most a burst of one second's worth): 2 s or more
    assert elapsed >= 1.9, elapsed
    assert (tmp_path / "dl" / "data.bin").read_bytes() == (src / "data.bin").read_bytes()
