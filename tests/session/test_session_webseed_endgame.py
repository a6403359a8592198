"""Web seed end-game: a slow peer that holds requests for the remaining pieces does not leave the
web seed idle (issue 20). The web seed duplicates the pieces in flight to the peer, the download
ends at nginx's speed, and the peer's requests are cancelled as the web seed's copies land."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import pytest
from tests.session.test_session_messages import RawPeer, config, make_torrent
from tests.session.test_session_webseed import Nginx, nginx  # noqa: F401 - the fixture

from bitswarm.metainfo import create_torrent, parse_torrent
from bitswarm.session import Session
from bitswarm.wire import Cancel, HaveAll, Interested, Piece, Request, Unchoke

pytestmark = pytest.mark.timeout(90)

PIECES = 40
PIECE = 16384
#: the slow peer answers one request per this many seconds (keeps it un-snubbed, like a real
#: peer on a bad link): 16 held pieces alone take it 40 s
SLOW_EVERY = 2.5


async def test_slow_peer_holding_the_last_pieces_does_not_starve_the_web_seed(
    tmp_path: Path,
    nginx: Nginx,  # noqa: F811
) -> None:
    path, _ = make_torrent(tmp_path / "src", PIECES * PIECE, PIECE)
    data = path.read_bytes()
    t = parse_torrent(create_torrent(path, piece_length=PIECE, web_seeds=[f"{nginx.url}/f.bin"]))
    loop = asyncio.get_running_loop()
    async with Session(config()) as leech:
        # the mirror is not there yet (404: the web seed backs off) while the slow peer connects and
        # gets its requests; then the file appears
        h = await leech.add(t, tmp_path / "dl")
        reader, writer = await asyncio.open_connection("127.0.0.1", leech.port)
        peer = RawPeer(t, reader, writer)
        held: list[tuple[int, int, int]] = []
        cancels: list[tuple[int, int, int]] = []
        served = 0

        async def read() -> None:
            while True:
                ev = await peer.next(timeout=120)
                if isinstance(ev, Request):
                    held.append((ev.index, ev.begin, ev.length))
                elif isinstance(ev, Cancel):
                    key = (ev.index, ev.begin, ev.length)
                    cancels.append(key)
                    if key in held:
                        held.remove(key)

        async def serve_slowly() -> None:
            nonlocal served
            while True:
                await asyncio.sleep(SLOW_EVERY)
                if held:
                    i, begin, n = held.pop(0)
                    off = i * PIECE + begin
                    peer.send(Piece(i, begin, data[off : off + n]))
                    served += n

        try:
            await peer.handshake()
            peer.send(HaveAll(), Unchoke(), Interested())
            tasks = [asyncio.create_task(read()), asyncio.create_task(serve_slowly())]
            for _ in range(500):
                if len(held) >= 16:
                    break
                await asyncio.sleep(0.02)
            assert len(held) >= 16, held  # the slow peer holds 16 pieces
            shutil.copy(path, nginx.root / "f.bin")
            started = loop.time()
            # the slow peer alone needs 16 x 2.5 s = 40 s for what it holds; the web seed (after at
            # most its 8 s back-off from the 404s) a fraction of a second
            await h.wait_complete(timeout=25)
            elapsed = loop.time() - started
            st = h.status()
            assert st.pieces_done == PIECES
            assert served <= PIECES * PIECE // 4, served  # the peer sent few blocks
            assert st.web_seed_downloaded >= PIECES * PIECE * 3 // 4, st.web_seed_downloaded
            for _ in range(200):  # the web seed's copies landed: the peer's requests are withdrawn
                if cancels:
                    break
                await asyncio.sleep(0.02)
            assert cancels, "no request to the slow peer was cancelled"
            assert elapsed < 25
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, TimeoutError):
                    await task
            writer.close()
    assert (tmp_path / "dl" / "f.bin").read_bytes() == data
